"""Small vectorized helpers shared by the near-duplicate indexes."""

import numpy as np
import numpy.typing as npt


def equal_key_pairs(
    sorted_keys: np.ndarray, wanted: np.ndarray
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Every (i, j) with wanted[i] == sorted_keys[j], for an ascending `sorted_keys`: the
    indices into `wanted` and into `sorted_keys`, grouped by i (a vectorized equi-join)."""
    lo = np.searchsorted(sorted_keys, wanted, side="left")
    hits = np.searchsorted(sorted_keys, wanted, side="right") - lo
    total = int(hits.sum())
    if not total:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    firsts = np.cumsum(hits) - hits
    positions = np.arange(total) - np.repeat(firsts - lo, hits)
    return np.repeat(np.arange(wanted.size), hits).astype(np.intp), positions.astype(np.intp)
