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

sentiment_text.py holds step 1; sentiment_tokens.py the UTF-8 buffers, tokens and vocabulary
cache of steps 2 and 3; this module the rules (steps 4 and 5) and the API.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa

from annotation_assets.core.arrays import find_sorted
from annotation_assets.core.sentiment_text import TextPreparer
from annotation_assets.core.sentiment_tokens import (
    Tokens,
    Vocab,
    VocabCache,
    arrow_utf8,
    ascii_space,
    encode_texts,
    factorize_tokens,
    gather,
)

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


class VaderBatchScorer:
    """The compound scores of a `vader.SentimentIntensityAnalyzer` (by default the package's
    own), set-wise. Word lists may be the analyzer's own; the emoji map is the package's."""

    def __init__(self, analyzer: Any = None) -> None:
        import vader
        import vader.constants as c

        an = analyzer if analyzer is not None else vader.SentimentIntensityAnalyzer()
        self.analyzer = an
        self._c = c
        self._lexicon: Mapping[str, float] = an.lexicon
        self._lexicon_keys = frozenset(self._lexicon)
        self._booster: Mapping[str, float] = an.booster
        self._negations: frozenset[str] = an.negations
        self._alpha = float(an.alpha)
        self._sentitext = vader.SentiText
        self._text = TextPreparer()
        if [b for b in range(128) if chr(b).isspace()] != [*range(9, 14), *range(28, 33)]:
            raise AssertionError("ASCII whitespace is not what ascii_space assumes")

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
        self._vocab_cache = VocabCache(self._vocab, VOCAB_CACHE_TOKENS)

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
            data, offsets, present = arrow_utf8(texts)

            def load(rows: np.ndarray) -> tuple[bytes, np.ndarray]:
                return gather(data, offsets, rows)

        else:
            strings = texts
            present = np.fromiter(
                (isinstance(t, str) and t != "" for t in strings), dtype=bool, count=len(strings)
            )

            def load(rows: np.ndarray) -> tuple[bytes, np.ndarray]:
                return encode_texts([strings[i] for i in rows.tolist()])  # type: ignore[misc]

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

    # ----------------------------------------------------------------------- a chunk

    def _tokens(self, data: bytes, lengths: np.ndarray) -> tuple[Tokens, Vocab, bytes]:
        n = len(lengths)
        # One space after each text, so that no token runs from one record into the next.
        raw = np.insert(np.frombuffer(data, dtype=np.uint8), np.cumsum(lengths), ord(" "))
        big = raw.tobytes()
        rec_start = np.cumsum(lengths + 1) - (lengths + 1)
        # All whitespace is ASCII by now: tokens are the runs of other bytes.
        space = ascii_space(raw)
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
        vcode, keys = factorize_tokens(big, starts, ends)
        vocab = self._vocab_cache.rows(keys)
        rec = np.repeat(np.arange(n), counts)
        tokens = Tokens(
            vcode=vcode,
            word=vocab.word[vcode],
            rec=rec,
            pos=np.arange(n_tok) - tok_first[rec],
            first=tok_first,
            counts=counts,
            byte_start=rec_start,
        )
        return tokens, vocab, big

    def _vocab(self, strings: list[str]) -> Vocab:
        """What each distinct raw token contributes, from the package's own token cleaning."""
        cleaned = self._sentitext(" ".join(strings), self._lexicon_keys).tokens
        if len(cleaned) != len(strings):  # pragma: no cover - tokens never hold whitespace
            raise AssertionError("vocabulary tokens changed under str.split()")
        lowered = [t.lower() for t in cleaned]
        m = len(lowered)
        lexicon, booster, negations = self._lexicon, self._booster, self._negations
        word_ids = self._word_ids
        return Vocab(
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
        self, tok: Tokens, name: str, n: int, phrase_at: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices where an n-word phrase of set `name` starts (inside one record), and
        its values; `phrase_at` holds the flat indices of every phrase word."""
        starts_phrase = self._starts_phrase[name]
        if not starts_phrase.any() or len(phrase_at) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        cand = phrase_at[starts_phrase[tok.word[phrase_at]]]
        found, values = self._tables[name][n].find(self._grams(tok, cand, 0, n))
        return cand[found], values[found]

    def _grams(self, tok: Tokens, at: np.ndarray, offset: int, n: int) -> np.ndarray:
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
        tok, v, big = self._tokens(*self._text.prepared(data, sizes))
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
        v: Vocab,
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
        self, val: np.ndarray, tok: Tokens, at: np.ndarray, phrase_at: np.ndarray
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


def _even_chunks(rows: np.ndarray, most: int, workers: int) -> list[np.ndarray]:
    """`rows` in chunks of at most `most`, as many as a multiple of `workers` and of even
    size, so that no thread is left scoring a last short chunk alone."""
    if len(rows) == 0:
        return []
    n = -(-len(rows) // most)
    if n > 1 and workers > 1:
        n = -(-n // workers) * workers
    return np.array_split(rows, n)


def _round4(x: np.ndarray) -> np.ndarray:
    """`round(value, 4)` for each value: numpy's rounding, and Python's correctly rounded one
    where the scaled value lies too near a half for numpy's to be trusted."""
    out = np.round(x, 4)
    scaled = x * 1e4
    for i in np.flatnonzero(np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6).tolist():
        out[i] = round(float(x[i]), 4)
    return out


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
