"""The bad-input suite: over a thousand hostile cases (tests/hostile.py) through every stage.

Cases are packed into drops of about a hundred. Each drop runs through ingest, normalize,
rules, model (a tiny real encoder), review queue and final dataset, and then every case is
checked: its rows are all accounted for (quarantined with an allowed reason, kept, or a
duplicate), a refused file carries a message, the drop conserves rows, and nothing from the
canary outside the drop reached any table or was opened by the pipeline.
"""

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
import yaml

from annotation_assets.core.encoder import load_encoder
from annotation_assets.core.model_store import ModelStore
from annotation_assets.core.spec import TaskSpec, parse_task_spec
from annotation_assets.home import PROJECT_ROOT
from annotation_assets.stages.dataset import build_final_dataset
from annotation_assets.stages.heavy import label_by_heavy
from annotation_assets.stages.ingest import ingest_drop
from annotation_assets.stages.model import label_by_model
from annotation_assets.stages.normalize import normalize_drop
from annotation_assets.stages.review import queue_for_review
from annotation_assets.stages.rules import label_by_rules
from annotation_assets.warehouse.counts import drop_counts
from checks.schemas import QUARANTINE_REASONS
from resources.warehouse import Warehouse
from tests import hostile
from tests.cli import Cli
from tests.conftest import BASE_SPEC

TEXT_TASK = "hostile"
IMAGE_TASK = "product_images"
BATCH = 100

TEXT_SPEC_DATA: dict[str, Any] = {
    **json.loads(json.dumps(BASE_SPEC)),
    "name": TEXT_TASK,
    "rules": [
        *BASE_SPEC["rules"],
        {
            "name": "title_words",
            "type": "keywords",
            "field": "title",
            "words": ["kettle", "lamp"],
            "label": "neutral",
            "confidence": 0.9,
        },
        {
            "name": "vader_negative",
            "type": "lexicon_sentiment",
            "max": -0.6,
            "label": "negative",
            "confidence": 0.7,
        },
    ],
}


def _image_spec_data() -> dict[str, Any]:
    data = yaml.safe_load((PROJECT_ROOT / "tasks" / f"{IMAGE_TASK}.yaml").read_text())
    data["images"] = {**data.get("images", {}), "max_pixels": hostile.IMAGE_MAX_PIXELS}
    return dict(data)


@cache
def _text_cases() -> list[hostile.Case]:
    return hostile.text_cases(seed=0)


@cache
def _image_cases() -> list[hostile.Case]:
    return hostile.image_cases(seed=0)


def test_the_suite_has_over_a_thousand_cases_covering_every_family() -> None:
    cases = _text_cases() + _image_cases()
    families = {c.family for c in cases}
    assert len(cases) >= 1000
    assert len({c.name for c in cases}) == len(cases)
    assert {
        "json_truncated",
        "json_syntax",
        "csv_quoting",
        "invalid_utf8",
        "nul_bytes",
        "long_line",
        "deep_nesting",
        "missing_id",
        "duplicate_id",
        "sql_id",
        "path_id",
        "file_name",
        "symlink",
        "empty_file",
        "truncated_parquet",
        "truncated_image",
        "bomb",
        "manifest",
        "image_symlink",
    } <= families


def test_the_generator_is_seeded() -> None:
    again = hostile.text_cases(seed=0)
    assert [(c.name, c.files) for c in again] == [(c.name, c.files) for c in _text_cases()]
    other = hostile.text_cases(seed=1)
    assert [c.files for c in other] != [c.files for c in _text_cases()]


# ---------------------------------------------------------------------------- harness


_OPENED_OUTSIDE: list[str] = []
_WATCHED: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _WATCHED or event not in ("open", "os.listdir", "os.scandir") or not args:
        return
    target = args[0]
    if not isinstance(target, str | bytes | os.PathLike):
        return
    real = os.path.realpath(os.fsdecode(target))
    if any(real == root or real.startswith(root + os.sep) for root in _WATCHED):
        _OPENED_OUTSIDE.append(real)


sys.addaudithook(_audit)


@contextmanager
def _watching(root: Path) -> Iterator[list[str]]:
    """Records every Python-level open/listdir of a path under `root` (links resolved)."""
    _OPENED_OUTSIDE.clear()
    _WATCHED.append(os.path.realpath(root))
    try:
        yield _OPENED_OUTSIDE
    finally:
        _WATCHED.clear()


def _run_stages(
    spec: TaskSpec, warehouse: Warehouse, drop_id: str, drop_dir: Path, encoder: Path, models: Path
) -> None:
    connect = warehouse.connect
    ingest_drop(connect, spec, drop_id, drop_dir)
    normalize_drop(connect, spec, drop_id)
    label_by_rules(connect, spec, drop_id)
    label_by_model(
        connect,
        spec,
        drop_id,
        encoder=load_encoder(str(encoder), spec.model.max_length, spec.model.batch_size),
        store=ModelStore(models),
    )
    label_by_heavy(connect, spec, drop_id, item_root=drop_dir)
    queue_for_review(connect, spec, drop_id)
    build_final_dataset(connect, spec, drop_id)


def _frame(conn: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> pd.DataFrame:
    return conn.execute(sql, list(params)).fetchdf()


def _owner(placed: list[hostile.Placed]) -> Callable[[str, Any], str | None]:
    folders = {p.folder: p.case.name for p in placed}
    lines = {n: p.case.name for p in placed for n in p.manifest_lines}

    def owner(source_file: str, line_no: Any) -> str | None:
        if source_file == hostile.MANIFEST:
            return lines.get(int(line_no)) if pd.notna(line_no) else None
        return folders.get(source_file.split("/", 1)[0])

    return owner


def case_failures(
    conn: duckdb.DuckDBPyConnection, task: str, drop_id: str, placed: list[hostile.Placed]
) -> list[str]:
    """Every way the drop's rows break what their cases expect, one line each."""
    q = lambda table: f'"{task}"."{table}"'  # noqa: E731
    raw = _frame(
        conn,
        f"SELECT row_num, source_file, line_no FROM {q('raw_records')} WHERE drop_id = ?",
        drop_id,
    )
    quar = _frame(
        conn,
        f"SELECT row_num, line_no, reason, detail, payload FROM {q('quarantine')}"
        " WHERE drop_id = ?",
        drop_id,
    ).set_index("row_num")
    kept = _frame(
        conn,
        f"SELECT row_num, record_id FROM {q('normalized_records')} WHERE drop_id = ?",
        drop_id,
    )
    dups = _frame(
        conn, f"SELECT row_num, record_id FROM {q('duplicates')} WHERE drop_id = ?", drop_id
    )
    owner = _owner(placed)
    raw["case"] = [owner(s, n) for s, n in zip(raw["source_file"], raw["line_no"], strict=True)]
    failures = [
        f"row of no case: {s!r} line {n}"
        for s, n in raw.loc[raw["case"].isna(), ["source_file", "line_no"]].itertuples(index=False)
    ]
    places = pd.concat(
        [
            pd.Series("quarantine", index=quar.index),
            pd.Series("kept", index=kept["row_num"].to_numpy()),
            pd.Series("duplicate", index=dups["row_num"].to_numpy()),
        ]
    )
    counted = places.index.value_counts()
    by_case = dict(list(raw.groupby("case")))
    for p in placed:
        case = p.case
        rows = by_case.get(case.name, raw.iloc[0:0])
        nums = rows["row_num"].tolist()
        where = f"{case.name} [{p.folder}]"
        if case.rows is not None and len(nums) != case.rows:
            failures.append(f"{where}: {len(nums)} raw rows, expected {case.rows}")
        for n in nums:
            if counted.get(n, 0) != 1:
                failures.append(f"{where}: row {n} is in {counted.get(n, 0)} output tables")
        mine = quar.loc[quar.index.intersection(nums)]
        reasons = set(mine["reason"])
        if case.bad is not None and len(mine) != case.bad:
            detail = sorted(
                (r, str(d)[:80]) for r, d in zip(mine["reason"], mine["detail"], strict=True)
            )
            failures.append(f"{where}: {len(mine)} quarantined, expected {case.bad}: {detail}")
        if not reasons <= case.reasons:
            failures.append(f"{where}: reasons {sorted(reasons - case.reasons)} not allowed")
        if not case.must <= reasons:
            failures.append(f"{where}: missing reasons {sorted(case.must - reasons)}")
        if not reasons <= set(QUARANTINE_REASONS):
            failures.append(f"{where}: unknown reason codes {sorted(reasons)}")
        if any(not str(d or "").strip() for d in mine["detail"]):
            failures.append(f"{where}: a quarantined row has no detail")
        if (mine["line_no"].notna() & mine["payload"].isna()).any():
            failures.append(f"{where}: a quarantined line lost its payload")
        if case.refused and mine["line_no"].notna().any():
            failures.append(f"{where}: expected whole files refused, got lines quarantined")
        n_dups = int(dups["row_num"].isin(nums).sum())
        if case.duplicates is not None and n_dups != case.duplicates:
            failures.append(f"{where}: {n_dups} duplicates, expected {case.duplicates}")
        through = set(kept.loc[kept["row_num"].isin(nums), "record_id"])
        through |= set(dups.loc[dups["row_num"].isin(nums), "record_id"])
        for rid in case.ids:
            if rid not in through:
                failures.append(f"{where}: id {rid!r} did not come through verbatim")
    return failures


def conservation_failures(conn: duckdb.DuckDBPyConnection, task: str, drop_id: str) -> list[str]:
    c = drop_counts(conn, task, drop_id)
    accounted = c["final_rows"] + c["hitl_pending"] + c["quarantined"] + c["duplicates"]
    if c["ingested"] != accounted:
        return [f"conservation broken for {drop_id}: {c}"]
    return []


def canary_hits(conn: duckdb.DuckDBPyConnection, needles: tuple[str, ...]) -> list[str]:
    """`schema.table.column` of every text column of the warehouse holding a needle."""
    columns = conn.execute(
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns"
        " WHERE data_type LIKE '%VARCHAR%' OR data_type = 'JSON'"
    ).fetchall()
    hits = []
    for schema, table, column, _ in columns:
        for needle in needles:
            found = conn.execute(
                f'SELECT count(*) FROM "{schema}"."{table}"'
                f' WHERE CAST("{column}" AS VARCHAR) LIKE ?',
                [f"%{needle}%"],
            ).fetchone()
            if found and found[0]:
                hits.append(f"{schema}.{table}.{column}")
    return hits


def _batches(kind: str) -> list[list[hostile.Case]]:
    cases = _text_cases() if kind == hostile.TEXT else _image_cases()
    return hostile.batches(cases, BATCH)


def _batch_params() -> list[Any]:
    params = []
    for kind in (hostile.TEXT, hostile.IMAGE):
        for i in range(len(_batches(kind))):
            params.append(pytest.param(kind, i, id=f"{kind}-{i}"))
    return params


def _spec(kind: str) -> TaskSpec:
    return parse_task_spec(TEXT_SPEC_DATA if kind == hostile.TEXT else _image_spec_data())


@pytest.mark.parametrize(("kind", "batch"), _batch_params())
def test_hostile_drop_is_accounted_for_case_by_case(
    tmp_path: Path, tiny_encoder_dir: Path, kind: str, batch: int
) -> None:
    outside = hostile.make_outside(tmp_path / "outside")
    cases = _batches(kind)[batch]
    spec = _spec(kind)
    drop_id = f"{kind}-{batch:02d}"
    drop_dir = tmp_path / "drops" / drop_id
    placed = hostile.write_drop(drop_dir, cases, outside)
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    warehouse.ensure_task(spec.name)

    with _watching(outside.root) as opened:
        _run_stages(spec, warehouse, drop_id, drop_dir, tiny_encoder_dir, tmp_path / "models")

    with warehouse.connect() as conn:
        failures = case_failures(conn, spec.name, drop_id, placed)
        failures += conservation_failures(conn, spec.name, drop_id)
        failures += [f"canary in {where}" for where in canary_hits(conn, outside.needles)]
    failures += [f"opened outside the drop: {path}" for path in sorted(set(opened))]
    assert not failures, "\n".join(failures)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hostile_drops_of_other_seeds_are_accounted_for(
    tmp_path: Path, tiny_encoder_dir: Path, seed: int
) -> None:
    """Every case again, with other corruption offsets, texts and ids, all drops of a kind in
    one warehouse (so later drops also meet earlier drops' ids and texts)."""
    outside = hostile.make_outside(tmp_path / "outside", seed)
    failures: list[str] = []
    for kind, cases in (
        (hostile.TEXT, hostile.text_cases(seed)),
        (hostile.IMAGE, hostile.image_cases(seed)),
    ):
        spec = _spec(kind)
        warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
        warehouse.ensure_task(spec.name)
        for i, batch in enumerate(hostile.batches(cases, BATCH)):
            drop_id = f"{kind}-{seed}-{i:02d}"
            drop_dir = tmp_path / "drops" / drop_id
            # folders numbered across drops: an image without a manifest id is known by its path
            placed = hostile.write_drop(drop_dir, batch, outside, start=i * BATCH)
            with _watching(outside.root) as opened:
                _run_stages(
                    spec, warehouse, drop_id, drop_dir, tiny_encoder_dir, tmp_path / "models"
                )
            failures += [f"opened outside the drop: {path}" for path in sorted(set(opened))]
            with warehouse.connect() as conn:
                failures += case_failures(conn, spec.name, drop_id, placed)
                failures += conservation_failures(conn, spec.name, drop_id)
        with warehouse.connect() as conn:
            failures += [f"canary in {w}" for w in canary_hits(conn, outside.needles)]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("kind", [hostile.TEXT, hostile.IMAGE])
def test_a_drop_of_only_bad_rows_runs_every_stage(
    tmp_path: Path, tiny_encoder_dir: Path, kind: str
) -> None:
    drop_dir = tmp_path / "drops" / "bad"
    drop_dir.mkdir(parents=True)
    if kind == hostile.TEXT:
        (drop_dir / "a.jsonl").write_bytes(b"{broken\n[1]\n")
    else:
        (drop_dir / "a.png").write_bytes(b"")
    spec = _spec(kind)
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    warehouse.ensure_task(spec.name)
    _run_stages(spec, warehouse, "bad", drop_dir, tiny_encoder_dir, tmp_path / "models")
    with warehouse.connect() as conn:
        assert drop_counts(conn, spec.name, "bad")["quarantined"] == (
            2 if kind == hostile.TEXT else 1
        )
        assert conservation_failures(conn, spec.name, "bad") == []


def test_a_manifest_symlinked_from_outside_is_refused(
    tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    outside = hostile.make_outside(tmp_path / "outside")
    (outside.root / "manifest.jsonl").write_text(
        json.dumps({"file": "pic.png", "id": outside.token, "title": outside.token}) + "\n"
    )
    drop_dir = tmp_path / "drops" / "m1"
    drop_dir.mkdir(parents=True)
    (drop_dir / "pic.png").write_bytes(hostile._Gen(5).noise_png())
    (drop_dir / "manifest.jsonl").symlink_to(outside.root / "manifest.jsonl")
    spec = _spec(hostile.IMAGE)
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    warehouse.ensure_task(spec.name)

    with _watching(outside.root) as opened:
        _run_stages(spec, warehouse, "m1", drop_dir, tiny_encoder_dir, tmp_path / "models")

    with warehouse.connect() as conn:
        rows = conn.execute(
            f"SELECT source_file, reason FROM {spec.name}.quarantine ORDER BY 1"
        ).fetchall()
        assert rows == [("manifest.jsonl", "outside_drop")]
        assert conn.execute(f"SELECT record_id FROM {spec.name}.normalized_records").fetchall() == [
            ("pic.png",)
        ]
        assert canary_hits(conn, outside.needles) == []
        assert conservation_failures(conn, spec.name, "m1") == []
    assert opened == []


# ------------------------------------------------------------------------------- CLI


def _sample(cases: list[hostile.Case], per_family: int) -> list[hostile.Case]:
    seen: dict[str, int] = {}
    out = []
    for case in cases:
        if seen.get(case.family, 0) < per_family and not case.name.startswith("long_line/10mb"):
            seen[case.family] = seen.get(case.family, 0) + 1
            out.append(case)
    return out


def test_hostile_drops_through_the_cli_exit_zero_and_conserve_rows(
    tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    outside = hostile.make_outside(tmp_path / "outside")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / f"{TEXT_TASK}.yaml").write_text(yaml.safe_dump(TEXT_SPEC_DATA))
    (tasks / f"{IMAGE_TASK}.yaml").write_text(yaml.safe_dump(_image_spec_data()))
    home = tmp_path / "home"
    cli = Cli(home, tasks, tiny_encoder_dir)
    drops = {
        "text-cli": (TEXT_TASK, _sample(_text_cases(), 3)),
        "image-cli": (IMAGE_TASK, _sample(_image_cases(), 4)),
    }
    for drop_id, (task, cases) in drops.items():
        drop_dir = tmp_path / "in" / drop_id
        placed = hostile.write_drop(drop_dir, cases, outside)
        p = cli("run", task, "--drop", str(drop_dir))
        assert p.returncode == 0, p.stderr[-3000:]
        summary = json.loads(p.stdout.strip().splitlines()[-1])
        assert summary["ingested"] == (
            summary["final_rows"]
            + summary["hitl_pending"]
            + summary["quarantined"]
            + summary["duplicates"]
        )
        assert summary["quarantined"] > 0
        with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
            assert case_failures(conn, task, drop_id, placed) == []
            assert canary_hits(conn, outside.needles) == []
