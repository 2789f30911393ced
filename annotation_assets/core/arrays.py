"""Small vectorized helpers shared by the near-duplicate indexes, the rules and the set-wise
scorer."""

import numpy as np
import numpy.typing as npt


class TooManyPairs(Exception):
    """A search met more pairs than the limit it was given."""


def equal_key_pairs(
    sorted_keys: np.ndarray, wanted: np.ndarray, *, limit: int | None = None
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Every (i, j) with wanted[i] == sorted_keys[j], for an ascending `sorted_keys`: the
    indices into `wanted` and into `sorted_keys`, grouped by i (a vectorized equi-join).
    Raises TooManyPairs, before making them, when there are more than `limit`."""
    lo = np.searchsorted(sorted_keys, wanted, side="left")
    hits = np.searchsorted(sorted_keys, wanted, side="right") - lo
    total = int(hits.sum())
    if limit is not None and total > limit:
        raise TooManyPairs(f"{total} pairs, more than {limit}")
    if not total:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    positions = np.repeat(lo, hits) + ramps(hits)
    return np.repeat(np.arange(wanted.size), hits).astype(np.intp), positions.astype(np.intp)


def find_sorted(sorted_keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each wanted value lies in an ascending, non-empty `sorted_keys`: whether it is
    there, and an index into `sorted_keys` (the value's own index where it is there)."""
    at = np.minimum(np.searchsorted(sorted_keys, wanted), len(sorted_keys) - 1)
    return sorted_keys[at] == wanted, at


def ramps(sizes: np.ndarray) -> np.ndarray:
    """0, 1, ..., size - 1 for each size, back to back (int64)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    return np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
