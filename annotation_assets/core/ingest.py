"""Streaming ingestion of a drop's record files into raw rows, bad lines kept with a reason."""

import codecs
import csv
import gzip
import io
import itertools
import json
import math
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow.parquet as pq

RAW_COLUMNS = ["source_file", "line_no", "record_id", "text", "meta", "payload", "error", "detail"]
RECORD_SUFFIXES = (
    ".jsonl",
    ".ndjson",
    ".json",
    ".csv",
    ".tsv",
    ".parquet",
    ".jsonl.gz",
    ".ndjson.gz",
    ".json.gz",
    ".csv.gz",
    ".tsv.gz",
)
# Field separators a CSV file may use, told from its header line (`csv_delimiter`): the comma,
# the semicolon (spreadsheets in locales with a decimal comma), the tab (TSV) and the pipe.
CSV_DELIMITERS = (",", ";", "\t", "|")
MAX_ID_CHARS = 512
MAX_CSV_RECORD_LINES = 100

# Reason codes for raw rows that cannot become records.
MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
INVALID_UTF8 = "invalid_utf8"
LINE_TOO_LONG = "line_too_long"
MALFORMED_CSV = "malformed_csv"
MISSING_ID = "missing_id"
INVALID_ID = "invalid_id"
MISSING_TEXT = "missing_text"
INVALID_TEXT = "invalid_text"
UNREADABLE_FILE = "unreadable_file"
UNSUPPORTED_FILE = "unsupported_file"
OUTSIDE_DROP = "outside_drop"

BAD_NAME = "file name is not valid UTF-8"


_SURROGATES = re.compile("[\ud800-\udfff]")


def has_surrogates(text: str) -> bool:
    """Whether `text` holds lone surrogates (from JSON escapes such as ``"\\ud83d"`` or from
    file names that are not UTF-8), which cannot be stored as UTF-8."""
    return _SURROGATES.search(text) is not None


def without_surrogates(text: str) -> str:
    return _SURROGATES.sub("", text)


def json_text(value: Any) -> str:
    """`value` as JSON text that encodes as UTF-8 and that DuckDB's JSON functions accept:
    lone surrogates (which neither allows, even escaped) become U+FFFD."""
    return _SURROGATES.sub("\ufffd", json.dumps(value, default=str, ensure_ascii=False))


def stored_name(rel: Path) -> tuple[str, bool]:
    """A drop-relative path as stored in `source_file`, and whether it is valid UTF-8 (a name
    that is not is shown with its bad bytes escaped, e.g. ``bad\\xffname.jsonl``)."""
    name = rel.as_posix()
    if not has_surrogates(name):
        return name, True
    return os.fsencode(name).decode("utf-8", errors="backslashreplace"), False


def link_target_inside(path: Path, drop_dir: Path) -> bool | None:
    """For a symlink: whether its final target lies inside the drop; None when the link
    cannot be resolved (a loop). Paths that are not symlinks count as inside."""
    if not path.is_symlink():
        return True
    try:
        return path.resolve().is_relative_to(drop_dir.resolve())
    except (OSError, RuntimeError):  # RuntimeError: symlink loop (Python < 3.13)
        return None


@dataclass(frozen=True)
class FieldMap:
    id: str = "id"
    text: str = "text"


@dataclass
class _Row:
    line_no: int | None
    payload: str | None
    record: dict[str, Any] | None = None
    error: str | None = None
    detail: str | None = None


REFUSED_OBJECTS = "_refused_objects.jsonl"


def refused_object_rows(drop_dir: Path) -> Iterator[dict[str, Any]]:
    """Quarantine rows (`outside_drop`) for objects that staging a drop from S3 refused to
    write because their keys would escape the drop folder; staging lists them, one JSON object
    `{"key", "reason"}` per line, in `<drop>/_refused_objects.jsonl`. A line that is not such
    an object (the file is in the drop, so it may have been written by hand) is quarantined
    as it is, never trusted and never fatal."""
    path = drop_dir / REFUSED_OBJECTS
    if not path.is_file() or path.is_symlink():
        return
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            line = raw.decode("utf-8", errors="replace").strip().replace("\x00", "\ufffd")
            if not line:
                continue
            row = dict.fromkeys(RAW_COLUMNS)
            try:
                entry = json.loads(line)
                key, reason = entry["key"], entry["reason"]
                if not isinstance(key, str) or not isinstance(reason, str):
                    raise TypeError("key and reason must be strings")
            except (ValueError, TypeError, KeyError) as err:
                row.update(
                    source_file=REFUSED_OBJECTS,
                    line_no=line_no,
                    payload=line,
                    error=MALFORMED_JSON,
                    detail=f"not a refused-object entry: {type(err).__name__}",
                )
            else:
                row.update(
                    source_file=key.encode("utf-8", "replace").decode("utf-8"),
                    payload=line,
                    error=OUTSIDE_DROP,
                    detail=f"S3 key not staged: {reason}",
                )
            yield row


def is_record_file(name: str) -> bool:
    return name.lower().endswith(RECORD_SUFFIXES)


def list_drop_files(drop_dir: Path) -> list[Path]:
    """Every file of a drop, sorted, skipping hidden and marker files (`.x`, `_SUCCESS`)."""
    files: list[Path] = []
    for root, dirs, names in os.walk(drop_dir, followlinks=False):
        visible = sorted(d for d in dirs if not d.startswith((".", "_")))
        files.extend(Path(root) / d for d in visible if (Path(root) / d).is_symlink())
        dirs[:] = [d for d in visible if not (Path(root) / d).is_symlink()]
        files.extend(Path(root) / n for n in names if not n.startswith((".", "_")))
    return sorted(files, key=lambda p: p.relative_to(drop_dir).as_posix())


def _open_text_lines(path: Path) -> IO[bytes]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _decode(raw: bytes) -> tuple[str, bool]:
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="backslashreplace"), False


def _without_bom(lines: Iterable[bytes]) -> Iterator[bytes]:
    """The file's lines with a UTF-8 byte-order mark (Excel, Notepad) dropped from the first."""
    for i, raw in enumerate(lines):
        yield raw.removeprefix(b"\xef\xbb\xbf") if i == 0 else raw


def _jsonl_rows(path: Path, max_line_bytes: int) -> Iterator[_Row]:
    with _open_text_lines(path) as fh:
        for line_no, raw in enumerate(_without_bom(fh), start=1):
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            text, valid = _decode(raw)
            if not valid:
                yield _Row(line_no, text, error=INVALID_UTF8, detail="line is not valid UTF-8")
            elif len(raw) > max_line_bytes:
                yield _Row(line_no, text, error=LINE_TOO_LONG, detail=f"{len(raw)} bytes")
            else:
                yield _parse_json_line(line_no, text)


def _parse_json_line(line_no: int, text: str) -> _Row:
    try:
        value = json.loads(text)
    except RecursionError:
        return _Row(line_no, text, error=MALFORMED_JSON, detail="nesting too deep")
    except ValueError as err:
        return _Row(line_no, text, error=MALFORMED_JSON, detail=str(err)[:200])
    if not isinstance(value, dict):
        return _Row(line_no, text, error=NOT_AN_OBJECT, detail=type(value).__name__)
    return _Row(line_no, text, record=value)


# What reading a damaged file raises: a truncated gzip stream (EOFError), a bad CRC or header
# (gzip.BadGzipFile, an OSError), a corrupt deflate stream (zlib.error), or a failing disk.
_DAMAGED_FILE = (OSError, EOFError, zlib.error)


def _damage(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:300]


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
            except _DAMAGED_FILE as err:
                self.damage, raw = _damage(err), b""
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

    def read_all(self) -> None:
        while self.read(len(self.buf)):
            pass


def _json_rows(path: Path, max_line_bytes: int) -> Iterator[_Row]:
    """The rows of a `.json` file: the elements of top-level arrays (Scrapy's and most
    scrapers' JSON feeds, minified or pretty-printed; a feed appended to twice), and values
    outside arrays one after another (JSON Lines under a `.json` name, one pretty-printed
    object). Each row is numbered by the line its value starts on. A value that does not
    parse is kept with its text up to the next line that starts an object at the first
    element's indentation (Scrapy puts each element on its own line, `json.dump(indent=...)`
    indents them evenly), or up to the end of the file when the first element does not start
    its line (a minified array). A missing comma between two elements is passed over: both
    records are whole."""
    with _open_text_lines(path) as fh:
        src = _JsonText(fh)
        pos = src.skip_space(0)
        if src.buf.startswith("\ufeff", pos):
            pos = src.skip_space(pos + 1)
        in_array = after_value = False
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
        yield _Row(None, None, error=UNREADABLE_FILE, detail=src.damage)


def _json_value_row(
    line_no: int,
    text: str,
    value: Any,
    max_line_bytes: int,
    escaped: bool,
    error: str | None = None,
) -> _Row:
    """The row of one value of a `.json` file, or of the text that failed to parse (`error`).
    `escaped`: whether the file has shown bytes that are not UTF-8 (lone surrogates in the
    text, which nothing else decodes to) so far."""
    if escaped and has_surrogates(text):
        shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return _Row(line_no, shown, error=INVALID_UTF8, detail="value is not valid UTF-8")
    size = len(text.encode("utf-8")) if len(text) * 4 > max_line_bytes else 0
    if size > max_line_bytes and (error is None or error.startswith(_OVER_LIMIT)):
        return _Row(line_no, text, error=LINE_TOO_LONG, detail=f"{size} bytes")
    if error is not None:
        return _Row(line_no, text, error=MALFORMED_JSON, detail=error[:200])
    if not isinstance(value, dict):
        return _Row(line_no, text, error=NOT_AN_OBJECT, detail=type(value).__name__)
    return _Row(line_no, text, record=value)


def csv_delimiter(header: str, preferred: str = ",") -> str:
    """The field separator of a CSV file, told from its header record: of CSV_DELIMITERS, the
    one that splits the header into the most names (`preferred` on a tie, and when no other
    splits it). A split that leaves a quote inside a name, or that is not one whole record,
    is not counted: `id,"a;b"` is two names separated by a comma, not `id,"a` and `b"`."""
    best, most = preferred, 1
    for delimiter in (preferred, *(d for d in CSV_DELIMITERS if d != preferred)):
        try:
            records = list(csv.reader(io.StringIO(header), delimiter=delimiter, strict=True))
        except csv.Error:
            continue
        names = records[0] if len(records) == 1 else []
        if len(names) > most and not any('"' in name for name in names):
            best, most = delimiter, len(names)
    return best


# What a blank line may hold: whitespace, but not the separator (a line of tabs in a TSV file
# is a record of empty fields).
_NOT_A_FIELD = {"\t": b" \r\n\x0b\x0c"}
_SEP_HINT = re.compile(rb"sep=(.)\r?\n?")  # Excel's first line naming the separator


def csv_field_rows(
    lines: Iterable[tuple[int, bytes]], max_line_bytes: int, preferred: str = ","
) -> Iterator[tuple[int, str, list[str] | None, tuple[str, str] | None]]:
    """The CSV records of numbered physical lines (BOM already removed): per record, its
    first line number, its text, and its fields or (reason code, detail). A quoted field may
    span lines; an unclosed quote costs one line, and the lines after it are read again.
    Fields are separated as the header record shows (`csv_delimiter`, `preferred` on a tie),
    or as an Excel `sep=;` first line says (that line is not a record)."""
    queue = iter(lines)
    head: list[tuple[int, bytes]] = []  # the header record's lines (blank lines before it go)
    size = quotes = 0
    for line_no, raw in queue:
        if head or raw.strip():
            head.append((line_no, raw))
            size, quotes = size + len(raw), quotes + raw.count(b'"')
            if quotes % 2 == 0 or len(head) >= MAX_CSV_RECORD_LINES or size > max_line_bytes:
                break
    hint = _SEP_HINT.fullmatch(head[0][1]) if head else None
    if hint is not None and hint.group(1).decode("latin-1") in CSV_DELIMITERS:
        delimiter = hint.group(1).decode("latin-1")
        head = head[1:]
    elif head and size <= max_line_bytes:
        delimiter = csv_delimiter(_decode(b"".join(r for _, r in head))[0], preferred)
    else:
        delimiter = preferred
    records = _csv_records(itertools.chain(head, queue), max_line_bytes, delimiter)
    for start, chunk, error in records:
        if error is not None:
            yield start, chunk, None, error
            continue
        try:
            fields = next(csv.reader([chunk], delimiter=delimiter, strict=True))
        except csv.Error as err:  # e.g. a bare carriage return in an unquoted field
            yield start, chunk, None, (MALFORMED_CSV, str(err)[:200])
            continue
        yield start, chunk, fields, None


def _csv_rows(path: Path, max_line_bytes: int) -> Iterator[_Row]:
    tsv = path.name.lower().removesuffix(".gz").endswith(".tsv")
    with _open_text_lines(path) as fh:
        lines = enumerate(_without_bom(fh), start=1)
        header: list[str] | None = None
        rows = csv_field_rows(lines, max_line_bytes, preferred="\t" if tsv else ",")
        for start, chunk, fields, error in rows:
            if error is not None or fields is None:
                reason, detail = error or (MALFORMED_CSV, "no fields")
                yield _Row(start, chunk, error=reason, detail=detail)
                continue
            if header is None:
                header = unique_columns(fields)
                continue
            if len(fields) != len(header):
                detail = f"{len(fields)} fields, header has {len(header)}"
                yield _Row(start, chunk, error=MALFORMED_CSV, detail=detail)
                continue
            yield _Row(start, chunk, record=dict(zip(header, fields, strict=True)))


def unique_columns(names: list[str]) -> list[str]:
    """A CSV header with repeated names told apart as pandas does: the first `text` stays
    `text`, the next ones become `text.1`, `text.2`, ... (kept in the record's meta)."""
    seen: dict[str, int] = {}
    taken = set(names)
    out = []
    for name in names:
        if name not in seen:
            seen[name] = 0
            out.append(name)
            continue
        while True:
            seen[name] += 1
            candidate = f"{name}.{seen[name]}"
            if candidate not in taken:
                break
        taken.add(candidate)
        out.append(candidate)
    return out


def _csv_records(
    lines: Iterable[tuple[int, bytes]], max_line_bytes: int, delimiter: str = ","
) -> Iterator[tuple[int, str, tuple[str, str] | None]]:
    """Groups physical lines into CSV records (a quoted field may span lines). A record that
    does not close within MAX_CSV_RECORD_LINES lines or max_line_bytes gives up its first line
    as malformed, and the lines after it are read again."""
    pending: list[tuple[int, bytes]] = []
    queue = iter(lines)
    replay: list[tuple[int, bytes]] = []
    while True:
        if replay:
            line_no, raw = replay.pop(0)
        else:
            nxt = next(queue, None)
            if nxt is None:
                break
            line_no, raw = nxt
        if not pending and not raw.strip(_NOT_A_FIELD.get(delimiter, b" \t\r\n\x0b\x0c")):
            continue
        pending.append((line_no, raw))
        joined = b"".join(r for _, r in pending)
        text, valid = _decode(joined)
        if not valid and len(pending) == 1:
            yield line_no, text.rstrip("\r\n"), (INVALID_UTF8, "line is not valid UTF-8")
            pending = []
            continue
        state = _csv_state(text, delimiter)
        if state == "ok" and valid and len(joined) <= max_line_bytes:
            yield pending[0][0], text.rstrip("\r\n"), None
            pending = []
        elif state == "bad" or len(pending) >= MAX_CSV_RECORD_LINES or len(joined) > max_line_bytes:
            first_no, first_raw = pending[0]
            first_text, _ = _decode(first_raw)
            reason = {"open": "unclosed quote", "bad": "bad quoting"}.get(state, "record too long")
            if len(first_raw) > max_line_bytes:
                yield first_no, first_text.rstrip("\r\n"), (LINE_TOO_LONG, f"{len(first_raw)} b")
            else:
                yield first_no, first_text.rstrip("\r\n"), (MALFORMED_CSV, reason)
            replay = pending[1:] + replay
            pending = []
    if pending:
        first_no, first_raw = pending[0]
        yield first_no, _decode(first_raw)[0].rstrip("\r\n"), (MALFORMED_CSV, "unclosed quote")
        yield from _csv_records(pending[1:], max_line_bytes, delimiter)


def _csv_state(text: str, delimiter: str = ",") -> str:
    """'ok' when the text is one complete CSV record, 'open' when a quoted field is still
    open, 'bad' when the quoting is broken."""
    if '"' not in text:
        return "ok"
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter, strict=True))
    except csv.Error as err:
        return "open" if "unexpected end of data" in str(err) else "bad"
    return "ok" if len(rows) <= 1 else "bad"


def _parquet_rows(path: Path, batch_size: int) -> Iterator[_Row]:
    row_no = 0
    try:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=batch_size):
            for record in batch.to_pylist():
                row_no += 1
                yield _Row(row_no, None, record=record)
    except Exception as err:  # pyarrow raises many types for damaged files
        detail = f"after {row_no} rows: {type(err).__name__}: {str(err)[:200]}"
        yield _Row(None, None, error=UNREADABLE_FILE, detail=detail)


def _file_rows(path: Path, drop_dir: Path, *, max_line_bytes: int) -> Iterator[_Row]:
    inside = link_target_inside(path, drop_dir)
    if inside is None:
        yield _Row(None, None, error=UNREADABLE_FILE, detail="symlink loop")
        return
    if not inside:
        yield _Row(None, None, error=OUTSIDE_DROP, detail="symlink points outside the drop")
        return
    if path.is_dir():
        yield _Row(None, None, error=UNSUPPORTED_FILE, detail="symlinked folder is not followed")
        return
    if not is_record_file(path.name):
        yield _Row(None, None, error=UNSUPPORTED_FILE, detail=f"not one of {RECORD_SUFFIXES}")
        return
    name = path.name.lower().removesuffix(".gz")
    try:
        if name.endswith(".parquet"):
            yield from _parquet_rows(path, batch_size=10_000)
        elif name.endswith((".csv", ".tsv")):
            yield from _csv_rows(path, max_line_bytes)
        elif name.endswith(".json"):
            yield from _json_rows(path, max_line_bytes)
        else:
            yield from _jsonl_rows(path, max_line_bytes)
    except _DAMAGED_FILE as err:
        yield _Row(None, None, error=UNREADABLE_FILE, detail=_damage(err))


def id_text(value: Any) -> tuple[str | None, str | None]:
    """A record id as text, or why it cannot be one (None, "" and NaN: missing).

    Strings and integers are ids. A float is one when it is a whole number that a float holds
    exactly (below 2**53): pandas writes an integer id column with a gap as floats, so 10.0
    is the id "10". From 2**53 on, floats skip integers, so such a float is refused."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None, f"float {value!r} is not a whole number"
        if abs(value) >= 2**53:
            return None, f"float {value!r} is not below 2**53, where floats skip integers"
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None, f"a {type(value).__name__} is not an id (a string or a number is)"
    text = str(value).strip()
    if not text:
        return None, None
    if len(text) > MAX_ID_CHARS:
        return None, f"{len(text)} characters, more than {MAX_ID_CHARS}"
    if "\x00" in text or has_surrogates(text):
        return None, "contains NUL or a lone surrogate"
    return text, None


def _scalar_id(value: Any) -> tuple[str | None, str | None, str | None]:
    """The id, its reason code when it has none (missing_id or invalid_id), and why."""
    text, problem = id_text(value)
    if problem is not None:
        return None, INVALID_ID, problem
    if text is None:
        return None, MISSING_ID, None
    return text, None, None


def nested_parts(name: str) -> list[str] | None:
    """The keys a dotted field name walks through nested objects (`review.body`: review, then
    body); None for a name without dots, or with an empty part (`No.`, `a..b`), which is only
    ever a key itself."""
    if "." not in name:
        return None
    parts = name.split(".")
    return None if "" in parts else parts


def field_value(record: dict[str, Any], name: str) -> tuple[bool, Any]:
    """A record's field: (whether it is there, its value). A name with dots that is not a key
    of the record itself reaches into nested objects, one key per part: `review.body` is
    record["review"]["body"] (scraped JSON often nests the text)."""
    if name in record:
        return True, record[name]
    parts = nested_parts(name)
    if parts is None:
        return False, None
    value: Any = record
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def without_field(record: dict[str, Any], name: str) -> dict[str, Any]:
    """`record` without the field `name`, as `field_value` finds it; nested objects on its
    path are copied, not changed, and one left empty is dropped."""
    parts = None if name in record else nested_parts(name)
    if parts is None:
        return {k: v for k, v in record.items() if k != name}
    return _without_path(record, parts) if field_value(record, name)[0] else record


def without_fields(record: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """`record` without each of the fields `names`, keys or nested (`without_field`)."""
    out = {k: v for k, v in record.items() if k not in names}
    for name in names:
        if name not in record and nested_parts(name) is not None:
            out = without_field(out, name)
    return out


def _without_path(obj: dict[str, Any], parts: list[str]) -> dict[str, Any]:
    head = parts[0]
    if len(parts) == 1:
        return {k: v for k, v in obj.items() if k != head}
    inner = _without_path(obj[head], parts[1:])
    return {k: inner if k == head else v for k, v in obj.items() if k != head or inner}


def _absent(record: dict[str, Any], field: str) -> str:
    """When `field` is not in the record at all, which fields it has: a header or key that
    does not match the spec's `fields:` mapping shows on every row."""
    if field_value(record, field)[0]:
        return ""
    names = [without_surrogates(str(k))[:40] for k in list(record)[:8]]
    more = ", ..." if len(record) > 8 else ""
    return f" absent; the record has {', '.join(names) or 'no fields'}{more}"


def _to_raw(row: _Row, source_file: str, fields: FieldMap) -> dict[str, Any]:
    out: dict[str, Any] = {
        "source_file": source_file,
        "line_no": row.line_no,
        "record_id": None,
        "text": None,
        "meta": None,
        "payload": row.payload,
        "error": row.error,
        "detail": row.detail,
    }
    record = row.record
    if record is None:
        return out
    if row.payload is None:
        out["payload"] = json_text(record)
    record_id, id_error, why = _scalar_id(field_value(record, fields.id)[1])
    out["record_id"] = record_id
    text = field_value(record, fields.text)[1]
    if id_error:
        out["error"] = id_error
        out["detail"] = f"field {fields.id!r}" + (f": {why}" if why else _absent(record, fields.id))
    elif text is None or (isinstance(text, str) and not text.strip()):
        out["error"] = MISSING_TEXT
        out["detail"] = f"field {fields.text!r}{_absent(record, fields.text)}"
    elif not isinstance(text, str):
        out["error"], out["detail"] = INVALID_TEXT, f"{type(text).__name__} in {fields.text!r}"
    else:
        out["text"] = without_surrogates(text)
        meta = without_fields(record, (fields.id, fields.text))
        out["meta"] = json_text(meta) if meta else None
    return out


def iter_raw_chunks(
    drop_dir: Path,
    *,
    fields: FieldMap = FieldMap(),
    max_line_bytes: int = 1_000_000,
    chunk_size: int = 50_000,
) -> Iterator[pd.DataFrame]:
    """Reads every file of a drop, yielding DataFrames of at most chunk_size raw rows with
    RAW_COLUMNS. Rows that cannot be records carry an `error` reason code and their payload."""
    buffer: list[dict[str, Any]] = []
    for path in list_drop_files(drop_dir):
        source_file, valid_name = stored_name(path.relative_to(drop_dir))
        rows = (
            _file_rows(path, drop_dir, max_line_bytes=max_line_bytes)
            if valid_name
            else iter([_Row(None, None, error=UNSUPPORTED_FILE, detail=BAD_NAME)])
        )
        for row in rows:
            buffer.append(_to_raw(row, source_file, fields))
            if len(buffer) >= chunk_size:
                yield pd.DataFrame(buffer, columns=RAW_COLUMNS)
                buffer = []
    buffer.extend(refused_object_rows(drop_dir))
    if buffer:
        yield pd.DataFrame(buffer, columns=RAW_COLUMNS)
