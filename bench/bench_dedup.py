"""Cross-drop near-duplicate search against the textbook banded LSH search.

    .venv/bin/python bench/bench_dedup.py [--sizes 50000 100000 200000] [--seed 0] [--out DIR]

For each size N, 2N synthetic reviews (tools/synthetic/) are MinHashed (core/dedup.py, outside
the clock); the first N stand for the other drops' kept records, the last N for a new drop.
Both sides then find, for every new record, its most similar old record at similarity 0.8 or
more (most equal signature positions, then the earliest old record):

- ours: `dedup._best_old_matches`, the search normalize_drop runs across drops: each band
  key remembers its earliest BUCKET_CAP old records, bands are searched one at a time and new
  records in blocks;
- baseline: the textbook search: every (new, old) pair that shares a whole band is a
  candidate, the candidates of all bands are united and each is verified on the full
  signature (the search this project ran before the cap).

Each side runs in its own child process, so its peak RSS is its own. The pointers of both are
compared record by record; the cap may miss a pair whose every shared band is crowded (see
core/dedup.py), and the figures show how often. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import child_result, measure_sizes, peak_rss_mib  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "out"
DEFAULT_SIZES = (50_000, 100_000, 200_000)
MARK = "bench_dedup"


def _log(message: str) -> None:
    print(f"[bench_dedup] {message}", file=sys.stderr, flush=True)


def _min_equal() -> int:
    from annotation_assets.core import dedup

    return next(
        k for k in range(dedup.NUM_PERM + 1) if k / dedup.NUM_PERM >= dedup.DEFAULT_THRESHOLD
    )


# ------------------------------------------------------------------------------- children


def prepare(folder: Path, size: int, seed: int) -> dict[str, Any]:
    from annotation_assets.core import dedup
    from tools import synthetic

    texts = [r["text"] for r in synthetic.generate_reviews(2 * size, seed=seed, id_prefix="r")]
    start = time.perf_counter()
    sigs = dedup.minhash_signatures(texts)
    np.save(folder / "sigs.npy", sigs)
    return {"minhash_s": time.perf_counter() - start, "records": len(texts)}


def textbook_best_old(
    new: np.ndarray, old: np.ndarray, *, bands: int, min_equal: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """The baseline: all pairs sharing a band, united over bands, each verified; per new
    record the most equal old one (then the earliest). Returns pointers, equal counts and the
    number of distinct candidate pairs."""
    from annotation_assets.core import dedup
    from annotation_assets.core.arrays import equal_key_pairs

    rows = new.shape[1] // bands
    new_rows, old_rows = dedup._non_empty_rows(new), dedup._non_empty_rows(old)
    codes = []
    for band in range(bands):
        old_keys = dedup._band_keys(old, band, rows)[old_rows]
        order = np.argsort(old_keys, kind="stable")
        which, positions = equal_key_pairs(
            old_keys[order], dedup._band_keys(new, band, rows)[new_rows]
        )
        codes.append(new_rows[which].astype(np.int64) * len(old) + old_rows[order[positions]])
    pairs = np.unique(np.concatenate(codes))
    new_idx, old_idx = np.divmod(pairs, len(old))
    step = 1 << 16
    equal = np.concatenate(
        [
            np.count_nonzero(new[new_idx[i : i + step]] == old[old_idx[i : i + step]], axis=1)
            for i in range(0, len(pairs), step)
        ]
    )
    keep = equal >= min_equal
    new_idx, old_idx, equal = new_idx[keep], old_idx[keep], equal[keep]
    order = np.lexsort((old_idx, -equal, new_idx))
    new_idx, old_idx, equal = new_idx[order], old_idx[order], equal[order]
    first = np.r_[True, new_idx[1:] != new_idx[:-1]]
    best = np.full(len(new), -1, dtype=np.int64)
    best_equal = np.zeros(len(new), dtype=np.int64)
    best[new_idx[first]], best_equal[new_idx[first]] = old_idx[first], equal[first]
    return best, best_equal, int(len(pairs))


def run_side(folder: Path, side: str) -> dict[str, Any]:
    from annotation_assets.core import dedup

    sigs = np.load(folder / "sigs.npy")
    half = len(sigs) // 2
    old, new = sigs[:half], sigs[half:]
    start, cpu = time.perf_counter(), time.process_time()
    candidates = None
    if side == "ours":
        best, best_equal = dedup._best_old_matches(
            new,
            dedup._non_empty_rows(new),
            old,
            dedup._non_empty_rows(old),
            bands=dedup.BANDS,
            min_equal=_min_equal(),
        )
    else:
        best, best_equal, candidates = textbook_best_old(
            new, old, bands=dedup.BANDS, min_equal=_min_equal()
        )
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    np.save(folder / f"{side}.npy", np.stack([best, best_equal]).astype(np.int64))
    return {
        "seconds": seconds,
        "cpu_s": cpu_s,
        "matched": int((best >= 0).sum()),
        "candidate_pairs": candidates,
        "peak_rss_mib": peak_rss_mib(),
    }


# --------------------------------------------------------------------------------- parent


def _child(args: list[str]) -> dict[str, Any]:
    return child_result(Path(__file__), args, MARK, _log)


def measure(size: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench_dedup_") as tmp:
        folder = Path(tmp)
        prep = _child(["--prepare", str(folder), "--size", str(size), "--seed", str(seed)])
        ours = _child(["--side", "ours", str(folder)])
        base = _child(["--side", "baseline", str(folder)])
        a, b = np.load(folder / "ours.npy"), np.load(folder / "baseline.npy")
    return {
        "size": size,
        "minhash_s": prep["minhash_s"],
        "ours": ours,
        "baseline": base,
        "same_pointer": int((a[0] == b[0]).sum()),
        "missed_by_ours": int(((a[0] < 0) & (b[0] >= 0)).sum()),
        "other_pointer": int(((a[0] >= 0) & (b[0] >= 0) & (a[0] != b[0])).sum()),
        "less_similar": int((a[1] < b[1]).sum()),
    }


def format_table(r: dict[str, Any]) -> str:
    o, b, n = r["ours"], r["baseline"], r["size"]
    lines = [
        f"== {n:,} new records against {n:,} old (generated reviews; MinHash"
        f" {r['minhash_s']:.1f} s, outside the clock) ==",
        f"{'search':<44}{'seconds':>9}{'cpu s':>8}{'peak MiB':>10}{'matched':>9}"
        f"{'vs baseline':>13}",
        f"{'ours: capped band keys, bands folded':<44}{o['seconds']:>9.2f}{o['cpu_s']:>8.2f}"
        f"{o['peak_rss_mib']:>10,.0f}{o['matched']:>9,}{b['seconds'] / o['seconds']:>12.1f}x",
        f"{'baseline: all band-sharing pairs':<44}{b['seconds']:>9.2f}{b['cpu_s']:>8.2f}"
        f"{b['peak_rss_mib']:>10,.0f}{b['matched']:>9,}{1.0:>12.1f}x",
        f"baseline candidate pairs: {b['candidate_pairs']:,}; peak RSS ratio (baseline/ours)"
        f" {b['peak_rss_mib'] / o['peak_rss_mib']:.1f}x",
        f"pointers: {r['same_pointer']:,} of {n:,} records equal; {r['missed_by_ours']:,} matched"
        f" by the baseline only, {r['other_pointer']:,} pointing elsewhere,"
        f" {r['less_similar']:,} to a less similar record",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--side", nargs=2, metavar=("SIDE", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    child: dict[str, Any] | None = None
    if args.prepare:
        child = prepare(args.prepare, args.size, args.seed)
    elif args.side:
        child = run_side(Path(args.side[1]), args.side[0])
    if child is not None:
        print(json.dumps({"mark": MARK, **child}), flush=True)
        return 0

    return measure_sizes(
        args.sizes, lambda size: measure(size, args.seed), format_table, args.out, MARK
    )


if __name__ == "__main__":
    sys.exit(main())
