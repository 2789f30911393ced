from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from annotation_assets.core import dedup
from annotation_assets.core.dedup import (
    BANDS,
    DEFAULT_THRESHOLD,
    NUM_PERM,
    minhash_signatures,
    near_duplicate_pairs,
)

REVIEW = (
    "Bought this kettle for the office, it boils water fast, the lid seals well "
    "and the handle always stays cool."
)
UNRELATED = (
    "Terrible customer service, the package arrived crushed and nobody answered my emails "
    "for weeks after I asked."
)
FOX_SIGNATURE_HEAD = [129265629, 117034067, 50567909, 50746655, 307662839, 79043451]


def _reference_signature(text: str, *, num_perm: int = NUM_PERM, seed: int = 1) -> list[int]:
    """MinHash straight from the definition, with Python ints."""
    prime = (1 << 61) - 1
    folded = " ".join(text.casefold().split())
    if not folded:
        return [0xFFFFFFFF] * num_perm
    shingles = [folded] if len(folded) < 5 else [folded[i : i + 5] for i in range(len(folded) - 4)]
    hashes = [zlib.crc32(s.encode("utf-32-le", "surrogatepass")) for s in shingles]
    a, b = dedup._permutation_params(num_perm, seed)
    return [
        min(((ai * x + bi) % prime) & 0xFFFFFFFF for x in hashes)
        for ai, bi in zip(a, b, strict=True)
    ]


def _pairs(
    new: list[str], old: list[str], *, threshold: float = DEFAULT_THRESHOLD
) -> list[tuple[str, str, float]]:
    new_keys = [f"new{i}" for i in range(len(new))]
    old_keys = [f"old{i}" for i in range(len(old))]
    return near_duplicate_pairs(
        new_keys, minhash_signatures(new), old_keys, minhash_signatures(old), threshold=threshold
    )


def _edited(sig: np.ndarray, positions: range, value_offset: int) -> np.ndarray:
    out = sig.copy()
    out[list(positions)] += np.uint32(value_offset)
    return out


def test_constants() -> None:
    assert (NUM_PERM, BANDS, DEFAULT_THRESHOLD) == (64, 16, 0.8)


def test_signatures_have_expected_shape_and_dtype() -> None:
    sigs = minhash_signatures(["a", "", REVIEW])
    assert sigs.shape == (3, NUM_PERM)
    assert sigs.dtype == np.uint32


def test_signature_is_hard_coded_stable() -> None:
    text = "the quick brown fox jumps over the lazy dog"
    first = minhash_signatures([text])[0]
    assert first[:6].tolist() == FOX_SIGNATURE_HEAD
    assert np.array_equal(minhash_signatures([text])[0], first)


def test_signatures_match_reference_definition() -> None:
    texts = ["", "ab", "abcd", "abcde", REVIEW, "Émoji 😀 and ß ok", "x\ud800y lone surrogate"]
    expected = [_reference_signature(t) for t in texts]
    assert minhash_signatures(texts).tolist() == expected


def test_shingle_hashes_are_zlib_crc32_of_utf32_windows() -> None:
    text = "héllo 😀 wörld"
    codepoints = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    expected = [zlib.crc32(text[i : i + 5].encode("utf-32-le")) for i in range(len(text) - 4)]
    assert dedup._window_hashes(codepoints).tolist() == expected


def test_signatures_ignore_case_and_whitespace_runs() -> None:
    sigs = minhash_signatures(["Great  Kettle", "great kettle"])
    assert np.array_equal(sigs[0], sigs[1])


def test_empty_text_signature_is_all_max() -> None:
    assert (minhash_signatures([""]) == 0xFFFFFFFF).all()


def test_signature_does_not_depend_on_batch_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [REVIEW, UNRELATED, "abc", "", REVIEW[:40]] * 5
    expected = minhash_signatures(texts)
    monkeypatch.setattr(dedup, "_SHINGLES_PER_CHUNK", 50)
    monkeypatch.setattr(dedup, "_PERMUTE_BLOCK", 7)
    assert np.array_equal(minhash_signatures(texts), expected)


def test_identical_texts_pair_with_similarity_one() -> None:
    assert _pairs([REVIEW], [REVIEW]) == [("new0", "old0", 1.0)]


def test_one_word_edit_of_twenty_word_review_is_detected() -> None:
    assert len(REVIEW.split()) == 20
    pairs = _pairs([REVIEW.replace("fast", "quickly")], [REVIEW])
    assert [(new, old) for new, old, _ in pairs] == [("new0", "old0")]
    assert DEFAULT_THRESHOLD <= pairs[0][2] < 1.0


def test_punctuation_change_is_detected() -> None:
    edited = REVIEW.replace(",", "", 1)[:-1] + "!"
    assert [p[:2] for p in _pairs([edited], [REVIEW])] == [("new0", "old0")]


def test_unrelated_texts_are_not_paired() -> None:
    assert _pairs([UNRELATED], [REVIEW]) == []


def test_item_number_change_in_short_text_is_not_a_duplicate() -> None:
    assert _pairs(["Blue mug (item 17) 12 oz"], ["Blue mug (item 10) 12 oz"]) == []


def test_second_occurrence_in_batch_points_to_first() -> None:
    assert _pairs([REVIEW, UNRELATED, REVIEW], []) == [("new2", "new0", 1.0)]


def test_duplicate_of_a_duplicate_points_to_the_kept_record() -> None:
    pairs = _pairs([REVIEW, REVIEW, REVIEW], [])
    assert [p[:2] for p in pairs] == [("new1", "new0"), ("new2", "new0")]


def test_old_record_preferred_over_equally_similar_new_record() -> None:
    base = minhash_signatures([REVIEW])[0]
    kept_new = _edited(base, range(0, 20), 1)
    candidate = base.copy()
    candidate[:10] = kept_new[:10]
    pairs = near_duplicate_pairs(
        ["kept", "candidate"], np.stack([kept_new, candidate]), ["old"], base[None, :]
    )
    assert pairs == [("candidate", "old", 54 / 64)]


def test_more_similar_new_record_beats_old_record() -> None:
    base = minhash_signatures([REVIEW])[0]
    kept_new = _edited(base, range(0, 20), 1)
    candidate = _edited(kept_new, range(60, 64), 1)
    candidate[19] = base[19]
    pairs = near_duplicate_pairs(
        ["kept", "candidate"], np.stack([kept_new, candidate]), ["old"], base[None, :]
    )
    assert pairs == [("candidate", "kept", 59 / 64)]


def test_old_duplicates_are_not_used_as_kept_new_records() -> None:
    pairs = _pairs([REVIEW, REVIEW], [REVIEW])
    assert [p[:2] for p in pairs] == [("new0", "old0"), ("new1", "old0")]


def test_empty_texts_never_match() -> None:
    assert _pairs(["", "  ", ""], ["", ""]) == []


def test_no_old_records_and_no_new_records() -> None:
    assert _pairs([], [REVIEW]) == []
    empty = np.empty((0, NUM_PERM), dtype=np.uint32)
    assert near_duplicate_pairs(["a"], minhash_signatures([REVIEW]), [], empty) == []


def test_threshold_one_requires_identical_signatures() -> None:
    assert _pairs([REVIEW.replace("fast", "quickly")], [REVIEW], threshold=1.0) == []


def test_bands_must_divide_num_perm() -> None:
    sigs = minhash_signatures([REVIEW])
    with pytest.raises(ValueError):
        near_duplicate_pairs(["a"], sigs, ["b"], sigs, bands=5)


@given(st.text(max_size=300))
def test_minhash_of_a_text_equals_itself(text: str) -> None:
    sigs = minhash_signatures([text, "filler text between", text])
    assert np.array_equal(sigs[0], sigs[2])
    assert np.array_equal(minhash_signatures([text])[0], sigs[0])


@given(st.lists(st.text(max_size=12), max_size=8))
def test_minhash_matches_reference_for_arbitrary_text(texts: list[str]) -> None:
    assert minhash_signatures(texts).tolist() == [_reference_signature(t) for t in texts]


def test_no_texts_give_empty_signature_array() -> None:
    assert minhash_signatures([]).shape == (0, NUM_PERM)


def test_a_crowded_band_key_still_finds_duplicates_through_the_other_bands() -> None:
    """More than BUCKET_CAP kept records share band 0 (common phrasing); a near duplicate of
    one remembered past the cap is found through the bands they alone share."""
    rng = np.random.default_rng(7)
    n_kept = dedup.BUCKET_CAP * 3
    kept = rng.integers(0, 2**31, size=(n_kept, NUM_PERM), dtype=np.uint32)
    kept[:, :4] = kept[0, :4]  # one band key shared by every kept record
    target = n_kept - 5
    copy = kept[target].copy()
    copy[8:14] += 1  # 58 of 64 positions equal: similarity 0.906
    sigs = np.vstack([kept, copy[None, :]])
    keys = [f"r{i}" for i in range(len(sigs))]
    empty = np.empty((0, NUM_PERM), dtype=np.uint32)
    pairs = near_duplicate_pairs(keys, sigs, [], empty)
    assert pairs == [(f"r{n_kept}", f"r{target}", 58 / 64)]


def _brute_best_old(new: np.ndarray, old: np.ndarray, min_equal: int) -> tuple[list, list]:
    """Per new row: the old row with the most equal positions (at least min_equal), the
    earliest on ties; -1 and 0 where none."""
    best, best_equal = [], []
    for row in new:
        equal = (old == row).sum(axis=1)
        top = int(np.argmax(equal)) if len(equal) else -1
        ok = top >= 0 and equal[top] >= min_equal and (row != dedup.EMPTY_HASH).any()
        best.append(top if ok else -1)
        best_equal.append(int(equal[top]) if ok else 0)
    return best, best_equal


def _planted(rng: np.random.Generator, n_old: int, n_new: int) -> tuple[np.ndarray, np.ndarray]:
    """Random signatures; some new rows are copies of old ones with 0-14 positions changed
    (similarity 0.78-1.0), some old rows repeat, so ties and near misses occur."""
    old = rng.integers(0, 2**32, size=(n_old, NUM_PERM), dtype=np.uint32)
    old[n_old // 2 :: 7] = old[1 : 1 + len(old[n_old // 2 :: 7])]  # equal old rows: ties
    new = rng.integers(0, 2**32, size=(n_new, NUM_PERM), dtype=np.uint32)
    for i in range(0, n_new, 2):
        new[i] = old[rng.integers(n_old)]
        changed = rng.choice(NUM_PERM, size=int(rng.integers(0, 15)), replace=False)
        new[i, changed] ^= np.uint32(1 + i)
    new[3] = dedup.EMPTY_HASH  # an empty text matches nothing
    return new, old


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_old_matches_equal_an_all_pairs_search(seed: int) -> None:
    new, old = _planted(np.random.default_rng(seed), 300, 200)
    min_equal = 52
    best, best_equal = dedup._best_old_matches(
        new,
        dedup._non_empty_rows(new),
        old,
        dedup._non_empty_rows(old),
        bands=BANDS,
        min_equal=min_equal,
    )
    want_best, want_equal = _brute_best_old(new, old, min_equal)
    assert best.tolist() == want_best
    assert best_equal.tolist() == want_equal
    assert sum(b >= 0 for b in want_best) > 50  # the planted copies above the threshold


def test_best_old_matches_do_not_depend_on_block_and_chunk_sizes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    new, old = _planted(np.random.default_rng(5), 250, 180)
    args = (new, dedup._non_empty_rows(new), old, dedup._non_empty_rows(old))
    whole = dedup._best_old_matches(*args, bands=BANDS, min_equal=52)
    monkeypatch.setattr(dedup, "_NEW_ROWS_PER_BLOCK", 7)
    monkeypatch.setattr(dedup, "_PAIRS_PER_CHUNK", 5)
    small = dedup._best_old_matches(*args, bands=BANDS, min_equal=52)
    assert [a.tolist() for a in whole] == [a.tolist() for a in small]


def test_a_band_key_crowded_across_drops_is_searched_at_most_bucket_cap_deep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every old and new record shares band 0 (common phrasing): each new record is compared
    with at most BUCKET_CAP old records through it, not with all of them, and a near duplicate
    of an old record remembered past the cap is still found through the other bands."""
    rng = np.random.default_rng(11)
    n = dedup.BUCKET_CAP * 10
    old = rng.integers(0, 2**31, size=(n, NUM_PERM), dtype=np.uint32)
    new = rng.integers(0, 2**31, size=(n, NUM_PERM), dtype=np.uint32)
    old[:, :4] = new[:, :4] = old[0, :4]
    target = n - 3
    new[0] = old[target]
    new[0, 8:14] += 1  # 58 of 64 positions equal
    compared = []
    real = dedup._equal_counts

    def counting(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        compared.append(len(left))
        return real(left, right)

    monkeypatch.setattr(dedup, "_equal_counts", counting)
    best, best_equal = dedup._best_old_matches(
        new, np.arange(n), old, np.arange(n), bands=BANDS, min_equal=52
    )
    assert best[0] == target and best_equal[0] == 58
    assert (best[1:] == -1).all()
    # band 0: BUCKET_CAP old records per new one; the other bands: the planted pair's
    assert sum(compared) <= n * dedup.BUCKET_CAP + BANDS
    assert sum(compared) < n * n // 4  # the uncapped search compared all n * n


def test_best_old_match_across_bands_prefers_more_equal_then_the_earliest() -> None:
    """The old records a new one matches are found in different bands, in an order that is not
    the answer's: the fold over bands must still keep the most similar, then the earliest."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**31, size=NUM_PERM, dtype=np.uint32)
    old = np.tile(base, (4, 1))
    old[0, 0:6] += 1  # shares bands 2-15 only: 58 equal, found after old[1]
    old[1, 58:64] += 1  # shares bands 0-13: 58 equal, found first
    old[2] = rng.integers(0, 2**31, size=NUM_PERM, dtype=np.uint32)  # unrelated
    new = np.vstack([base, base])
    new[1, 0:4] += 7  # breaks band 0 for new[1]: old[1] is found in band 1 first
    old[3, 0:8] += 1  # shares bands 2-15 with new[0]; 56 equal: less similar, never best
    best, best_equal = dedup._best_old_matches(
        new, np.arange(2), old, np.arange(4), bands=BANDS, min_equal=52
    )
    assert best.tolist() == [0, 0]
    assert best_equal.tolist() == [58, 58]
    swapped = old[[1, 0]]  # new[0]: still a tie, now won by the former old[1]
    best, best_equal = dedup._best_old_matches(
        new, np.arange(2), swapped, np.arange(2), bands=BANDS, min_equal=52
    )
    assert best.tolist() == [0, 1]  # new[1] shares 58 positions with old[0], 54 with old[1]
    assert best_equal.tolist() == [58, 58]
