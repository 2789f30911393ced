"""A drop's files as raw rows: each file read by its reader (JSON, CSV, Parquet), each
record's id and text taken from the task's fields, the rest kept as metadata."""

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from annotation_assets.core.ingest.csv_rows import csv_rows
from annotation_assets.core.ingest.files import (
    BAD_NAME,
    DAMAGED_FILE,
    INVALID_ID,
    INVALID_TEXT,
    MAX_ID_CHARS,
    MISSING_ID,
    MISSING_TEXT,
    OUTSIDE_DROP,
    RAW_COLUMNS,
    RECORD_SUFFIXES,
    UNREADABLE_FILE,
    UNSUPPORTED_FILE,
    Row,
    damage_detail,
    has_surrogates,
    is_record_file,
    json_text,
    link_target_inside,
    list_drop_files,
    refused_object_rows,
    stored_name,
    without_surrogates,
)
from annotation_assets.core.ingest.json_rows import json_rows, jsonl_rows


@dataclass(frozen=True)
class FieldMap:
    id: str = "id"
    text: str = "text"
    records: tuple[str, ...] = ()  # JSON: the path to the array of records in a wrapper


def parquet_rows(path: Path, batch_size: int) -> Iterator[Row]:
    row_no = 0
    try:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=batch_size):
            for record in batch.to_pylist():
                row_no += 1
                yield Row(row_no, None, record=record)
    except Exception as err:  # pyarrow raises many types for damaged files
        detail = f"after {row_no} rows: {type(err).__name__}: {str(err)[:200]}"
        yield Row(None, None, error=UNREADABLE_FILE, detail=detail)


def _file_rows(
    path: Path, drop_dir: Path, *, max_line_bytes: int, records: tuple[str, ...] = ()
) -> Iterator[Row]:
    inside = link_target_inside(path, drop_dir)
    if inside is None:
        yield Row(None, None, error=UNREADABLE_FILE, detail="symlink loop")
        return
    if not inside:
        yield Row(None, None, error=OUTSIDE_DROP, detail="symlink points outside the drop")
        return
    if path.is_dir():
        yield Row(None, None, error=UNSUPPORTED_FILE, detail="symlinked folder is not followed")
        return
    if not is_record_file(path.name):
        yield Row(None, None, error=UNSUPPORTED_FILE, detail=f"not one of {RECORD_SUFFIXES}")
        return
    name = path.name.lower().removesuffix(".gz")
    try:
        if name.endswith(".parquet"):
            yield from parquet_rows(path, batch_size=10_000)
        elif name.endswith((".csv", ".tsv")):
            yield from csv_rows(path, max_line_bytes)
        elif name.endswith(".json"):
            yield from json_rows(path, max_line_bytes, records)
        else:
            yield from jsonl_rows(path, max_line_bytes, records)
    except DAMAGED_FILE as err:
        yield Row(None, None, error=UNREADABLE_FILE, detail=damage_detail(err))


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


def _to_raw(row: Row, source_file: str, fields: FieldMap) -> dict[str, Any]:
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
            _file_rows(path, drop_dir, max_line_bytes=max_line_bytes, records=fields.records)
            if valid_name
            else iter([Row(None, None, error=UNSUPPORTED_FILE, detail=BAD_NAME)])
        )
        for row in rows:
            buffer.append(_to_raw(row, source_file, fields))
            if len(buffer) >= chunk_size:
                yield pd.DataFrame(buffer, columns=RAW_COLUMNS)
                buffer = []
    buffer.extend(refused_object_rows(drop_dir))
    if buffer:
        yield pd.DataFrame(buffer, columns=RAW_COLUMNS)
