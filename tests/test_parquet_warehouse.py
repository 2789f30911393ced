"""The Parquet warehouse backend: its file layout, write-back, locking, S3 and configuration.

The pipeline's own tests run on both backends (tests/test_assets.py, test_concurrency.py);
these tests cover what is particular to keeping the tables as Parquet files."""

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from annotation_assets.core import reviews
from annotation_assets.core.s3 import S3Url
from annotation_assets.core.spec import parse_task_spec
from annotation_assets.home import Home, HomeConfigError
from annotation_assets.stages import human
from annotation_assets.warehouse import parquet as parquet_tables
from annotation_assets.warehouse.parquet import LocalStore, ParquetTables, S3Store
from resources import Warehouse
from tests.cli import annotate_argv
from tests.conftest import S3Bucket, review_records
from tests.test_assets import Deployment, use_backend


def _tables(root: Path) -> ParquetTables:
    tables = ParquetTables(LocalStore(root))
    tables.ensure_task("t")
    return tables


def _files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )


def _insert_final(conn: duckdb.DuckDBPyConnection, drop_id: str, ids: list[str]) -> None:
    for rid in ids:
        conn.execute(
            'INSERT INTO "t".final_dataset (id, drop_id, text, label, source, confidence,'
            " source_file, ingested_at) VALUES (?, ?, 'x', 'a', 'rule', 1.0, 'f', now())",
            [rid, drop_id],
        )


def test_each_drop_partition_is_one_parquet_file_rewritten_only_when_it_changes(
    tmp_path: Path,
) -> None:
    tables = _tables(tmp_path)
    with tables.connect() as conn:
        _insert_final(conn, "d1", ["a", "b"])
        _insert_final(conn, "d2", ["c"])
    assert _files(tmp_path) == [
        "t/_task",
        "t/final_dataset/drop=d1.parquet",
        "t/final_dataset/drop=d2.parquet",
    ]
    d2 = tmp_path / "t/final_dataset/drop=d2.parquet"
    before = d2.stat().st_mtime_ns
    time.sleep(0.01)
    with tables.connect() as conn:
        conn.execute("DELETE FROM t.final_dataset WHERE drop_id = 'd1'")
        _insert_final(conn, "d1", ["a"])
    assert d2.stat().st_mtime_ns == before  # untouched partition
    rows = duckdb.sql(
        f"SELECT id FROM read_parquet('{tmp_path}/t/final_dataset/drop=d1.parquet')"
    ).fetchall()
    assert rows == [("a",)]
    with tables.connect() as conn:
        conn.execute("DELETE FROM t.final_dataset WHERE drop_id = 'd2'")
    assert "t/final_dataset/drop=d2.parquet" not in _files(tmp_path)
    with tables.connect() as conn:
        assert conn.execute("SELECT drop_id, id FROM t.final_dataset").fetchall() == [("d1", "a")]


def test_shared_tables_get_new_rows_as_part_files_and_are_compacted(tmp_path: Path) -> None:
    tables = _tables(tmp_path)
    n = parquet_tables.COMPACT_AFTER + 3
    insert = (  # as embed_cached stores: only keys not stored yet
        "INSERT INTO t.embeddings SELECT 'enc', $key, [1.0, 2.0]::FLOAT[]"
        " WHERE NOT EXISTS (SELECT 1 FROM t.embeddings WHERE dedup_key = $key)"
    )
    for k in range(n):
        with tables.connect() as conn:
            conn.execute(insert, {"key": f"key{k}"})
            conn.execute(insert, {"key": "key0"})  # already stored: no new part file for it
    parts = [f for f in _files(tmp_path) if f.startswith("t/embeddings/")]
    assert 1 <= len(parts) <= parquet_tables.COMPACT_AFTER
    with tables.connect() as conn:
        keys = conn.execute("SELECT dedup_key FROM t.embeddings ORDER BY dedup_key").fetchall()
    assert sorted(k for (k,) in keys) == sorted(f"key{k}" for k in range(n))


T_SPEC = parse_task_spec({"name": "t", "kind": "text_classification", "labels": ["a", "b"]})


def test_replayed_review_files_are_seen_by_another_worker(tmp_path: Path) -> None:
    with _tables(tmp_path).connect() as conn:
        human.record_replayed(conn, T_SPEC, "batch.csv", "ab12", 3)
        human.record_replayed(conn, T_SPEC, "batch.csv", "ab12", 3)  # noted once
    other = ParquetTables(LocalStore(tmp_path))  # a second worker on the same root
    with other.connect() as conn:
        assert human.replayed_files(conn, T_SPEC) == {("batch.csv", "ab12"): 3}
        human.record_replayed(conn, T_SPEC, "batch.csv", "cd34", 4)
    with _tables(tmp_path).connect() as conn:
        assert human.replayed_files(conn, T_SPEC) == {
            ("batch.csv", "ab12"): 3,
            ("batch.csv", "cd34"): 4,
        }
        assert conn.execute("SELECT count(*) FROM t.review_files").fetchone() == (2,)


def test_an_annotator_returning_to_an_earlier_label_is_kept_by_every_worker(
    tmp_path: Path,
) -> None:
    tables = _tables(tmp_path)
    with tables.connect() as conn:
        conn.execute(
            "INSERT INTO t.normalized_records (drop_id, row_num, record_id, text, dedup_key,"
            " source_file, ingested_at) VALUES ('d1', 0, 'r1', 'x', 'k', 'f', now())"
        )
    for n, label in enumerate(["a", "b", "a"]):  # untimed votes, each from a file of its own
        path = tmp_path / f"vote{n}.csv"
        path.write_text(f"record_id,label,annotator\nr1,{label},alice\n")
        with tables.connect() as conn:
            report = human.import_decisions(
                conn, T_SPEC, reviews.parse_decisions(path), source_file=path.name, new_file=True
            )
            assert report.imported == 1
    for worker in (tables, ParquetTables(LocalStore(tmp_path))):
        with worker.connect() as conn:
            votes = conn.execute(
                "SELECT label, source_file FROM t.human_labels ORDER BY imported_at"
            ).fetchall()
            latest = reviews.annotator_ratings(human.decisions_frame(conn, "t"))
        assert votes == [("a", "vote0.csv"), ("b", "vote1.csv"), ("a", "vote2.csv")]
        assert latest == {"alice": {"r1": "a"}}


def test_a_block_keeps_what_it_committed_and_drops_what_it_rolled_back(tmp_path: Path) -> None:
    tables = _tables(tmp_path)
    with pytest.raises(RuntimeError), tables.connect() as conn:
        _insert_final(conn, "d1", ["kept"])
        conn.execute("BEGIN TRANSACTION")
        _insert_final(conn, "d2", ["undone"])
        raise RuntimeError("the stage failed mid-transaction")
    with tables.connect() as conn:
        rows = conn.execute("SELECT drop_id, id FROM t.final_dataset").fetchall()
    assert rows == [("d1", "kept")]


def test_blocks_are_serialized_across_threads(tmp_path: Path) -> None:
    tables = _tables(tmp_path)
    with tables.connect() as conn:
        conn.execute("INSERT INTO t.drops VALUES ('counter', 0, NULL, now())")

    def bump() -> None:
        for _ in range(5):
            with tables.connect() as conn:
                conn.execute("UPDATE t.drops SET seq = seq + 1 WHERE drop_id = 'counter'")

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with tables.connect() as conn:
        assert conn.execute("SELECT seq FROM t.drops").fetchall() == [(20,)]


def test_s3_store_keeps_the_same_layout_and_its_lock_excludes(s3_bucket: S3Bucket) -> None:
    url = f"s3://{s3_bucket.name}/warehouse/"
    tables = ParquetTables(S3Store.from_url(url))
    tables.ensure_task("t")
    with tables.connect() as conn:
        _insert_final(conn, "d1", ["a", "b"])
    keys = sorted(
        o["Key"] for o in s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name)["Contents"]
    )
    assert keys == ["warehouse/t/_task", "warehouse/t/final_dataset/drop=d1.parquet"]
    other = ParquetTables(S3Store.from_url(url, cache_dir=None))
    with other.connect() as conn:
        assert conn.execute("SELECT count(*) FROM t.final_dataset").fetchall() == [(2,)]

    store = S3Store.from_url(url, lock_timeout_s=0.5)
    with store.lock(), pytest.raises(TimeoutError, match="stayed locked"), store.lock():
        pass
    with store.lock():  # released: free again
        pass


def test_an_s3_lease_whose_holder_died_is_broken(s3_bucket: S3Bucket) -> None:
    url = S3Url(s3_bucket.name, "wh/")
    s3_bucket.client.put_object(
        Bucket=s3_bucket.name,
        Key="wh/_lock",
        Body=json.dumps({"owner": "dead-worker", "expires": time.time() - 1}).encode(),
    )
    store = S3Store(url, s3_bucket.client, lock_timeout_s=5)
    with store.lock():
        holder = json.loads(
            s3_bucket.client.get_object(Bucket=s3_bucket.name, Key="wh/_lock")["Body"].read()
        )
        assert holder["owner"] != "dead-worker"


def test_the_pipeline_runs_on_a_parquet_warehouse_in_s3(
    s3_bucket: S3Bucket, home: Home, tasks_dir: Callable[..., Path], tiny_encoder_dir: Path
) -> None:
    home.root.mkdir(parents=True, exist_ok=True)
    home.config_file.write_text(
        f"warehouse:\n  backend: parquet\n  path: s3://{s3_bucket.name}/tables/\n"
    )
    deployment = Deployment(home, tasks_dir(), tiny_encoder_dir)
    deployment.drop("d1", [*review_records(30), "{broken"])
    deployment.drop("d2", review_records(20, offset=25))  # 5 shared with d1
    assert deployment.run("d1").success
    assert deployment.run("d2").success
    d2 = deployment.counts("d2")
    assert d2["ingested"] == 20
    assert d2["duplicates"] == 5
    assert d2["ingested"] == d2["final_rows"] + d2["hitl_pending"] + d2["duplicates"]
    keys = {
        o["Key"]
        for o in s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name, Prefix="tables/")[
            "Contents"
        ]
    }
    assert "tables/reviews/final_dataset/drop=d2.parquet" in keys
    assert "tables/reviews/quarantine/drop=d1.parquet" in keys
    assert not (home.root / "warehouse.duckdb").exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("warehouse: {backend: sqlite}\n", "backend must be duckdb or parquet"),
        ("warehouse: [parquet]\n", "expected a mapping"),
        ("warehouse: {memroy_limit: 1GB}\n", "unknown key memroy_limit"),
        ("warehouse: {backend: duckdb, path: 's3://b/p/'}\n", "needs a local file path"),
        ("warehouse: {backend: parquet\n", "not valid YAML"),
        ("warehouse: {memory_limit: lots}\n", "memory_limit must be a size"),
        ("warehouse: {memory_limit: 0MB}\n", "must be a size of at least 64MiB"),
        ("warehouse: {memory_limit: 63MiB}\n", "must be a size of at least 64MiB"),
        ("warehouse: {memory_limit: '1GB; DROP TABLE x'}\n", "memory_limit must be a size"),
    ],
)
def test_a_bad_warehouse_config_is_refused_in_one_line(
    tmp_path: Path, config: str, message: str
) -> None:
    home = Home(tmp_path / "home")
    home.root.mkdir()
    home.config_file.write_text(config)
    with pytest.raises(HomeConfigError, match=message):
        home.warehouse_settings()
    proc = subprocess.run(
        annotate_argv(home.root, "status"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert message in proc.stderr


def test_environment_overrides_the_home_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = use_backend(Home(tmp_path / "home"), "duckdb")
    monkeypatch.setenv("ANNOTATION_WAREHOUSE_BACKEND", "parquet")
    monkeypatch.setenv("ANNOTATION_WAREHOUSE_PATH", "s3://bucket/tables/")
    warehouse = Warehouse.for_home(home)
    assert (warehouse.backend, warehouse.path) == ("parquet", "s3://bucket/tables/")
    monkeypatch.setenv("ANNOTATION_WAREHOUSE_PATH", "relative/tables")
    assert Warehouse.for_home(home).path == str(home.root / "relative/tables")


def test_duckdb_memory_limit_comes_from_the_home_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANNOTATION_WAREHOUSE_MEMORY_LIMIT", raising=False)
    home = Home(tmp_path / "home").create()

    def setting() -> str:
        with Warehouse.for_home(home).connect() as conn:
            row = conn.execute("SELECT current_setting('memory_limit')").fetchone()
        assert row is not None
        return str(row[0])

    assert Warehouse.for_home(home).memory_limit == "256MB"
    assert setting().startswith("244.1 MiB")  # DuckDB prints 256MB (10^6 bytes each) in MiB
    home.config_file.write_text("warehouse: {memory_limit: 300MB}\n")
    assert setting().startswith("286.1 MiB")
    monkeypatch.setenv("ANNOTATION_WAREHOUSE_MEMORY_LIMIT", "2GiB")
    assert setting().startswith("2.0 GiB")
    bad = Warehouse(path=str(tmp_path / "w.duckdb"), memory_limit="1GB'; --")
    with pytest.raises(ValueError, match="memory_limit must be a size"), bad.connect():
        pass
