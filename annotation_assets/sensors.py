"""Sensors that turn new drop folders into partitions and runs."""

import json
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

from annotation_assets.core.s3 import S3Error, S3Url, list_child_prefixes, parse_s3_url
from annotation_assets.core.spec import DROP_ID, TaskSpec
from annotation_assets.core.staging import S3_DROP_TAG, s3_drop_is_complete
from annotation_assets.home import Home
from resources import S3Storage

SUCCESS_MARKER = "_SUCCESS"


def drop_is_complete(folder: Path, *, settle_seconds: float, now: float | None = None) -> bool:
    """A drop is complete once it holds a `_SUCCESS` marker, or once it holds at least one
    file and nothing in it has changed for `settle_seconds`."""
    if (folder / SUCCESS_MARKER).exists():
        return True
    newest = 0.0
    any_file = False
    for path in folder.rglob("*"):
        try:
            stat = path.lstat()
        except OSError:
            continue
        any_file = any_file or path.is_file()
        newest = max(newest, stat.st_mtime)
    return any_file and (now or time.time()) - newest >= settle_seconds


def build_drop_sensor(
    spec: TaskSpec,
    home: Home,
    job: UnresolvedAssetJobDefinition,
    partitions: dg.DynamicPartitionsDefinition,
) -> dg.SensorDefinition:
    task = spec.name
    root = home.drops / task

    @dg.sensor(
        name=f"{task}_new_drops",
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Watches {root} for new, complete drop folders (see docs/drops.md).",
    )
    def new_drops(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        if not root.is_dir():
            return dg.SkipReason(f"{root} does not exist yet")
        seen = set(json.loads(context.cursor)) if context.cursor else set()
        known = set(context.instance.get_dynamic_partitions(partitions.name or ""))
        new = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            name = folder.name
            if name in seen or name in known or name.startswith((".", "_")):
                continue
            if not DROP_ID.match(name):
                context.log.warning(f"ignoring drop folder {name!r}: not a valid drop id")
                continue
            if drop_is_complete(folder, settle_seconds=spec.drops.settle_seconds):
                new.append(name)
        if not new:
            return dg.SkipReason("no new complete drops")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(partition_key=d, run_key=f"{task}:{d}") for d in new],
            dynamic_partitions_requests=[partitions.build_add_request(new)],
            cursor=json.dumps(sorted(seen | set(new))),
        )

    return new_drops


# The S3 sensor's cursor stays bounded however many drops arrive: it keeps the names of the
# RECENT_WINDOW most recent drops (listed again each tick, so a late drop sorting among them
# is found), the name before them (listing starts after it), and drops seen without their
# _SUCCESS yet (checked again until complete, at most MAX_WAITING).
RECENT_WINDOW = 256
MAX_WAITING = 1000


@dataclass(frozen=True)
class S3Cursor:
    after: str | None = None
    recent: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> "S3Cursor":
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except ValueError:
            return cls()
        if isinstance(data, list):  # the earlier cursor: every drop ever seen
            return cls().advance([str(x) for x in data], [], [])
        if not isinstance(data, dict):
            return cls()
        after = data.get("after")
        return cls(
            after=after if isinstance(after, str) else None,
            recent=tuple(str(x) for x in data.get("recent", ())),
            waiting=tuple(str(x) for x in data.get("waiting", ())),
        )

    def advance(self, listed: list[str], new: list[str], incomplete: list[str]) -> "S3Cursor":
        """The cursor after a tick that listed these names, found `new` complete and saw
        `incomplete` without their marker."""
        done = sorted((set(self.recent) | set(listed) | set(new)) - set(incomplete))
        recent, older = done[-RECENT_WINDOW:], done[:-RECENT_WINDOW]
        after = max([self.after or "", *older]) or None
        return S3Cursor(after, tuple(recent), tuple(sorted(set(incomplete))[-MAX_WAITING:]))

    def dump(self) -> str:
        return json.dumps(
            {"after": self.after, "recent": list(self.recent), "waiting": list(self.waiting)}
        )


def build_s3_drop_sensor(
    spec: TaskSpec,
    job: UnresolvedAssetJobDefinition,
    partitions: dg.DynamicPartitionsDefinition,
) -> dg.SensorDefinition:
    """For a task whose spec has `source: s3://bucket/prefix/`: every sub-prefix
    `<prefix><drop_id>/` holding a `_SUCCESS` object becomes a partition and a run (the run's
    raw_records stages the drop from S3 into the home)."""
    task = spec.name
    if not spec.source:
        raise ValueError(f"task {task!r} has no S3 source")
    source = parse_s3_url(spec.source)

    @dg.sensor(
        name=f"{task}_new_s3_drops",
        job=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Watches {source} for new drops completed by a _SUCCESS object.",
    )
    def new_s3_drops(
        context: dg.SensorEvaluationContext, s3: S3Storage
    ) -> dg.SensorResult | dg.SkipReason:
        cursor = S3Cursor.parse(context.cursor)
        known = set(context.instance.get_dynamic_partitions(partitions.name or ""))
        new: list[str] = []
        incomplete: list[str] = []
        listed: list[str] = []
        try:
            client = s3.client()
            # the bare id, not "<id>/": "-" and "." sort before "/", so "<id>-b/" lists too
            after = f"{source.prefix}{cursor.after}" if cursor.after else None
            children = [
                child.removeprefix(source.prefix).rstrip("/")
                for child in list_child_prefixes(
                    client, source.bucket, source.prefix, start_after=after
                )
            ]
            # drops listed before but not complete then, that now sort before the listing
            for name in sorted(set(children) | set(cursor.waiting)):
                if name in known or name in cursor.recent or name.startswith((".", "_")):
                    listed.append(name)
                    continue
                if not DROP_ID.match(name) or name in {".", ".."}:
                    context.log.warning(f"ignoring {source}{name}/: not a valid drop id")
                    continue
                listed.append(name)
                if s3_drop_is_complete(client, S3Url(source.bucket, source.prefix + name + "/")):
                    new.append(name)
                else:
                    incomplete.append(name)
        except S3Error as err:
            context.log.error(str(err))
            return dg.SkipReason(f"cannot list {source}: {err}")
        moved = cursor.advance(listed, new, incomplete)
        if not new and moved == cursor:
            return dg.SkipReason(f"no new complete drops under {source}")
        if not new:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"no new complete drops under {source}"),
                cursor=moved.dump(),
            )
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    partition_key=d,
                    run_key=f"{task}:s3:{d}",
                    tags={S3_DROP_TAG: str(source.child(d))},
                )
                for d in new
            ],
            dynamic_partitions_requests=[partitions.build_add_request(new)],
            cursor=moved.dump(),
        )

    return new_s3_drops
