"""Image drops: decode and fingerprint image files, join the manifest, find near-duplicates.

A drop holds image files (JPEG, PNG, WebP, GIF) and optionally a ``manifest.jsonl`` at its root,
one JSON object per image: ``file`` (path relative to the drop), an id (the task's id field),
``url``, ``title``, ``alt`` (or ``alt_text``) and any other fields, which are kept as metadata.

**Decoding.** Every image is opened with Pillow restricted to those four formats (so no other
decoder, e.g. EPS or PSD, ever runs on scraped bytes). Its size is read from the header first:
more than ``max_pixels`` pixels (default ``DEFAULT_MAX_PIXELS`` = 50 million, about a
7000 x 7000 photo, roughly 150 MB of RGB once decoded) is a ``decompression_bomb`` and the
pixels are never decoded. Pillow's own limit (``Image.MAX_IMAGE_PIXELS``) applies as well. The
image is then decoded fully (the first frame of an animated GIF), so a truncated file is caught;
truncated images are never accepted (``ImageFile.LOAD_TRUNCATED_IMAGES`` stays off).

**Fingerprints.** ``sha256`` of the file bytes finds exact duplicates. The perceptual hash is a
64-bit pHash, built like ``imagehash.phash``: the image (alpha composited onto white) in
grayscale, resized to 32 x 32 with Lanczos, 2-D DCT-II, the 8 x 8 lowest frequencies compared
with their median, bits in row-major order, written as 16 hex digits. Large JPEGs are decoded
at a reduced DCT scale (at least 128 px a side) before hashing, which is faster and changes
the hash by a bit or two at most.

**Near duplicates** of these hashes: ``image_dedup.py`` (``hamming_near_duplicates``, whose
threshold ``DEFAULT_PHASH_MAX_DISTANCE`` it explains).
"""

import hashlib
import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from annotation_assets.core.image_dedup import (
    DEFAULT_PHASH_MAX_DISTANCE,
    hamming_near_duplicates,
    hashes_from_hex,
)
from annotation_assets.core.ingest import (
    BAD_NAME,
    INVALID_ID,
    INVALID_UTF8,
    LINE_TOO_LONG,
    MALFORMED_JSON,
    NOT_AN_OBJECT,
    OUTSIDE_DROP,
    RAW_COLUMNS,
    UNREADABLE_FILE,
    UNSUPPORTED_FILE,
    field_value,
    id_text,
    json_text,
    link_target_inside,
    list_drop_files,
    refused_object_rows,
    stored_name,
    without_fields,
    without_surrogates,
)

__all__ = [
    "CORRUPT_IMAGE",
    "DECOMPRESSION_BOMB",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_PHASH_MAX_DISTANCE",
    "DUPLICATE_ENTRY",
    "EMPTY_FILE",
    "IMAGE_REASONS",
    "IMAGE_SUFFIXES",
    "MANIFEST",
    "MISSING_FILE",
    "NOT_AN_IMAGE",
    "ImageInfo",
    "hamming_near_duplicates",
    "hashes_from_hex",
    "image_text",
    "inspect_image",
    "is_image_file",
    "iter_image_raw_chunks",
    "phash",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")
MANIFEST = "manifest.jsonl"
DEFAULT_MAX_PIXELS = 50_000_000
MAX_MANIFEST_LINE_BYTES = 1_000_000

# Reason codes of image rows (besides ingest's, listed in IMAGE_REASONS).
EMPTY_FILE = "empty_file"
NOT_AN_IMAGE = "not_an_image"
CORRUPT_IMAGE = "corrupt_image"
DECOMPRESSION_BOMB = "decompression_bomb"
MISSING_FILE = "missing_file"
DUPLICATE_ENTRY = "duplicate_manifest_entry"

IMAGE_REASONS = (
    EMPTY_FILE,
    NOT_AN_IMAGE,
    CORRUPT_IMAGE,
    DECOMPRESSION_BOMB,
    MISSING_FILE,
    DUPLICATE_ENTRY,
    MALFORMED_JSON,
    NOT_AN_OBJECT,
    INVALID_UTF8,
    LINE_TOO_LONG,
    INVALID_ID,
    UNREADABLE_FILE,
    UNSUPPORTED_FILE,
    OUTSIDE_DROP,
)

_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")
_HASH_SIDE = 32
_LOW_FREQ = 8
_DRAFT_SIDE = 128
_DCT = np.cos(  # the first 8 rows of the 32-point DCT-II (unscaled, as in scipy's dct)
    np.pi
    * np.arange(_LOW_FREQ)[:, None]
    * (2 * np.arange(_HASH_SIDE)[None, :] + 1)
    / (2 * _HASH_SIDE)
)
_ALT_FIELDS = ("alt", "alt_text")


@dataclass(frozen=True)
class ImageInfo:
    """What inspection measured: header size, format, mode (before any conversion), file
    size in bytes, sha256 of the bytes and the 16-hex-digit pHash."""

    width: int
    height: int
    format: str
    mode: str
    bytes: int
    sha256: str
    phash: str


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _looks_like_image(head: bytes) -> bool:
    return head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def phash(img: Image.Image) -> str:
    """The 64-bit DCT perceptual hash of an image as 16 hex digits (see the module doc)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    small = img.convert("L").resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float64)
    low = _DCT @ pixels @ _DCT.T
    bits = (low > np.median(low)).ravel()
    return f"{int.from_bytes(np.packbits(bits).tobytes(), 'big'):016x}"


def inspect_image(
    path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> ImageInfo | tuple[str, str]:
    """Decodes one image file and returns its ImageInfo, or ``(reason, detail)`` when it is
    empty, not an image, damaged or larger than ``max_pixels`` (checked before decoding)."""
    try:
        with path.open("rb") as fh:
            sha256 = hashlib.file_digest(fh, "sha256").hexdigest()
            size = fh.tell()
            if size == 0:
                return EMPTY_FILE, "zero-byte file"
            fh.seek(0)
            return _decode(fh, size, sha256, max_pixels)
    except OSError as err:
        return UNREADABLE_FILE, f"{type(err).__name__}: {err}"[:300]


def _decode(fh: BinaryIO, size: int, sha256: str, max_pixels: int) -> ImageInfo | tuple[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(fh, formats=_FORMATS)
        except UnidentifiedImageError:
            fh.seek(0)
            if _looks_like_image(fh.read(16)):
                return CORRUPT_IMAGE, "damaged image header"
            return NOT_AN_IMAGE, "not a JPEG, PNG, WebP or GIF image"
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            return DECOMPRESSION_BOMB, str(err)[:300]
        except Exception as err:  # Pillow's plugins raise many types for damaged headers
            if "decompressed data too large" in str(err).lower():  # e.g. a zTXt/iCCP chunk
                return DECOMPRESSION_BOMB, str(err)[:300]
            return CORRUPT_IMAGE, f"{type(err).__name__}: {err}"[:300]
        with img:
            width, height = img.size
            if width * height > max_pixels:
                return DECOMPRESSION_BOMB, f"{width}x{height} pixels > {max_pixels}"
            fmt, mode = str(img.format), img.mode
            try:
                if fmt == "JPEG":
                    img.draft(mode, (_DRAFT_SIDE, _DRAFT_SIDE))
                img.load()
                fingerprint = phash(img)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
                return DECOMPRESSION_BOMB, str(err)[:300]
            except Exception as err:  # truncated or corrupt data: OSError, SyntaxError, ...
                if "decompressed data too large" in str(err).lower():
                    return DECOMPRESSION_BOMB, str(err)[:300]
                return CORRUPT_IMAGE, f"{type(err).__name__}: {err}"[:300]
    return ImageInfo(width, height, fmt, mode, size, sha256, fingerprint)


# ------------------------------------------------------------------------------ drop rows


@dataclass
class _Entry:
    line_no: int
    line: str
    record: dict[str, Any]


def _file_words(name: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", PurePosixPath(name).stem))


def image_text(file: str, title: Any = None, alt: Any = None) -> str:
    """The metadata text of an image: manifest title, alt text and the words of the file
    name ("red-running-shoe.jpg" -> "red running shoe"), each only when it adds a word;
    never empty (the file path when nothing else is left)."""
    parts: list[str] = []
    seen: set[str] = set()
    for value in (title, alt, _file_words(file)):
        text = " ".join(str(value).split()).rstrip(" .") if value is not None else ""
        words = set(re.findall(r"[^\W_]+", text.casefold()))
        if text and not words <= seen:
            parts.append(text)
            seen |= words
    return ". ".join(parts) if parts else file


def _manifest_target(value: Any) -> tuple[str | None, str | None, str]:
    """The drop-relative posix path a manifest `file` names, or (None, reason, detail)."""
    if not isinstance(value, str) or not value.strip():
        return None, MISSING_FILE, "no 'file' field"
    if value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value):
        return None, OUTSIDE_DROP, f"absolute path {value[:200]!r}"
    parts = PurePosixPath(value.replace("\\", "/")).parts
    if ".." in parts:
        return None, OUTSIDE_DROP, f"path {value[:200]!r} leaves the drop"
    if not parts or parts == (".",):
        return None, MISSING_FILE, f"empty path {value[:200]!r}"
    return PurePosixPath(*parts).as_posix(), None, ""


def _read_manifest(path: Path) -> Iterator[tuple[int, str, dict[str, Any] | None, str, str]]:
    """(line_no, line, record or None, reason, detail) per non-blank manifest line."""
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            raw = raw.rstrip(b"\r\n")
            if line_no == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("utf-8", errors="backslashreplace")
                yield line_no, text, None, INVALID_UTF8, "line is not valid UTF-8"
                continue
            if len(raw) > MAX_MANIFEST_LINE_BYTES:
                yield line_no, text, None, LINE_TOO_LONG, f"{len(raw)} bytes"
                continue
            try:
                value = json.loads(text)
            except RecursionError:
                yield line_no, text, None, MALFORMED_JSON, "nesting too deep"
                continue
            except ValueError as err:
                yield line_no, text, None, MALFORMED_JSON, str(err)[:200]
                continue
            if not isinstance(value, dict):
                yield line_no, text, None, NOT_AN_OBJECT, type(value).__name__
                continue
            yield line_no, text, value, "", ""


def _raw_row(source_file: str, line_no: int | None = None, **values: Any) -> dict[str, Any]:
    row = dict.fromkeys(RAW_COLUMNS)
    row.update(source_file=source_file, line_no=line_no, **values)
    return row


def _record_id(value: Any, rel: str) -> tuple[str | None, str | None]:
    """The manifest id of an image (or its path when the manifest gives none), or an error."""
    text, problem = id_text(value)
    if problem is not None:
        return None, problem
    return (rel if text is None else text), None


def _link_problem(path: Path, drop_dir: Path) -> tuple[str, str] | None:
    """(reason, detail) for a symlink that leaves the drop or cannot be resolved."""
    inside = link_target_inside(path, drop_dir)
    if inside is None:
        return UNREADABLE_FILE, "symlink loop"
    return None if inside else (OUTSIDE_DROP, "symlink points outside the drop")


def _image_row(
    path: Path, rel: str, entry: _Entry | None, *, id_field: str, max_pixels: int
) -> dict[str, Any]:
    record = entry.record if entry else {}
    payload = entry.line if entry else json.dumps({"file": rel})
    if path.is_dir():
        detail = "symlinked folder is not followed"
        return _raw_row(rel, payload=payload, error=UNSUPPORTED_FILE, detail=detail)
    if not is_image_file(path.name):
        detail = f"not one of {IMAGE_SUFFIXES} (or {MANIFEST} at the drop root)"
        return _raw_row(rel, payload=payload, error=UNSUPPORTED_FILE, detail=detail)
    record_id, id_error = _record_id(field_value(record, id_field)[1], rel)
    if id_error:
        detail = f"field {id_field!r}: {id_error}"
        return _raw_row(rel, payload=payload, error=INVALID_ID, detail=detail)
    result = inspect_image(path, max_pixels=max_pixels)
    if not isinstance(result, ImageInfo):
        reason, detail = result
        return _raw_row(rel, record_id=record_id, payload=payload, error=reason, detail=detail)
    alt = next((record[f] for f in _ALT_FIELDS if record.get(f) is not None), None)
    meta = without_fields(record, (id_field, "file"))
    meta.update({"file": rel, **asdict(result)})
    if entry:
        meta["manifest_line"] = entry.line_no
    if not entry:
        payload = json.dumps({"file": rel, **asdict(result)})
    return _raw_row(
        rel,
        record_id=record_id,
        text=without_surrogates(image_text(rel, record.get("title"), alt)),
        meta=json_text(meta),
        payload=payload,
    )


def _drop_rows(drop_dir: Path, *, id_field: str, max_pixels: int) -> Iterator[dict[str, Any]]:
    files = list_drop_files(drop_dir)
    by_rel = {p.relative_to(drop_dir).as_posix(): p for p in files}
    manifest_path = by_rel.pop(MANIFEST, None)
    entries: dict[str, _Entry] = {}
    manifest_rows: list[dict[str, Any]] = []
    if manifest_path is not None:
        if problem := _link_problem(manifest_path, drop_dir):
            manifest_rows.append(_raw_row(MANIFEST, error=problem[0], detail=problem[1]))
        elif manifest_path.is_dir():
            detail = "symlinked folder is not followed"
            manifest_rows.append(_raw_row(MANIFEST, error=UNSUPPORTED_FILE, detail=detail))
        else:
            manifest_rows.extend(_join_manifest(manifest_path, by_rel, entries))
    for rel, path in by_rel.items():
        name, valid_name = stored_name(Path(rel))
        problem = _link_problem(path, drop_dir) if valid_name else (UNSUPPORTED_FILE, BAD_NAME)
        if problem:
            entry = entries.get(rel)
            payload = entry.line if entry else json.dumps({"file": rel})
            yield _raw_row(name, payload=payload, error=problem[0], detail=problem[1])
            continue
        yield _image_row(path, rel, entries.get(rel), id_field=id_field, max_pixels=max_pixels)
    yield from manifest_rows
    yield from refused_object_rows(drop_dir)


def _join_manifest(
    manifest_path: Path, by_rel: dict[str, Path], entries: dict[str, _Entry]
) -> Iterator[dict[str, Any]]:
    """Fills `entries` (drop-relative file -> manifest line) and yields a raw row for every
    manifest line that names no file of the drop or cannot be read."""
    try:
        lines = list(_read_manifest(manifest_path))
    except OSError as err:
        detail = f"{type(err).__name__}: {err}"[:300]
        yield _raw_row(MANIFEST, error=UNREADABLE_FILE, detail=detail)
        return
    for line_no, line, record, reason, detail in lines:
        if record is None:
            yield _raw_row(MANIFEST, line_no, payload=line, error=reason, detail=detail)
            continue
        rel, reason_, detail = _manifest_target(record.get("file"))
        if rel is None or reason_:
            reason = reason_ or MISSING_FILE
            yield _raw_row(MANIFEST, line_no, payload=line, error=reason, detail=detail)
        elif rel not in by_rel:
            detail = f"{rel!r} is not a file of the drop"
            yield _raw_row(MANIFEST, line_no, payload=line, error=MISSING_FILE, detail=detail)
        elif rel in entries:
            detail = f"{rel!r} is already described on line {entries[rel].line_no}"
            yield _raw_row(MANIFEST, line_no, payload=line, error=DUPLICATE_ENTRY, detail=detail)
        else:
            entries[rel] = _Entry(line_no, line, record)


def iter_image_raw_chunks(
    drop_dir: Path,
    *,
    id_field: str = "id",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    chunk_size: int = 10_000,
) -> Iterator[pd.DataFrame]:
    """Reads an image drop, yielding DataFrames of at most chunk_size rows with RAW_COLUMNS:
    one row per file (in path order), then one per manifest line that names no file.

    A good image's row has ``record_id`` (the manifest's ``id_field``, else the drop-relative
    path), ``text`` (see ``image_text``), ``meta`` (JSON: the manifest's other fields plus
    ``file``, ``width``, ``height``, ``format``, ``mode``, ``bytes``, ``sha256``, ``phash``,
    ``manifest_line``) and ``payload`` (the manifest line, or the JSON of the file's info).
    Other rows carry a reason code from IMAGE_REASONS in ``error`` and their payload."""
    buffer: list[dict[str, Any]] = []
    for row in _drop_rows(drop_dir, id_field=id_field, max_pixels=max_pixels):
        buffer.append(row)
        if len(buffer) >= chunk_size:
            yield pd.DataFrame(buffer, columns=RAW_COLUMNS)
            buffer = []
    if buffer:
        yield pd.DataFrame(buffer, columns=RAW_COLUMNS)
