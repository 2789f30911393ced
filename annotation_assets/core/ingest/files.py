"""What every reader of a drop's record files shares: the raw-row columns and reason codes,
the listing of a drop's files, text and file-name helpers, and how lines are read and decoded."""

import gzip
import json
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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
RECORDS_NOT_FOUND = "records_not_found"  # no array at the spec's fields.records path
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


@dataclass
class Row:
    """One row as a reader yields it: a record, or an error reason code with its detail; the
    line it starts on (None: the whole file) and the text it was read from (None: Parquet)."""

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


def open_text_lines(path: Path) -> IO[bytes]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def decode_utf8(raw: bytes) -> tuple[str, bool]:
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="backslashreplace"), False


LONG_LINE_PREFIX = 4096  # bytes of an over-long line kept as its quarantined payload
_SKIP_PIECE = 1 << 20


class LongLine(bytes):
    """The first LONG_LINE_PREFIX bytes of a line longer than the limit (its payload);
    `total` is the line's length in bytes."""

    total: int


def bounded_lines(fh: IO[bytes], max_line_bytes: int) -> Iterator[bytes]:
    """The lines of a binary file (newline kept; a UTF-8 byte-order mark dropped from the
    first), never holding more than max_line_bytes + 2 bytes of one line (room for "\\r\\n"),
    whatever the compression ratio: a longer line comes as a LongLine, the rest of it read
    past in pieces of 1 MiB. Lines up to that size come whole; the reader measures them."""
    limit = max_line_bytes + 2
    first = True
    while True:
        raw = fh.readline(limit + (3 if first else 0))  # the first may start with a BOM
        if not raw:
            return
        if first:
            raw, first = raw.removeprefix(b"\xef\xbb\xbf"), False
        if raw.endswith(b"\n") or len(raw) < limit:  # whole (the last may lack a newline)
            yield raw
            continue
        total, last = len(raw), raw
        while not last.endswith(b"\n"):
            last = fh.readline(_SKIP_PIECE)
            if not last:
                break
            total += len(last)
        ending = 2 if last.endswith(b"\r\n") else 1 if last.endswith(b"\n") else 0
        line = LongLine(raw[:LONG_LINE_PREFIX])
        line.total = total - ending
        yield line


# What reading a damaged file raises: a truncated gzip stream (EOFError), a bad CRC or header
# (gzip.BadGzipFile, an OSError), a corrupt deflate stream (zlib.error), or a failing disk.
DAMAGED_FILE = (OSError, EOFError, zlib.error)


def damage_detail(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:300]
