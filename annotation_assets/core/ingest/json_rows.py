"""The rows of JSON record files: `.jsonl` (one value a line) and `.json` (top-level arrays
and values one after another, read forward in pieces). With a record path (the spec's
`fields.records`, e.g. `data.results`), each top-level object is a wrapper, as many APIs
return (`{"data": {"results": [...]}, "next": ...}`), and the records are the elements of the
array at that path: streamed as a top-level array's elements are, never the whole wrapper at
once."""

import codecs
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from annotation_assets.core.ingest.files import (
    DAMAGED_FILE,
    INVALID_UTF8,
    LINE_TOO_LONG,
    MALFORMED_JSON,
    NOT_AN_OBJECT,
    RECORDS_NOT_FOUND,
    UNREADABLE_FILE,
    LongLine,
    Row,
    bounded_lines,
    damage_detail,
    decode_utf8,
    has_surrogates,
    json_text,
    open_text_lines,
)


def jsonl_rows(path: Path, max_line_bytes: int, records: tuple[str, ...] = ()) -> Iterator[Row]:
    """One row a line; with a record path, each line is a wrapper object and its rows are the
    elements of the array at that path (numbered by the line)."""
    with open_text_lines(path) as fh:
        for line_no, raw in enumerate(bounded_lines(fh, max_line_bytes), start=1):
            if isinstance(raw, LongLine):  # only its first bytes were kept
                shown = decode_utf8(raw)[0]
                yield Row(line_no, shown, error=LINE_TOO_LONG, detail=f"{raw.total} bytes")
                continue
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            text, valid = decode_utf8(raw)
            if not valid:
                yield Row(line_no, text, error=INVALID_UTF8, detail="line is not valid UTF-8")
            elif len(raw) > max_line_bytes:
                yield Row(line_no, text, error=LINE_TOO_LONG, detail=f"{len(raw)} bytes")
            elif records:
                yield from _wrapped_line_rows(line_no, text, records)
            else:
                yield _parse_json_line(line_no, text)


def _wrapped_line_rows(line_no: int, text: str, records: tuple[str, ...]) -> Iterator[Row]:
    try:
        value = json.loads(text)
    except RecursionError:
        yield Row(line_no, text, error=MALFORMED_JSON, detail="nesting too deep")
        return
    except ValueError as err:
        yield Row(line_no, text, error=MALFORMED_JSON, detail=str(err)[:200])
        return
    for depth, key in enumerate(records):
        if not isinstance(value, dict) or key not in value:
            where = ".".join(records[: depth + 1])
            yield Row(line_no, text, error=RECORDS_NOT_FOUND, detail=f"no {where}")
            return
        value = value[key]
    if not isinstance(value, list):
        detail = f"{'.'.join(records)} is a {type(value).__name__}, not an array"
        yield Row(line_no, text, error=RECORDS_NOT_FOUND, detail=detail)
        return
    for element in value:
        shown = json_text(element)  # lone surrogates escaped: the payload is stored as UTF-8
        if isinstance(element, dict):
            yield Row(line_no, shown, record=element)
        else:
            yield Row(line_no, shown, error=NOT_AN_OBJECT, detail=type(element).__name__)


def _parse_json_line(line_no: int, text: str) -> Row:
    try:
        value = json.loads(text)
    except RecursionError:
        return Row(line_no, text, error=MALFORMED_JSON, detail="nesting too deep")
    except ValueError as err:
        return Row(line_no, text, error=MALFORMED_JSON, detail=str(err)[:200])
    if not isinstance(value, dict):
        return Row(line_no, text, error=NOT_AN_OBJECT, detail=type(value).__name__)
    return Row(line_no, text, record=value)


_JSON = json.JSONDecoder()
# Characters parsed before the buffer drops them. Small, because a value that does not parse
# costs a count of the newlines before it in the buffer (json.JSONDecodeError's line number).
_JSON_FORGET_AFTER = 1 << 14
_JSON_READ_PIECE = 1 << 16
# A value parsed or failing this close to the end of what has been read may go on past it (a
# number cut at "1." or "1e", a literal at "-Infinit"); it is parsed again with more of the file.
_JSON_TAIL = 16
_OVER_LIMIT = "a value of over"
_JSON_NOT_SPACE = re.compile(r"[^ \t\n\r]")


class _JsonText:
    """A `.json` file's text, read forward in pieces as it is parsed. Bytes that are not UTF-8
    become lone surrogates (`surrogateescape`), which no valid UTF-8 text decodes to, so a value
    holding them is known to come from invalid bytes. Counts lines (and the columns of text
    already dropped) as the reader moves on."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.buf = ""
        self.eof = False
        self.line = 1  # the line number at buf[counted]
        self.counted = 0
        self.column = 0  # characters dropped from the front of the buffer on buf[0]'s line
        self.indent: str | None = ""  # those, when they are spaces and tabs only (else None)
        self.damage: str | None = None  # why the file could not be read to its end
        self.escaped = False  # whether any byte read so far was not UTF-8

    def read(self, chars: int = 1) -> bool:
        """Appends at least `chars` more characters (fewer at the end of the file); False at
        the end of the file."""
        if self.eof:
            return False
        parts = [self.buf]
        got = 0
        while got < chars:
            try:  # in small reads, so that damage costs little of the text before it
                raw = self.fh.read(_JSON_READ_PIECE)
            except DAMAGED_FILE as err:
                self.damage, raw = damage_detail(err), b""
            text = self.decoder.decode(raw, final=not raw)
            self.escaped = self.escaped or has_surrogates(text)
            parts.append(text)
            got += len(text)
            if not raw:
                self.eof = True
                break
        self.buf = "".join(parts)
        return True

    def line_at(self, pos: int) -> int:
        """The line number of buf[pos]; `pos` never goes back between calls."""
        self.line += self.buf.count("\n", self.counted, pos)
        self.counted = pos
        return self.line

    def column_at(self, pos: int) -> int:
        """The column (from 1) of buf[pos] on its line."""
        start = self.buf.rfind("\n", 0, pos)
        return pos - start if start >= 0 else self.column + pos + 1

    def starts_line(self, pos: int) -> str | None:
        """The indentation before buf[pos] when nothing else precedes it on its line; None
        when something does."""
        start = self.buf.rfind("\n", 0, pos) + 1
        before = self.buf[start:pos]
        if start == 0:  # the line may have begun in dropped text
            if self.indent is None:
                return None
            before = self.indent + before
        return None if before.strip(" \t") else before

    def forget_before(self, pos: int) -> int:
        """Drops the text before `pos` (already parsed); returns pos's new index, 0."""
        self.line_at(pos)
        last = self.buf.rfind("\n", 0, pos)
        head = self.buf[last + 1 : pos]  # the dropped part of buf[pos]'s line
        if last >= 0:
            self.column, self.indent = len(head), ""
        else:
            self.column += len(head)
        if self.indent is not None:
            self.indent = None if head.strip(" \t") or self.column > 256 else self.indent + head
        self.buf = self.buf[pos:]
        self.counted = 0
        return 0

    def skip_space(self, pos: int) -> int:
        """The index of the first character at or after `pos` that is not JSON whitespace,
        reading on as needed (dropping what it passes); len(buf) at the end of the file."""
        while True:
            found = _JSON_NOT_SPACE.search(self.buf, pos)
            if found is not None:
                return found.start()
            pos = self.forget_before(len(self.buf))
            if not self.read():
                return pos

    def value_at(self, start: int, limit: int | None) -> tuple[Any, int, str | None]:
        """The JSON value starting at `start`: (value, end, None), or (None, where, why) when it
        does not parse, or when it runs past `limit` characters without ending (where = -1)."""
        while True:
            try:
                value, end = _JSON.raw_decode(self.buf, start)
                if end < len(self.buf) - _JSON_TAIL or self.eof:
                    return value, end, None
            except RecursionError:
                return None, start, "nesting too deep"
            except json.JSONDecodeError as err:
                may_go_on = err.msg.startswith("Unterminated string") or (
                    err.pos >= len(self.buf) - _JSON_TAIL
                )
                if self.eof or not may_go_on:
                    line = self.line_at(start) + self.buf.count("\n", start, err.pos)
                    column = self.column_at(err.pos)
                    return None, err.pos, f"{err.msg}: line {line} column {column}"
            except ValueError as err:  # e.g. an integer of over 4300 digits
                return None, start, str(err)[:200]
            if limit is not None and len(self.buf) - start > limit:
                return None, -1, f"{_OVER_LIMIT} {limit} characters"
            self.read(len(self.buf) - start)  # doubles what is held of the value

    def next_line_starting(self, after: int, prefix: str) -> int:
        """The index just past `prefix` on the first line after `after` that begins with
        `prefix` followed by "{"; len(buf) (having read the whole file) when none does."""
        needle = "\n" + prefix + "{"
        frm = after
        while True:
            at = self.buf.find(needle, frm)
            if at >= 0:
                return at + 1 + len(prefix)
            frm = max(frm, len(self.buf) - len(needle))
            if not self.read(len(self.buf)):  # doubling: the skipped text is kept whole
                return len(self.buf)

    def discard_rest(self) -> None:
        """Reads to the end of the file keeping nothing (what is left is not wanted)."""
        self.buf, self.counted = "", 0
        while self.read(_JSON_READ_PIECE):
            self.buf = ""

    def read_all(self) -> None:
        while self.read(len(self.buf)):
            pass


def _walk_members(src: _JsonText, pos: int, want: str | None, limit: int) -> tuple[int, str | None]:
    """Inside an object (`pos` past its "{" or past a member), passes over members until the
    one named `want` (returning the index of its value) or, with `want` None, to the end of
    the object (returning the index past its "}"). Values passed over are parsed whole, each
    at most `limit` characters. Returns (where, why) with `why` set when the object ends
    without `want`, or does not parse."""
    while True:
        pos = src.skip_space(pos)
        if pos >= len(src.buf):
            return pos, "the file ends inside the object"
        char = src.buf[pos]
        if char == "}":
            return pos + 1, None if want is None else "missing"
        if char == ",":
            pos += 1
            continue
        name, end, why = src.value_at(pos, limit)
        if why is not None or not isinstance(name, str):
            return pos, why or "a member name that is not a string"
        pos = src.skip_space(end)
        if not src.buf.startswith(":", pos):
            return pos, "no ':' after a member name"
        pos = src.skip_space(pos + 1)
        if name == want:
            return pos, None
        _, end, why = src.value_at(pos, limit)
        if why is not None:
            return pos, f"{name!r}: {why}"
        pos = end


def _after_wrapper(src: _JsonText, pos: int, prefix: str | None, *, keep: bool = False) -> int:
    """Where reading picks up after a wrapper that did not lead to records or was damaged:
    the next line starting with its indentation and "{" (wrappers one a line, or one after
    another at one indentation), else the end of the file. With `keep` the text up to there
    stays in the buffer (a row's payload); else the rest of a file is read past, not held."""
    if prefix is not None:
        return src.next_line_starting(pos, prefix)
    if keep:
        src.read_all()
        return len(src.buf)
    src.discard_rest()
    return 0


def _enter_records(
    src: _JsonText, pos: int, records: tuple[str, ...], limit: int
) -> tuple[int, str | None]:
    """From the "{" of a wrapper at `pos`, into the array at the path `records`: the index past
    its "[", or (where, why)."""
    for depth, key in enumerate(records):
        pos, why = _walk_members(src, pos + 1, key, limit)
        where = ".".join(records[: depth + 1])
        if why is not None:
            return pos, f"no {where}" if why == "missing" else f"{where}: {why}"
        expected = "[" if depth == len(records) - 1 else "{"
        if not src.buf.startswith(expected, pos):
            kind = "an array" if expected == "[" else "an object"
            return pos, f"{where} is not {kind}"
    return pos + 1, None


def json_rows(path: Path, max_line_bytes: int, records: tuple[str, ...] = ()) -> Iterator[Row]:
    """The rows of a `.json` file: the elements of top-level arrays (Scrapy's and most
    scrapers' JSON feeds, minified or pretty-printed; a feed appended to twice), and values
    outside arrays one after another (JSON Lines under a `.json` name, one pretty-printed
    object). Each row is numbered by the line its value starts on. A value that does not
    parse is kept with its text up to the next line that starts an object at the first
    element's indentation (Scrapy puts each element on its own line, `json.dump(indent=...)`
    indents them evenly), or up to the end of the file when the first element does not start
    its line (a minified array). A missing comma between two elements is passed over: both
    records are whole."""
    with open_text_lines(path) as fh:
        src = _JsonText(fh)
        pos = src.skip_space(0)
        if src.buf.startswith("\ufeff", pos):
            pos = src.skip_space(pos + 1)
        in_array = after_value = False
        wrappers = 0  # objects entered on the way to the records array (a record path)
        # the indentation of the wrapper being read when it starts its line: where reading
        # picks up after damage inside it (None: it does not start a line)
        wrapper_prefix: str | None = None
        first = True
        prefix: str | None = None  # the indentation of elements that start their line
        # Over-long values are given up on after max_line_bytes only where reading can pick
        # up again at a line start; elsewhere they are parsed to their end.
        limit = max_line_bytes + _JSON_TAIL
        while True:
            if pos > _JSON_FORGET_AFTER:
                pos = src.forget_before(pos)
            pos = src.skip_space(pos)
            if pos >= len(src.buf):
                break
            char = src.buf[pos]
            if char == "]" and in_array:
                in_array = after_value = False
                pos += 1
                for _ in range(wrappers):  # the wrapper's members after the records
                    pos, why = _walk_members(src, pos, None, limit)
                    if why is not None:
                        yield Row(
                            src.line_at(pos),
                            src.buf[pos : pos + 200],
                            error=MALFORMED_JSON,
                            detail=why[:200],
                        )
                        pos = _after_wrapper(src, pos, wrapper_prefix)
                        break
                wrappers = 0
                continue
            if records and char == "{" and not in_array:
                line_no, shown = src.line_at(pos), src.buf[pos : pos + 200]
                wrapper_prefix = src.starts_line(pos)
                pos, why = _enter_records(src, pos, records, limit)
                if why is None:
                    in_array, after_value, wrappers = True, False, len(records)
                    first = True  # the elements' indentation is looked for in each wrapper
                    continue
                yield Row(line_no, shown, error=RECORDS_NOT_FOUND, detail=why[:200])
                pos = _after_wrapper(src, pos, wrapper_prefix)
                continue
            if char == "[" and not in_array:
                in_array, after_value = True, False
                pos += 1
                continue
            if after_value and char == ",":
                after_value = False
                pos += 1
                continue
            # An element that follows the one before it without a comma is read all the same:
            # the records are whole, only a separator is missing.
            if first:  # elements starting their line are looked for again after damage
                first = False
                prefix = src.starts_line(pos)
            value, end, why = src.value_at(pos, limit if prefix is not None else None)
            line_no = src.line_at(pos)
            if why is None:
                text = src.buf[pos:end]
                row = _json_value_row(line_no, text, value, max_line_bytes, src.escaped)
                after_value = in_array
            elif wrappers:
                # inside a wrapper a line that starts like an element may belong to another
                # array of it: picking up there could take other values for records. The rest
                # of this wrapper is one row, and reading picks up at the next wrapper.
                resume = _after_wrapper(src, pos, wrapper_prefix, keep=True)
                text = src.buf[pos:resume].rstrip()
                row = _json_value_row(line_no, text, None, max_line_bytes, src.escaped, why)
                end, after_value, in_array, wrappers = resume, False, False, 0
            else:
                if prefix is not None:
                    # from the value's own line, not from where the damage was seen: a value
                    # cut short is noticed only in what follows it (the next element, or more
                    # of them parsed as its nested values)
                    resume = src.next_line_starting(pos, prefix)
                else:  # no line to pick up at: the rest of the file is kept as one row
                    src.read_all()
                    resume = len(src.buf)
                text = src.buf[pos:resume].rstrip()
                row = _json_value_row(line_no, text, None, max_line_bytes, src.escaped, why)
                end, after_value = resume, False
            yield row
            pos = end
    if src.damage is not None:
        yield Row(None, None, error=UNREADABLE_FILE, detail=src.damage)


def _json_value_row(
    line_no: int,
    text: str,
    value: Any,
    max_line_bytes: int,
    escaped: bool,
    error: str | None = None,
) -> Row:
    """The row of one value of a `.json` file, or of the text that failed to parse (`error`).
    `escaped`: whether the file has shown bytes that are not UTF-8 (lone surrogates in the
    text, which nothing else decodes to) so far."""
    if escaped and has_surrogates(text):
        shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return Row(line_no, shown, error=INVALID_UTF8, detail="value is not valid UTF-8")
    size = len(text.encode("utf-8")) if len(text) * 4 > max_line_bytes else 0
    if size > max_line_bytes and (error is None or error.startswith(_OVER_LIMIT)):
        return Row(line_no, text, error=LINE_TOO_LONG, detail=f"{size} bytes")
    if error is not None:
        return Row(line_no, text, error=MALFORMED_JSON, detail=error[:200])
    if not isinstance(value, dict):
        return Row(line_no, text, error=NOT_AN_OBJECT, detail=type(value).__name__)
    return Row(line_no, text, record=value)
