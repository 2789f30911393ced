"""Inter-annotator agreement statistics and vote aggregation for nominal labels."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

__all__ = [
    "cohens_kappa",
    "fleiss_kappa",
    "fleiss_kappa_from_ratings",
    "krippendorff_alpha_nominal",
    "majority_vote",
    "pairwise_cohens_kappa",
    "per_class_agreement",
]


def cohens_kappa(
    a: Sequence[Hashable | None],
    b: Sequence[Hashable | None],
    *,
    labels: Sequence[Hashable] | None = None,
) -> float:
    """Cohen's kappa between two raters who labeled the same items in the same order.

    Pairs where either label is None are skipped. When ``labels`` is given, pairs with a
    label outside it are skipped too (as in ``sklearn.metrics.cohen_kappa_score``).

    Returns nan when no pair remains. When expected agreement is 1 (both raters use one
    identical category for every item) kappa is undefined; 1.0 is returned if observed
    agreement is 1, else 0.0.
    """
    if len(a) != len(b):
        raise ValueError(f"a and b must have the same length, got {len(a)} and {len(b)}")
    allowed = None if labels is None else set(labels)
    pairs = [
        (x, y)
        for x, y in zip(a, b, strict=True)
        if x is not None and y is not None and (allowed is None or (x in allowed and y in allowed))
    ]
    n = len(pairs)
    if n < 1:
        return math.nan
    observed = sum(1 for x, y in pairs if x == y)
    count_a = Counter(x for x, _ in pairs)
    count_b = Counter(y for _, y in pairs)
    chance = sum(count_a[c] * count_b.get(c, 0) for c in count_a)
    if chance == n * n:
        return 1.0 if observed == n else 0.0
    return (n * observed - chance) / (n * n - chance)


def pairwise_cohens_kappa(
    ratings: Mapping[str, Mapping[str, Hashable | None]],
) -> dict[tuple[str, str], float]:
    """Cohen's kappa for every annotator pair on the items both labeled.

    ``ratings[annotator][item]`` is a label (None = not labeled). Keys are ``(a, b)`` with
    ``a`` before ``b`` in the iteration order of ``ratings``; pairs sharing no item labeled
    by both are omitted. Pairs are found through the items, so a crowd of annotators who
    each label a few items costs the votes per item squared, not the annotators squared."""
    order = {annotator: i for i, annotator in enumerate(ratings)}
    by_item: dict[Hashable, list[tuple[str, Hashable]]] = {}
    for annotator, labeled in ratings.items():
        for item, label in labeled.items():
            if label is not None:
                by_item.setdefault(item, []).append((annotator, label))
    shared: dict[tuple[str, str], tuple[list[Hashable], list[Hashable]]] = {}
    for votes in by_item.values():
        for (first, x), (second, y) in itertools.combinations(votes, 2):
            if order[first] > order[second]:
                first, second, x, y = second, first, y, x
            a, b = shared.setdefault((first, second), ([], []))
            a.append(x)
            b.append(y)
    return {
        pair: cohens_kappa(*shared[pair])
        for pair in sorted(shared, key=lambda p: (order[p[0]], order[p[1]]))
    }


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa from an (items, categories) matrix of rater counts.

    ``counts[i, j]`` is the number of raters who assigned item ``i`` to category ``j``; every
    item must have the same number (at least 2) of raters. Returns nan for zero items. When
    only one category is ever used, expected agreement is 1 and 1.0 is returned.
    """
    arr = np.asarray(counts, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"counts must be 2-D (items, categories), got shape {arr.shape}")
    if arr.shape[0] == 0:
        return math.nan
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr != np.round(arr)):
        raise ValueError("counts must be non-negative integers")
    raters_per_item = arr.sum(axis=1)
    n_raters = raters_per_item[0]
    if np.any(raters_per_item != n_raters):
        bad = int(np.flatnonzero(raters_per_item != n_raters)[0])
        raise ValueError(
            "every item must have the same number of raters: item 0 has "
            f"{int(n_raters)}, item {bad} has {int(raters_per_item[bad])}"
        )
    if n_raters < 2:
        raise ValueError(f"at least 2 raters per item are required, got {int(n_raters)}")
    n_items = arr.shape[0]
    category_totals = arr.sum(axis=0)
    if np.count_nonzero(category_totals) == 1:
        return 1.0
    p_item = ((arr * arr).sum(axis=1) - n_raters) / (n_raters * (n_raters - 1))
    p_bar = float(p_item.mean())
    p_cat = category_totals / (n_items * n_raters)
    p_e = float((p_cat * p_cat).sum())
    return (p_bar - p_e) / (1.0 - p_e)


def fleiss_kappa_from_ratings(items: Sequence[Sequence[Hashable | None]]) -> float:
    """Fleiss' kappa from one list of labels per item.

    None entries are dropped; afterwards every item must have the same number of labels,
    otherwise ValueError is raised.
    """
    cleaned = [[label for label in item if label is not None] for item in items]
    if not cleaned:
        return math.nan
    sizes = Counter(len(item) for item in cleaned)
    if len(sizes) > 1:
        raise ValueError(
            "every item must have the same number of (non-None) ratings, got sizes "
            f"{dict(sorted(sizes.items()))} (size: number of items)"
        )
    categories = list(dict.fromkeys(label for item in cleaned for label in item))
    index = {c: j for j, c in enumerate(categories)}
    counts = np.zeros((len(cleaned), len(categories)), dtype=np.int64)
    for i, item in enumerate(cleaned):
        for label in item:
            counts[i, index[label]] += 1
    return fleiss_kappa(counts)


def _coincidences(
    units: Sequence[Sequence[Hashable | None]],
) -> tuple[dict[tuple[Hashable, Hashable], float], dict[Hashable, float]]:
    """Coincidence matrix ``o[(c, k)]`` and marginals ``n[c]`` over pairable values."""
    o: dict[tuple[Hashable, Hashable], float] = {}
    for unit in units:
        values = Counter(v for v in unit if v is not None)
        m = sum(values.values())
        if m < 2:
            continue
        for c, n_c in values.items():
            for k, n_k in values.items():
                pairs = n_c * (n_c - 1) if c == k else n_c * n_k
                if pairs:
                    o[(c, k)] = o.get((c, k), 0.0) + pairs / (m - 1)
    marginals: dict[Hashable, float] = {}
    for (c, _), value in o.items():
        marginals[c] = marginals.get(c, 0.0) + value
    return o, marginals


def krippendorff_alpha_nominal(units: Sequence[Sequence[Hashable | None]]) -> float:
    """Krippendorff's alpha for nominal data via the coincidence matrix.

    ``units[u]`` holds one entry per coder (None = missing); units with fewer than two
    values are not pairable and ignored. ``alpha = 1 - (n - 1) * sum_{c != k} o_ck /
    sum_{c != k} n_c n_k``. Returns nan when there are no pairable values and 1.0 when only
    one category is ever used (expected and observed disagreement both 0).
    """
    o, marginals = _coincidences(units)
    n = sum(marginals.values())
    if n == 0:
        return math.nan
    if len(marginals) == 1:
        return 1.0
    observed = sum(value for (c, k), value in o.items() if c != k)
    expected = n * n - sum(n_c * n_c for n_c in marginals.values())
    return 1.0 - (n - 1) * observed / expected


def per_class_agreement(units: Sequence[Sequence[Hashable | None]]) -> dict[Hashable, float]:
    """Specific (positive) agreement per category, ``o_cc / n_c``.

    Within each pairable unit (two or more non-None values) every ordered pair of values from
    different coders is counted with weight ``1 / (m_u - 1)``, as in Krippendorff's
    coincidence matrix. ``o_cc`` is the weighted number of pairs where both values are ``c``
    and ``n_c`` the weighted number of pairs whose first value is ``c`` (the number of
    pairable values equal to ``c``). Categories without pairable values are absent.
    """
    o, marginals = _coincidences(units)
    return {c: o.get((c, c), 0.0) / n_c for c, n_c in marginals.items()}


def majority_vote(
    labels: Sequence[Hashable | None],
    *,
    min_agreement: float = 0.5,
    min_votes: int = 1,
) -> tuple[Hashable | None, float]:
    """Most frequent label and its share of the (non-None) votes.

    The label is None when there are fewer than ``min_votes`` votes, when the top share is
    below ``min_agreement``, or when two or more labels tie for the top; the share of the top
    count is still returned (0.0 when there are no votes).
    """
    votes = Counter(label for label in labels if label is not None)
    total = sum(votes.values())
    if total == 0:
        return None, 0.0
    ranked = votes.most_common(2)
    top_label, top_count = ranked[0]
    share = top_count / total
    if total < min_votes or share < min_agreement:
        return None, share
    if len(ranked) > 1 and ranked[1][1] == top_count:
        return None, share
    return top_label, share
