"""Balancing math for `annotate export --balance`."""

import pandas as pd
import pytest

from annotation_assets.core.balance import balance_dataset, class_quotas

COUNTS = {"a": 100, "b": 30, "c": 10}


def _labels(counts: dict[str, int]) -> pd.Series:
    rows = [(f"{label}{i}", label) for label, n in counts.items() for i in range(n)]
    return pd.Series([r[1] for r in rows], index=[r[0] for r in rows])


def test_none_keeps_every_class_whole() -> None:
    assert class_quotas(COUNTS, mode="none") == COUNTS


def test_downsample_caps_each_class_at_max_ratio_times_the_smallest() -> None:
    assert class_quotas(COUNTS, mode="downsample", max_ratio=2) == {"a": 20, "b": 20, "c": 10}


def test_downsample_with_ratio_one_gives_equal_classes() -> None:
    assert class_quotas(COUNTS, mode="downsample", max_ratio=1) == {"a": 10, "b": 10, "c": 10}


def test_stratified_takes_the_largest_sample_with_the_target_shares() -> None:
    # c limits the sample: 10 / 0.2 = 50 rows -> a 25, b 15, c 10
    quotas = class_quotas(COUNTS, mode="stratified", target={"a": 0.5, "b": 0.3, "c": 0.2})
    assert quotas == {"a": 25, "b": 15, "c": 10}


def test_stratified_without_target_is_uniform() -> None:
    assert class_quotas(COUNTS, mode="stratified") == {"a": 10, "b": 10, "c": 10}


def test_stratified_drops_classes_absent_from_the_target() -> None:
    quotas = class_quotas(COUNTS, mode="stratified", target={"a": 1, "b": 1})
    assert quotas == {"a": 30, "b": 30, "c": 0}


def test_unknown_mode_and_bad_ratio_are_refused() -> None:
    with pytest.raises(ValueError, match="balance mode"):
        class_quotas(COUNTS, mode="oversample")
    with pytest.raises(ValueError, match="max_ratio"):
        class_quotas(COUNTS, mode="downsample", max_ratio=0.5)


def test_balance_dataset_keeps_the_quota_of_each_class() -> None:
    kept = balance_dataset(_labels(COUNTS), mode="downsample", max_ratio=1.5)
    labels = _labels(COUNTS).loc[kept]
    assert labels.value_counts().to_dict() == {"a": 15, "b": 15, "c": 10}
    assert kept.is_unique


def test_balance_dataset_is_deterministic_and_stable_as_data_grows() -> None:
    small = balance_dataset(_labels({"a": 50, "b": 10}), mode="downsample", max_ratio=1, seed=3)
    again = balance_dataset(_labels({"a": 50, "b": 10}), mode="downsample", max_ratio=1, seed=3)
    assert list(small) == list(again)
    grown = balance_dataset(_labels({"a": 80, "b": 10}), mode="downsample", max_ratio=1, seed=3)
    old_rows = {f"a{i}" for i in range(50)}
    kept_before = {i for i in small if i.startswith("a")}
    kept_after = {i for i in grown if i.startswith("a")}
    # new rows can displace old ones, but an old row never replaces another old row
    assert kept_after & old_rows <= kept_before


def test_a_different_seed_picks_different_rows() -> None:
    one = set(balance_dataset(_labels(COUNTS), mode="downsample", max_ratio=1, seed=1))
    two = set(balance_dataset(_labels(COUNTS), mode="downsample", max_ratio=1, seed=2))
    assert one != two


def test_empty_input_gives_an_empty_selection() -> None:
    assert len(balance_dataset(pd.Series([], dtype=str), mode="stratified")) == 0
