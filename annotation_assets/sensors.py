"""Sensors that turn new drop folders into partitions and runs."""

import json
import time
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
        seen = set(json.loads(context.cursor)) if context.cursor else set()
        known = set(context.instance.get_dynamic_partitions(partitions.name or ""))
        new = []
        try:
            client = s3.client()
            for child in list(list_child_prefixes(client, source.bucket, source.prefix)):
                name = child.removeprefix(source.prefix).rstrip("/")
                if name in seen or name in known or name.startswith((".", "_")):
                    continue
                if not DROP_ID.match(name) or name in {".", ".."}:
                    context.log.warning(f"ignoring {source}{name}/: not a valid drop id")
                    continue
                if s3_drop_is_complete(client, S3Url(source.bucket, child)):
                    new.append(name)
        except S3Error as err:
            context.log.error(str(err))
            return dg.SkipReason(f"cannot list {source}: {err}")
        if not new:
            return dg.SkipReason(f"no new complete drops under {source}")
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
            cursor=json.dumps(sorted(seen | set(new))),
        )

    return new_s3_drops
