"""Confidence calibration: binned error, review-threshold what-ifs and recalibrators."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.isotonic import IsotonicRegression

__all__ = [
    "DEFAULT_THRESHOLDS",
    "IsotonicCalibrator",
    "expected_calibration_error",
    "fit_temperature",
    "reliability_table",
    "softmax",
    "threshold_what_if",
]

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10)) + (0.99,)


def _confidence_correct(
    confidence: np.ndarray, correct: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidence, dtype=float).ravel()
    corr = np.asarray(correct, dtype=float).ravel()
    if conf.shape != corr.shape:
        raise ValueError(
            f"confidence and correct must have the same length, got {conf.size} and {corr.size}"
        )
    keep = ~(np.isnan(conf) | np.isnan(corr))
    conf, corr = conf[keep], corr[keep]
    if np.any((conf < 0) | (conf > 1)):
        raise ValueError("confidence values must lie in [0, 1]")
    return conf, corr


def _bin_index(conf: np.ndarray, n_bins: int) -> np.ndarray:
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    return np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)


def reliability_table(
    confidence: np.ndarray, correct: np.ndarray, *, n_bins: int = 10
) -> list[dict[str, Any]]:
    """Per non-empty equal-width bin: ``lo``, ``hi``, ``count``, ``mean_confidence``, ``accuracy``.

    Bins are ``[lo, hi)`` on [0, 1], the last one closed. Entries where confidence or
    ``correct`` is nan (unknown) are dropped.
    """
    conf, corr = _confidence_correct(confidence, correct)
    idx = _bin_index(conf, n_bins)
    rows: list[dict[str, Any]] = []
    for b in np.unique(idx):
        mask = idx == b
        rows.append(
            {
                "lo": float(b) / n_bins,
                "hi": float(b + 1) / n_bins,
                "count": int(mask.sum()),
                "mean_confidence": float(conf[mask].mean()),
                "accuracy": float(corr[mask].mean()),
            }
        )
    return rows


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, *, n_bins: int = 10
) -> float:
    """Count-weighted mean of ``|accuracy - mean_confidence|`` over equal-width bins.

    Uses the bins of :func:`reliability_table`; nan for empty input.
    """
    rows = reliability_table(confidence, correct, n_bins=n_bins)
    total = sum(r["count"] for r in rows)
    if total == 0:
        return math.nan
    return float(sum(r["count"] * abs(r["accuracy"] - r["mean_confidence"]) for r in rows) / total)


def threshold_what_if(
    confidence: np.ndarray,
    correct: np.ndarray | None,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> list[dict[str, Any]]:
    """Review load and auto-accept accuracy for each confidence threshold.

    Per threshold: ``threshold``, ``review_rate`` (share with confidence < threshold, nan for
    empty input), ``auto_accepted`` (count with confidence >= threshold) and ``accuracy``
    (mean of ``correct`` over auto-accepted items whose ``correct`` is known, None when there
    are none). ``correct`` is None (all unknown) or an array with nan for unknown.
    """
    conf = np.asarray(confidence, dtype=float).ravel()
    if correct is None:
        corr = np.full(conf.shape, np.nan)
    else:
        corr = np.asarray(correct, dtype=float).ravel()
        if corr.shape != conf.shape:
            raise ValueError(
                f"confidence and correct must have the same length, got {conf.size} and {corr.size}"
            )
    known = ~np.isnan(corr)
    n = conf.size
    rows: list[dict[str, Any]] = []
    for t in thresholds:
        accepted = conf >= t
        n_accepted = int(accepted.sum())
        scored = accepted & known
        rows.append(
            {
                "threshold": float(t),
                "review_rate": (n - n_accepted) / n if n else math.nan,
                "auto_accepted": n_accepted,
                "accuracy": float(corr[scored].mean()) if scored.any() else None,
            }
        )
    return rows


def softmax(logits: np.ndarray, *, temperature: float = 1.0) -> np.ndarray:
    """Numerically stable softmax of ``logits / temperature`` along the last axis."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = np.asarray(logits, dtype=float) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    out: np.ndarray = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return out


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, *, log_bounds: tuple[float, float] = (-3.0, 3.0)
) -> float:
    """Temperature ``T > 0`` minimizing the mean NLL of ``softmax(logits / T)``.

    Bounded scalar search over ``log T`` in ``log_bounds``.
    """
    z = np.asarray(logits, dtype=float)
    y = np.asarray(labels)
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"logits must be a non-empty (n, k) array, got shape {z.shape}")
    if y.shape != (z.shape[0],):
        raise ValueError(f"labels must have shape ({z.shape[0]},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels must be integers in [0, {z.shape[1]})")
    rows = np.arange(z.shape[0])

    def nll(log_t: float) -> float:
        return float(-_log_softmax(z / math.exp(log_t))[rows, y].mean())

    res = minimize_scalar(nll, bounds=log_bounds, method="bounded", options={"xatol": 1e-6})
    return float(math.exp(res.x))


class IsotonicCalibrator:
    """Per-class one-vs-rest isotonic recalibration of predicted probabilities.

    A class keeps its raw probabilities (identity) when fewer than ``min_samples`` reviewed
    points carry that label or when its one-vs-rest outcome takes a single value. Labels < 0
    mark unreviewed rows, which are ignored by :meth:`fit`.
    """

    def __init__(self, *, min_samples: int = 20) -> None:
        self.min_samples = min_samples
        self.calibrators_: list[IsotonicRegression | None] | None = None

    @property
    def n_classes_(self) -> int:
        if self.calibrators_ is None:
            raise RuntimeError("IsotonicCalibrator is not fitted")
        return len(self.calibrators_)

    def fit(self, probs: np.ndarray, labels: np.ndarray) -> IsotonicCalibrator:
        """Fit one isotonic map per class on ``probs`` (n, k) and integer ``labels`` (n,)."""
        p = np.asarray(probs, dtype=float)
        y = np.asarray(labels)
        if p.ndim != 2:
            raise ValueError(f"probs must be 2-D (n, k), got shape {p.shape}")
        if y.shape != (p.shape[0],):
            raise ValueError(f"labels must have shape ({p.shape[0]},), got {y.shape}")
        if y.size and (not np.issubdtype(y.dtype, np.integer) or y.max() >= p.shape[1]):
            raise ValueError(f"labels must be integers < {p.shape[1]} (negative = unreviewed)")
        reviewed = y >= 0
        p, y = p[reviewed], y[reviewed]
        calibrators: list[IsotonicRegression | None] = []
        for j in range(p.shape[1]):
            target = (y == j).astype(float)
            n_pos = int(target.sum())
            if n_pos < self.min_samples or n_pos == target.size:
                calibrators.append(None)
                continue
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
            iso.fit(p[:, j], target)
            calibrators.append(iso)
        self.calibrators_ = calibrators
        return self

    def transform(self, probs: np.ndarray, *, renormalize: bool = True) -> np.ndarray:
        """Calibrated probabilities; rows are renormalized to sum to 1 unless told otherwise.

        Rows whose calibrated values are all 0 keep their raw probabilities.
        """
        if self.calibrators_ is None:
            raise RuntimeError("IsotonicCalibrator is not fitted")
        p = np.asarray(probs, dtype=float)
        if p.ndim != 2 or p.shape[1] != len(self.calibrators_):
            raise ValueError(f"probs must have shape (n, {len(self.calibrators_)}), got {p.shape}")
        out = p.copy()
        for j, iso in enumerate(self.calibrators_):
            if iso is not None and p.shape[0]:
                out[:, j] = iso.predict(p[:, j])
        if not renormalize:
            return out
        sums = out.sum(axis=1, keepdims=True)
        zero = sums[:, 0] <= 0
        out[zero] = p[zero]
        sums[zero] = p[zero].sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            normalized: np.ndarray = out / sums
        return normalized

    def fit_transform(self, probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Fit on ``probs``/``labels`` and return the calibrated ``probs``."""
        return self.fit(probs, labels).transform(probs)
