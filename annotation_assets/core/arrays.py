"""Small vectorized helpers shared by the near-duplicate indexes, the rules and the set-wise
scorer."""

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt


def equal_key_pairs(
    sorted_keys: np.ndarray, wanted: np.ndarray
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Every (i, j) with wanted[i] == sorted_keys[j], for an ascending `sorted_keys`: the
    indices into `wanted` and into `sorted_keys`, grouped by i (a vectorized equi-join)."""
    lo = np.searchsorted(sorted_keys, wanted, side="left")
    hits = np.searchsorted(sorted_keys, wanted, side="right") - lo
    return _pairs_of(lo, hits, 0)


def equal_key_pair_parts(
    sorted_keys: np.ndarray, wanted: np.ndarray, most: int
) -> Iterator[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]]:
    """`equal_key_pairs(sorted_keys, wanted)` in consecutive parts of at most `most` pairs
    (a wanted value with more makes a part of its own), so a crowded key is never held whole
    beside the rest; parts without pairs are skipped."""
    lo = np.searchsorted(sorted_keys, wanted, side="left")
    hits = np.searchsorted(sorted_keys, wanted, side="right") - lo
    ends = np.cumsum(hits)
    start = 0
    while start < wanted.size:
        before = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, before + most, side="right")))
        if int(ends[stop - 1]) > before:
            yield _pairs_of(lo[start:stop], hits[start:stop], start)
        start = stop


def _pairs_of(
    lo: np.ndarray, hits: np.ndarray, offset: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    if not int(hits.sum()):
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    positions = np.repeat(lo, hits) + ramps(hits)
    which = np.repeat(np.arange(offset, offset + hits.size), hits)
    return which.astype(np.intp), positions.astype(np.intp)


def find_sorted(sorted_keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each wanted value lies in an ascending, non-empty `sorted_keys`: whether it is
    there, and an index into `sorted_keys` (the value's own index where it is there)."""
    at = np.minimum(np.searchsorted(sorted_keys, wanted), len(sorted_keys) - 1)
    return sorted_keys[at] == wanted, at


def ramps(sizes: np.ndarray) -> np.ndarray:
    """0, 1, ..., size - 1 for each size, back to back (int64)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    return np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
