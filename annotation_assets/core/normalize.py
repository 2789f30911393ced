"""Scraped text cleanup: HTML stripping, Unicode normalization and exact-duplicate keys.

``normalize_text`` is idempotent: its output is a fixed point, so text that is normalized again
(for example after a round trip through storage) keeps the same value and ``dedup_key``.
Escaped markup such as ``&lt;b&gt;`` unescapes to ``<b>``, which is markup again, so it is
stripped as well.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Iterable

__all__ = ["dedup_key", "html_to_text", "normalize_text", "normalize_texts"]

_MAX_PASSES = 16

# Hidden content: a comment, or an element whose content is never shown (to its closing tag,
# or to the end). Matched only where _without_hidden knows it ends, which keeps it linear.
_HIDDEN_RE = re.compile(
    r"<!--.*?-->|<(script|style|noscript|template)\b[^>]*>.*?(?:</\1\s*>|\Z)",
    re.IGNORECASE | re.DOTALL,
)
_HIDDEN_START_RE = re.compile(r"<!--|<(script|style|noscript|template)\b", re.IGNORECASE)
_BLOCK_TAG_RE = re.compile(
    r"</?(?:address|article|aside|blockquote|body|br|caption|center|dd|details|dialog|div|dl|dt"
    r"|fieldset|figcaption|figure|footer|form|h[1-6]|head|header|hr|html|li|main|nav|ol|option"
    r"|p|pre|section|summary|table|tbody|td|tfoot|th|thead|title|tr|ul)"
    r"(?:\s(?:[^<>\"']|\"[^\"<]*\"|'[^'<]*')*|\s[^<>]*)?/?>",
    re.IGNORECASE,
)
_TAG_RE = re.compile(
    r"</?[A-Za-z][\w:.-]*(?:\s(?:[^<>\"']|\"[^\"<]*\"|'[^'<]*')*|\s[^<>]*)?/?>"
    r"|<![^<>]*>|<\?[^<>]*>"
)
_MARKUP_RE = re.compile(r"<[A-Za-z/!]|&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);")
_SPACE_CONTROL_RE = re.compile("[\t\n\x0b\x0c\r\x1c-\x1f\x85]")
_DROP_RE = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u200b-\u200d\ufeff\ud800-\udfff]")


def _without_hidden(raw: str) -> str:
    """`raw` with each comment (`<!--` to the next `-->`) and each script, style, noscript or
    template element (its opening tag to its closing tag, or to the end) replaced by a space.

    Exactly `_HIDDEN_RE.sub(" ", raw)`, scanned left to right in linear time: a comment that
    never closes means no later one does, and an opening tag with no `>` after it means no
    later one has one either, so neither is searched for again (the expression alone would
    search once per opener: a line of a million unclosed `<!--` took about half an hour). An
    element is matched by the expression itself, anchored at its opener, so its closing tag
    is found as the expression finds it (a backreference: `ſ` opens `<ſcript>` but does not
    close `</script>`)."""
    out: list[str] = []
    pos = 0
    comments_close = tags_close = True
    at = _HIDDEN_START_RE.search(raw)
    while at is not None:
        name = at.group(1)
        end = -1
        if name is None and comments_close:
            close = raw.find("-->", at.end())
            comments_close = close >= 0
            end = close + 3 if comments_close else -1
        elif name is not None and tags_close:
            opened = raw.find(">", at.end())
            tags_close = opened >= 0
            if tags_close:  # with a ">" to come, the element matches here (to its end at worst)
                whole = _HIDDEN_RE.match(raw, at.start())
                end = whole.end() if whole else -1
        if end < 0:
            at = _HIDDEN_START_RE.search(raw, at.start() + 1)
            continue
        out += (raw[pos : at.start()], " ")
        pos = end
        at = _HIDDEN_START_RE.search(raw, pos)
    out.append(raw[pos:])
    return "".join(out)


def html_to_text(raw: str) -> str:
    """Return the visible text of an HTML fragment, with block boundaries as newlines."""
    text = _without_hidden(raw)
    text = _BLOCK_TAG_RE.sub("\n", text)
    text = _TAG_RE.sub("", text)
    return html.unescape(text)


def _looks_like_markup(text: str) -> bool:
    return _MARKUP_RE.search(text) is not None


def _normalized_once(text: str) -> str:
    if _looks_like_markup(text):
        text = html_to_text(text)
    text = unicodedata.normalize("NFKC", text)
    text = _SPACE_CONTROL_RE.sub(" ", text)
    text = _DROP_RE.sub("", text)
    return " ".join(text.split())


def normalize_text(raw: str) -> str:
    """Return ``raw`` as clean single-line text: no markup, NFKC, no controls, one-space runs.

    Lone surrogates are dropped as well, so the result always encodes as UTF-8.
    """
    text = _normalized_once(raw)
    for _ in range(_MAX_PASSES):
        if not _looks_like_markup(text) and unicodedata.is_normalized("NFKC", text):
            break
        again = _normalized_once(text)
        if again == text:
            break
        text = again
    return text


def normalize_texts(texts: Iterable[str]) -> list[str]:
    """Return ``normalize_text`` of every text, in order."""
    return [normalize_text(text) for text in texts]


def dedup_key(normalized: str) -> str:
    """Return the exact-duplicate key: blake2b-128 hex of the casefolded, space-collapsed text."""
    folded = " ".join(normalized.casefold().split())
    return hashlib.blake2b(folded.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
