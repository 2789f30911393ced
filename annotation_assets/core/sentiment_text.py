"""Step 1 of set-wise VADER scoring (sentiment.py): the texts the `vader` package would change
before tokenising (typographic apostrophes, emoji, non-ASCII whitespace), rewritten together
as the package rewrites each one."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from annotation_assets.core.arrays import find_sorted, ramps
from annotation_assets.core.sentiment_tokens import gather

_APOSTROPHE, _EMOJI_FIRST, _EMOJI_CHAR, _RESIDUE, _WIDE_SPACE = 1, 2, 4, 8, 16
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


def _utf8_width(cp: np.ndarray) -> np.ndarray:
    """Bytes each code point takes in UTF-8 (lone surrogates, as surrogatepass writes them,
    three)."""
    return 1 + (cp >= 0x80).astype(np.int64) + (cp >= 0x800) + (cp >= 0x10000)


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


class TextPreparer:
    """Rewrites texts as the `vader` package does before tokenising them: its apostrophe
    variants, emoji map, emoji residue and translator."""

    def __init__(self) -> None:
        from vader.data.emoji import EMOJI
        from vader.text import _APOSTROPHES, _EMOJI_RESIDUE, EmojiTranslator, normalize_apostrophes

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

    def prepared(self, data: bytes, lens: np.ndarray) -> tuple[bytes, np.ndarray]:
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
        sel, sel_lens = gather(raw, offsets, nonascii)
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
