from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score

from annotation_assets.core.agreement import (
    cohens_kappa,
    fleiss_kappa,
    fleiss_kappa_from_ratings,
    krippendorff_alpha_nominal,
    majority_vote,
    pairwise_cohens_kappa,
    per_class_agreement,
)

# Fleiss (1971) example as tabulated on Wikipedia "Fleiss' kappa": 10 items, 14 raters,
# 5 categories; P_bar = 0.378, P_e = 0.213, kappa = 0.210.
FLEISS_WIKIPEDIA = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, missing values; nominal alpha = 0.743.
_A = [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None]
_B = [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3]
_C = [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None]
_D = [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]
KRIPPENDORFF_UNITS: list[list[int | None]] = [list(u) for u in zip(_A, _B, _C, _D, strict=True)]

labels_st = st.sampled_from(["a", "b", "c", None])


def _alpha_pairwise_reference(units: list[list[str | None]]) -> float:
    """alpha = 1 - D_o / D_e with disagreements counted over explicit value pairs."""
    pairable = [[v for v in u if v is not None] for u in units]
    pairable = [u for u in pairable if len(u) >= 2]
    values = [v for u in pairable for v in u]
    n = len(values)
    d_o = (
        sum(sum(x != y for x, y in itertools.permutations(u, 2)) / (len(u) - 1) for u in pairable)
        / n
    )
    d_e = sum(x != y for x, y in itertools.permutations(values, 2)) / (n * (n - 1))
    return 1.0 - d_o / d_e


def test_cohens_kappa_2x2_textbook() -> None:
    # Wikipedia "Cohen's kappa" worked example: 20 yes-yes, 5 yes-no, 10 no-yes, 15 no-no.
    # p_o = 0.7, p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = 0.2 / 0.5 = 0.4.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohens_kappa(a, b) == pytest.approx(0.4)
    assert cohens_kappa(b, a) == pytest.approx(0.4)


def test_cohens_kappa_matches_sklearn_on_random_data() -> None:
    rng = np.random.default_rng(0)
    cats = np.array(["cat", "dog", "bird", "fish"])
    for _ in range(30):
        n = int(rng.integers(5, 200))
        a = rng.choice(cats, size=n)
        b = np.where(rng.random(n) < 0.6, a, rng.choice(cats, size=n))
        assert cohens_kappa(list(a), list(b)) == pytest.approx(cohen_kappa_score(a, b))
        subset = ["cat", "dog", "bird"]
        assert cohens_kappa(list(a), list(b), labels=subset) == pytest.approx(
            cohen_kappa_score(a, b, labels=subset)
        )


def test_cohens_kappa_skips_none_and_edge_cases() -> None:
    a = ["x", None, "y", "x", "y"]
    b = ["x", "y", None, "y", "y"]
    assert cohens_kappa(a, b) == pytest.approx(cohens_kappa(["x", "x", "y"], ["x", "y", "y"]))
    assert math.isnan(cohens_kappa([], []))
    assert math.isnan(cohens_kappa([None, "a"], ["a", None]))
    assert cohens_kappa(["a", "a", "a"], ["a", "a", "a"]) == 1.0
    assert cohens_kappa(["a", "b"], ["a", "b"]) == 1.0
    with pytest.raises(ValueError, match="same length"):
        cohens_kappa(["a"], ["a", "b"])


def test_pairwise_cohens_kappa() -> None:
    ratings: dict[str, dict[str, str | None]] = {
        "ann": {"i1": "x", "i2": "y", "i3": "x", "i4": "y"},
        "bob": {"i1": "x", "i2": "y", "i3": "y", "i4": None},
        "cat": {"i9": "x"},
    }
    result = pairwise_cohens_kappa(ratings)
    assert set(result) == {("ann", "bob")}
    assert result[("ann", "bob")] == pytest.approx(cohens_kappa(["x", "y", "x"], ["x", "y", "y"]))


@given(
    st.dictionaries(
        st.sampled_from(["ann", "bob", "cat", "dan", "eve"]),
        st.dictionaries(st.integers(0, 6), st.one_of(st.none(), st.sampled_from("xyz"))),
        max_size=5,
    )
)
@settings(max_examples=300, deadline=None)
def test_pairwise_cohens_kappa_is_every_pair_on_its_shared_items(
    ratings: dict[str, dict[int, str | None]],
) -> None:
    expected = {}
    for first, second in itertools.combinations(ratings, 2):
        r1, r2 = ratings[first], ratings[second]
        shared = [i for i in r1 if r2.get(i) is not None and r1[i] is not None]
        if shared:
            expected[(first, second)] = cohens_kappa(
                [r1[i] for i in shared], [r2[i] for i in shared]
            )
    result = pairwise_cohens_kappa(ratings)
    assert list(result) == list(expected)  # same pairs, in the order of `ratings`
    for pair, kappa in expected.items():
        assert result[pair] == pytest.approx(kappa, nan_ok=True)


def test_fleiss_kappa_wikipedia_example() -> None:
    assert fleiss_kappa(FLEISS_WIKIPEDIA) == pytest.approx(0.2099, abs=5e-4)


def test_fleiss_kappa_from_ratings_matches_counts() -> None:
    items = []
    for row in FLEISS_WIKIPEDIA:
        items.append([cat for cat, c in zip("ABCDE", row, strict=True) for _ in range(c)])
    assert fleiss_kappa_from_ratings(items) == pytest.approx(fleiss_kappa(FLEISS_WIKIPEDIA))


def test_fleiss_kappa_matches_statsmodels() -> None:
    inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
    rng = np.random.default_rng(1)
    for _ in range(20):
        n_items, n_cats, n_raters = int(rng.integers(2, 40)), int(rng.integers(2, 6)), 5
        counts = rng.multinomial(n_raters, rng.dirichlet(np.ones(n_cats)), size=n_items)
        expected = inter_rater.fleiss_kappa(counts, method="fleiss")
        assert fleiss_kappa(counts) == pytest.approx(expected)


def test_fleiss_kappa_validation_and_edges() -> None:
    with pytest.raises(ValueError, match="same number of raters"):
        fleiss_kappa(np.array([[2, 1], [1, 1]]))
    with pytest.raises(ValueError, match="2-D"):
        fleiss_kappa(np.array([1, 2]))
    with pytest.raises(ValueError, match="non-negative integers"):
        fleiss_kappa(np.array([[1.5, 0.5]]))
    with pytest.raises(ValueError, match="at least 2 raters"):
        fleiss_kappa(np.array([[1, 0], [0, 1]]))
    with pytest.raises(ValueError, match="same number of"):
        fleiss_kappa_from_ratings([["a", "b"], ["a", "b", "b"]])
    assert fleiss_kappa(np.array([[3, 0], [3, 0]])) == 1.0
    assert fleiss_kappa(np.array([[3, 0], [0, 3]])) == pytest.approx(1.0)
    assert math.isnan(fleiss_kappa(np.zeros((0, 3))))
    assert math.isnan(fleiss_kappa_from_ratings([]))


def test_krippendorff_alpha_canonical_example() -> None:
    assert krippendorff_alpha_nominal(KRIPPENDORFF_UNITS) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_alpha_edges() -> None:
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b", None], ["c", "c", "c"]]) == 1.0
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "a", "a"]]) == 1.0
    assert math.isnan(krippendorff_alpha_nominal([]))
    assert math.isnan(krippendorff_alpha_nominal([["a", None], [None, None], ["b"]]))
    # Two coders, four units, pure disagreement on a balanced pair of categories:
    # n = 8, o_ab = o_ba = 4, n_a = n_b = 4, alpha = 1 - 7 * 8 / (64 - 32) = -0.75.
    units = [["a", "b"], ["b", "a"], ["a", "b"], ["b", "a"]]
    assert krippendorff_alpha_nominal(units) == pytest.approx(-0.75)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(labels_st, min_size=0, max_size=5), min_size=1, max_size=12))
def test_krippendorff_alpha_matches_pairwise_definition(units: list[list[str | None]]) -> None:
    pairable = [[v for v in u if v is not None] for u in units]
    values = {v for u in pairable if len(u) >= 2 for v in u}
    alpha = krippendorff_alpha_nominal(units)
    if not values:
        assert math.isnan(alpha)
    elif len(values) == 1:
        assert alpha == 1.0
    else:
        assert alpha == pytest.approx(_alpha_pairwise_reference(units))


def test_per_class_agreement_hand_example() -> None:
    # Unit 1: [a, a, b] (m=3, weight 1/2): ordered pairs aa x2, ab x2, ba x2.
    # Unit 2: [a, a]    (m=2, weight 1):   aa x2.
    # Unit 3: [b, c]    (m=2, weight 1):   bc, cb.
    # o_aa = 2/2 + 2 = 3,  n_a = (2 + 2)/2 + 2 = 4  -> 0.75
    # o_bb = 0,            n_b = 2/2 + 1 = 2        -> 0.0
    # o_cc = 0,            n_c = 1                  -> 0.0
    # (n_c equals the number of pairable values of c: a x4, b x2, c x1.)
    units: list[list[str | None]] = [["a", "a", "b"], ["a", "a", None], ["b", "c"], ["c", None]]
    result = per_class_agreement(units)
    assert result == pytest.approx({"a": 0.75, "b": 0.0, "c": 0.0})
    assert per_class_agreement([["x", "x"], ["y", "y", "y"]]) == {"x": 1.0, "y": 1.0}
    assert per_class_agreement([]) == {}


def test_per_class_agreement_pairable_value_counts() -> None:
    result = per_class_agreement(KRIPPENDORFF_UNITS)
    assert set(result) == {1, 2, 3, 4, 5}
    assert result[5] == 1.0
    assert all(0.0 <= v <= 1.0 for v in result.values())


def test_majority_vote() -> None:
    assert majority_vote(["a", "a", "b"]) == ("a", pytest.approx(2 / 3))
    assert majority_vote(["a", "b"]) == (None, 0.5)
    assert majority_vote(["a", "a", "b", "b", "c"]) == (None, pytest.approx(0.4))
    assert majority_vote(["a", "b", "c", "c"]) == ("c", 0.5)
    assert majority_vote(["a", "b", "c", "c"], min_agreement=0.51) == (None, 0.5)
    assert majority_vote(["a", "a", "a", "b", "c"], min_agreement=0.6) == ("a", 0.6)
    assert majority_vote(["a", None, None]) == ("a", 1.0)
    assert majority_vote(["a", None], min_votes=2) == (None, 1.0)
    assert majority_vote(["a", "a"], min_votes=2) == ("a", 1.0)
    assert majority_vote([]) == (None, 0.0)
    assert majority_vote([None, None]) == (None, 0.0)


@settings(max_examples=100, deadline=None)
@given(st.lists(labels_st, max_size=10), st.lists(labels_st, max_size=10))
def test_cohens_kappa_symmetric_and_bounded(a: list[str | None], b: list[str | None]) -> None:
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    k1, k2 = cohens_kappa(a, b), cohens_kappa(b, a)
    if math.isnan(k1):
        assert math.isnan(k2)
    else:
        assert k1 == pytest.approx(k2)
        assert -1.0 <= k1 <= 1.0 + 1e-12


def test_agreement_summary_of_a_crowd_lists_the_lowest_pairs() -> None:
    import pandas as pd

    from annotation_assets.review_assets import PAIRS_LISTED, agreement_summary

    # 30 annotators, each record labeled by 3 of them: 90 pairs share records.
    rng = np.random.default_rng(0)
    rows = []
    for record in range(600):
        for annotator in rng.choice(30, size=3, replace=False):
            label = "x" if rng.random() < 0.7 + annotator / 100 else "y"
            rows.append(
                {"record_id": f"r{record}", "label": label, "annotator": f"a{annotator:02d}"}
            )
    votes = pd.DataFrame(rows).assign(decided_at=pd.NaT, imported_at=pd.Timestamp("2026-01-01"))
    summary = agreement_summary(votes, ([], []))
    pairs = pairwise_cohens_kappa(
        {
            a: dict(zip(g["record_id"], g["label"], strict=True))
            for a, g in votes.groupby("annotator", sort=False)
        }
    )
    assert summary["annotators"] == 30 and summary["annotator_pairs"] == len(pairs) > PAIRS_LISTED
    listed = summary["pairwise_cohens_kappa"]
    assert len(listed) == PAIRS_LISTED
    assert sorted(listed.values()) == sorted(pairs.values())[:PAIRS_LISTED]
    assert summary["pairwise_kappa_median"] == pytest.approx(float(np.median(list(pairs.values()))))
    units = votes.groupby("record_id")["label"].apply(list).tolist()
    assert summary["records_with_2plus_votes"] == 600
    assert summary["krippendorff_alpha"] == pytest.approx(krippendorff_alpha_nominal(units))
    assert summary["fleiss_kappa"] == pytest.approx(fleiss_kappa_from_ratings(units))
