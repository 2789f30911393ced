"""The rows of CSV and TSV record files: the separator told from the header (or an Excel
`sep=` line), quoted fields spanning lines, and broken records given up one line at a time."""

import csv
import io
import itertools
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from annotation_assets.core.ingest.files import (
    CSV_DELIMITERS,
    INVALID_UTF8,
    LINE_TOO_LONG,
    MALFORMED_CSV,
    MAX_CSV_RECORD_LINES,
    LongLine,
    Row,
    bounded_lines,
    decode_utf8,
    open_text_lines,
)


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
        delimiter = csv_delimiter(decode_utf8(b"".join(r for _, r in head))[0], preferred)
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


def csv_rows(path: Path, max_line_bytes: int) -> Iterator[Row]:
    tsv = path.name.lower().removesuffix(".gz").endswith(".tsv")
    with open_text_lines(path) as fh:
        lines = enumerate(bounded_lines(fh, max_line_bytes), start=1)
        header: list[str] | None = None
        rows = csv_field_rows(lines, max_line_bytes, preferred="\t" if tsv else ",")
        for start, chunk, fields, error in rows:
            if error is not None or fields is None:
                reason, detail = error or (MALFORMED_CSV, "no fields")
                yield Row(start, chunk, error=reason, detail=detail)
                continue
            if header is None:
                header = unique_columns(fields)
                continue
            if len(fields) != len(header):
                detail = f"{len(fields)} fields, header has {len(header)}"
                yield Row(start, chunk, error=MALFORMED_CSV, detail=detail)
                continue
            yield Row(start, chunk, record=dict(zip(header, fields, strict=True)))


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
        if isinstance(raw, LongLine):  # only its first bytes were kept
            if pending:  # an open quoted record does not run on through it
                first_no, first_raw = pending[0]
                first_text = decode_utf8(first_raw)[0].rstrip("\r\n")
                yield first_no, first_text, (MALFORMED_CSV, "unclosed quote")
                replay = [*pending[1:], (line_no, raw), *replay]
                pending = []
                continue
            yield line_no, decode_utf8(raw)[0], (LINE_TOO_LONG, f"{raw.total} bytes")
            continue
        if not pending and not raw.strip(_NOT_A_FIELD.get(delimiter, b" \t\r\n\x0b\x0c")):
            continue
        pending.append((line_no, raw))
        joined = b"".join(r for _, r in pending)
        text, valid = decode_utf8(joined)
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
            first_text, _ = decode_utf8(first_raw)
            reason = {"open": "unclosed quote", "bad": "bad quoting"}.get(state, "record too long")
            if len(first_raw) > max_line_bytes:
                yield first_no, first_text.rstrip("\r\n"), (LINE_TOO_LONG, f"{len(first_raw)} b")
            else:
                yield first_no, first_text.rstrip("\r\n"), (MALFORMED_CSV, reason)
            replay = pending[1:] + replay
            pending = []
    if pending:
        first_no, first_raw = pending[0]
        yield first_no, decode_utf8(first_raw)[0].rstrip("\r\n"), (MALFORMED_CSV, "unclosed quote")
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
