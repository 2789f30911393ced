"""The rules stage against a row-by-row Python baseline (issue 6: target at least 30x faster).

    .venv/bin/python bench/bench_rules.py [--sizes 100000 1000000] [--seed 0] [--out DIR]

For each size, on SIZE synthetic reviews (tools/synthetic/, jsonl) ingested and normalized
into a temporary DuckDB warehouse with the demo task (tasks/product_reviews.yaml: one regex,
two keyword and two VADER lexicon rules), three measurements run, each in its own child process
so its peak RSS is its own:

- ours, label matrix: `rules.apply_labeling_functions` over the normalized records' text (RE2
  through pyarrow.compute for the pattern rules, set-wise VADER for the lexicon rules, on
  threads); the
  texts are read from the warehouse, as Arrow as the stage reads them, before the clock starts;
- ours, whole stage: `stages.rules.label_by_rules` on the warehouse (read the records, label
  matrix, per-rule summary, calibration, vote combination, write rule_labels);
- baseline: the same rules as Python functions applied row by row with pandas
  `Series.apply` (`re.search`, VADER `polarity_scores` once per row), as Snorkel's
  PandasLFApplier does: bench_pipeline.py's baseline, imported.

Set-up outside the clock on both sides: building the rules, the VADER analyzer (baseline) or the
set-wise scorer (ours, once per process). Each clock starts after a full garbage collection, on
both sides: otherwise the first full collection after the imports (dagster's, about 110k
objects, some 0.15 s) lands in whichever measurement comes first. Ratios are records/s ours
over records/s baseline. Both label matrices are compared cell by cell. Figures only; nothing
is asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline import _python_labeling_functions  # noqa: E402
from harness import child_result, measure_sizes, peak_rss_mib  # noqa: E402

SPEC_PATH = ROOT / "tasks" / "product_reviews.yaml"
DEFAULT_OUT = ROOT / "bench" / "out"
DEFAULT_SIZES = (100_000, 1_000_000)
MARK = "bench_rules"
TARGET = 30.0


def _log(message: str) -> None:
    print(f"[bench_rules] {message}", file=sys.stderr, flush=True)


def _spec() -> Any:
    from annotation_assets.core.spec import load_task_spec

    return load_task_spec(SPEC_PATH)


def _texts(home: Path, drop_id: str, *, arrow: bool = False) -> Any:
    """The drop's normalized records: Python strings (the baseline's pandas frame), or
    Arrow-backed columns as the rules stage reads them (`arrow`)."""
    import duckdb
    import pandas as pd

    spec = _spec()
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        query = conn.sql(
            f'SELECT record_id, text FROM "{spec.name}".normalized_records'
            " WHERE drop_id = $drop ORDER BY row_num",
            params={"drop": drop_id},
        )
        if not arrow:
            return query.df()
        table = query.to_arrow_table()
    return pd.DataFrame(
        {name: pd.arrays.ArrowExtensionArray(table[name]) for name in table.column_names}
    )


# ------------------------------------------------------------------------------- children


def prepare(home: Path, size: int, seed: int) -> dict[str, Any]:
    """Generate, ingest and normalize SIZE reviews into home's warehouse."""
    from annotation_assets.stages.ingest import ingest_drop
    from annotation_assets.stages.normalize import normalize_drop
    from resources.warehouse import Warehouse
    from tools.synthetic import iter_reviews, write_drop

    spec = _spec()
    drop_id = f"bench-{size}"
    drop_dir = home / "drops" / spec.name / drop_id
    stream = (r for chunk in iter_reviews(size, seed=seed) for r in chunk)
    write_drop(drop_dir, stream, fmt="jsonl", broken_lines=0, seed=seed)
    warehouse = Warehouse(path=str(home / "warehouse.duckdb"))
    warehouse.ensure_task(spec.name)
    ingest_drop(warehouse.connect, spec, drop_id, drop_dir)
    norm = normalize_drop(warehouse.connect, spec, drop_id)
    return {"drop_id": drop_id, "normalized": norm.normalized}


def run_ours(home: Path, drop_id: str) -> dict[str, Any]:
    from annotation_assets.core.rules import apply_labeling_functions, build_labeling_functions
    from annotation_assets.core.sentiment import default_scorer
    from annotation_assets.stages.rules import label_by_rules
    from resources.warehouse import Warehouse

    spec = _spec()
    lfs = build_labeling_functions(spec)
    frame = _texts(home, drop_id, arrow=True)
    start = time.perf_counter()
    default_scorer()
    setup_s = time.perf_counter() - start

    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    matrix = apply_labeling_functions(frame, lfs)
    matrix_s, matrix_cpu = time.perf_counter() - start, time.process_time() - cpu
    np.save(home / "ours.npy", matrix)

    warehouse = Warehouse(path=str(home / "warehouse.duckdb"))
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    result = label_by_rules(warehouse.connect, spec, drop_id)
    stage_s, stage_cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "records": len(frame),
        "scorer_setup_s": setup_s,
        "matrix_s": matrix_s,
        "matrix_cpu_s": matrix_cpu,
        "stage_s": stage_s,
        "stage_cpu_s": stage_cpu,
        "stage_records": result.n_records,
        "peak_rss_mib": peak_rss_mib(),
    }


def run_baseline(home: Path, drop_id: str) -> dict[str, Any]:
    spec = _spec()
    names, fields, votes = _python_labeling_functions(spec)
    if any(f != "text" for f in fields):
        raise NotImplementedError("the rules baseline reads only the text field")
    texts = _texts(home, drop_id)["text"]
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    applied = texts.apply(votes)
    matrix = np.array(applied.tolist(), dtype=np.int16).reshape(len(texts), len(names))
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    np.save(home / "baseline.npy", matrix)
    return {
        "records": len(texts),
        "seconds": seconds,
        "cpu_s": cpu_s,
        "peak_rss_mib": peak_rss_mib(),
    }


# --------------------------------------------------------------------------------- parent


def _child(args: list[str]) -> dict[str, Any]:
    return child_result(Path(__file__), args, MARK, _log)


def measure(size: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench_rules_") as tmp:
        home = Path(tmp)
        start = time.perf_counter()
        prep = _child(["--prepare", str(home), "--size", str(size), "--seed", str(seed)])
        prep_s = time.perf_counter() - start
        drop = prep["drop_id"]
        ours = _child(["--ours", str(home), "--drop", drop])
        base = _child(["--baseline", str(home), "--drop", drop])
        a, b = np.load(home / "ours.npy"), np.load(home / "baseline.npy")
        cells = int((a != b).sum()) if a.shape == b.shape else -1
        rows = int((a != b).any(axis=1).sum()) if a.shape == b.shape else -1
    return {
        "size": size,
        "normalized": prep["normalized"],
        "prepare_s": prep_s,
        "ours": ours,
        "baseline": base,
        "matrix_shape": list(a.shape),
        "cells_differing": cells,
        "records_differing": rows,
    }


def format_table(r: dict[str, Any]) -> str:
    o, b = r["ours"], r["baseline"]
    n = o["records"]
    base_rate = n / b["seconds"]
    rows = [
        ("ours: apply_labeling_functions (label matrix)", o["matrix_s"], o["matrix_cpu_s"], None),
        ("ours: label_by_rules (whole stage, DuckDB in/out)", o["stage_s"], o["stage_cpu_s"], None),
        ("baseline: Series.apply, re + VADER per row", b["seconds"], b["cpu_s"], None),
    ]
    lines = [
        f"== {r['size']:,} generated reviews -> {n:,} normalized records,"
        f" {r['matrix_shape'][1]} rules (tasks/product_reviews.yaml) ==",
        f"{'measured':<52}{'seconds':>9}{'cpu s':>8}{'records/s':>12}{'vs baseline':>13}",
    ]
    for label, seconds, cpu_s, _ in rows:
        rate = n / seconds
        lines.append(
            f"{label:<52}{seconds:>9.2f}{cpu_s:>8.2f}{rate:>12,.0f}{rate / base_rate:>12.1f}x"
        )
    verdict = "met" if n / o["matrix_s"] / base_rate >= TARGET else "missed"
    stage = "met" if n / o["stage_s"] / base_rate >= TARGET else "missed"
    lines += [
        f"peak RSS: ours {o['peak_rss_mib']:,.0f} MiB (matrix and stage, one process),"
        f" baseline {b['peak_rss_mib']:,.0f} MiB; set-wise scorer set-up"
        f" {o['scorer_setup_s']:.2f} s once per process (outside the clock)",
        f"label matrices: {r['cells_differing']:,} of {n * r['matrix_shape'][1]:,} cells differ"
        f" ({r['records_differing']:,} records)",
        f"{TARGET:.0f}x target: {verdict} for the label matrix, {stage} for the whole stage",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ours", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--drop", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    child: dict[str, Any] | None = None
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # keep library prints off the result line
    try:
        if args.prepare:
            child = prepare(args.prepare, args.size, args.seed)
        elif args.ours:
            child = run_ours(args.ours, args.drop)
        elif args.baseline:
            child = run_baseline(args.baseline, args.drop)
    finally:
        sys.stdout = real_stdout
    if child is not None:
        print(json.dumps({"mark": MARK, **child}), flush=True)
        return 0

    return measure_sizes(
        args.sizes, lambda size: measure(size, args.seed), format_table, args.out, MARK
    )


if __name__ == "__main__":
    sys.exit(main())
