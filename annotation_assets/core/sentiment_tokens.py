"""The byte side of set-wise VADER scoring (sentiment.py, steps 2 and 3): texts as one UTF-8
buffer, their tokens (the runs between ASCII whitespace bytes, as `str.split()` gives them)
with exact vocabulary ids, and the vocabulary rows the scoring rules read, cached across
chunks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from itertools import repeat

import numpy as np
import pandas as pd
import pyarrow as pa

from annotation_assets.core.arrays import ramps

_BYTE_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], dtype=np.uint64)


@dataclass(frozen=True)
class Vocab:
    """Per distinct raw token: what the scoring rules read."""

    upper: np.ndarray
    in_lex: np.ndarray
    lex: np.ndarray
    booster: np.ndarray
    is_booster: np.ndarray
    negator: np.ndarray
    word: np.ndarray


class VocabCache:
    """Vocabulary rows of the raw tokens met in earlier chunks, keyed by their exact UTF-8
    bytes, so that each distinct token is cleaned and looked up (Python, one call per token)
    once per scorer rather than once per chunk. Shared by the scoring threads; it stops
    growing at `limit` tokens, after which new tokens are looked up per chunk."""

    def __init__(self, build: Callable[[list[str]], Vocab], limit: int) -> None:
        self._build = build
        self._limit = limit
        self._ids: dict[bytes, int] = {}
        self._rows: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    def rows(self, keys: list[bytes]) -> Vocab:
        """The vocabulary rows of distinct raw tokens `keys`, in their order."""
        with self._lock:
            ids = self._ids
            at = np.fromiter(map(ids.get, keys, repeat(-1)), dtype=np.int64, count=len(keys))
            missing = np.flatnonzero(at < 0)
            new = self._build([keys[i].decode("utf-8", "surrogatepass") for i in missing.tolist()])
            known = np.flatnonzero(at >= 0)
            columns = {}
            for f in fields(Vocab):
                fresh = getattr(new, f.name)
                column = np.empty(len(keys), dtype=fresh.dtype)
                if len(known):
                    column[known] = self._rows[f.name][at[known]]
                column[missing] = fresh
                columns[f.name] = column
            self._remember([keys[i] for i in missing.tolist()], new)
        return Vocab(**columns)

    def _remember(self, keys: list[bytes], new: Vocab) -> None:
        """Store the rows of new tokens while the cache has room (under the lock)."""
        size = len(self._ids)
        take = min(len(keys), self._limit - size)
        if take <= 0:
            return
        for f in fields(Vocab):
            fresh = getattr(new, f.name)[:take]
            stored = self._rows.get(f.name)
            if stored is None or len(stored) < size + take:
                grown = np.empty(min(max(2 * (size + take), 4096), self._limit), fresh.dtype)
                if stored is not None:
                    grown[:size] = stored[:size]
                self._rows[f.name] = stored = grown
            stored[size : size + take] = fresh
        self._ids.update(zip(keys[:take], range(size, size + take), strict=True))


@dataclass(frozen=True)
class Tokens:
    """The tokens of a chunk of records, flat, in record order."""

    vcode: np.ndarray  # vocabulary id per token
    word: np.ndarray  # phrase-word id per token (0: not a phrase word)
    rec: np.ndarray  # record per token
    pos: np.ndarray  # position in its record
    first: np.ndarray  # index of each record's first token
    counts: np.ndarray  # tokens per record
    byte_start: np.ndarray  # offset of each record in the chunk's UTF-8 buffer

    def window(self, at: np.ndarray, offset: int, n: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """For tokens `at`: whether the n tokens from `offset` away lie in the same record,
        and the flat index of the first of them (clipped to the array where they do not)."""
        pos = self.pos[at] + offset
        ok = (pos >= 0) & (pos + n <= self.counts[self.rec[at]])
        return ok, np.clip(at + offset, 0, max(len(self.vcode) - 1, 0))


def arrow_utf8(texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An Arrow string array's UTF-8 bytes (uint8, read in place), the offsets of each text's
    bytes (n + 1, int64) and whether each text is present (non-null and non-empty)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.chunk(0) if texts.num_chunks == 1 else texts.combine_chunks()
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        if not pa.types.is_string_view(texts.type):
            raise TypeError(f"texts must be strings, got an Arrow array of {texts.type}")
        texts = texts.cast(pa.large_string())
    _, offset_buffer, data_buffer = texts.buffers()
    n = len(texts)
    width = np.int32 if pa.types.is_string(texts.type) else np.int64
    offsets = (
        np.frombuffer(offset_buffer, dtype=width)[texts.offset : texts.offset + n + 1]
        if offset_buffer is not None
        else np.zeros(n + 1)
    ).astype(np.int64)
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8)
        if data_buffer is not None
        else np.zeros(0, dtype=np.uint8)
    )
    present = np.diff(offsets) > 0
    if texts.null_count:
        present &= texts.is_valid().to_numpy(zero_copy_only=False)
    return data, offsets, present


def encode_texts(texts: list[str]) -> tuple[bytes, np.ndarray]:
    """The texts' UTF-8 bytes back to back (lone surrogates kept, as the package keeps them)
    and each one's length in bytes."""
    sizes = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    for i in [i for i, t in enumerate(texts) if not t.isascii()]:
        sizes[i] = len(texts[i].encode("utf-8", "surrogatepass"))
    return "".join(texts).encode("utf-8", "surrogatepass"), sizes


def gather(data: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The bytes of texts `rows` (ascending) back to back, and each one's length."""
    starts = offsets[rows]
    lens = offsets[rows + 1] - starts
    if len(rows) == 0:
        return b"", lens
    if rows[-1] - rows[0] == len(rows) - 1:  # consecutive rows: one slice
        return data[starts[0] : starts[0] + int(lens.sum())].tobytes(), lens
    return data[np.repeat(starts, lens) + ramps(lens)].tobytes(), lens


def factorize_tokens(
    big: bytes, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, list[bytes]]:
    """A vocabulary id per token, equal exactly for equal tokens, and the vocabulary (each
    distinct token's UTF-8 bytes).

    Tokens are keyed by their bytes read as little-endian 64-bit words (zero past the end) and
    their length; longer tokens fold in one word per 8 bytes, so the ids are exact."""
    n_tok = len(starts)
    if n_tok == 0:
        return np.zeros(0, dtype=np.int64), []
    padded = np.frombuffer(big + bytes(16), dtype=np.uint8)
    words = np.ndarray((len(big) + 8,), dtype="<u8", buffer=padded.data, strides=(1,))
    length = ends - starts
    code = pd.factorize(words[starts] & _BYTE_MASKS[np.minimum(length, 8)])[0].astype(np.int64)
    step = 8
    longer = np.flatnonzero(length > step)
    while len(longer):
        rest = np.minimum(length[longer] - step, 8)
        word_code = pd.factorize(words[starts[longer] + step] & _BYTE_MASKS[rest])[0]
        pair = code[longer] * (int(word_code.max()) + 1) + word_code
        code[longer] = pd.factorize(pair)[0] + int(code.max()) + 1
        step += 8
        longer = longer[length[longer] > step]
    if b"\0" in big:
        # A NUL byte reads like the zero padding: tell tokens apart by their length too.
        vcode, _ = pd.factorize(code * (int(length.max()) + 1) + length)
    else:
        # Without NUL bytes the codes already tell every token apart: make them dense.
        used = np.zeros(int(code.max()) + 1, dtype=bool)
        used[code] = True
        vcode = (np.cumsum(used) - 1)[code]
    rep = np.empty(int(vcode.max()) + 1, dtype=np.int64)
    rep[vcode] = np.arange(n_tok)
    return vcode.astype(np.int64), [
        big[s:e] for s, e in zip(starts[rep].tolist(), ends[rep].tolist(), strict=True)
    ]


def ascii_space(raw: np.ndarray) -> np.ndarray:
    """Which bytes are ASCII whitespace to `str.split()`: 9-13 and 28-32 (comparisons, several
    times faster than a table lookup per byte)."""
    space = raw <= 32
    odd = (raw <= 8) | ((raw - np.uint8(14)) <= 13)  # control bytes that are not whitespace
    if odd.any():
        space &= ~odd
    return space
