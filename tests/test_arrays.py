"""The shared vectorized helpers against plain Python loops."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from annotation_assets.core.arrays import (
    equal_key_pair_parts,
    equal_key_pairs,
    find_sorted,
    ramps,
)

small_ints = st.lists(st.integers(min_value=-5, max_value=5), max_size=30)


@given(st.lists(st.integers(min_value=0, max_value=6), max_size=20))
@settings(max_examples=200, deadline=None)
def test_ramps_count_up_within_each_size(sizes: list[int]) -> None:
    expected = [i for size in sizes for i in range(size)]
    got = ramps(np.array(sizes, dtype=np.int64))
    assert got.dtype == np.int64
    assert got.tolist() == expected


def test_ramps_of_nothing_is_empty() -> None:
    assert ramps(np.zeros(0, dtype=np.int64)).tolist() == []


@given(small_ints.filter(bool), small_ints)
@settings(max_examples=200, deadline=None)
def test_find_sorted_finds_exactly_the_present_values(keys: list[int], wanted: list[int]) -> None:
    sorted_keys = np.array(sorted(set(keys)), dtype=np.int64)
    found, at = find_sorted(sorted_keys, np.array(wanted, dtype=np.int64))
    assert found.tolist() == [w in set(keys) for w in wanted]
    assert ((at >= 0) & (at < len(sorted_keys))).all()
    assert [int(sorted_keys[i]) for i in at[found]] == [w for w in wanted if w in set(keys)]


@given(small_ints, small_ints)
@settings(max_examples=200, deadline=None)
def test_equal_key_pairs_is_the_equi_join(keys: list[int], wanted: list[int]) -> None:
    sorted_keys = np.array(sorted(keys), dtype=np.int64)
    i, j = equal_key_pairs(sorted_keys, np.array(wanted, dtype=np.int64))
    expected = [
        (a, b) for a, w in enumerate(wanted) for b, k in enumerate(sorted_keys.tolist()) if w == k
    ]
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == expected


@given(small_ints, small_ints, st.integers(1, 12))
@settings(max_examples=200, deadline=None)
def test_equal_key_pair_parts_cut_the_join_in_order(
    keys: list[int], wanted: list[int], most: int
) -> None:
    sorted_keys = np.array(sorted(keys), dtype=np.int64)
    asked = np.array(wanted, dtype=np.int64)
    parts = list(equal_key_pair_parts(sorted_keys, asked, most))
    i, j = equal_key_pairs(sorted_keys, asked)
    assert all(p[0].size for p in parts)
    joined = [(a, b) for p in parts for a, b in zip(p[0].tolist(), p[1].tolist(), strict=True)]
    assert joined == list(zip(i.tolist(), j.tolist(), strict=True))
    for which, _ in parts:  # over `most` only when one wanted value has that many on its own
        assert which.size <= most or len(set(which.tolist())) == 1
