"""Drops and datasets on S3, against a real S3-compatible server (SeaweedFS on loopback)."""

import hashlib
import json
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from annotation_assets.core.staging import S3_DROP_TAG
from annotation_assets.home import Home
from annotation_assets.project import build_definitions
from resources import S3Storage
from tests.cli import Cli
from tests.conftest import S3Bucket, review_records, write_jsonl
from tests.test_assets import Deployment
from tests.test_cli import _last_json, _one_line_error

TASK = "reviews"
RECORDS: list[dict[str, Any] | str] = [
    *review_records(30),
    "{broken",
    json.dumps({"id": "r0", "text": "other text"}),
]


@pytest.fixture
def local_drop(tmp_path: Path) -> Path:
    folder = tmp_path / "in" / "d1"
    write_jsonl(folder, RECORDS)
    return folder


@pytest.fixture
def s3_cli(tmp_path: Path, tasks_dir: Callable[..., Path], tiny_encoder_dir: Path) -> Cli:
    """The CLI in a subprocess whose environment carries the test server's AWS_* variables
    (set by s3_bucket)."""
    return Cli(tmp_path / "home", tasks_dir(), tiny_encoder_dir)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_run_from_s3_gives_the_same_summary_as_the_local_drop(
    s3_bucket: S3Bucket, s3_cli: Cli, local_drop: Path, tmp_path: Path
) -> None:
    s3_bucket.upload_folder(local_drop, "drops/d1/")
    s3_cli.env.update(s3_bucket.server.env)
    local = Cli(tmp_path / "local-home", s3_cli.tasks, None)
    local.env = {**s3_cli.env}

    from_s3 = s3_cli("run", TASK, "--drop", s3_bucket.url("drops/d1/"))
    from_folder = local("run", TASK, "--drop", str(local_drop))

    assert from_s3.returncode == 0, from_s3.stderr
    assert from_folder.returncode == 0, from_folder.stderr
    summary = _last_json(from_s3.stdout)
    assert summary == _last_json(from_folder.stdout)
    assert summary["drop"] == "d1" and summary["ingested"] == 32 and summary["quarantined"] >= 1
    staged = s3_cli.home / "drops" / TASK / "d1"
    assert sorted(p.name for p in staged.iterdir()) == ["_SUCCESS", "part-0.jsonl"]
    assert s3_bucket.server.secret_key not in from_s3.stdout + from_s3.stderr


@pytest.mark.slow  # a long trial (tests marked slow run with -m slow)
def test_export_to_s3_twice_writes_v1_and_v2_with_manifests_that_match(
    s3_bucket: S3Bucket, s3_cli: Cli, local_drop: Path, tmp_path: Path
) -> None:
    s3_cli.env.update(s3_bucket.server.env)
    assert s3_cli("run", TASK, "--drop", str(local_drop)).returncode == 0
    out = s3_bucket.url("datasets/reviews")

    first = s3_cli("export", TASK, "--out", out)
    second = s3_cli("export", TASK, "--out", out)
    local = s3_cli("export", TASK, "--out", str(tmp_path / "local-export"))

    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert _last_json(first.stdout)["version"] == 1
    assert _last_json(second.stdout)["version"] == 2
    assert s3_bucket.keys("datasets/") == [
        "datasets/reviews/v1/_claimed",
        "datasets/reviews/v1/manifest.json",
        "datasets/reviews/v1/reviews.jsonl",
        "datasets/reviews/v2/_claimed",
        "datasets/reviews/v2/manifest.json",
        "datasets/reviews/v2/reviews.jsonl",
    ]
    local_bytes = (tmp_path / "local-export" / "reviews.jsonl").read_bytes()
    rows = _last_json(local.stdout)["rows"]
    for version in (1, 2):
        manifest = json.loads(s3_bucket.get(f"datasets/reviews/v{version}/manifest.json"))
        assert manifest["task"] == TASK and manifest["version"] == version
        assert manifest["drops"] == ["d1"]
        assert len(manifest["spec_hash"]) == 64 and manifest["model_versions"]
        assert manifest["created_at"]
        [entry] = manifest["files"]
        data = s3_bucket.get(entry["key"])
        assert entry["key"] == f"datasets/reviews/v{version}/reviews.jsonl"
        assert entry["sha256"] == _sha256(data) and entry["bytes"] == len(data)
        assert entry["rows"] == rows == len(data.splitlines())
        assert data == local_bytes


@pytest.mark.slow  # a long trial (tests marked slow run with -m slow)
def test_export_uses_the_specs_sink_when_out_is_not_given(
    s3_bucket: S3Bucket, tmp_path: Path, tasks_dir: Callable[..., Path], local_drop: Path
) -> None:
    tasks = tasks_dir({"delivery": {"sink": s3_bucket.url("deliveries/")}})
    cli = Cli(tmp_path / "home", tasks, None)
    cli.env.update(s3_bucket.server.env)
    assert cli("run", TASK, "--drop", str(local_drop)).returncode == 0

    p = cli("export", TASK)

    assert p.returncode == 0, p.stderr
    assert _last_json(p.stdout)["manifest"] == s3_bucket.url("deliveries/v1/manifest.json")
    assert "deliveries/v1/reviews.jsonl" in s3_bucket.keys("deliveries/")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"AWS_SECRET_ACCESS_KEY": "wrong-secret-0123456789"}, "AWS_SECRET_ACCESS_KEY"),
        ({"AWS_ACCESS_KEY_ID": "unknown-key"}, "AWS_ACCESS_KEY_ID"),
        ({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}, "no AWS credentials"),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:{port}"}, "cannot reach the S3 endpoint"),
        ({"bucket": "missing-bucket-x"}, "does not exist"),
    ],
)
def test_s3_failures_are_one_line_without_the_secret(
    s3_bucket: S3Bucket, s3_cli: Cli, change: dict[str, Any], expected: str
) -> None:
    s3_bucket.put("drops/d1/part-0.jsonl", json.dumps(RECORDS[0]) + "\n")
    s3_cli.env.update(s3_bucket.server.env)
    s3_cli.env["AWS_MAX_ATTEMPTS"] = "1"
    bucket = change.pop("bucket", s3_bucket.name)
    for name, value in change.items():
        if value is None:
            s3_cli.env.pop(name, None)
        else:
            s3_cli.env[name] = value.format(port=_free_port())
    secret = s3_cli.env.get("AWS_SECRET_ACCESS_KEY") or s3_bucket.server.secret_key

    for args in (
        ["run", TASK, "--drop", f"s3://{bucket}/drops/d1/"],
        ["export", TASK, "--out", f"s3://{bucket}/out/"],
    ):
        p = s3_cli(*args)
        line = _one_line_error(p)
        assert expected in line, line
        assert secret not in p.stderr + p.stdout
        assert s3_bucket.server.secret_key not in p.stderr + p.stdout


def test_run_refuses_a_drop_prefix_that_is_not_a_drop_id(s3_bucket: S3Bucket, s3_cli: Cli) -> None:
    s3_cli.env.update(s3_bucket.server.env)
    line = _one_line_error(s3_cli("run", TASK, "--drop", s3_bucket.url("drops/bad:id/")))
    assert "drop id 'bad:id' is not allowed" in line


def test_run_of_an_empty_prefix_fails_cleanly(s3_bucket: S3Bucket, s3_cli: Cli) -> None:
    s3_cli.env.update(s3_bucket.server.env)
    line = _one_line_error(s3_cli("run", TASK, "--drop", s3_bucket.url("drops/nothing/")))
    assert line.endswith(f"{s3_bucket.url('drops/nothing/')}: no objects under this prefix")


@pytest.fixture
def s3_sensor(
    s3_bucket: S3Bucket, home: Home, tasks_dir: Callable[..., Path]
) -> dg.SensorDefinition:
    defs = build_definitions(home, tasks_dir({"source": s3_bucket.url("incoming/")}))
    return defs.resolve_sensor_def(f"{TASK}_new_s3_drops")


def _evaluate(
    sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None = None
) -> dg.SensorResult | dg.SkipReason:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"s3": S3Storage.from_env()}
    )
    return sensor(context)


def test_s3_sensor_registers_only_complete_drops_once(
    s3_sensor: dg.SensorDefinition, s3_bucket: S3Bucket
) -> None:
    for drop in ("2026-11-01", "2026-11-02", "_tmp", "bad:id"):
        s3_bucket.put(f"incoming/{drop}/part-0.jsonl", '{"id": "1", "text": "x"}\n')
    s3_bucket.put("incoming/2026-11-01/_SUCCESS", "")
    s3_bucket.put("incoming/_tmp/_SUCCESS", "")
    s3_bucket.put("incoming/bad:id/_SUCCESS", "")
    instance = dg.DagsterInstance.ephemeral()

    first = _evaluate(s3_sensor, instance)
    assert isinstance(first, dg.SensorResult)
    assert [r.partition_key for r in first.run_requests or []] == ["2026-11-01"]
    assert (first.run_requests or [])[0].tags[S3_DROP_TAG] == s3_bucket.url("incoming/2026-11-01/")
    added = first.dynamic_partitions_requests[0]
    assert isinstance(added, dg.AddDynamicPartitionsRequest)
    assert list(added.partition_keys) == ["2026-11-01"]

    again = _evaluate(s3_sensor, instance, first.cursor)
    assert isinstance(again, dg.SkipReason)

    s3_bucket.put("incoming/2026-11-02/_SUCCESS", "")
    later = _evaluate(s3_sensor, instance, first.cursor)
    assert isinstance(later, dg.SensorResult)
    assert [r.partition_key for r in later.run_requests or []] == ["2026-11-02"]
    assert json.loads(later.cursor or "{}") == {
        "after": None,
        "recent": ["2026-11-01", "2026-11-02", "_tmp"],
        "waiting": [],
    }


def test_the_s3_sensor_cursor_stays_bounded_and_late_markers_are_found(
    s3_sensor: dg.SensorDefinition, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    from annotation_assets import sensors

    monkeypatch.setattr(sensors, "RECENT_WINDOW", 3)
    instance = dg.DagsterInstance.ephemeral()
    s3_bucket.put("incoming/d00/part.jsonl", "{}\n")  # its _SUCCESS comes much later
    cursor = None
    for i in range(1, 9):
        s3_bucket.put(f"incoming/d{i:02d}/_SUCCESS", "")
        result = _evaluate(s3_sensor, instance, cursor)
        assert isinstance(result, dg.SensorResult)
        assert [r.partition_key for r in result.run_requests or []] == [f"d{i:02d}"]
        instance.add_dynamic_partitions(f"{TASK}_drops", [f"d{i:02d}"])
        cursor = result.cursor
    state = json.loads(cursor or "{}")
    assert state == {"after": "d05", "recent": ["d06", "d07", "d08"], "waiting": ["d00"]}
    # a drop seen incomplete is checked again although listing now starts after d05
    s3_bucket.put("incoming/d00/_SUCCESS", "")
    result = _evaluate(s3_sensor, instance, cursor)
    assert isinstance(result, dg.SensorResult)
    assert [r.partition_key for r in result.run_requests or []] == ["d00"]
    assert json.loads(result.cursor or "{}")["waiting"] == []
    # the earlier cursor (every name ever seen) is read as the new one
    old = sensors.S3Cursor.parse(json.dumps([f"d{i:02d}" for i in range(1, 9)]))
    assert (old.after, old.recent) == ("d05", ("d06", "d07", "d08"))


def test_s3_sensor_pages_through_many_drops(
    s3_sensor: dg.SensorDefinition, s3_bucket: S3Bucket
) -> None:
    names = [f"d{i:04d}" for i in range(1003)]
    for name in names:
        s3_bucket.put(f"incoming/{name}/_SUCCESS", "")

    result = _evaluate(s3_sensor, dg.DagsterInstance.ephemeral())

    assert isinstance(result, dg.SensorResult)
    assert [r.partition_key for r in result.run_requests or []] == names


def test_s3_sensor_reports_a_bad_key_as_a_skip(
    s3_sensor: dg.SensorDefinition, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-0123456789")
    result = _evaluate(s3_sensor, dg.DagsterInstance.ephemeral())
    assert isinstance(result, dg.SkipReason)
    assert "AWS_SECRET_ACCESS_KEY" in (result.skip_message or "")
    assert "wrong-secret" not in (result.skip_message or "")


def test_a_sensor_requested_run_stages_the_drop_from_s3(
    s3_bucket: S3Bucket,
    home: Home,
    tasks_dir: Callable[..., Path],
    tiny_encoder_dir: Path,
    local_drop: Path,
) -> None:
    s3_bucket.upload_folder(local_drop, "incoming/d1/")
    deployment = Deployment(
        home, tasks_dir({"source": s3_bucket.url("incoming/")}), tiny_encoder_dir
    )
    result = _evaluate(
        deployment.defs.resolve_sensor_def(f"{TASK}_new_s3_drops"), deployment.instance
    )
    assert isinstance(result, dg.SensorResult)
    [request] = result.run_requests or []
    deployment.instance.add_dynamic_partitions(f"{TASK}_drops", ["d1"])

    job = deployment.defs.resolve_job_def(f"{TASK}_pipeline")
    run = job.execute_in_process(
        partition_key="d1", instance=deployment.instance, tags=request.tags
    )

    assert run.success
    assert (home.drop_dir(TASK, "d1") / "part-0.jsonl").read_bytes() == (
        local_drop / "part-0.jsonl"
    ).read_bytes()
    counts = deployment.counts("d1")
    assert counts["ingested"] == 32
    shutil.rmtree(home.drop_dir(TASK, "d1"))
