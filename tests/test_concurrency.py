"""Several `annotate run` processes on one new home at once, on either warehouse backend:
every run succeeds, every drop conserves its rows, and drops sharing texts and ids never both
keep them."""

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from annotation_assets.home import Home
from resources import Warehouse
from tests.cli import annotate_argv
from tests.conftest import review_records, write_jsonl
from tests.test_assets import use_backend


@pytest.mark.parametrize(
    ("backend", "drops"),
    [
        ("duckdb", 3),
        pytest.param("duckdb", 8, marks=pytest.mark.slow),
        pytest.param("parquet", 4, marks=pytest.mark.slow),
    ],
)
def test_drops_run_concurrently_without_losing_or_duplicating_rows(
    tmp_path: Path,
    tasks_dir: Callable[..., Path],
    tiny_encoder_dir: Path,
    backend: str,
    drops: int,
) -> None:
    tasks = tasks_dir()
    home = tmp_path / "home"
    use_backend(Home(home), backend)
    shared = review_records(5, prefix="shared")
    for k in range(drops):
        own = review_records(20, prefix=f"d{k}-", offset=1000 * (k + 1))
        write_jsonl(tmp_path / "in" / f"drop{k}", [*own, *shared])
    env = {**os.environ, "ANNOTATION_ENCODER": str(tiny_encoder_dir), "HF_HUB_OFFLINE": "1"}
    procs = [
        subprocess.Popen(
            annotate_argv(
                home, "run", "reviews", "--drop", str(tmp_path / "in" / f"drop{k}"), tasks=tasks
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for k in range(drops)
    ]
    results = [(p, *p.communicate(timeout=600)) for p in procs]
    for proc, out, err in results:
        assert proc.returncode == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["ingested"] == 25
        assert summary["ingested"] == (
            summary["final_rows"]
            + summary["hitl_pending"]
            + summary["quarantined"]
            + summary["duplicates"]
        )
    with Warehouse.for_home(Home(home)).connect() as conn:
        kept_shared = conn.execute(
            "SELECT count(*) FROM reviews.normalized_records WHERE record_id LIKE 'shared%'"
        ).fetchall()[0][0]
        dup_shared = conn.execute(
            "SELECT count(*) FROM reviews.duplicates WHERE record_id LIKE 'shared%'"
        ).fetchall()[0][0]
        ids = conn.execute(
            "SELECT count(*), count(DISTINCT id) FROM reviews.final_dataset"
        ).fetchall()[0]
        seqs = conn.execute("SELECT count(DISTINCT seq) FROM reviews.drops").fetchall()[0][0]
    assert kept_shared == 5
    assert dup_shared == 5 * (drops - 1)
    assert ids[0] == ids[1]
    assert seqs == drops
