"""Streaming ingestion of a drop's record files into raw rows, bad lines kept with a reason."""

import csv
import gzip
import io
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow.parquet as pq

RAW_COLUMNS = ["source_file", "line_no", "record_id", "text", "meta", "payload", "error", "detail"]
RECORD_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".parquet", ".jsonl.gz", ".ndjson.gz", ".csv.gz")
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


def csv_field_rows(
    lines: Iterable[tuple[int, bytes]], max_line_bytes: int
) -> Iterator[tuple[int, str, list[str] | None, tuple[str, str] | None]]:
    """The CSV records of numbered physical lines (BOM already removed): per record, its
    first line number, its text, and its fields or (reason code, detail). A quoted field may
    span lines; an unclosed quote costs one line, and the lines after it are read again."""
    for start, chunk, error in _csv_records(lines, max_line_bytes):
        if error is not None:
            yield start, chunk, None, error
            continue
        try:
            fields = next(csv.reader([chunk], strict=True))
        except csv.Error as err:  # e.g. a bare carriage return in an unquoted field
            yield start, chunk, None, (MALFORMED_CSV, str(err)[:200])
            continue
        yield start, chunk, fields, None


def _csv_rows(path: Path, max_line_bytes: int) -> Iterator[_Row]:
    with _open_text_lines(path) as fh:
        lines = enumerate(_without_bom(fh), start=1)
        header: list[str] | None = None
        for start, chunk, fields, error in csv_field_rows(lines, max_line_bytes):
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
    lines: Iterable[tuple[int, bytes]], max_line_bytes: int
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
        if not pending and not raw.strip():
            continue
        pending.append((line_no, raw))
        joined = b"".join(r for _, r in pending)
        text, valid = _decode(joined)
        if not valid and len(pending) == 1:
            yield line_no, text.rstrip("\r\n"), (INVALID_UTF8, "line is not valid UTF-8")
            pending = []
            continue
        state = _csv_state(text)
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
        yield from _csv_records(pending[1:], max_line_bytes)


def _csv_state(text: str) -> str:
    """'ok' when the text is one complete CSV record, 'open' when a quoted field is still
    open, 'bad' when the quoting is broken."""
    if '"' not in text:
        return "ok"
    try:
        rows = list(csv.reader(io.StringIO(text), strict=True))
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
        elif name.endswith(".csv"):
            yield from _csv_rows(path, max_line_bytes)
        else:
            yield from _jsonl_rows(path, max_line_bytes)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        yield _Row(None, None, error=UNREADABLE_FILE, detail=f"{type(err).__name__}: {err}"[:300])


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


def _absent(record: dict[str, Any], field: str) -> str:
    """When `field` is not in the record at all, which fields it has: a header or key that
    does not match the spec's `fields:` mapping shows on every row."""
    if field in record:
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
    record_id, id_error, why = _scalar_id(record.get(fields.id))
    out["record_id"] = record_id
    text = record.get(fields.text)
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
        meta = {k: v for k, v in record.items() if k not in (fields.id, fields.text)}
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
