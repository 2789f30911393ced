"""Sensors that turn new drop folders into partitions and runs."""

import json
import time
from pathlib import Path

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

from annotation_assets.core.spec import DROP_ID, TaskSpec
from annotation_assets.home import Home

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
        description=f"Watches {root} for new, complete drop folders (see README: drops).",
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
