"""Label-distribution drift between a drop and the drops before it."""

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import chi2_contingency


def _shares(counts: Mapping[str, int], labels: Sequence[str], eps: float) -> np.ndarray:
    raw = np.array([counts.get(label, 0) for label in labels], dtype=np.float64)
    total = raw.sum()
    shares = raw / total if total else np.full(len(labels), 1.0 / len(labels))
    shares = np.clip(shares, eps, None)
    return shares / shares.sum()


def population_stability_index(
    expected: Mapping[str, int],
    actual: Mapping[str, int],
    *,
    labels: Sequence[str],
    eps: float = 1e-4,
) -> float:
    """PSI = sum((a - e) * ln(a / e)) over label shares (empty shares floored at eps).
    Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 large shift."""
    e = _shares(expected, labels, eps)
    a = _shares(actual, labels, eps)
    return float(np.sum((a - e) * np.log(a / e)))


def chi_square_p_value(
    expected: Mapping[str, int], actual: Mapping[str, int], *, labels: Sequence[str]
) -> float:
    """p-value of a chi-square test that both count vectors share one distribution; nan when
    either side is empty."""
    table = np.array(
        [[expected.get(label, 0) for label in labels], [actual.get(label, 0) for label in labels]],
        dtype=np.float64,
    )
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return float("nan")
    return float(chi2_contingency(table)[1])


def imbalance_ratio(counts: Mapping[str, int], *, labels: Sequence[str]) -> float:
    """Largest class count over smallest (inf when a label has no rows, nan when no rows)."""
    values = np.array([counts.get(label, 0) for label in labels], dtype=np.float64)
    if values.sum() == 0:
        return float("nan")
    return float("inf") if values.min() == 0 else float(values.max() / values.min())
