"""Crash safety: `annotate` killed with SIGKILL at a random moment, then re-run, ends exactly
where an uninterrupted run ends, and no reader ever sees a partial export.

A reference sequence (`annotate run` for each generated drop, then `annotate export`) runs
once, uninterrupted, in a clean home. A trial starts the same sequence in a fresh home as one
process group, SIGKILLs the whole group after a seeded random delay drawn across the
reference's duration, re-runs the whole sequence to completion and compares.

"Identical" means:

- every table of the task holds the same rows. Rows are compared sorted: a re-run deletes and
  re-inserts a partition's rows, which may change their physical order but not the table.
  Columns that hold wall-clock readings are left out (`ingested_at`, `registered_at`,
  `created_at`, `imported_at`, and the `seconds`/`finished_at` of stage timings), and the
  home's path is written `<home>` where a column records it (`drops.location`,
  `model_versions.artifact`). Everything else must be equal; floats to 1e-4 (relative), a
  margin for platform float noise only: the two causes of differences found so far (encoder
  batches that depended on what a killed run had cached, and a training set whose row order
  depended on DuckDB's threads) are fixed and tested exactly in tests/test_embed_cache.py.
  Ids, labels, sources, versions and routing must be equal exactly.
- the export has the same lines in the same order (its order is part of the contract), each
  with the same fields and values except `ingested_at`.

While a sequence runs, a thread reads `<out>/<task>.jsonl` over and over: every version it
sees must parse completely and hold a complete export's row count. Temporary files of an export
are dot-names; a kill may leave one behind, and the next export of the task replaces it, so
after a completed re-run the output folder holds the export alone.

Every `annotate` call costs seconds of start-up and Dagster bookkeeping, so the default (CI) run
is small: with one drop, it kills one home three times in a row (fixed seeds; each restart is
itself killed, so a crash during recovery is covered) and then completes it, and it kills
`annotate export` on a copy of the reference home; it also checks that the spill files of a
warehouse connection killed mid-sort are removed by the next connection that spills.
`pytest -m slow tests/test_crash.py` runs 20 independent trials with two drops (the second
repeating, reusing and editing records of the first, so cross-drop dedup must come out the
same), each in a fresh home, and kills `annotate review import` on a copy of the two-drop
reference home.
"""

import csv
import fcntl
import json
import math
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from annotation_assets.core import reviews
from annotation_assets.exports import export_jsonl
from annotation_assets.home import PROJECT_ROOT, Home
from annotation_assets.runner import HOST_TAG, PID_TAG, Runner, fail_abandoned_runs
from annotation_assets.warehouse.counts import drop_counts
from annotation_assets.warehouse.tables import create_statements
from resources.warehouse import Warehouse
from tests.cli import Cli, annotate_argv
from tools import synthetic

TASK = "product_reviews"
DROPS = ("2026-03-01", "2026-03-02")
PER_DROP = 400
CI_SEEDS = (101, 202, 303)
SLOW_SEEDS = tuple(range(1, 21))
TIMEOUT_S = 600

# The task's tables, as compared: SQL select lists without wall-clock columns; $home is
# replaced by the home's path.
TABLES = {
    "drops": "drop_id, seq, replace(location, $home, '<home>') AS location",
    "raw_records": "* EXCLUDE (ingested_at)",
    "quarantine": "*",
    "duplicates": "*",
    "normalized_records": "* EXCLUDE (ingested_at)",
    "rule_labels": "*",
    "embeddings": "*",
    "model_versions": "* EXCLUDE (created_at, artifact),"
    " replace(artifact, $home, '<home>') AS artifact",
    "model_labels": "*",
    "heavy_labels": "*",
    "llm_responses": "* EXCLUDE (created_at, latency_s)",
    "human_labels": "* EXCLUDE (imported_at)",
    "hitl_pending": "*",
    "stage_timings": "drop_id, stage, records",
    "final_dataset": "* EXCLUDE (ingested_at)",
}

# What identifies a row of each per-drop table: none may occur twice.
ROW_KEYS = {
    "raw_records": "drop_id, row_num",
    "quarantine": "drop_id, row_num",
    "duplicates": "drop_id, row_num",
    "normalized_records": "drop_id, record_id",
    "rule_labels": "drop_id, record_id",
    "model_labels": "drop_id, record_id",
    "heavy_labels": "drop_id, record_id",
    "hitl_pending": "drop_id, record_id",
    "final_dataset": "id",
    "stage_timings": "drop_id, stage",
}


# ------------------------------------------------------------------------------- helpers


def _write_inputs(folder: Path) -> list[Path]:
    """Two drops of generated reviews (JSONL, then CSV, each with broken lines); the second
    repeats some of the first's records, reuses some of its texts under new ids, gives one of
    its ids to another text and edits a word of some, so cross-drop dedup has work to do."""
    records = synthetic.generate_reviews(2 * PER_DROP, seed=11, id_prefix="rv")
    first, second = records[:PER_DROP], records[PER_DROP:]
    again = [dict(first[i]) for i in range(0, 60, 6)]
    reused = [{**first[i], "id": f"re{i}"} for i in range(1, 60, 6)]
    clash = [{**first[0], "text": "A different text under an id the first drop used."}]
    edited = []
    for i in range(3, 60, 6):
        words = first[i]["text"].split()
        words[len(words) // 2] = "really"
        edited.append({**first[i], "id": f"ed{i}", "text": " ".join(words)})
    extra = again + reused + clash + edited
    random.Random(5).shuffle(extra)
    mixed = second[: PER_DROP // 2] + extra + second[PER_DROP // 2 :]
    paths = [folder / DROPS[0], folder / DROPS[1]]
    synthetic.write_drop(paths[0], first, fmt="jsonl", broken_lines=4, seed=1)
    synthetic.write_drop(paths[1], mixed, fmt="csv", broken_lines=4, seed=2)
    return paths


def _sequence_script(home: Path, out: Path, drops: list[Path], step_file: Path) -> Path:
    """A bash script running the sequence; before each command it writes the command's name to
    `step_file`, so a kill can be reported with the step it interrupted."""
    lines = ["set -e"]
    for drop in drops:
        lines.append(f"echo {shlex.quote('run ' + drop.name)} > {shlex.quote(str(step_file))}")
        lines.append(shlex.join(annotate_argv(home, "run", TASK, "--drop", str(drop))))
    lines.append(f"echo export > {shlex.quote(str(step_file))}")
    lines.append(shlex.join(annotate_argv(home, "export", TASK, "--out", str(out))))
    lines.append(f"echo done > {shlex.quote(str(step_file))}")
    script = step_file.with_suffix(".sh")
    script.write_text("\n".join(lines) + "\n")
    return script


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group is still running (zombies, which hold no files or
    locks, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@dataclass
class Kill:
    delay: float
    step: str
    finished: bool


def _run_and_kill(argv: list[str], delay: float, env: dict[str, str], step_file: Path) -> Kill:
    """Starts `argv` as a new process group and SIGKILLs the whole group after `delay`
    seconds (unless it finished first)."""
    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        rc = proc.wait(timeout=delay)
        return Kill(delay, "(finished)", finished=rc == 0)
    except subprocess.TimeoutExpired:
        pass
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    step = step_file.read_text().strip() if step_file.exists() else "(start)"
    deadline = time.monotonic() + 30
    while _group_alive(proc.pid):
        assert time.monotonic() < deadline, f"process group {proc.pid} survived SIGKILL"
        time.sleep(0.05)
    return Kill(delay, step, finished=False)


def _env(encoder: Path) -> dict[str, str]:
    return Cli(Path("."), None, encoder).env


def _copy_home(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


def _snapshot_tables(home: Path) -> dict[str, list[tuple[Any, ...]]]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        return {
            table: conn.execute(
                f'SELECT {columns} FROM "{TASK}"."{table}" ORDER BY ALL',
                {"home": str(home)} if "$home" in columns else {},
            ).fetchall()
            for table, columns in TABLES.items()
        }


def _export_rows(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        row.pop("ingested_at")
    return rows


def _float_free(value: Any) -> Any:
    """The value with every float (and every JSON text holding floats) blanked: the part of a
    row that must match exactly, used to pair rows before their floats are compared."""
    if isinstance(value, float):
        return None
    if isinstance(value, list | tuple):
        return tuple(_float_free(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _float_free(v)) for k, v in value.items()))
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return _float_free(json.loads(value))
        except ValueError:
            return value
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal, with floats equal to 1e-4 (relative; see the module's docstring); labels,
    sources, ids and routing must match exactly."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, str) and isinstance(b, str) and a != b and a[:1] in "{[":
        try:
            return _same(json.loads(a), json.loads(b))
        except ValueError:
            return False
    return bool(a == b)


def _same_rows(want: list[Any], got: list[Any]) -> bool:
    if len(want) != len(got):
        return False
    order = lambda rows: sorted(rows, key=lambda r: repr(_float_free(r)))  # noqa: E731
    return all(_same(a, b) for a, b in zip(order(want), order(got), strict=True))


def _table_differences(
    expected: dict[str, list[tuple[Any, ...]]], actual: dict[str, list[tuple[Any, ...]]]
) -> list[str]:
    out = []
    for table in TABLES:
        want, got = expected[table], actual[table]
        if _same_rows(want, got):
            continue
        want_keys, got_keys = {repr(r) for r in want}, {repr(r) for r in got}
        missing = [r for r in want if repr(r) not in got_keys][:2]
        extra = [r for r in got if repr(r) not in want_keys][:2]
        out.append(
            f"{table}: {len(want)} rows expected, {len(got)} found; "
            f"missing e.g. {missing}; unexpected e.g. {extra}"
        )
    return out


def _invariant_violations(home: Path) -> list[str]:
    """Duplicate row keys in per-drop tables, and drops whose rows are not conserved."""
    out = []
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        for table, key in ROW_KEYS.items():
            total, distinct = conn.execute(
                f'SELECT count(*), count(DISTINCT ({key})) FROM "{TASK}"."{table}"'
            ).fetchall()[0]
            if total != distinct:
                out.append(f"{table}: {total - distinct} duplicate ({key})")
        for (drop_id,) in conn.execute(f'SELECT drop_id FROM "{TASK}".drops').fetchall():
            c = drop_counts(conn, TASK, drop_id)
            rhs = c["final_rows"] + c["hitl_pending"] + c["quarantined"] + c["duplicates"]
            if c["ingested"] != rhs:
                out.append(f"drop {drop_id} not conserved: {c}")
    return out


def _dagster_problems(home: Path, drops: list[str]) -> list[str]:
    """The home's Dagster instance must open, know every drop, hold a successful pipeline run
    as the latest run of each drop, and show no run of a killed process as still running."""
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    try:
        out = []
        partitions = instance.get_dynamic_partitions(f"{TASK}_drops")
        if sorted(partitions) != sorted(drops):
            out.append(f"dagster partitions {partitions}")
        for drop_id in drops:
            runs = instance.get_runs(
                dg.RunsFilter(job_name=f"{TASK}_pipeline", tags={"dagster/partition": drop_id}),
                limit=1,
            )
            if not runs or runs[0].status != dg.DagsterRunStatus.SUCCESS:
                out.append(f"latest pipeline run of {drop_id}: {runs[0].status if runs else None}")
        unfinished = instance.get_runs(
            dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.NOT_STARTED])
        )
        if unfinished:
            out.append(f"{len(unfinished)} runs of killed processes still shown as running")
        return out
    finally:
        instance.dispose()


def _leftovers(home: Path, out: Path, drops: list[str]) -> list[str]:
    """Anything in the drops or export folders besides the staged drops and the export."""
    found = [p.name for p in (home / "drops" / TASK).iterdir() if p.name not in drops]
    found += [p.name for p in out.iterdir() if p.name != f"{TASK}.jsonl"]
    return found


class ExportWatcher:
    """Reads an export file over and over in a thread, noting the row count of every version it
    sees and every version that does not parse completely."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.row_counts: set[int] = set()
        self.broken: list[str] = []
        self.reads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "ExportWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                time.sleep(0.002)
                continue
            self.reads += 1
            try:
                if data and not data.endswith(b"\n"):
                    raise ValueError("no newline at the end")
                rows = [json.loads(line) for line in data.decode("utf-8").splitlines()]
            except ValueError as err:
                self.broken.append(f"{len(data)} bytes: {err}")
            else:
                self.row_counts.add(len(rows))
            time.sleep(0.001)


# ------------------------------------------------------------------------------ reference


@dataclass
class Reference:
    inputs: list[Path]
    home: Path
    out: Path
    duration: float
    tables: dict[str, list[tuple[Any, ...]]]
    export: list[dict[str, Any]]
    env: dict[str, str] = field(repr=False)

    @property
    def drops(self) -> list[str]:
        return [p.name for p in self.inputs]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _write_inputs(tmp_path_factory.mktemp("crash-inputs"))


def _reference(root: Path, inputs: list[Path], encoder: Path) -> Reference:
    env = _env(encoder)
    home, out = root / "reference-home", root / "reference-out"
    script = _sequence_script(home, out, inputs, root / "reference-step")
    start = time.monotonic()
    done = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    duration = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-3000:]
    tables = _snapshot_tables(home)
    assert tables["final_dataset"] and tables["hitl_pending"] and tables["quarantine"]
    return Reference(inputs, home, out, duration, tables, _export_rows(out / f"{TASK}.jsonl"), env)


@pytest.fixture(scope="module")
def one_drop(
    tmp_path_factory: pytest.TempPathFactory, inputs: list[Path], tiny_encoder_dir: Path
) -> Reference:
    """The reference of the first drop alone (for the default run)."""
    return _reference(tmp_path_factory.mktemp("crash-one"), inputs[:1], tiny_encoder_dir)


@pytest.fixture(scope="module")
def two_drops(
    tmp_path_factory: pytest.TempPathFactory, inputs: list[Path], tiny_encoder_dir: Path
) -> Reference:
    """The reference of both drops, the second holding duplicates of the first."""
    ref = _reference(tmp_path_factory.mktemp("crash-two"), inputs, tiny_encoder_dir)
    assert any(r[0] == DROPS[1] and r[4] == DROPS[0] for r in ref.tables["duplicates"])
    assert any(r[0] == DROPS[1] and r[5] == "duplicate_id" for r in ref.tables["quarantine"])
    return ref


def _resume_and_compare(reference: Reference, home: Path, out: Path, step: Path, what: str) -> None:
    """Re-runs the whole sequence to completion in `home`, then compares with the reference."""
    script = _sequence_script(home, out, reference.inputs, step)
    with ExportWatcher(out / f"{TASK}.jsonl") as watcher:
        done = subprocess.run(
            ["bash", str(script)],
            env=reference.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    assert done.returncode == 0, f"{what}: the re-run failed: {done.stderr[-3000:]}"
    problems = _table_differences(reference.tables, _snapshot_tables(home))
    if not _same(reference.export, _export_rows(out / f"{TASK}.jsonl")):  # in order
        problems.append("the export differs from the reference export")
    problems += _invariant_violations(home)
    problems += _dagster_problems(home, reference.drops)
    problems += [f"left over: {name}" for name in _leftovers(home, out, reference.drops)]
    problems += [f"partial export seen: {b}" for b in watcher.broken]
    if watcher.row_counts - {len(reference.export)}:
        problems.append(f"export versions with {sorted(watcher.row_counts)} rows seen")
    assert not problems, f"{what}:\n" + "\n".join(problems)


def _kill_sequence(reference: Reference, home: Path, out: Path, step: Path, seed: int) -> Kill:
    delay = random.Random(seed).uniform(0, reference.duration)
    script = _sequence_script(home, out, reference.inputs, step)
    with ExportWatcher(out / f"{TASK}.jsonl") as watcher:
        kill = _run_and_kill(["bash", str(script)], delay, reference.env, step)
    where = f"seed {seed}: killed after {delay:.2f}s during {kill.step}"
    assert not watcher.broken, f"{where}: partial export seen: {watcher.broken}"
    assert watcher.row_counts <= {len(reference.export)}, f"{where}: {watcher.row_counts}"
    return kill


def _trial(reference: Reference, workdir: Path, seed: int) -> None:
    home, out, step = workdir / f"home-{seed}", workdir / f"out-{seed}", workdir / f"step-{seed}"
    kill = _kill_sequence(reference, home, out, step, seed)
    what = f"seed {seed}: killed after {kill.delay:.2f}s during {kill.step}, then re-run"
    _resume_and_compare(reference, home, out, step, what)


# ---------------------------------------------------------------------------------- tests


@pytest.mark.slow  # a long trial (tests marked slow run with -m slow)
def test_three_kills_in_a_row_then_a_rerun_end_where_an_uninterrupted_run_ends(
    one_drop: Reference, tmp_path: Path
) -> None:
    home, out, step = tmp_path / "home", tmp_path / "out", tmp_path / "step"
    kills = [_kill_sequence(one_drop, home, out, step, seed) for seed in CI_SEEDS]
    what = "seeds {}: killed {}, then re-run".format(
        CI_SEEDS, ", ".join(f"after {k.delay:.2f}s during {k.step}" for k in kills)
    )
    _resume_and_compare(one_drop, home, out, step, what)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS)
def test_a_run_killed_at_a_random_point_then_rerun_ends_where_an_uninterrupted_run_ends(
    two_drops: Reference, tmp_path: Path, seed: int
) -> None:
    _trial(two_drops, tmp_path, seed)


@pytest.mark.slow  # a long trial (tests marked slow run with -m slow)
def test_a_killed_export_never_shows_a_partial_file_and_the_rerun_cleans_up(
    one_drop: Reference, tmp_path: Path
) -> None:
    reference = one_drop
    home = _copy_home(reference.home, tmp_path / "home")
    out = tmp_path / "out"
    cli = Cli(home, None, None)
    cli.env = reference.env
    step = tmp_path / "step"
    full = len(reference.export)
    rng = random.Random(7)
    with ExportWatcher(out / f"{TASK}.jsonl") as watcher:
        done = cli("export", TASK, "--out", str(out), "--balance", "downsample")
        assert done.returncode == 0, done.stderr
        balanced = json.loads(done.stdout.strip().splitlines()[-1])["rows"]
        start = time.monotonic()
        assert cli("export", TASK, "--out", str(out)).returncode == 0
        duration = time.monotonic() - start
        kills = []
        for k in range(3):
            mode = "none" if k % 2 else "downsample"
            argv = annotate_argv(home, "export", TASK, "--out", str(out), "--balance", mode)
            kills.append(_run_and_kill(argv, rng.uniform(0.5, duration), reference.env, step))
            visible = [p.name for p in out.iterdir() if not p.name.startswith(".")]
            assert visible == [f"{TASK}.jsonl"], f"after kill {kills[-1]}: {visible}"
        done = cli("export", TASK, "--out", str(out))
        assert done.returncode == 0, done.stderr
    what = f"kills {[(round(k.delay, 2), k.finished) for k in kills]}"
    assert balanced < full
    assert watcher.reads > 0
    assert not watcher.broken, f"{what}: partial exports seen: {watcher.broken}"
    assert watcher.row_counts <= {full, balanced}, what
    assert _export_rows(out / f"{TASK}.jsonl") == reference.export
    assert sorted(p.name for p in out.iterdir()) == [f"{TASK}.jsonl"]


def _decisions_csv(reference: Reference, path: Path, n: int) -> Path:
    """Decisions for `n` pending records (every third one against the suggestion)."""
    labels = ["negative", "neutral", "positive"]
    with duckdb.connect(str(reference.home / "warehouse.duckdb"), read_only=True) as conn:
        pending = conn.execute(
            f'SELECT record_id, suggested_label FROM "{TASK}".hitl_pending ORDER BY ALL LIMIT ?',
            [n],
        ).fetchall()
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["record_id", "label", "annotator"])
        for i, (record_id, suggested) in enumerate(pending):
            label = suggested if suggested and i % 3 else labels[i % len(labels)]
            writer.writerow([record_id, label, "ann"])
    return path


@pytest.mark.slow
def test_a_killed_review_import_then_reimport_matches_an_uninterrupted_import(
    two_drops: Reference, tmp_path: Path
) -> None:
    reference = two_drops
    decisions = _decisions_csv(reference, tmp_path / "decisions.csv", 60)
    clean = _copy_home(reference.home, tmp_path / "clean")
    killed = _copy_home(reference.home, tmp_path / "killed")
    start = time.monotonic()
    done = subprocess.run(
        annotate_argv(clean, "review", "import", TASK, str(decisions)),
        env=reference.env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    duration = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    delay = random.Random(42).uniform(0, duration)
    argv = annotate_argv(killed, "review", "import", TASK, str(decisions))
    kill = _run_and_kill(argv, delay, reference.env, tmp_path / "step")
    again = subprocess.run(argv, env=reference.env, capture_output=True, text=True, timeout=600)
    what = f"import killed after {delay:.2f}s (finished: {kill.finished}), then re-imported"
    assert again.returncode == 0, f"{what}: {again.stderr}"
    expected, actual = _snapshot_tables(clean), _snapshot_tables(killed)
    assert len(expected["human_labels"]) == 60
    problems = _table_differences(expected, actual) + _invariant_violations(killed)
    kept = list((killed / "reviews" / TASK).iterdir())
    if [p.read_bytes() for p in kept] != [decisions.read_bytes()]:
        problems.append(f"reviews/{TASK}/ holds {[p.name for p in kept]}")
    assert not problems, f"{what}:\n" + "\n".join(problems)


# --------------------------------------------------------- regressions found by the trials


def _warehouse_with_final_rows(path: Path, task: str, n: int) -> None:
    with duckdb.connect(str(path)) as conn:
        for statement in create_statements(task):
            conn.execute(statement)
        conn.execute(f"INSERT INTO \"{task}\".drops VALUES ('d1', 1, 'd1', now())")
        conn.execute(
            f"INSERT INTO \"{task}\".final_dataset SELECT 'id' || i, 'd1', 'text ' || i,"
            " 'positive', 'rule', 0.9, ['r'], NULL, NULL, 'f.jsonl', i, now()::TIMESTAMP"
            " FROM range(?) r(i)",
            [n],
        )


def test_concurrent_exports_into_one_folder_all_succeed_and_show_only_whole_files(
    tmp_path: Path,
) -> None:
    _warehouse_with_final_rows(tmp_path / "w.duckdb", "t", 20_000)
    out = tmp_path / "out"
    (out / ".t.jsonl.tmp").parent.mkdir()
    (out / ".t.jsonl.tmp").write_text('{"half": ')  # left by a killed export
    errors: list[BaseException] = []
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:

        def export_three_times() -> None:
            try:
                for _ in range(3):
                    export_jsonl(conn.cursor(), "t", out)
            except BaseException as err:  # noqa: BLE001 - reported by the test
                errors.append(err)

        with ExportWatcher(out / "t.jsonl") as watcher:
            threads = [threading.Thread(target=export_three_times) for _ in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    assert errors == []
    assert not watcher.broken
    assert watcher.row_counts == {20_000}
    assert sorted(p.name for p in out.iterdir()) == ["t.jsonl"]


def test_staging_a_drop_removes_copies_a_killed_staging_left_but_not_a_live_ones(
    tmp_path: Path, tasks_dir: Callable[..., Path]
) -> None:
    source = tmp_path / "in" / "d1"
    source.mkdir(parents=True)
    (source / "part-0.jsonl").write_text('{"id": "a", "text": "b"}\n')
    runner = Runner(Home(tmp_path / "home").create(), tasks_dir())
    task_drops = runner.home.drops / "reviews"
    names = [".incoming-d1-0000abcd", ".old-d1-0000abce", ".incoming-d1-x-0000abcf"]
    for name in [*names, ".incoming-d1-0000abd0"]:
        (task_drops / name).mkdir(parents=True)
        (task_drops / name / "part-0.jsonl").write_text("{")
    live = os.open(task_drops / ".incoming-d1-0000abd0", os.O_RDONLY)
    try:
        fcntl.flock(live, fcntl.LOCK_EX)
        assert runner.stage_drop("reviews", source) == "d1"
    finally:
        os.close(live)
    left = sorted(p.name for p in task_drops.iterdir())
    assert left == [".incoming-d1-0000abd0", ".incoming-d1-x-0000abcf", "d1"]
    assert (task_drops / "d1" / "part-0.jsonl").read_text() == '{"id": "a", "text": "b"}\n'


def test_an_interrupted_copy_of_a_decisions_file_leaves_nothing_under_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "decisions.csv"
    source.write_text("record_id,label,annotator\nr1,positive,alice\n")
    kept = tmp_path / "reviews" / "t" / "abc-decisions.csv"

    def copy_half_then_die(src: Path, dst: Path) -> None:
        Path(dst).write_bytes(Path(src).read_bytes()[:30])
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "copyfile", copy_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        reviews.keep_copy(source, kept)
    assert list(kept.parent.iterdir()) == []
    monkeypatch.undo()
    reviews.keep_copy(source, kept)
    assert kept.read_bytes() == source.read_bytes()


@dg.op
def _noop() -> None: ...


@dg.job
def _a_job() -> None:
    _noop()


def test_runs_of_killed_annotate_processes_are_marked_failed_and_live_ones_kept(
    tmp_path: Path,
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        host = {HOST_TAG: socket.gethostname()}
        killed = instance.create_run_for_job(
            _a_job, status=dg.DagsterRunStatus.STARTED, tags={**host, PID_TAG: str(dead.pid)}
        )
        live = instance.create_run_for_job(
            _a_job, status=dg.DagsterRunStatus.STARTED, tags={**host, PID_TAG: str(os.getpid())}
        )
        elsewhere = instance.create_run_for_job(
            _a_job,
            status=dg.DagsterRunStatus.STARTED,
            tags={HOST_TAG: "another-host", PID_TAG: str(dead.pid)},
        )
        assert fail_abandoned_runs(instance) == 1
        assert fail_abandoned_runs(instance) == 0
        status = {r.run_id: r.status for r in instance.get_runs()}
    assert status[killed.run_id] == dg.DagsterRunStatus.FAILURE
    assert status[live.run_id] == dg.DagsterRunStatus.STARTED
    assert status[elsewhere.run_id] == dg.DagsterRunStatus.STARTED


_SPILL_SORT = (
    "SELECT count(*) FROM (SELECT md5(range::VARCHAR) || md5((range * 7)::VARCHAR) AS s"
    " FROM range({n}) ORDER BY s)"
)


def test_spill_files_of_a_killed_run_are_removed_by_the_next_run_that_spills(
    tmp_path: Path,
) -> None:
    # Sorts bigger than the warehouse's memory_limit spill to <warehouse>.tmp/. A run killed
    # mid-spill cannot remove its files; DuckDB removes a dead process's files the next time
    # the warehouse spills, so a crash does not leak disk for long.
    path = tmp_path / "warehouse.duckdb"
    spill_dir = Path(f"{path}.tmp")
    child = (
        "import sys; from resources.warehouse import Warehouse\n"
        f"w = Warehouse(path={str(path)!r}, memory_limit='64MiB')\n"
        "with w.connect() as c:\n"
        "    c.execute('SET threads = 1')\n"
        f"    c.execute({_SPILL_SORT.format(n=50_000_000)!r}).fetchall()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", child], cwd=PROJECT_ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not any(p.stat().st_size for p in spill_dir.glob("*storage*")):
            assert proc.poll() is None, "the sort ended before it spilled"
            assert time.monotonic() < deadline, "nothing spilled in two minutes"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    dead = f"duckdb_temp_{proc.pid}_"
    assert any(p.name.startswith(dead) for p in spill_dir.iterdir())

    with Warehouse(path=str(path), memory_limit="64MiB").connect() as conn:
        conn.execute("SET threads = 1")
        conn.execute(_SPILL_SORT.format(n=2_000_000)).fetchall()
        assert [p.name for p in spill_dir.iterdir() if p.name.startswith(dead)] == []
    assert not spill_dir.exists() or not any(spill_dir.iterdir())


def test_an_event_index_left_half_created_by_a_kill_is_created_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._core.storage.event_log.schema import SqlEventLogStorageMetadata
    from sqlalchemy import create_engine

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # Runner.instance sets it; undone after
    home = Home(tmp_path / "home").create()
    instance = Runner(home, tmp_path).instance
    index = Path(instance.event_log_storage.path_for_shard("index"))  # type: ignore[attr-defined]
    instance.dispose()
    # what a kill during Dagster's first table creation leaves: some tables, no version stamp
    for suffix in ("", "-wal", "-shm"):
        index.with_name(index.name + suffix).unlink(missing_ok=True)
    engine = create_engine(f"sqlite:///{index}")
    SqlEventLogStorageMetadata.tables["event_logs"].create(engine)
    engine.dispose()

    instance = Runner(home, tmp_path).instance
    instance.add_dynamic_partitions("t_drops", ["d1"])
    instance.dispose()
    # a whole index is kept from then on
    instance = Runner(home, tmp_path).instance
    assert instance.get_dynamic_partitions("t_drops") == ["d1"]
    instance.dispose()
