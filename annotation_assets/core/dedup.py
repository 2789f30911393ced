"""Near-duplicate detection with MinHash signatures and LSH banding.

A text's shingles are the character 5-grams of its casefolded, space-collapsed normalized form
(a text of 1-4 characters is a single shingle; an empty text has none and never matches). Each
shingle is hashed with ``zlib.crc32`` of its UTF-32-LE bytes, and each of ``NUM_PERM`` universal
hashes ``(a*x + b) mod (2**61 - 1)``, truncated to the low 32 bits, keeps its minimum over the
shingles. ``a`` and ``b`` derive from blake2b of the seed, so signatures are identical in every
process and NumPy version and can be stored (DuckDB ``UINTEGER[]``) and compared later.

The fraction of equal signature positions estimates the Jaccard similarity of the two 5-gram
sets. ``DEFAULT_THRESHOLD = 0.8`` means "at most about one shingle in nine differs": changing a
word or some punctuation in a review of 20 words or more rewrites 5-9 of its 100+ shingles
(similarity about 0.85-0.95) and counts as a duplicate, while changing "item 10" to "item 17"
mid-text in a 24-character text rewrites 5 of its 20 shingles (similarity 0.6) and does not.
With 64 permutations the estimate has a standard error of about 0.05 near the threshold, so
pairs whose true similarity is within about 0.05 of it can fall either way. An edit in the last
four characters of a text touches fewer than five shingles, so it weighs less than the same
edit mid-text.

LSH splits a signature into ``BANDS`` bands of 4 rows; records that agree on a whole band are
candidates. A pair with similarity 0.8 shares a band with probability 0.9998, one with 0.5 with
probability 0.64, one with 0.3 with probability 0.12; every candidate is then verified against
the threshold on the full signature.

Each band key remembers at most ``BUCKET_CAP`` kept records (the earliest) of the drop, and
as many of the other drops' kept records (the earliest). A band key that hundreds of records
share is common phrasing, not evidence of a duplicate, and comparing every later record with
all of them made the search grow faster than the drops (within a drop of 1M generated reviews:
112 s without a cap, 68 s with a cap of 64, and the same duplicates were found with caps of 64,
32 and 16 at 300k; across drops, 200k reviews against 200k gave 36M candidate pairs, 41 s and a
2.8 GB peak without a cap). A pair at similarity 0.8 or more differs in at most 12 of the 64
positions, so it shares at least 4 whole bands (6.6 on average); it is missed only if every
band it shares is held by more than ``BUCKET_CAP`` kept records, and then a less similar kept
record above the threshold may be named instead of the most similar one.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from annotation_assets.core.arrays import equal_key_pairs, ramps

__all__ = [
    "BANDS",
    "DEFAULT_THRESHOLD",
    "EMPTY_HASH",
    "NUM_PERM",
    "SHINGLE_SIZE",
    "minhash_signatures",
    "near_duplicate_pairs",
]

NUM_PERM = 64
BANDS = 16
# kept records remembered per band key, of the drop and of the other drops (module docstring)
BUCKET_CAP = 32
DEFAULT_THRESHOLD = 0.8
SHINGLE_SIZE = 5
EMPTY_HASH = 0xFFFFFFFF

_MERSENNE_61 = (1 << 61) - 1
_LOW_29 = (1 << 29) - 1
_BAND_MIX = np.uint64(0x9E3779B97F4A7C15)
_SHINGLES_PER_CHUNK = 1 << 15
_PERMUTE_BLOCK = 1 << 13
_PAIRS_PER_CHUNK = 1 << 16
_NEW_ROWS_PER_BLOCK = 1 << 16  # new records searched at once against a band's old keys

Signatures = npt.NDArray[np.uint32]


def _crc_position_tables() -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32], int]:
    """Return CRC-32 contributions per window position for UTF-32-LE 5-grams (CRC is affine)."""
    width = 4 * SHINGLE_SIZE
    zero_crc = zlib.crc32(bytes(width))
    byte_tables = np.zeros((width, 256), dtype=np.uint32)
    for position in range(width):
        message = bytearray(width)
        for value in range(1, 256):
            message[position] = value
            byte_tables[position, value] = zlib.crc32(message) ^ zero_crc
    low = np.arange(1 << 16, dtype=np.uint32)
    low16 = np.stack(
        [
            byte_tables[4 * j][low & 0xFF] ^ byte_tables[4 * j + 1][low >> 8]
            for j in range(SHINGLE_SIZE)
        ]
    )
    plane = np.ascontiguousarray(byte_tables[2::4])
    return low16, plane, zero_crc


_CRC_LOW16, _CRC_PLANE, _CRC_ZERO = _crc_position_tables()


def _permutation_params(num_perm: int, seed: int) -> tuple[list[int], list[int]]:
    """Return the fixed universal-hash coefficients ``a`` (in [1, p)) and ``b`` (in [0, p))."""
    coefficients = []
    for i in range(num_perm):
        digest = hashlib.blake2b(f"minhash:{seed}:{i}".encode(), digest_size=16).digest()
        coefficients.append(
            (
                int.from_bytes(digest[:8], "little") % (_MERSENNE_61 - 1) + 1,
                int.from_bytes(digest[8:], "little") % _MERSENNE_61,
            )
        )
    return [a for a, _ in coefficients], [b for _, b in coefficients]


def _window_hashes(codepoints: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """Return ``zlib.crc32`` of the UTF-32-LE bytes of every 5-character window."""
    count = codepoints.size - SHINGLE_SIZE + 1
    low = (codepoints & 0xFFFF).astype(np.intp)
    hashes = np.full(count, _CRC_ZERO, dtype=np.uint32)
    for j in range(SHINGLE_SIZE):
        hashes ^= _CRC_LOW16[j][low[j : j + count]]
    high = codepoints >> 16
    if high.any():
        for j in range(SHINGLE_SIZE):
            hashes ^= _CRC_PLANE[j][high[j : j + count]]
    return hashes


class _Permuter:
    """Universal hashes ``((a*x + b) mod (2**61 - 1)) & 0xFFFFFFFF`` with reusable buffers."""

    def __init__(self, num_perm: int, seed: int) -> None:
        a, b = _permutation_params(num_perm, seed)
        a_arr = np.array(a, dtype=np.uint64)[:, None]
        self.a_hi = a_arr >> 29
        self.a_lo = a_arr & _LOW_29
        self.b = np.array(b, dtype=np.uint64)[:, None]
        self.num_perm = num_perm
        self._buffers = [np.empty((num_perm, _PERMUTE_BLOCK), dtype=np.uint64) for _ in range(3)]

    def _block_into(self, x: npt.NDArray[np.uint64], out: npt.NDArray[np.uint32]) -> None:
        """Write the hashes of ``x`` (values < 2**32) into ``out`` (num_perm, len(x))."""
        w, u, t = (buffer[:, : x.size] for buffer in self._buffers)
        row = x[None, :]
        np.multiply(self.a_hi, row, out=w)
        np.multiply(self.a_lo, row, out=u)
        np.right_shift(w, 32, out=t)
        np.left_shift(w, 32, out=w)
        np.right_shift(w, 3, out=w)
        t += w
        t += u
        t += self.b
        np.right_shift(t, 61, out=u)
        u += t
        u += 1
        np.right_shift(u, 61, out=u)
        t += u
        out[...] = t

    def min_signatures(
        self, shingles: npt.NDArray[np.uint64], starts: npt.NDArray[np.intp]
    ) -> Signatures:
        """Return (len(starts), num_perm) minima over shingle segments beginning at ``starts``."""
        permuted = np.empty((self.num_perm, shingles.size), dtype=np.uint32)
        for begin in range(0, shingles.size, _PERMUTE_BLOCK):
            end = begin + _PERMUTE_BLOCK
            self._block_into(shingles[begin:end], permuted[:, begin:end])
        return np.minimum.reduceat(permuted, starts, axis=1).T


def minhash_signatures(
    texts: Sequence[str], *, num_perm: int = NUM_PERM, seed: int = 1
) -> Signatures:
    """Return the (len(texts), num_perm) uint32 MinHash signatures of normalized texts."""
    prepared = [" ".join(text.casefold().split()) for text in texts]
    lengths = np.fromiter(map(len, prepared), dtype=np.intp, count=len(prepared))
    out = np.full((len(prepared), num_perm), EMPTY_HASH, dtype=np.uint32)
    permuter = _Permuter(num_perm, seed)

    short = np.flatnonzero((lengths > 0) & (lengths < SHINGLE_SIZE))
    if short.size:
        whole = np.fromiter(
            (zlib.crc32(prepared[i].encode("utf-32-le", "surrogatepass")) for i in short),
            dtype=np.uint64,
            count=short.size,
        )
        out[short] = permuter.min_signatures(whole, np.arange(short.size, dtype=np.intp))

    long = np.flatnonzero(lengths >= SHINGLE_SIZE)
    counts = lengths[long] - (SHINGLE_SIZE - 1)
    bounds = np.searchsorted(
        np.cumsum(counts), np.arange(_SHINGLES_PER_CHUNK, counts.sum(), _SHINGLES_PER_CHUNK)
    )
    for chunk in np.split(np.arange(long.size), np.unique(bounds)):
        if not chunk.size:
            continue
        rows = long[chunk]
        joined = "".join([prepared[i] for i in rows]).encode("utf-32-le", "surrogatepass")
        hashes = _window_hashes(np.frombuffer(joined, dtype="<u4"))
        chunk_lengths = lengths[rows]
        ends = np.cumsum(chunk_lengths)
        keep = np.ones(hashes.size, dtype=bool)
        crossing = (ends[:-1, None] - np.arange(1, SHINGLE_SIZE)).ravel()
        keep[crossing] = False
        starts = np.concatenate(([0], np.cumsum(counts[chunk])[:-1]))
        out[rows] = permuter.min_signatures(hashes[keep].astype(np.uint64), starts)
    return out


def _band_keys(sigs: Signatures, band: int, rows: int) -> npt.NDArray[np.uint64]:
    """Return one uint64 bucket key per signature for ``band`` (equal bands give equal keys)."""
    columns = sigs[:, band * rows : (band + 1) * rows]
    keys = columns[:, 0].astype(np.uint64)
    for r in range(1, rows):
        keys *= _BAND_MIX
        keys ^= columns[:, r]
    return keys


def _equal_counts(left: Signatures, right: Signatures) -> npt.NDArray[np.intp]:
    """Return the number of equal positions of each row pair."""
    return np.asarray(np.count_nonzero(left == right, axis=1), dtype=np.intp)


def _best_old_matches(
    new_sigs: Signatures,
    new_rows: npt.NDArray[np.intp],
    old_sigs: Signatures,
    old_rows: npt.NDArray[np.intp],
    *,
    bands: int,
    min_equal: int,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Return, per new record, the best old match index (-1 if none) and its equal count:
    the most equal positions, then the earliest old record, among the old records each band
    key remembers (its earliest BUCKET_CAP; see the module docstring).

    Bands are searched one at a time and new records in blocks, each block's verified matches
    folded into the running best, so memory stays proportional to the records, not to the
    candidate pairs."""
    best = np.full(new_sigs.shape[0], -1, dtype=np.intp)
    best_equal = np.zeros(new_sigs.shape[0], dtype=np.intp)
    if not new_rows.size or not old_rows.size:
        return best, best_equal
    rows = new_sigs.shape[1] // bands
    for band in range(bands):
        old_keys = _band_keys(old_sigs, band, rows)[old_rows]
        order = np.argsort(old_keys, kind="stable")  # old_rows ascend: earliest first per key
        sorted_keys = old_keys[order]
        run_starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        remembered = ramps(np.diff(np.r_[run_starts, sorted_keys.size])) < BUCKET_CAP
        sorted_keys, holders = sorted_keys[remembered], old_rows[order[remembered]]
        new_keys = _band_keys(new_sigs, band, rows)[new_rows]
        for lo in range(0, new_rows.size, _NEW_ROWS_PER_BLOCK):
            which, positions = equal_key_pairs(sorted_keys, new_keys[lo : lo + _NEW_ROWS_PER_BLOCK])
            if not which.size:
                continue
            new_idx, old_idx = new_rows[lo + which], holders[positions]
            equal = np.concatenate(
                [
                    _equal_counts(
                        new_sigs[new_idx[i : i + _PAIRS_PER_CHUNK]],
                        old_sigs[old_idx[i : i + _PAIRS_PER_CHUNK]],
                    )
                    for i in range(0, new_idx.size, _PAIRS_PER_CHUNK)
                ]
            )
            passing = equal >= min_equal
            _fold_best(best, best_equal, new_idx[passing], old_idx[passing], equal[passing])
    return best, best_equal


def _fold_best(
    best: npt.NDArray[np.intp],
    best_equal: npt.NDArray[np.intp],
    new_idx: npt.NDArray[np.intp],
    old_idx: npt.NDArray[np.intp],
    equal: npt.NDArray[np.intp],
) -> None:
    """Updates `best` and `best_equal` in place with the matches (new_idx[i], old_idx[i])
    that beat them: more equal positions, or as many from an earlier old record."""
    if not new_idx.size:
        return
    order = np.lexsort((old_idx, -equal, new_idx))
    new_idx, old_idx, equal = new_idx[order], old_idx[order], equal[order]
    first = np.r_[True, new_idx[1:] != new_idx[:-1]]
    new_idx, old_idx, equal = new_idx[first], old_idx[first], equal[first]
    held, held_equal = best[new_idx], best_equal[new_idx]
    better = (equal > held_equal) | ((equal == held_equal) & ((held < 0) | (old_idx < held)))
    best[new_idx[better]] = old_idx[better]
    best_equal[new_idx[better]] = equal[better]


def _non_empty_rows(sigs: Signatures) -> npt.NDArray[np.intp]:
    """Return the indices of rows that are not the empty-text signature."""
    return np.flatnonzero((sigs != EMPTY_HASH).any(axis=1))


def _checked_signatures(sigs: npt.ArrayLike, keys: Sequence[str], name: str) -> Signatures:
    arr = np.asarray(sigs, dtype=np.uint32)
    if arr.ndim != 2 or arr.shape[0] != len(keys):
        raise ValueError(f"{name} must have shape ({len(keys)}, num_perm), got {arr.shape}")
    return arr


def _shared_band_groups(
    sigs: Signatures, rows_in: npt.NDArray[np.intp], *, bands: int, rows: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """Numbers every band key that two or more of `rows_in` share (one number per band and
    key). Returns an (n, bands) matrix of those numbers (-1 where the record's key is its own:
    it can never pair the record with another) and, per number, the slots its bucket needs
    (its holders, at most BUCKET_CAP). Memory stays proportional to the records, not to the
    keys: no per-key Python objects."""
    groups = np.full((sigs.shape[0], bands), -1, dtype=np.int32)
    slots = []
    n_groups = 0
    for band in range(bands):
        _, inverse, counts = np.unique(
            _band_keys(sigs, band, rows)[rows_in], return_inverse=True, return_counts=True
        )
        shared = np.flatnonzero(counts > 1)
        number = np.full(len(counts), -1, dtype=np.int64)
        number[shared] = np.arange(n_groups, n_groups + len(shared))
        groups[rows_in, band] = number[inverse.reshape(-1)]
        slots.append(np.minimum(counts[shared], BUCKET_CAP))
        n_groups += len(shared)
    return groups, np.concatenate(slots).astype(np.int64)


def near_duplicate_pairs(
    new_keys: Sequence[str],
    new_sigs: np.ndarray,
    old_keys: Sequence[str],
    old_sigs: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    bands: int = BANDS,
) -> list[tuple[str, str, float]]:
    """Return ``(new_key, kept_key, similarity)`` for each new record that is a near-duplicate.

    The kept record is an old record or an earlier new record that was not itself a duplicate;
    the most similar candidate wins (among the kept records each band key remembers, see
    BUCKET_CAP), old records first on ties, then the earliest record.
    """
    new = _checked_signatures(new_sigs, new_keys, "new_sigs")
    old = _checked_signatures(old_sigs, old_keys, "old_sigs")
    num_perm = new.shape[1]
    if old.shape[0] and old.shape[1] != num_perm:
        raise ValueError(f"old_sigs have {old.shape[1]} positions, new_sigs {num_perm}")
    if bands <= 0 or num_perm % bands:
        raise ValueError(f"bands={bands} must divide num_perm={num_perm}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    min_equal = next(k for k in range(num_perm + 1) if k / num_perm >= threshold)
    rows = num_perm // bands

    new_rows = _non_empty_rows(new)
    best_old, best_old_equal = _best_old_matches(
        new, new_rows, old, _non_empty_rows(old), bands=bands, min_equal=min_equal
    )
    groups, slots = _shared_band_groups(new, new_rows, bands=bands, rows=rows)
    # group g's kept records (at most BUCKET_CAP, earliest first) fill
    # holders[start[g] : start[g] + fill[g]]
    start = np.concatenate([[0], np.cumsum(slots)[:-1]]).astype(np.int64)
    fill = np.zeros(len(slots), dtype=np.int64)
    holders = np.empty(int(slots.sum()), dtype=np.int64)
    pairs: list[tuple[str, str, float]] = []
    for i in new_rows.tolist():
        old_equal = int(best_old_equal[i])
        in_groups = groups[i][groups[i] >= 0].tolist()
        if not in_groups:
            if best_old[i] >= 0:
                pairs.append((new_keys[i], old_keys[best_old[i]], old_equal / num_perm))
            continue
        new_match, new_equal = -1, 0
        if old_equal < num_perm:
            found = [holders[start[g] : start[g] + fill[g]] for g in in_groups if fill[g]]
            if found:
                candidates = np.unique(np.concatenate(found))
                equal = np.count_nonzero(new[candidates] == new[i], axis=1)
                top = int(np.argmax(equal))
                if equal[top] >= min_equal:
                    new_match, new_equal = int(candidates[top]), int(equal[top])
        if new_match >= 0 and new_equal > old_equal:
            pairs.append((new_keys[i], new_keys[new_match], new_equal / num_perm))
        elif best_old[i] >= 0:
            pairs.append((new_keys[i], old_keys[best_old[i]], old_equal / num_perm))
        else:
            for g in in_groups:
                if fill[g] < slots[g]:
                    holders[start[g] + fill[g]] = i
                    fill[g] += 1
    return pairs
