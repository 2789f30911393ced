"""Label-distribution drift: PSI, chi-square p-value and class imbalance."""

import math

import pytest

from annotation_assets.core.drift import (
    chi_square_p_value,
    imbalance_ratio,
    population_stability_index,
)

LABELS = ["negative", "neutral", "positive"]


def test_psi_is_zero_for_identical_distributions() -> None:
    counts = {"negative": 10, "neutral": 30, "positive": 60}

    assert population_stability_index(counts, counts, labels=LABELS) == pytest.approx(0.0)


def test_psi_is_zero_for_the_same_shares_at_different_sizes() -> None:
    before = {"negative": 10, "neutral": 30, "positive": 60}
    after = {"negative": 1, "neutral": 3, "positive": 6}

    assert population_stability_index(before, after, labels=LABELS) == pytest.approx(0.0)


def test_psi_is_positive_and_symmetric_for_shifted_distributions() -> None:
    before = {"negative": 10, "neutral": 30, "positive": 60}
    after = {"negative": 50, "neutral": 30, "positive": 20}

    forward = population_stability_index(before, after, labels=LABELS)
    backward = population_stability_index(after, before, labels=LABELS)

    assert forward > 0.25
    assert backward == pytest.approx(forward)


def test_psi_matches_a_hand_computation_for_two_labels() -> None:
    # Shares go from (0.5, 0.5) to (0.8, 0.2):
    # PSI = (0.8 - 0.5) * ln(0.8 / 0.5) + (0.2 - 0.5) * ln(0.2 / 0.5)
    #     = 0.3 * 0.470004 + 0.3 * 0.916291 = 0.141001 + 0.274887 = 0.415888
    psi = population_stability_index({"a": 50, "b": 50}, {"a": 80, "b": 20}, labels=["a", "b"])

    assert psi == pytest.approx(0.415888, abs=1e-6)


def test_psi_grows_with_the_shift() -> None:
    base = {"a": 50, "b": 50}

    small = population_stability_index(base, {"a": 55, "b": 45}, labels=["a", "b"])
    large = population_stability_index(base, {"a": 90, "b": 10}, labels=["a", "b"])

    assert 0 < small < 0.1 < large


def test_psi_stays_finite_when_a_label_is_missing_on_one_side() -> None:
    psi = population_stability_index(
        {"negative": 40, "positive": 60},
        {"negative": 40, "neutral": 20, "positive": 40},
        labels=LABELS,
    )

    assert math.isfinite(psi) and psi > 0.25


def test_chi_square_p_value_is_one_for_identical_counts() -> None:
    counts = {"negative": 20, "neutral": 30, "positive": 50}

    assert chi_square_p_value(counts, counts, labels=LABELS) == pytest.approx(1.0)


def test_chi_square_p_value_is_tiny_for_very_different_counts() -> None:
    before = {"negative": 90, "neutral": 5, "positive": 5}
    after = {"negative": 5, "neutral": 5, "positive": 90}

    assert chi_square_p_value(before, after, labels=LABELS) < 1e-10


def test_chi_square_p_value_is_nan_when_a_side_is_empty() -> None:
    counts = {"negative": 20, "neutral": 30, "positive": 50}

    assert math.isnan(chi_square_p_value({}, counts, labels=LABELS))
    assert math.isnan(chi_square_p_value(counts, {}, labels=LABELS))


def test_chi_square_ignores_labels_absent_on_both_sides() -> None:
    before = {"negative": 20, "positive": 20}
    after = {"negative": 20, "positive": 20}

    assert chi_square_p_value(before, after, labels=LABELS) == pytest.approx(1.0)


def test_imbalance_ratio_is_largest_over_smallest_count() -> None:
    counts = {"negative": 10, "neutral": 25, "positive": 50}

    assert imbalance_ratio(counts, labels=LABELS) == 5.0


def test_imbalance_ratio_is_one_for_balanced_counts() -> None:
    assert imbalance_ratio({"a": 7, "b": 7}, labels=["a", "b"]) == 1.0


def test_imbalance_ratio_is_inf_when_a_label_has_no_rows() -> None:
    assert imbalance_ratio({"negative": 10, "positive": 5}, labels=LABELS) == math.inf


def test_imbalance_ratio_is_nan_without_rows() -> None:
    assert math.isnan(imbalance_ratio({}, labels=LABELS))


def test_imbalance_ratio_ignores_counts_of_unknown_labels() -> None:
    assert imbalance_ratio({"a": 4, "b": 2, "other": 1000}, labels=["a", "b"]) == 2.0
