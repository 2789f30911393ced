"""Near-duplicate images by their 64-bit perceptual hashes (images.py computes them).

**Near-duplicate threshold.** ``DEFAULT_PHASH_MAX_DISTANCE = 6``: two images whose pHashes
differ in at most 6 of 64 bits are near-duplicates. Measured on 104 drawings of 13 kinds like
the demo's (96 x 96): re-encoding (JPEG quality 50-95, WebP, a 32-colour GIF) and rescaling
(0.5x, 2x) move a pHash by 0-6 bits, median 0; a shift by 1% of the width by 0-8 (97% within
6), by 2% by 0-12 (81% within 6); a 5% crop by about 10 (not caught). Different pictures
differ by about 30 bits (median), and 1 pair of 5356 came within 6 (2 within 8, 10 within
12). Lower the threshold when many images share a layout (catalogue shots on white); raise it
(8-10) to also catch light crops and shifts, at the cost of more false matches.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from math import comb, log2

import numpy as np
import numpy.typing as npt

from annotation_assets.core.arrays import equal_key_pair_parts

DEFAULT_PHASH_MAX_DISTANCE = 6

Hashes = npt.NDArray[np.uint64]


def hashes_from_hex(values: Sequence[str]) -> Hashes:
    """64-bit hashes from their 16-hex-digit strings (as stored in ``meta.phash``)."""
    return np.array([int(v, 16) for v in values], dtype=np.uint64)


def _as_hashes(values: npt.ArrayLike, keys: Sequence[str], name: str) -> Hashes:
    arr = np.asarray(values)
    if arr.dtype.kind in "OUS":
        arr = hashes_from_hex([str(v) for v in arr.ravel()])
    elif arr.dtype.kind in "iu":
        arr = arr.astype(np.uint64)
    else:
        raise ValueError(f"{name} must be 64-bit integers or hex strings, got {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] != len(keys):
        raise ValueError(f"{name} must have shape ({len(keys)},), got {arr.shape}")
    return arr


def _popcount(x: Hashes) -> npt.NDArray[np.intp]:
    count = getattr(np, "bitwise_count", None)
    if count is not None:
        return np.asarray(count(x), dtype=np.intp)
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.asarray((x * np.uint64(0x0101010101010101)) >> np.uint64(56), dtype=np.intp)


@dataclass(frozen=True)
class _Band:
    shift: int
    width: int
    radius: int
    flips: Hashes  # every mask of at most `radius` bits within the band


def _band_plan(max_distance: int, n_query: int, n_pool: int) -> list[_Band] | None:
    """Multi-index hashing: with the 64 bits split into m bands, two hashes within
    ``max_distance`` agree within ``max_distance // m`` bits on at least one band
    (pigeonhole; m = max_distance + 1 means an exact band match). Picks the m with the least
    expected work on random hashes, or None when comparing all pairs is cheaper."""
    best: tuple[float, int] | None = None
    for m in range(1, min(max_distance + 1, 64) + 1):
        radius = max_distance // m
        widths = [64 // m + (1 if i < 64 % m else 0) for i in range(m)]
        variants = [sum(comb(w, r) for r in range(radius + 1)) for w in widths]
        if max(variants) > 4096:
            continue
        lookups = n_query * sum(variants) * (1 + log2(n_pool + 1)) / 8
        found = n_query * n_pool * sum(v / 2.0**w for v, w in zip(variants, widths, strict=True))
        cost = lookups + found
        if best is None or cost < best[0]:
            best = (cost, m)
    if best is None or best[0] >= n_query * n_pool:
        return None
    m = best[1]
    radius = max_distance // m
    plan, shift = [], 0
    for i in range(m):
        width = 64 // m + (1 if i < 64 % m else 0)
        flips = [0]
        for r in range(1, radius + 1):
            flips.extend(sum(1 << b for b in bits) for bits in combinations(range(width), r))
        plan.append(_Band(shift, width, radius, np.array(flips, dtype=np.uint64)))
        shift += width
    return plan


def _band_values(hashes: Hashes, band: _Band) -> Hashes:
    mask = np.uint64((1 << band.width) - 1)
    return (hashes >> np.uint64(band.shift)) & mask


_QUERIES_PER_BLOCK = 1 << 20
_PAIRS_PER_BLOCK = 1 << 22
_CANDIDATES_PER_PART = 1 << 22
# Close pairs one search may collect before its new images are split in halves (see
# _kept_values and _best_old); groups of at most _SMALL_GROUP images are searched whole.
_CLOSE_PAIRS_PER_SEARCH = 1 << 20
_SMALL_GROUP = 1024


class TooManyPairs(Exception):
    """A search met more close pairs than the limit it was given."""


def _close_pairs(
    query: Hashes, pool: Hashes, max_distance: int, *, limit: int | None = None
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """All (query index, pool index, distance) with Hamming distance <= max_distance, each
    once. With `limit`, raises TooManyPairs as soon as more than `limit` close pairs are met,
    before holding them."""
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    n_found = 0
    plan = _band_plan(max_distance, query.size, pool.size) if query.size and pool.size else None
    if not query.size or not pool.size:
        pass
    elif plan is None:
        rows = max(1, _PAIRS_PER_BLOCK // pool.size)
        for start in range(0, query.size, rows):
            dist = _popcount(query[start : start + rows, None] ^ pool[None, :])
            qi, pi = np.nonzero(dist <= max_distance)
            n_found += qi.size
            if limit is not None and n_found > limit:
                raise TooManyPairs(f"more than {limit} close pairs")
            found.append((qi + start, pi, dist[qi, pi]))
    else:
        sorted_bands = []
        for band in plan:
            values = _band_values(pool, band)
            order = np.argsort(values, kind="stable")
            sorted_bands.append((order, values[order]))
        rows = max(1, _QUERIES_PER_BLOCK // max(band.flips.size for band in plan))
        # Candidates are met in parts no larger than the limit (but one band key's holders),
        # so a search that gives up has held about twice its limit at most.
        part = _CANDIDATES_PER_PART if limit is None else min(_CANDIDATES_PER_PART, limit)
        for start in range(0, query.size, rows):
            block = query[start : start + rows]
            for b, (band, (order, sorted_values)) in enumerate(
                zip(plan, sorted_bands, strict=True)
            ):
                wanted = (_band_values(block, band)[:, None] ^ band.flips[None, :]).ravel()
                for which, positions in equal_key_pair_parts(sorted_values, wanted, part):
                    pi = order[positions]
                    qi = which // band.flips.size
                    dist = _popcount(block[qi] ^ pool[pi])
                    close = np.flatnonzero(dist <= max_distance)
                    qi, pi, dist = qi[close], pi[close], dist[close]
                    if b:  # a pair close within an earlier band was found there
                        differ = block[qi] ^ pool[pi]
                        here = np.ones(qi.size, dtype=bool)
                        for earlier in plan[:b]:
                            here &= _popcount(_band_values(differ, earlier)) > earlier.radius
                        qi, pi, dist = qi[here], pi[here], dist[here]
                    n_found += qi.size
                    if limit is not None and n_found > limit:
                        raise TooManyPairs(f"more than {limit} close pairs")
                    found.append((qi + start, pi, dist))
    if not found:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, empty
    qi, pi, dist = (np.concatenate(parts).astype(np.intp) for parts in zip(*found, strict=True))
    return qi, pi, dist


def _best_old(
    values: Hashes, old: Hashes, max_distance: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Per hash in `values`: the closest old image within `max_distance` (the earliest on a
    tie; -1 if none) and its distance (64 if none). Old images are other drops' kept ones,
    which lie more than `max_distance` apart, but not always (a threshold raised since, or
    drops kept before this search existed): values are searched in halves while one search
    would hold more than its limit of close pairs, each half reduced to its best at once."""
    best = np.full(values.size, -1, dtype=np.intp)
    best_dist = np.full(values.size, 64, dtype=np.intp)
    if not old.size:
        return best, best_dist
    old_values, old_first = np.unique(old, return_index=True)
    pending = [(0, values.size)]
    while pending:
        lo, hi = pending.pop()
        limit = None if hi - lo == 1 else _CLOSE_PAIRS_PER_SEARCH
        try:
            vi, oi, dist = _close_pairs(values[lo:hi], old_values, max_distance, limit=limit)
        except TooManyPairs:
            mid = (lo + hi) // 2
            pending += [(mid, hi), (lo, mid)]
            continue
        first_old = old_first[oi]
        order = np.lexsort((first_old, dist, vi))
        vi, first_old, dist = vi[order] + lo, first_old[order], dist[order]
        head = np.ones(vi.size, dtype=bool)
        head[1:] = vi[1:] != vi[:-1]
        best[vi[head]] = first_old[head]
        best_dist[vi[head]] = dist[head]
    return best, best_dist


def _kept_values(hashes: Hashes, group: npt.NDArray[np.intp], max_distance: int) -> np.ndarray:
    """The indices in `group` (into `hashes`, in the order their images first appear) of
    kept images: every one with no kept one before it within `max_distance` bits.

    Kept hashes lie more than `max_distance` apart, so an image has few kept neighbours
    however many near copies of it a drop holds, while the close pairs among all its images
    can be quadratic (a drop of ten thousand slightly different placeholders). So a group
    is resolved from all its close pairs only while they are few; otherwise its later half
    is first thinned against the kept images of its earlier half."""
    if group.size == 0:
        return group
    at = hashes[group]
    try:
        limit = None if group.size <= _SMALL_GROUP else _CLOSE_PAIRS_PER_SEARCH
        qi, pi, _ = _close_pairs(at, at, max_distance, limit=limit)
    except TooManyPairs:
        half = group.size // 2
        earlier = _kept_values(hashes, group[:half], max_distance)
        later = group[half:]
        if earlier.size:
            hit, _, _ = _close_pairs(hashes[later], hashes[earlier], max_distance)
            later = np.delete(later, hit)
        return np.concatenate([earlier, _kept_values(hashes, later, max_distance)])
    before = pi < qi
    qi, pi = qi[before], pi[before]
    keep = np.ones(group.size, dtype=bool)
    if qi.size:
        order = np.lexsort((pi, qi))
        qi, pi = qi[order], pi[order]
        heads = np.flatnonzero(np.append(True, qi[1:] != qi[:-1]))
        ends = np.append(heads[1:], qi.size)
        for q, a, b in zip(qi[heads].tolist(), heads.tolist(), ends.tolist(), strict=True):
            keep[q] = not keep[pi[a:b]].any()  # the earlier ones are decided already
    return group[keep]


def hamming_near_duplicates(
    new_keys: Sequence[str],
    new_hashes: npt.ArrayLike,
    old_keys: Sequence[str],
    old_hashes: npt.ArrayLike,
    *,
    max_distance: int = DEFAULT_PHASH_MAX_DISTANCE,
) -> list[tuple[str, str, int]]:
    """Return ``(new_key, kept_key, distance)`` for each new image whose 64-bit hash is within
    ``max_distance`` bits of a kept one, in new order (hashes: uint64 or 16-hex strings).

    Same semantics as ``dedup.near_duplicate_pairs``: the kept image is an old one or an
    earlier new one that was not itself a duplicate; the closest wins, old ones first on
    ties, then the earliest. Candidates come from multi-index hashing over bands of the 64
    bits (see ``_band_plan``), so 100k x 100k images take seconds, not all pairs; the kept
    images are found first (``_kept_values``), so many near copies of one picture cost
    about one search each, not one per pair of them."""
    new = _as_hashes(new_hashes, new_keys, "new_hashes")
    old = _as_hashes(old_hashes, old_keys, "old_hashes")
    if not 0 <= max_distance < 64:
        raise ValueError(f"max_distance must be in [0, 63], got {max_distance}")
    if not new.size:
        return []
    values, first, inverse = np.unique(new, return_index=True, return_inverse=True)
    inverse = inverse.ravel()

    best_old, best_old_dist = _best_old(values, old, max_distance)

    # The kept new images. A later image of a kept hash is a copy of its first one; a hash
    # not kept is matched among its kept neighbours, closest first, then the earliest.
    by_first = np.argsort(first, kind="stable")
    kept = _kept_values(values, by_first[best_old[by_first] < 0], max_distance)
    is_kept = np.zeros(values.size, dtype=bool)
    is_kept[kept] = True
    others = np.flatnonzero(~is_kept)
    vi, ki, dist = _close_pairs(values[others], values[kept], max_distance)
    vi, kept_at = others[vi], first[kept[ki]]
    order = np.lexsort((kept_at, dist, vi))
    vi, kept_at, dist = vi[order], kept_at[order], dist[order]
    bounds = np.searchsorted(vi, np.arange(values.size + 1)).tolist()
    near_at, near_dist = kept_at.tolist(), dist.tolist()

    records = np.arange(new.size)
    duplicates = ~(is_kept[inverse] & (first[inverse] == records))
    out: list[tuple[str, str, int]] = []
    for i, v in zip(records[duplicates].tolist(), inverse[duplicates].tolist(), strict=True):
        if is_kept[v]:
            out.append((new_keys[i], new_keys[int(first[v])], 0))
            continue
        match, match_dist = -1, int(best_old_dist[v])
        for j in range(bounds[v], bounds[v + 1]):
            if near_at[j] < i:  # the best kept image before this one
                if near_dist[j] < match_dist:
                    match, match_dist = near_at[j], near_dist[j]
                break
        if match >= 0:
            out.append((new_keys[i], new_keys[match], match_dist))
        elif best_old[v] >= 0:
            out.append((new_keys[i], old_keys[best_old[v]], match_dist))
        else:  # pragma: no cover - an image not kept is within reach of a kept one
            raise AssertionError(f"image {new_keys[i]!r} is neither kept nor a duplicate")
    return out
