"""Near-duplicate images (pHash within 6 bits) against the search that holds every close pair.

    .venv/bin/python bench/bench_phash.py [--sizes 20000 50000 100000] [--crowd 0.1]
        [--pictures 10] [--seed 0] [--out DIR]

For each size N: N new 64-bit hashes, of which a share `--crowd` are near copies of
`--pictures` placeholder pictures (each copy 0-3 bits from its picture, so all copies of one
picture lie within 6 bits of each other: a scrape full of "no image" placeholders or resized
thumbnails) and the rest random; and N/2 old (kept) hashes of other drops, random, 1% of the
new ones 0-2 bits from one of them. Both sides give every new image its kept image (an old
one, or an earlier new one not itself a duplicate; closest, old first on ties, then the
earliest):

- ours: `images.hamming_near_duplicates`, which finds the kept images first, splitting a
  crowded group of images in halves, so it holds the pairs of an image with kept ones only;
- baseline: every close pair among the new images found at once (the same multi-index
  search), then each image decided in record order from its neighbours: the search this
  project ran before, except that its pair search also de-duplicated every candidate, so the
  baseline here is faster than that code was.

Each side runs in its own child process, so its peak RSS is its own; the two results are
compared pair by pair. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import child_result, measure_sizes, peak_rss_mib, run_child  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "out"
DEFAULT_SIZES = (20_000, 50_000, 100_000)
MARK = "bench_phash"


def _log(message: str) -> None:
    print(f"[bench_phash] {message}", file=sys.stderr, flush=True)


def make_hashes(size: int, crowd: float, pictures: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    masks = np.array(
        [sum(1 << b for b in bits) for r in range(4) for bits in combinations(range(64), r)],
        dtype=np.uint64,
    )
    copies = int(size * crowd)
    centers = rng.integers(0, 2**64 - 1, size=pictures, dtype=np.uint64)
    crowded = (
        centers[rng.integers(0, pictures, copies)] ^ masks[rng.integers(0, masks.size, copies)]
    )
    new = np.concatenate([rng.integers(0, 2**64 - 1, size - copies, dtype=np.uint64), crowded])
    rng.shuffle(new)
    old = rng.integers(0, 2**64 - 1, size // 2, dtype=np.uint64)
    close = rng.choice(size, size // 100, replace=False)
    new[close] = (
        old[rng.integers(0, old.size, close.size)] ^ masks[rng.integers(0, 2081, close.size)]
    )
    return new, old


def baseline(
    new_keys: list[str], new: np.ndarray, old_keys: list[str], old: np.ndarray, max_distance: int
) -> list[tuple[str, str, int]]:
    """Every close pair among the new images at once, then each image in record order."""
    from annotation_assets.core.image_dedup import _close_pairs

    values, inverse = np.unique(new, return_inverse=True)
    best_old = np.full(values.size, -1, dtype=np.intp)
    best_old_dist = np.full(values.size, 64, dtype=np.intp)
    old_values, old_first = np.unique(old, return_index=True)
    vi, oi, dist = _close_pairs(values, old_values, max_distance)
    order = np.lexsort((old_first[oi], dist, vi))
    vi, first_old, dist = vi[order], old_first[oi][order], dist[order]
    head = np.r_[True, vi[1:] != vi[:-1]] if vi.size else np.zeros(0, dtype=bool)
    best_old[vi[head]], best_old_dist[vi[head]] = first_old[head], dist[head]

    ai, bi, dist = _close_pairs(values, values, max_distance)
    counts = np.bincount(inverse, minlength=values.size)
    near: dict[int, list[tuple[int, int]]] = {
        int(v): [(0, int(v))] for v in np.flatnonzero(counts > 1)
    }
    for a, b, d in zip(ai.tolist(), bi.tolist(), dist.tolist(), strict=True):
        if a != b:
            near.setdefault(a, [(0, a)] if counts[a] > 1 else []).append((d, b))
    first_kept = np.full(values.size, -1, dtype=np.intp)
    out = []
    for i, v in enumerate(inverse.tolist()):
        match, match_dist = -1, int(best_old_dist[v])
        for d, u in near.get(v, ()):
            k = int(first_kept[u])
            if k >= 0 and (d < match_dist or (d == match_dist and match >= 0 and k < match)):
                match, match_dist = k, d
        if match >= 0:
            out.append((new_keys[i], new_keys[match], match_dist))
        elif best_old[v] >= 0:
            out.append((new_keys[i], old_keys[best_old[v]], match_dist))
        elif v in near and first_kept[v] < 0:
            first_kept[v] = i
    return out


# ------------------------------------------------------------------------------- children


def run_side(folder: Path, side: str) -> dict[str, Any]:
    from annotation_assets.core.images import DEFAULT_PHASH_MAX_DISTANCE, hamming_near_duplicates

    data = np.load(folder / "hashes.npz")
    new, old = data["new"], data["old"]
    new_keys = [f"n{i}" for i in range(new.size)]
    old_keys = [f"o{i}" for i in range(old.size)]
    start, cpu = time.perf_counter(), time.process_time()
    if side == "ours":
        found = hamming_near_duplicates(
            new_keys, new, old_keys, old, max_distance=DEFAULT_PHASH_MAX_DISTANCE
        )
    else:
        found = baseline(new_keys, new, old_keys, old, DEFAULT_PHASH_MAX_DISTANCE)
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    (folder / f"{side}.json").write_text(json.dumps(found))
    return {
        "seconds": seconds,
        "cpu_s": cpu_s,
        "duplicates": len(found),
        "to_old": sum(kept.startswith("o") for _, kept, _ in found),
        "peak_rss_mib": peak_rss_mib(),
    }


# --------------------------------------------------------------------------------- parent


def measure(size: int, crowd: float, pictures: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench_phash_") as tmp:
        folder = Path(tmp)
        new, old = make_hashes(size, crowd, pictures, seed)
        np.savez(folder / "hashes.npz", new=new, old=old)
        ours = child_result(Path(__file__), ["--side", "ours", str(folder)], MARK, _log)
        # The baseline may not fit in memory: a child killed on the way is reported as such.
        base, status = run_child(Path(__file__), ["--side", "baseline", str(folder)], MARK, _log)
        found = json.loads((folder / "ours.json").read_text())
        theirs = json.loads((folder / "baseline.json").read_text()) if base else None
    return {
        "size": size,
        "old": int(old.size),
        "crowd": crowd,
        "pictures": pictures,
        "distinct_new": int(np.unique(new).size),
        "ours": ours,
        "baseline": base,
        "baseline_exit": status,
        "same_result": found == theirs if theirs is not None else None,
        "differing": (
            len({tuple(p) for p in found} ^ {tuple(p) for p in theirs})
            if theirs is not None
            else None
        ),
    }


def format_table(r: dict[str, Any]) -> str:
    o, b, n = r["ours"], r["baseline"], r["size"]
    lines = [
        f"== {n:,} new images ({r['distinct_new']:,} distinct hashes; {r['crowd']:.0%} near"
        f" copies of {r['pictures']} pictures) against {r['old']:,} old ==",
        f"{'search':<46}{'seconds':>9}{'cpu s':>8}{'peak MiB':>10}{'duplicates':>12}"
        f"{'vs baseline':>13}",
    ]
    ratio = f"{b['seconds'] / o['seconds']:>12.1f}x" if b else f"{'-':>13}"
    lines.append(
        f"{'ours: kept images first, crowded groups split':<46}{o['seconds']:>9.2f}"
        f"{o['cpu_s']:>8.2f}{o['peak_rss_mib']:>10,.0f}{o['duplicates']:>12,}{ratio}"
    )
    if b is None:
        lines.append(
            f"{'baseline: every close pair at once':<46} did not finish: exit"
            f" {r['baseline_exit']} (a negative exit is the signal that killed it)"
        )
        return "\n".join(lines)
    lines += [
        f"{'baseline: every close pair at once':<46}{b['seconds']:>9.2f}{b['cpu_s']:>8.2f}"
        f"{b['peak_rss_mib']:>10,.0f}{b['duplicates']:>12,}{1.0:>12.1f}x",
        f"peak RSS ratio (baseline/ours) {b['peak_rss_mib'] / o['peak_rss_mib']:.1f}x;"
        f" results {'identical' if r['same_result'] else 'DIFFER'}"
        f" ({r['differing']} pairs in one only; {o['to_old']:,} duplicates of old images)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--crowd", type=float, default=0.1)
    parser.add_argument("--pictures", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--side", nargs=2, metavar=("SIDE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.side:
        child = run_side(Path(args.side[1]), args.side[0])
        print(json.dumps({"mark": MARK, **child}), flush=True)
        return 0

    return measure_sizes(
        args.sizes,
        lambda size: measure(size, args.crowd, args.pictures, args.seed),
        format_table,
        args.out,
        MARK,
    )


if __name__ == "__main__":
    sys.exit(main())
