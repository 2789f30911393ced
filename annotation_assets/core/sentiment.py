"""VADER compound scores for many texts at once, equal to the `vader` package's per-text scores.

`vader_compound_scores(texts)` gives, for a whole batch, what
`vader.SentimentIntensityAnalyzer().polarity_scores(text)["compound"]` gives for each text (the
PyPI package nltk-vader-sentiment, whose rules it follows step by step), without a Python call
per record or per token:

1. Only texts holding a typographic apostrophe, an emoji (or emoji residue next to an emoji
   first character) or non-ASCII whitespace can change before tokenisation; their characters are
   classified set-wise and those texts rewritten together on one code-point array (apostrophes
   as the package maps them, whitespace as spaces, and the package's longest-match emoji
   translation: keys found by per-length hashes at the emoji positions, a match skipped where
   the package's left-to-right walk skips it).
2. The batch becomes one UTF-8 buffer; tokens are the runs between whitespace bytes, exactly
   what `str.split()` gives. Equal tokens get one vocabulary id, keyed exactly by their bytes
   (read as 64-bit words) and length.
3. Each distinct token is cleaned, lowered and looked up once, through the package's own
   `SentiText` tokenizer over the vocabulary: lexicon valence, booster, negation, ALL CAPS.
4. Only the tokens that can score (lexicon words, multiword-lexicon phrases) are evaluated, with
   their context read from the flat token array at offsets -3..+2 inside the record: the "no"
   rules, ALL-CAPS emphasis when the text mixes case, boosters and dampeners with their decay,
   negation with "never so/this" and "without doubt", special-case idioms, "kind of"-style
   dampener bigrams, "least", then the first "but" scaling what comes before and after it.
5. Sentiment-laden idioms are matched as n-grams of word ids; each text's terms are summed in
   the package's order as Python's `sum` does (compensated from Python 3.12 on), amplified by
   "!" and "?", normalised with x / sqrt(x^2 + alpha) and rounded as `round(x, 4)` does.

Every step performs the package's floating-point operations in its order, so the scores are
equal, not approximate. Two constructs are left to the package itself, each found set-wise: a
text in which two multiword-lexicon phrases overlap (resolved there greedily, longest first) is
scored with `polarity_scores`; a text in which an emoji match starts inside an earlier one and
ends past it is translated by the package's `EmojiTranslator` (and then scored set-wise). So the
output always equals per-record VADER.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from functools import cache
from itertools import repeat
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa

from annotation_assets.core.arrays import find_sorted, ramps

TextColumn: TypeAlias = Sequence[str | None] | pa.Array | pa.ChunkedArray
CHUNK_RECORDS = 25_000
# Threads scoring chunks at once; each holds its chunk's token arrays (about 80 MB for 25k
# reviews of 170 characters).
MAX_WORKERS = 4
# Distinct raw tokens whose vocabulary rows a scorer remembers across chunks (about 140 bytes
# each for short tokens, some 40 MB when full); tokens past the limit are looked up again in
# each chunk that holds them.
VOCAB_CACHE_TOKENS = 300_000
_CONTROL_WORDS = (
    "no",
    "but",
    "kind",
    "of",
    "least",
    "at",
    "very",
    "never",
    "so",
    "this",
    "without",
    "doubt",
    "or",
    "nor",
)
_APOSTROPHE, _EMOJI_FIRST, _EMOJI_CHAR, _RESIDUE, _WIDE_SPACE = 1, 2, 4, 8, 16
_BYTE_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], dtype=np.uint64)


@dataclass(frozen=True)
class _PhraseTable:
    """Phrases of one length as sorted integer codes (word ids as base-`base` digits)."""

    codes: np.ndarray
    values: np.ndarray

    def find(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(self.codes) == 0:
            return np.zeros(len(codes), dtype=bool), np.zeros(len(codes))
        found, at = find_sorted(self.codes, codes)
        return found, np.where(found, self.values[at], 0.0)


@dataclass(frozen=True)
class _Vocab:
    """Per distinct raw token: what the scoring rules read."""

    upper: np.ndarray
    in_lex: np.ndarray
    lex: np.ndarray
    booster: np.ndarray
    is_booster: np.ndarray
    negator: np.ndarray
    word: np.ndarray


_HASH_STEP = np.uint64(0x9E3779B97F4A7C15)


def _hashes(columns: Iterable[np.ndarray], n: int) -> np.ndarray:
    """Polynomial hashes (wrapping 64-bit) of n sequences given column by column."""
    h = np.zeros(n, dtype=np.uint64)
    for column in columns:
        h = h * _HASH_STEP + column.astype(np.uint64)
    return h


@dataclass(frozen=True)
class _EmojiKeys:
    """An emoji map's keys as code points, matched at many positions at once: per key
    length, the keys' hashes (sorted), each hit checked code point by code point; and each
    key's replacement, " description ", as code points back to back."""

    lengths: tuple[int, ...]  # key lengths, longest first
    hashes: dict[int, np.ndarray]  # per length: its keys' hashes, sorted
    keys: dict[int, np.ndarray]  # per length: the key behind each hash
    points: np.ndarray  # (keys, longest key) code points, zero padded
    text: np.ndarray
    text_at: np.ndarray
    text_len: np.ndarray  # code points of each replacement
    text_bytes: np.ndarray  # its UTF-8 bytes

    @classmethod
    def build(cls, emoji: Mapping[str, str]) -> _EmojiKeys:
        items = [(key, description) for key, description in emoji.items() if key]
        size = np.array([len(key) for key, _ in items], dtype=np.int64)
        points = np.zeros((len(items), int(size.max(initial=1))), dtype=np.uint32)
        for i, (key, _) in enumerate(items):
            points[i, : len(key)] = [ord(ch) for ch in key]
        hashes, keys = {}, {}
        for n in np.unique(size).tolist():
            rows = np.flatnonzero(size == n)
            h = _hashes((points[rows, j] for j in range(n)), len(rows))
            order = np.argsort(h, kind="stable")
            if np.any(h[order][1:] == h[order][:-1]):  # pragma: no cover - no such map
                raise ValueError(f"two emoji keys of {n} characters share a hash")
            hashes[n], keys[n] = h[order], rows[order]
        replacements = [f" {description} " for _, description in items]
        text_len = np.array([len(r) for r in replacements], dtype=np.int64)
        return cls(
            lengths=tuple(sorted(hashes, reverse=True)),
            hashes=hashes,
            keys=keys,
            points=points,
            text=np.frombuffer(
                "".join(replacements).encode("utf-32-le", "surrogatepass"), dtype=np.uint32
            ),
            text_at=np.cumsum(text_len) - text_len,
            text_len=text_len,
            text_bytes=np.array(
                [len(r.encode("utf-8", "surrogatepass")) for r in replacements], dtype=np.int64
            ),
        )

    def longest(
        self, cp: np.ndarray, at: np.ndarray, end: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """For positions `at` of code points `cp`, in texts ending at `end`: the length of the
        longest key starting there and ending in the text (0: none), and which key."""
        length = np.zeros(len(at), dtype=np.int64)
        key = np.zeros(len(at), dtype=np.int64)
        for n in self.lengths:
            todo = np.flatnonzero((length == 0) & (at + n <= end))
            if len(todo) == 0:
                continue
            window = at[todo, None] + np.arange(n)
            h = _hashes((cp[window[:, j]] for j in range(n)), len(todo))
            hashes = self.hashes[n]
            hit, k = find_sorted(hashes, h)
            maybe = np.flatnonzero(hit)
            which = self.keys[n][k[maybe]]
            same = np.all(self.points[which, :n] == cp[window[maybe]], axis=1)
            length[todo[maybe[same]]] = n
            key[todo[maybe[same]]] = which[same]
        return length, key


class _VocabCache:
    """Vocabulary rows of the raw tokens met in earlier chunks, keyed by their exact UTF-8
    bytes, so that each distinct token is cleaned and looked up (Python, one call per token)
    once per scorer rather than once per chunk. Shared by the scoring threads; it stops
    growing at `limit` tokens, after which new tokens are looked up per chunk."""

    def __init__(self, build: Callable[[list[str]], _Vocab], limit: int) -> None:
        self._build = build
        self._limit = limit
        self._ids: dict[bytes, int] = {}
        self._rows: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    def rows(self, keys: list[bytes]) -> _Vocab:
        """The vocabulary rows of distinct raw tokens `keys`, in their order."""
        with self._lock:
            ids = self._ids
            at = np.fromiter(map(ids.get, keys, repeat(-1)), dtype=np.int64, count=len(keys))
            missing = np.flatnonzero(at < 0)
            new = self._build([keys[i].decode("utf-8", "surrogatepass") for i in missing.tolist()])
            known = np.flatnonzero(at >= 0)
            columns = {}
            for f in fields(_Vocab):
                fresh = getattr(new, f.name)
                column = np.empty(len(keys), dtype=fresh.dtype)
                if len(known):
                    column[known] = self._rows[f.name][at[known]]
                column[missing] = fresh
                columns[f.name] = column
            self._remember([keys[i] for i in missing.tolist()], new)
        return _Vocab(**columns)

    def _remember(self, keys: list[bytes], new: _Vocab) -> None:
        """Store the rows of new tokens while the cache has room (under the lock)."""
        size = len(self._ids)
        take = min(len(keys), self._limit - size)
        if take <= 0:
            return
        for f in fields(_Vocab):
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
class _Tokens:
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


class VaderBatchScorer:
    """The compound scores of a `vader.SentimentIntensityAnalyzer` (by default the package's
    own), set-wise. Word lists may be the analyzer's own; the emoji map is the package's."""

    def __init__(self, analyzer: Any = None) -> None:
        import vader
        import vader.constants as c
        from vader.data.emoji import EMOJI
        from vader.text import _APOSTROPHES, _EMOJI_RESIDUE, EmojiTranslator, normalize_apostrophes

        an = analyzer if analyzer is not None else vader.SentimentIntensityAnalyzer()
        self.analyzer = an
        self._c = c
        self._lexicon: Mapping[str, float] = an.lexicon
        self._lexicon_keys = frozenset(self._lexicon)
        self._booster: Mapping[str, float] = an.booster
        self._negations: frozenset[str] = an.negations
        self._alpha = float(an.alpha)
        self._sentitext = vader.SentiText
        apostrophes = {chr(k): str(v) for k, v in _APOSTROPHES.items()}
        if any(len(plain) != 1 for plain in apostrophes.values()):
            raise ValueError("apostrophe variants must map to one character each")
        self._char_kind = _char_kinds(EMOJI, frozenset(_EMOJI_RESIDUE), apostrophes)
        self._plain_apostrophe = np.arange(len(self._char_kind), dtype=np.uint32)
        for variant, plain in apostrophes.items():
            self._plain_apostrophe[ord(variant)] = ord(plain)
        self._emoji = _EmojiKeys.build(EMOJI)
        self._translate = EmojiTranslator(EMOJI).translate
        self._normalize_apostrophes = normalize_apostrophes
        if [b for b in range(128) if chr(b).isspace()] != [*range(9, 14), *range(28, 33)]:
            raise AssertionError("ASCII whitespace is not what _ascii_space assumes")

        booster2 = {k: v for k, v in self._booster.items() if " " in k}
        phrase_sets: dict[str, tuple[Mapping[str, float], tuple[int, ...]]] = {
            "special": (an.special_cases, (2, 3)),
            "idiom": (an.idioms, (2, 3, 4)),
            "multiword": (an.multiword, (2, 3, 4)),
            "booster": (booster2, (2,)),
        }
        if any(" " not in k or k.count(" ") > 3 for k in an.multiword):
            raise ValueError("multiword lexicon entries must have 2 to 4 words")
        words = set(_CONTROL_WORDS)
        for phrases, _ in phrase_sets.values():
            for key in phrases:
                words.update(p for p in key.split(" ") if p)
        self._word_ids = {w: i + 1 for i, w in enumerate(sorted(words))}
        self._base = len(self._word_ids) + 1
        if self._base**4 >= 2**62:
            raise ValueError("too many distinct phrase words for 4-gram codes")
        self._w = {w: self._word_ids[w] for w in _CONTROL_WORDS}
        self._tables = {
            name: {n: self._table(phrases, n) for n in lengths}
            for name, (phrases, lengths) in phrase_sets.items()
        }
        # Per phrase set: whether each phrase-word id starts one of its phrases.
        self._starts_phrase: dict[str, np.ndarray] = {}
        for name, (phrases, lengths) in phrase_sets.items():
            table = np.zeros(self._base, dtype=bool)
            for key in phrases:
                if len(parts := key.split(" ")) in lengths and all(parts):
                    table[self._word_ids[parts[0]]] = True
            self._starts_phrase[name] = table
        self._multiword_lengths = sorted({k.count(" ") + 1 for k in an.multiword}, reverse=True)
        self._least_in_lexicon = "least" in self._lexicon
        self._compensated_sum = sys.version_info >= (3, 12)
        self._vocab_cache = _VocabCache(self._vocab, VOCAB_CACHE_TOKENS)

    def _table(self, phrases: Mapping[str, float], n: int) -> _PhraseTable:
        items = sorted(
            (self._code(parts), float(value))
            for key, value in phrases.items()
            if len(parts := key.split(" ")) == n and all(parts)
        )
        return _PhraseTable(
            codes=np.array([k for k, _ in items], dtype=np.int64),
            values=np.array([v for _, v in items], dtype=np.float64),
        )

    def _code(self, parts: Iterable[str]) -> int:
        code = 0
        for part in parts:
            code = code * self._base + self._word_ids[part]
        return code

    # ------------------------------------------------------------------------- public

    def compound(self, texts: TextColumn, *, workers: int | None = None) -> np.ndarray:
        """Compound scores in [-1, 1], one per text; NaN where the text is missing or empty.

        `texts` is a sequence of strings (None for missing) or an Arrow string array, whose
        UTF-8 bytes are read in place. Chunks of at most CHUNK_RECORDS texts, of even size, as
        many as a multiple of the workers, are scored on up to
        `workers` threads (default: the CPUs this process may use, at most MAX_WORKERS);
        numpy releases the GIL for most of the work. The scores do not depend on the number
        of workers."""
        if isinstance(texts, pa.ChunkedArray) and texts.num_chunks > 1:
            # chunk by chunk, each read in place (combining them would copy every text)
            return np.concatenate(
                [np.zeros(0), *(self.compound(part, workers=workers) for part in texts.chunks)]
            )
        load: Callable[[np.ndarray], tuple[bytes, np.ndarray]]
        if isinstance(texts, pa.Array | pa.ChunkedArray):
            data, offsets, present = _arrow_utf8(texts)

            def load(rows: np.ndarray) -> tuple[bytes, np.ndarray]:
                return _gather(data, offsets, rows)

        else:
            strings = texts
            present = np.fromiter(
                (isinstance(t, str) and t != "" for t in strings), dtype=bool, count=len(strings)
            )

            def load(rows: np.ndarray) -> tuple[bytes, np.ndarray]:
                return _encode([strings[i] for i in rows.tolist()])  # type: ignore[misc]

        out = np.full(len(present), np.nan, dtype=np.float64)
        rows = np.flatnonzero(present)
        n_workers = default_workers() if workers is None else max(1, workers)
        chunks = _even_chunks(rows, CHUNK_RECORDS, n_workers)

        def score(idx: np.ndarray) -> np.ndarray:
            return self._chunk(*load(idx))

        n_workers = min(n_workers, len(chunks))
        if n_workers <= 1:
            for idx in chunks:
                out[idx] = score(idx)
            return out
        with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="vader") as pool:
            for idx, scores in zip(chunks, pool.map(score, chunks), strict=True):
                out[idx] = scores
        return out

    # ---------------------------------------------------------------- text preparation

    def _prepared(self, data: bytes, lens: np.ndarray) -> tuple[bytes, np.ndarray]:
        """The chunk's texts (UTF-8, back to back, `lens` bytes each) as the package tokenises
        them, and their new lengths. Every text is non-empty (`compound` scores only those).

        Only non-ASCII texts can change (every emoji key holds a non-ASCII character): those
        holding an apostrophe variant, an emoji first character together with an emoji or
        residue character, or non-ASCII whitespace (turned into spaces: the same tokens).
        Those texts are decoded together into one code-point array and rewritten set-wise;
        a text where an emoji match starts inside an earlier one and ends past it is left to
        the package's translator, whose left-to-right walk settles it."""
        raw = np.frombuffer(data, dtype=np.uint8)
        high = raw >= 0x80
        if not high.any():
            return data, lens
        offsets = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        nonascii = np.flatnonzero(np.logical_or.reduceat(high, offsets[:-1]))
        sel, sel_lens = _gather(raw, offsets, nonascii)
        cp = np.frombuffer(
            sel.decode("utf-8", "surrogatepass").encode("utf-32-le", "surrogatepass"), np.uint32
        )
        # code points per text: its bytes less its continuation bytes
        continuation = (np.frombuffer(sel, dtype=np.uint8) & 0xC0) == 0x80
        sel_at = np.cumsum(sel_lens) - sel_lens
        cp_len = sel_lens - np.add.reduceat(continuation, sel_at, dtype=np.int64)
        cp_at = np.append(0, np.cumsum(cp_len))
        kind = self._char_kind[np.minimum(cp, len(self._char_kind) - 1)]
        marked = np.flatnonzero(kind)
        owner = np.searchsorted(cp_at, marked, side="right") - 1
        kinds = kind[marked]

        def holds(bit: int) -> np.ndarray:
            return np.bincount(owner[(kinds & bit) != 0], minlength=len(nonascii)) > 0

        walk = holds(_EMOJI_FIRST) & holds(_EMOJI_CHAR)
        changed = walk | holds(_APOSTROPHE) | holds(_WIDE_SPACE)
        if not changed.any():
            return data, lens

        out = cp.copy()
        edit = np.flatnonzero((kinds & (_APOSTROPHE | _WIDE_SPACE)) != 0)
        out[marked[edit]] = np.where(
            (kinds[edit] & _APOSTROPHE) != 0, self._plain_apostrophe[cp[marked[edit]]], ord(" ")
        )
        walked = walk[owner]
        first = np.flatnonzero(walked & ((kinds & _EMOJI_FIRST) != 0))
        key_len, key = self._emoji.longest(cp, marked[first], cp_at[owner[first] + 1])
        hit = first[key_len > 0]
        span, key = key_len[key_len > 0], key[key_len > 0]
        start = marked[hit]
        # The package's walk skips a match that starts inside one it took. A match that also
        # ends inside the earlier matches never changes what comes after, so a match is taken
        # exactly when it starts at or after every earlier match's end (no match leaves its
        # text, so earlier texts' matches end before this one starts). A match that starts
        # inside and ends past them (a clash) leaves the walk to the package's translator, and
        # the text's matches and residue stay here.
        end = start + span
        reach = np.maximum.accumulate(np.append(0, end[:-1])) if len(end) else end
        inside = start < reach
        clash = np.zeros(len(nonascii), dtype=bool)
        clash[owner[hit[inside & (end > reach)]]] = True
        mine = ~inside & ~clash[owner[hit]]
        hit, span, key, start = hit[mine], span[mine], key[mine], start[mine]
        residue = marked[walked & ~clash[owner] & ((kinds & (_EMOJI_FIRST | _RESIDUE)) == _RESIDUE)]
        covered = np.repeat(start, span) + ramps(span)
        gone = np.unique(np.concatenate([residue, covered]))  # residue may lie in a match
        drop = np.zeros(len(cp), dtype=bool)
        drop[gone] = True
        # each match's replacement goes where its first code point was
        size = self._emoji.text_len[key]
        rewritten = np.insert(
            out[~drop],
            np.repeat(start - np.searchsorted(gone, start), size),
            self._emoji.text[np.repeat(self._emoji.text_at[key], size) + ramps(size)],
        )
        new = (
            rewritten.tobytes()
            .decode("utf-32-le", "surrogatepass")
            .encode("utf-8", "surrogatepass")
        )
        # bytes per text: its old length, less what went, plus what came (at marked points)
        gone_owner = np.searchsorted(cp_at, gone, side="right") - 1
        change = [
            (gone_owner, -_utf8_width(cp[gone])),
            (owner[edit], _utf8_width(out[marked[edit]]) - _utf8_width(cp[marked[edit]])),
            (owner[hit], self._emoji.text_bytes[key]),
        ]
        new_lens = sel_lens + sum(
            np.bincount(who, weights=delta, minlength=len(nonascii)).astype(np.int64)
            for who, delta in change
        )
        new_end = np.cumsum(new_lens)
        new_view = memoryview(new)
        pieces: list[bytes | memoryview] = [
            new_view[a:b]
            for a, b in zip(
                (new_end - new_lens)[changed].tolist(), new_end[changed].tolist(), strict=True
            )
        ]
        rows = nonascii[changed]
        lens = lens.copy()
        lens[rows] = new_lens[changed]
        for j in np.flatnonzero(clash[changed]).tolist():
            i = int(rows[j])
            text = data[offsets[i] : offsets[i + 1]].decode("utf-8", "surrogatepass")
            # the same tokens, with any non-ASCII whitespace gone
            translated = self._translate(self._normalize_apostrophes(text))
            pieces[j] = " ".join(translated.split()).encode("utf-8", "surrogatepass")
            lens[i] = len(pieces[j])
        # the texts that changed, each in place of its old bytes
        view = memoryview(data)
        kept = [
            view[a:b]
            for a, b in zip(
                np.append(0, offsets[rows + 1]).tolist(),
                np.append(offsets[rows], len(data)).tolist(),
                strict=True,
            )
        ]
        spliced: list[bytes | memoryview] = [kept[0]]
        for piece, after in zip(pieces, kept[1:], strict=True):
            spliced += (piece, after)
        return b"".join(spliced), lens

    # ----------------------------------------------------------------------- a chunk

    def _tokens(self, data: bytes, lengths: np.ndarray) -> tuple[_Tokens, _Vocab, bytes]:
        n = len(lengths)
        # One space after each text, so that no token runs from one record into the next.
        raw = np.insert(np.frombuffer(data, dtype=np.uint8), np.cumsum(lengths), ord(" "))
        big = raw.tobytes()
        rec_start = np.cumsum(lengths + 1) - (lengths + 1)
        # All whitespace is ASCII by now: tokens are the runs of other bytes.
        space = _ascii_space(raw)
        word = ~space
        first = word.copy()
        first[1:] &= space[:-1]
        last = word
        last[:-1] &= space[1:]
        starts = np.flatnonzero(first)
        ends = np.flatnonzero(last) + 1
        n_tok = len(starts)
        tok_first = np.searchsorted(starts, rec_start)
        counts = np.diff(np.append(tok_first, n_tok))
        vcode, keys = _factorize_tokens(big, starts, ends)
        vocab = self._vocab_cache.rows(keys)
        rec = np.repeat(np.arange(n), counts)
        tokens = _Tokens(
            vcode=vcode,
            word=vocab.word[vcode],
            rec=rec,
            pos=np.arange(n_tok) - tok_first[rec],
            first=tok_first,
            counts=counts,
            byte_start=rec_start,
        )
        return tokens, vocab, big

    def _vocab(self, strings: list[str]) -> _Vocab:
        """What each distinct raw token contributes, from the package's own token cleaning."""
        cleaned = self._sentitext(" ".join(strings), self._lexicon_keys).tokens
        if len(cleaned) != len(strings):  # pragma: no cover - tokens never hold whitespace
            raise AssertionError("vocabulary tokens changed under str.split()")
        lowered = [t.lower() for t in cleaned]
        m = len(lowered)
        lexicon, booster, negations = self._lexicon, self._booster, self._negations
        word_ids = self._word_ids
        return _Vocab(
            upper=np.fromiter((t.isupper() for t in cleaned), dtype=bool, count=m),
            in_lex=np.fromiter((w in lexicon for w in lowered), dtype=bool, count=m),
            lex=np.fromiter((lexicon.get(w, 0.0) for w in lowered), dtype=np.float64, count=m),
            booster=np.fromiter((booster.get(w, 0.0) for w in lowered), np.float64, count=m),
            is_booster=np.fromiter((w in booster for w in lowered), dtype=bool, count=m),
            negator=np.fromiter(
                (w in negations or w.endswith("n't") for w in lowered), dtype=bool, count=m
            ),
            word=np.fromiter((word_ids.get(w, 0) for w in lowered), dtype=np.int64, count=m),
        )

    def _phrase_starts(
        self, tok: _Tokens, name: str, n: int, phrase_at: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices where an n-word phrase of set `name` starts (inside one record), and
        its values; `phrase_at` holds the flat indices of every phrase word."""
        starts_phrase = self._starts_phrase[name]
        if not starts_phrase.any() or len(phrase_at) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        cand = phrase_at[starts_phrase[tok.word[phrase_at]]]
        found, values = self._tables[name][n].find(self._grams(tok, cand, 0, n))
        return cand[found], values[found]

    def _grams(self, tok: _Tokens, at: np.ndarray, offset: int, n: int) -> np.ndarray:
        """Word-id codes of the n tokens from `offset` away; -1 where they leave the record."""
        ok, start = tok.window(at, offset, n)
        code = np.zeros(len(at), dtype=np.int64)
        last = len(tok.word) - 1
        for m in range(n):
            code = code * self._base + tok.word[np.minimum(start + m, last)]
        return np.where(ok, code, -1)

    def _chunk(self, data: bytes, sizes: np.ndarray) -> np.ndarray:
        """Scores of one chunk of non-empty texts, UTF-8 back to back, `sizes` bytes each."""
        c = self._c
        n = len(sizes)
        tok, v, big = self._tokens(*self._prepared(data, sizes))
        w = self._w

        n_upper = np.bincount(tok.rec, weights=v.upper[tok.vcode], minlength=n)
        phrase_at = np.flatnonzero(tok.word)
        cap_diff = (n_upper > 0) & (n_upper < tok.counts)

        # Multiword lexicon phrases: a forced valence at their first token, the rest consumed.
        starts, lens, vals = [], [], []
        for n_words in self._multiword_lengths:
            at, val = self._phrase_starts(tok, "multiword", n_words, phrase_at)
            starts.append(at)
            lens.append(np.full(len(at), n_words, dtype=np.int64))
            vals.append(val)
        forced_at = np.concatenate(starts)
        order = np.argsort(forced_at, kind="stable")
        forced_at = forced_at[order]
        forced_len = np.concatenate(lens)[order]
        forced_val = np.concatenate(vals)[order]
        fallback = np.zeros(n, dtype=bool)
        if len(forced_at) > 1:
            reach = np.maximum.accumulate(forced_at + forced_len)
            overlap = np.flatnonzero(forced_at[1:] < reach[:-1]) + 1
            fallback[tok.rec[forced_at[overlap]]] = True

        # Tokens that score: lexicon words but boosters (and "kind" before "of"), unconsumed.
        scoring = (v.in_lex & ~v.is_booster)[tok.vcode]
        kind = np.flatnonzero(scoring & (tok.word == w["kind"]))
        ok, nxt = tok.window(kind, 1)
        scoring[kind[ok & (tok.word[nxt] == w["of"])]] = False
        for k in range(1, int(forced_len.max(initial=1))):
            scoring[forced_at[forced_len > k] + k] = False
        scoring[forced_at] = True
        at = np.flatnonzero(scoring)
        rec = tok.rec[at]
        pos = tok.pos[at]
        w_at = tok.vcode[at]
        capd = cap_diff[rec]
        near = {k: tok.window(at, k) for k in (-3, -2, -1, 1)}
        ok1, w1 = near[-1][0], tok.vcode[near[-1][1]]
        ok2, w2 = near[-2][0], tok.vcode[near[-2][1]]
        ok3, w3 = near[-3][0], tok.vcode[near[-3][1]]
        okn, wn = near[1][0], tok.vcode[near[1][1]]
        wid = v.word

        val = v.lex[w_at]
        val = np.where((wid[w_at] == w["no"]) & okn & v.in_lex[wn], 0.0, val)
        no_before = (
            (ok1 & (wid[w1] == w["no"]))
            | (ok2 & (wid[w2] == w["no"]))
            | (ok3 & (wid[w3] == w["no"]) & ((wid[w1] == w["or"]) | (wid[w1] == w["nor"])))
        )
        val = np.where(no_before, v.lex[w_at] * c.N_SCALAR, val)
        caps = v.upper[w_at] & capd
        val = np.where(
            caps & (val > 0), val + c.C_INCR, np.where(caps & (val < 0), val - c.C_INCR, val)
        )
        if len(forced_at):
            is_forced = np.isin(at, forced_at)
            fv = np.zeros(len(at))
            fv[is_forced] = forced_val[np.searchsorted(forced_at, at[is_forced])]
            val = np.where(is_forced, fv, val)

        val = self._boosted_and_negated(val, ((ok1, w1), (ok2, w2), (ok3, w3)), v, capd)
        val = self._special_idioms(val, tok, at, phrase_at)
        if not self._least_in_lexicon:
            least = ok1 & (wid[w1] == w["least"])
            spared = ok2 & ((wid[w2] == w["at"]) | (wid[w2] == w["very"]))
            val = np.where(least & ~spared, val * c.N_SCALAR, val)

        but = np.flatnonzero(tok.word == w["but"])
        if len(but):
            but_pos = np.full(n, -1, dtype=np.int64)
            but_pos[tok.rec[but[::-1]]] = tok.pos[but[::-1]]  # the first "but" wins
            bp = but_pos[rec]
            has = bp >= 0
            val = np.where(
                has & (pos < bp),
                val * c.BUT_BEFORE,
                np.where(has & (pos > bp), val * c.BUT_AFTER, val),
            )

        # Each record's terms in the package's order: token valences, then the
        # sentiment-laden idioms by length and position. Zero terms change no sum.
        keep = val != 0.0
        term_rec = [rec[keep]]
        term_val = [val[keep]]
        for n_words in (2, 3, 4):
            i_at, i_val = self._phrase_starts(tok, "idiom", n_words, phrase_at)
            term_rec.append(tok.rec[i_at])
            term_val.append(i_val)
        t_rec = np.concatenate(term_rec)
        t_val = np.concatenate(term_val)
        if len(t_rec) > len(term_rec[0]):
            order = np.argsort(t_rec, kind="stable")
            t_rec, t_val = t_rec[order], t_val[order]
        total = self._sums(t_rec, t_val, n)

        raw = np.frombuffer(big, dtype=np.uint8)
        bang, qmark = (
            np.bincount(
                np.searchsorted(tok.byte_start, np.flatnonzero(raw == ch), side="right") - 1,
                minlength=n,
            )
            for ch in b"!?"
        )
        ep = np.minimum(bang, c.EP_CAP) * c.EP_AMPLIFY
        qm = np.where(qmark > 1, np.where(qmark <= 3, qmark * c.QM_AMPLIFY, c.QM_CAP), 0.0)
        amp = ep + qm
        total = np.where(total > 0, total + amp, np.where(total < 0, total - amp, total))
        compound = np.clip(total / np.sqrt(total * total + self._alpha), -1.0, 1.0)
        scores = _round4(compound)
        text_at = np.cumsum(sizes) - sizes
        for i in np.flatnonzero(fallback).tolist():
            text = data[text_at[i] : text_at[i] + sizes[i]].decode("utf-8", "surrogatepass")
            scores[i] = self.analyzer.polarity_scores(text)["compound"]
        return scores

    def _boosted_and_negated(
        self,
        val: np.ndarray,
        before: tuple[tuple[np.ndarray, np.ndarray], ...],
        v: _Vocab,
        capd: np.ndarray,
    ) -> np.ndarray:
        """Boosters/dampeners and negation over the three preceding tokens, nearest first."""
        c = self._c
        w, wid = self._w, v.word
        (_, w1), (_, w2), (_, w3) = before
        so_this = (wid[w1] == w["so"]) | (wid[w1] == w["this"])
        so_this2 = (wid[w2] == w["so"]) | (wid[w2] == w["this"])
        for k, (ok, wj) in enumerate(before):
            act = ok & ~v.in_lex[wj]
            boost = v.is_booster[wj]
            s = np.where(boost, v.booster[wj], 0.0)
            s = np.where(val < 0, s * -1, s)
            capb = boost & v.upper[wj] & capd
            s = np.where(
                capb & (val > 0), s + c.C_INCR, np.where(capb & (val < 0), s - c.C_INCR, s)
            )
            if k == 1:
                s = np.where(s != 0.0, s * c.DECAY_TWO, s)
            elif k == 2:
                s = np.where(s != 0.0, s * c.DECAY_THREE, s)
            val = np.where(act, val + s, val)
            if k == 0:
                boost_never = np.zeros(len(val), dtype=bool)
                doubtless = boost_never
                negate = v.negator[w1]
            elif k == 1:
                boost_never = (wid[w2] == w["never"]) & so_this
                doubtless = (wid[w2] == w["without"]) & (wid[w1] == w["doubt"])
                negate = v.negator[w2]
            else:
                boost_never = (wid[w3] == w["never"]) & (so_this2 | so_this)
                doubtless = (wid[w3] == w["without"]) & (
                    (wid[w2] == w["doubt"]) | (wid[w1] == w["doubt"])
                )
                negate = v.negator[w3]
            negate = negate & ~boost_never & ~doubtless
            val = np.where(
                act & boost_never,
                val * c.NEVER_BOOST,
                np.where(act & negate, val * c.N_SCALAR, val),
            )
        return val

    def _special_idioms(
        self, val: np.ndarray, tok: _Tokens, at: np.ndarray, phrase_at: np.ndarray
    ) -> np.ndarray:
        """Special-case idioms around each scoring token, then "kind of"-style dampener
        bigrams just before it, in the package's order."""
        starts_of = {
            (name, n_words): self._phrase_starts(tok, name, n_words, phrase_at)
            for name, n_words in (("special", 2), ("special", 3), ("booster", 2))
        }

        def phrase(name: str, offset: int, n_words: int) -> tuple[np.ndarray, np.ndarray]:
            # A phrase found at all lies inside one record; it starts in this token's record
            # when the offset does not reach back past the record's first token.
            where, values = starts_of[name, n_words]  # sorted flat indices
            if len(where) == 0:
                return np.zeros(len(at), dtype=bool), np.zeros(len(at))
            ok, start = tok.window(at, offset)
            found, k = find_sorted(where, start)
            found &= ok
            return found, np.where(found, values[k], 0.0)

        matched = np.zeros(len(at), dtype=bool)
        for offset, n_words in ((-1, 2), (-2, 3), (-2, 2), (-3, 3), (-3, 2)):
            found, sval = phrase("special", offset, n_words)
            val = np.where(found & ~matched, sval, val)
            matched |= found
        for offset, n_words in ((-1, 3), (0, 2), (0, 3)):
            found, sval = phrase("special", offset, n_words)
            val = np.where(found, sval, val)
        for offset in (-2, -3):
            found, bval = phrase("booster", offset, 2)
            val = np.where(found, val + bval, val)
        return val

    def _sums(self, rec: np.ndarray, val: np.ndarray, n: int) -> np.ndarray:
        """Per record, the sum of its terms (grouped by record, in order) as Python's `sum`
        computes it: left to right, compensated (Neumaier) from Python 3.12 on."""
        total = np.zeros(n, dtype=np.float64)
        if len(rec) == 0:
            return total
        head = np.ones(len(rec), dtype=bool)
        head[1:] = rec[1:] != rec[:-1]
        run_start = np.flatnonzero(head)
        rank = np.arange(len(rec)) - np.repeat(run_start, np.diff(np.append(run_start, len(rec))))
        order = np.argsort(rank, kind="stable")
        bounds = np.searchsorted(rank[order], np.arange(int(rank.max()) + 2))
        comp = np.zeros(n, dtype=np.float64)
        for k in range(len(bounds) - 1):
            sel = order[bounds[k] : bounds[k + 1]]
            r, x = rec[sel], val[sel]
            if k == 0:
                total[r] = x
                continue
            f = total[r]
            t = f + x
            if self._compensated_sum:
                comp[r] += np.where(np.abs(f) >= np.abs(x), (f - t) + x, (x - t) + f)
            total[r] = t
        if self._compensated_sum:
            fix = (comp != 0.0) & np.isfinite(comp)
            total[fix] += comp[fix]
        return total


def _arrow_utf8(texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _encode(texts: list[str]) -> tuple[bytes, np.ndarray]:
    """The texts' UTF-8 bytes back to back (lone surrogates kept, as the package keeps them)
    and each one's length in bytes."""
    sizes = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    for i in [i for i, t in enumerate(texts) if not t.isascii()]:
        sizes[i] = len(texts[i].encode("utf-8", "surrogatepass"))
    return "".join(texts).encode("utf-8", "surrogatepass"), sizes


def _gather(data: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The bytes of texts `rows` (ascending) back to back, and each one's length."""
    starts = offsets[rows]
    lens = offsets[rows + 1] - starts
    if len(rows) == 0:
        return b"", lens
    if rows[-1] - rows[0] == len(rows) - 1:  # consecutive rows: one slice
        return data[starts[0] : starts[0] + int(lens.sum())].tobytes(), lens
    return data[np.repeat(starts, lens) + ramps(lens)].tobytes(), lens


def _factorize_tokens(
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


def _ascii_space(raw: np.ndarray) -> np.ndarray:
    """Which bytes are ASCII whitespace to `str.split()`: 9-13 and 28-32 (comparisons, several
    times faster than a table lookup per byte)."""
    space = raw <= 32
    odd = (raw <= 8) | ((raw - np.uint8(14)) <= 13)  # control bytes that are not whitespace
    if odd.any():
        space &= ~odd
    return space


def _even_chunks(rows: np.ndarray, most: int, workers: int) -> list[np.ndarray]:
    """`rows` in chunks of at most `most`, as many as a multiple of `workers` and of even
    size, so that no thread is left scoring a last short chunk alone."""
    if len(rows) == 0:
        return []
    n = -(-len(rows) // most)
    if n > 1 and workers > 1:
        n = -(-n // workers) * workers
    return np.array_split(rows, n)


def _utf8_width(cp: np.ndarray) -> np.ndarray:
    """Bytes each code point takes in UTF-8 (lone surrogates, as surrogatepass writes them,
    three)."""
    return 1 + (cp >= 0x80).astype(np.int64) + (cp >= 0x800) + (cp >= 0x10000)


def _round4(x: np.ndarray) -> np.ndarray:
    """`round(value, 4)` for each value: numpy's rounding, and Python's correctly rounded one
    where the scaled value lies too near a half for numpy's to be trusted."""
    out = np.round(x, 4)
    scaled = x * 1e4
    for i in np.flatnonzero(np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6).tolist():
        out[i] = round(float(x[i]), 4)
    return out


def _char_kinds(
    emoji: Mapping[str, str], residue: frozenset[str], apostrophes: Iterable[str]
) -> np.ndarray:
    """Per code point, bit flags: apostrophe variant, emoji first character, non-ASCII
    character of an emoji key or residue, residue, non-ASCII whitespace."""
    if any(key.isascii() for key in emoji):
        raise ValueError("an all-ASCII emoji key would need every text translated")
    chars = {ch for key in emoji for ch in key if not ch.isascii()} | set(residue)
    firsts = {key[0] for key in emoji if key}
    apostrophes = set(apostrophes)
    wide = [cp for cp in range(128, sys.maxunicode + 1) if chr(cp).isspace()]
    table = np.zeros(max([ord(ch) for ch in chars | firsts | apostrophes] + wide) + 2, np.uint8)
    table[wide] |= _WIDE_SPACE
    for bit, group in (
        (_APOSTROPHE, apostrophes),
        (_EMOJI_FIRST, firsts),
        (_EMOJI_CHAR, chars),
        (_RESIDUE, residue),
    ):
        for ch in group:
            table[ord(ch)] |= bit
    return table


def default_workers() -> int:
    """Threads for scoring: the CPUs this process may run on, at most MAX_WORKERS."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


@cache
def default_scorer() -> VaderBatchScorer:
    """One scorer, built once per process."""
    return VaderBatchScorer()


def vader_compound_scores(texts: TextColumn) -> np.ndarray:
    """VADER compound scores in [-1, 1] of `texts` (strings or an Arrow string array), equal
    to the package's per-text `polarity_scores(text)["compound"]`; NaN for missing or empty
    text."""
    return default_scorer().compound(texts)
