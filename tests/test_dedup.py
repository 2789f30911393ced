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
