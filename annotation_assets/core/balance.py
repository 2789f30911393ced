"""Class balancing of an exported dataset: deterministic, seeded, stable as data grows."""

import hashlib
from collections.abc import Mapping

import numpy as np
import pandas as pd

MODES = ("none", "downsample", "stratified")


def _stable_order(index: pd.Index, seed: int) -> np.ndarray:
    """A per-row sort key from a hash of (seed, id): the same record keeps its place when
    other records arrive, so re-exports change as little as possible."""
    keys = [hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest() for i in index]
    return np.array([int.from_bytes(k, "big") for k in keys], dtype=np.uint64)


def class_quotas(
    counts: Mapping[str, int],
    *,
    mode: str,
    max_ratio: float | None = None,
    target: Mapping[str, float] | None = None,
) -> dict[str, int]:
    """How many rows of each class to keep.

    - `none`: all of them.
    - `downsample`: every class capped at `max_ratio` times the smallest non-empty class
      (max_ratio 1 gives equal classes).
    - `stratified`: the largest sample whose class shares follow `target` (shares are
      normalized; default uniform over the classes present); classes absent from `target`
      are dropped."""
    if mode not in MODES:
        raise ValueError(f"balance mode must be one of {', '.join(MODES)}, got {mode!r}")
    present = {c: int(n) for c, n in counts.items() if n > 0}
    if mode == "none" or not present:
        return dict(present)
    if mode == "downsample":
        ratio = 1.0 if max_ratio is None else float(max_ratio)
        if ratio < 1:
            raise ValueError("max_ratio must be at least 1")
        cap = int(np.floor(min(present.values()) * ratio))
        return {c: min(n, cap) for c, n in present.items()}
    shares = dict(target) if target else dict.fromkeys(present, 1.0)
    if any(v < 0 for v in shares.values()) or sum(shares.values()) <= 0:
        raise ValueError("target shares must be non-negative and not all zero")
    total = sum(shares.values())
    shares = {c: v / total for c, v in shares.items() if v > 0}
    size = min(present.get(c, 0) / s for c, s in shares.items())
    return {c: int(np.floor(size * shares[c] + 1e-9)) if c in shares else 0 for c in present}


def balance_dataset(
    labels: pd.Series,
    *,
    mode: str,
    max_ratio: float | None = None,
    target: Mapping[str, float] | None = None,
    seed: int = 0,
) -> pd.Index:
    """The index of the rows to keep, per class the first `quota` rows in a seeded stable
    order. `labels` is indexed by record id."""
    counts = {str(k): int(v) for k, v in labels.value_counts().items()}
    quotas = class_quotas(counts, mode=mode, max_ratio=max_ratio, target=target)
    if mode == "none":
        return labels.index
    order = pd.Series(_stable_order(labels.index, seed), index=labels.index)
    kept: list[pd.Index] = []
    for label, quota in quotas.items():
        members = order[labels == label].sort_values(kind="stable")
        kept.append(members.index[:quota])
    return kept[0].append(kept[1:]) if kept else labels.index[:0]
