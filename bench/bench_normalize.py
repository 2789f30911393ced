"""Peak memory and time of ingestion + normalization (dedup included) for one generated drop.

Each size runs in two fresh processes: ours (`ingest_drop` then `normalize_drop` into a DuckDB
file) and a baseline that only loads the same JSONL files into pandas
(`pd.read_json(lines=True)`), the least any pipeline holding the drop in memory needs.
Peak RSS is the process's high-water mark (Linux VmHWM) after the drop is written.

    .venv/bin/python bench/bench_normalize.py --sizes 300000 1000000
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = ROOT / "tasks" / "product_reviews.yaml"


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def child(size: int, which: str) -> dict[str, float]:
    import harness  # noqa: F401  (puts the project root on sys.path, for tools/)
    import pandas as pd

    from annotation_assets.core.spec import load_task_spec
    from annotation_assets.stages.ingest import ingest_drop
    from annotation_assets.stages.normalize import normalize_drop
    from resources.warehouse import Warehouse
    from tools.synthetic import iter_reviews, write_drop

    spec = load_task_spec(SPEC_PATH)
    with tempfile.TemporaryDirectory(prefix="bench_normalize_") as tmp:
        home = Path(tmp)
        drop = home / "drops" / spec.name / "d1"
        stream = (r for chunk in iter_reviews(size, seed=0) for r in chunk)
        files = write_drop(drop, stream, fmt="jsonl", broken_lines=0, seed=0)
        _reset_peak_rss()
        t0 = time.perf_counter()
        if which == "baseline":
            rows = sum(len(pd.read_json(f, lines=True)) for f in files)
            return {"seconds": time.perf_counter() - t0, "peak_mib": _peak_rss_mib(), "rows": rows}
        warehouse = Warehouse(path=str(home / "warehouse.duckdb"))
        warehouse.ensure_task(spec.name)
        stats = ingest_drop(warehouse.connect, spec, "d1", drop)
        ingest_s, ingest_mib = time.perf_counter() - t0, _peak_rss_mib()
        normalize_drop(warehouse.connect, spec, "d1")
        return {
            "seconds": time.perf_counter() - t0,
            "peak_mib": _peak_rss_mib(),
            "ingest_seconds": ingest_s,
            "ingest_peak_mib": ingest_mib,
            "rows": stats.ingested,
        }


def run(size: int, which: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(size), which],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1])))
        return 0
    header = ("records", "ours s", "ours MiB", "base s", "base MiB", "MiB ratio")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (10, 8, 9, 7, 9, 9), strict=True)))
    for size in args.sizes:
        ours, base = run(size, "ours"), run(size, "baseline")
        print(
            f"{size:>10,} {ours['seconds']:>8.1f} {ours['peak_mib']:>9,.0f} "
            f"{base['seconds']:>7.1f} {base['peak_mib']:>9,.0f} "
            f"{ours['peak_mib'] / base['peak_mib']:>8.2f}x"
            f"   (ours: ingest {ours['ingest_seconds']:.1f} s, {ours['ingest_peak_mib']:,.0f} MiB"
            f" then normalize; {ours['rows']:,.0f} rows; baseline: pd.read_json of the same files)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
