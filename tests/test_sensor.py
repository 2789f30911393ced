"""The drop sensor: new complete drop folders become partitions and runs, once."""

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from annotation_assets.home import Home
from annotation_assets.project import build_definitions
from annotation_assets.sensors import drop_is_complete
from tests.conftest import review_records, write_jsonl

TASK = "reviews"


@pytest.fixture
def sensor(home: Home, tasks_dir: Callable[..., Path]) -> dg.SensorDefinition:
    defs = build_definitions(home, tasks_dir({"drops": {"settle_seconds": 60}}))
    return defs.resolve_sensor_def(f"{TASK}_new_drops")


def _evaluate(
    sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None = None
) -> dg.SensorResult | dg.SkipReason:
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    return sensor(context)


def _backdate(folder: Path, seconds: float) -> None:
    past = time.time() - seconds
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (past, past))


def test_a_drop_with_a_success_marker_becomes_a_partition_and_a_run(
    sensor: dg.SensorDefinition, home: Home
) -> None:
    write_jsonl(home.drop_dir(TASK, "2026-11-01"), review_records(3))
    result = _evaluate(sensor, dg.DagsterInstance.ephemeral())
    assert isinstance(result, dg.SensorResult)
    assert [r.partition_key for r in result.run_requests or []] == ["2026-11-01"]
    added = result.dynamic_partitions_requests[0]
    assert isinstance(added, dg.AddDynamicPartitionsRequest)
    assert list(added.partition_keys) == ["2026-11-01"]
    assert json.loads(result.cursor or "[]") == ["2026-11-01"]


def test_a_drop_still_being_written_is_not_picked_up(
    sensor: dg.SensorDefinition, home: Home
) -> None:
    folder = home.drop_dir(TASK, "d1")
    folder.mkdir(parents=True)
    (folder / "part-0.jsonl").write_text('{"id": "a", "text": "b"}\n')
    assert isinstance(_evaluate(sensor, dg.DagsterInstance.ephemeral()), dg.SkipReason)


def test_a_drop_without_marker_is_picked_up_once_it_settles(
    sensor: dg.SensorDefinition, home: Home
) -> None:
    folder = home.drop_dir(TASK, "d1")
    folder.mkdir(parents=True)
    (folder / "part-0.jsonl").write_text('{"id": "a", "text": "b"}\n')
    _backdate(folder, 120)
    result = _evaluate(sensor, dg.DagsterInstance.ephemeral())
    assert isinstance(result, dg.SensorResult)
    assert [r.partition_key for r in result.run_requests or []] == ["d1"]


def test_the_cursor_stops_a_drop_from_running_twice(
    sensor: dg.SensorDefinition, home: Home
) -> None:
    write_jsonl(home.drop_dir(TASK, "d1"), review_records(2))
    instance = dg.DagsterInstance.ephemeral()
    first = _evaluate(sensor, instance)
    assert isinstance(first, dg.SensorResult)
    write_jsonl(home.drop_dir(TASK, "d2"), review_records(2))
    second = _evaluate(sensor, instance, cursor=first.cursor)
    assert isinstance(second, dg.SensorResult)
    assert [r.partition_key for r in second.run_requests or []] == ["d2"]


def test_drops_already_registered_by_the_cli_are_skipped(
    sensor: dg.SensorDefinition, home: Home
) -> None:
    write_jsonl(home.drop_dir(TASK, "d1"), review_records(2))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(f"{TASK}_drops", ["d1"])
    assert isinstance(_evaluate(sensor, instance), dg.SkipReason)


def test_folders_with_invalid_drop_ids_and_hidden_staging_folders_are_ignored(
    sensor: dg.SensorDefinition, home: Home
) -> None:
    write_jsonl(home.drop_dir(TASK, "bad name"), review_records(2))
    write_jsonl(home.drop_dir(TASK, ".incoming-d9-1234"), review_records(2))
    assert isinstance(_evaluate(sensor, dg.DagsterInstance.ephemeral()), dg.SkipReason)


def test_an_empty_folder_is_never_complete(tmp_path: Path) -> None:
    assert not drop_is_complete(tmp_path, settle_seconds=0)
