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

**Near-duplicate threshold.** ``DEFAULT_PHASH_MAX_DISTANCE = 6``: two images whose pHashes
differ in at most 6 of 64 bits are near-duplicates. Measured on 104 drawings of 13 kinds like
the demo's (96 x 96): re-encoding (JPEG quality 50-95, WebP, a 32-colour GIF) and rescaling
(0.5x, 2x) move a pHash by 0-6 bits, median 0; a shift by 1% of the width by 0-8 (97% within
6), by 2% by 0-12 (81% within 6); a 5% crop by about 10 (not caught). Different pictures
differ by about 30 bits (median), and 1 pair of 5356 came within 6 (2 within 8, 10 within
12). Lower the threshold when many images share a layout (catalogue shots on white); raise it
(8-10) to also catch light crops and shifts, at the cost of more false matches.
"""

import hashlib
import json
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from math import comb, log2
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import pandas as pd
from PIL import Image, UnidentifiedImageError

from annotation_assets.core.arrays import equal_key_pair_parts
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
DEFAULT_PHASH_MAX_DISTANCE = 6
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

Hashes = npt.NDArray[np.uint64]


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


# ------------------------------------------------------------------------ near duplicates


def hashes_from_hex(values: Sequence[str]) -> Hashes:
    """64-bit hashes from their 16-hex-digit strings (as stored in ``meta.phash``)."""
    return np.array([int(v, 16) for v in values], dtype=np.uint64)


def _as_hashes(values: npt.ArrayLike, keys: Sequence[str], name: str) -> Hashes:
    arr = np.asarray(values)
    if arr.dtype.kind in "OUS":
        arr = hashes_from_hex([str(v) for v in arr.ravel()])
    elif arr.dtype.kind in "iu":
        arr = arr.astype(np.uint64)
    else:
        raise ValueError(f"{name} must be 64-bit integers or hex strings, got {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] != len(keys):
        raise ValueError(f"{name} must have shape ({len(keys)},), got {arr.shape}")
    return arr


def _popcount(x: Hashes) -> npt.NDArray[np.intp]:
    count = getattr(np, "bitwise_count", None)
    if count is not None:
        return np.asarray(count(x), dtype=np.intp)
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.asarray((x * np.uint64(0x0101010101010101)) >> np.uint64(56), dtype=np.intp)


@dataclass(frozen=True)
class _Band:
    shift: int
    width: int
    radius: int
    flips: Hashes  # every mask of at most `radius` bits within the band


def _band_plan(max_distance: int, n_query: int, n_pool: int) -> list[_Band] | None:
    """Multi-index hashing: with the 64 bits split into m bands, two hashes within
    ``max_distance`` agree within ``max_distance // m`` bits on at least one band
    (pigeonhole; m = max_distance + 1 means an exact band match). Picks the m with the least
    expected work on random hashes, or None when comparing all pairs is cheaper."""
    best: tuple[float, int] | None = None
    for m in range(1, min(max_distance + 1, 64) + 1):
        radius = max_distance // m
        widths = [64 // m + (1 if i < 64 % m else 0) for i in range(m)]
        variants = [sum(comb(w, r) for r in range(radius + 1)) for w in widths]
        if max(variants) > 4096:
            continue
        lookups = n_query * sum(variants) * (1 + log2(n_pool + 1)) / 8
        found = n_query * n_pool * sum(v / 2.0**w for v, w in zip(variants, widths, strict=True))
        cost = lookups + found
        if best is None or cost < best[0]:
            best = (cost, m)
    if best is None or best[0] >= n_query * n_pool:
        return None
    m = best[1]
    radius = max_distance // m
    plan, shift = [], 0
    for i in range(m):
        width = 64 // m + (1 if i < 64 % m else 0)
        flips = [0]
        for r in range(1, radius + 1):
            flips.extend(sum(1 << b for b in bits) for bits in combinations(range(width), r))
        plan.append(_Band(shift, width, radius, np.array(flips, dtype=np.uint64)))
        shift += width
    return plan


def _band_values(hashes: Hashes, band: _Band) -> Hashes:
    mask = np.uint64((1 << band.width) - 1)
    return (hashes >> np.uint64(band.shift)) & mask


_QUERIES_PER_BLOCK = 1 << 20
_PAIRS_PER_BLOCK = 1 << 22
_CANDIDATES_PER_PART = 1 << 22
# Close pairs one search may collect before its new images are split in halves (see
# _kept_values and _best_old); groups of at most _SMALL_GROUP images are searched whole.
_CLOSE_PAIRS_PER_SEARCH = 1 << 20
_SMALL_GROUP = 1024


class TooManyPairs(Exception):
    """A search met more close pairs than the limit it was given."""


def _close_pairs(
    query: Hashes, pool: Hashes, max_distance: int, *, limit: int | None = None
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """All (query index, pool index, distance) with Hamming distance <= max_distance, each
    once. With `limit`, raises TooManyPairs as soon as more than `limit` close pairs are met,
    before holding them."""
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    n_found = 0
    plan = _band_plan(max_distance, query.size, pool.size) if query.size and pool.size else None
    if not query.size or not pool.size:
        pass
    elif plan is None:
        rows = max(1, _PAIRS_PER_BLOCK // pool.size)
        for start in range(0, query.size, rows):
            dist = _popcount(query[start : start + rows, None] ^ pool[None, :])
            qi, pi = np.nonzero(dist <= max_distance)
            n_found += qi.size
            if limit is not None and n_found > limit:
                raise TooManyPairs(f"more than {limit} close pairs")
            found.append((qi + start, pi, dist[qi, pi]))
    else:
        sorted_bands = []
        for band in plan:
            values = _band_values(pool, band)
            order = np.argsort(values, kind="stable")
            sorted_bands.append((order, values[order]))
        rows = max(1, _QUERIES_PER_BLOCK // max(band.flips.size for band in plan))
        # Candidates are met in parts no larger than the limit (but one band key's holders),
        # so a search that gives up has held about twice its limit at most.
        part = _CANDIDATES_PER_PART if limit is None else min(_CANDIDATES_PER_PART, limit)
        for start in range(0, query.size, rows):
            block = query[start : start + rows]
            for b, (band, (order, sorted_values)) in enumerate(
                zip(plan, sorted_bands, strict=True)
            ):
                wanted = (_band_values(block, band)[:, None] ^ band.flips[None, :]).ravel()
                for which, positions in equal_key_pair_parts(sorted_values, wanted, part):
                    pi = order[positions]
                    qi = which // band.flips.size
                    dist = _popcount(block[qi] ^ pool[pi])
                    close = np.flatnonzero(dist <= max_distance)
                    qi, pi, dist = qi[close], pi[close], dist[close]
                    if b:  # a pair close within an earlier band was found there
                        differ = block[qi] ^ pool[pi]
                        here = np.ones(qi.size, dtype=bool)
                        for earlier in plan[:b]:
                            here &= _popcount(_band_values(differ, earlier)) > earlier.radius
                        qi, pi, dist = qi[here], pi[here], dist[here]
                    n_found += qi.size
                    if limit is not None and n_found > limit:
                        raise TooManyPairs(f"more than {limit} close pairs")
                    found.append((qi + start, pi, dist))
    if not found:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, empty
    qi, pi, dist = (np.concatenate(parts).astype(np.intp) for parts in zip(*found, strict=True))
    return qi, pi, dist


def _best_old(
    values: Hashes, old: Hashes, max_distance: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Per hash in `values`: the closest old image within `max_distance` (the earliest on a
    tie; -1 if none) and its distance (64 if none). Old images are other drops' kept ones,
    which lie more than `max_distance` apart, but not always (a threshold raised since, or
    drops kept before this search existed): values are searched in halves while one search
    would hold more than its limit of close pairs, each half reduced to its best at once."""
    best = np.full(values.size, -1, dtype=np.intp)
    best_dist = np.full(values.size, 64, dtype=np.intp)
    if not old.size:
        return best, best_dist
    old_values, old_first = np.unique(old, return_index=True)
    pending = [(0, values.size)]
    while pending:
        lo, hi = pending.pop()
        limit = None if hi - lo == 1 else _CLOSE_PAIRS_PER_SEARCH
        try:
            vi, oi, dist = _close_pairs(values[lo:hi], old_values, max_distance, limit=limit)
        except TooManyPairs:
            mid = (lo + hi) // 2
            pending += [(mid, hi), (lo, mid)]
            continue
        first_old = old_first[oi]
        order = np.lexsort((first_old, dist, vi))
        vi, first_old, dist = vi[order] + lo, first_old[order], dist[order]
        head = np.ones(vi.size, dtype=bool)
        head[1:] = vi[1:] != vi[:-1]
        best[vi[head]] = first_old[head]
        best_dist[vi[head]] = dist[head]
    return best, best_dist


def _kept_values(hashes: Hashes, group: npt.NDArray[np.intp], max_distance: int) -> np.ndarray:
    """The indices in `group` (into `hashes`, in the order their images first appear) of
    kept images: every one with no kept one before it within `max_distance` bits.

    Kept hashes lie more than `max_distance` apart, so an image has few kept neighbours
    however many near copies of it a drop holds, while the close pairs among all its images
    can be quadratic (a drop of ten thousand slightly different placeholders). So a group
    is resolved from all its close pairs only while they are few; otherwise its later half
    is first thinned against the kept images of its earlier half."""
    if group.size == 0:
        return group
    at = hashes[group]
    try:
        limit = None if group.size <= _SMALL_GROUP else _CLOSE_PAIRS_PER_SEARCH
        qi, pi, _ = _close_pairs(at, at, max_distance, limit=limit)
    except TooManyPairs:
        half = group.size // 2
        earlier = _kept_values(hashes, group[:half], max_distance)
        later = group[half:]
        if earlier.size:
            hit, _, _ = _close_pairs(hashes[later], hashes[earlier], max_distance)
            later = np.delete(later, hit)
        return np.concatenate([earlier, _kept_values(hashes, later, max_distance)])
    before = pi < qi
    qi, pi = qi[before], pi[before]
    keep = np.ones(group.size, dtype=bool)
    if qi.size:
        order = np.lexsort((pi, qi))
        qi, pi = qi[order], pi[order]
        heads = np.flatnonzero(np.append(True, qi[1:] != qi[:-1]))
        ends = np.append(heads[1:], qi.size)
        for q, a, b in zip(qi[heads].tolist(), heads.tolist(), ends.tolist(), strict=True):
            keep[q] = not keep[pi[a:b]].any()  # the earlier ones are decided already
    return group[keep]


def hamming_near_duplicates(
    new_keys: Sequence[str],
    new_hashes: npt.ArrayLike,
    old_keys: Sequence[str],
    old_hashes: npt.ArrayLike,
    *,
    max_distance: int = DEFAULT_PHASH_MAX_DISTANCE,
) -> list[tuple[str, str, int]]:
    """Return ``(new_key, kept_key, distance)`` for each new image whose 64-bit hash is within
    ``max_distance`` bits of a kept one, in new order (hashes: uint64 or 16-hex strings).

    Same semantics as ``dedup.near_duplicate_pairs``: the kept image is an old one or an
    earlier new one that was not itself a duplicate; the closest wins, old ones first on
    ties, then the earliest. Candidates come from multi-index hashing over bands of the 64
    bits (see ``_band_plan``), so 100k x 100k images take seconds, not all pairs; the kept
    images are found first (``_kept_values``), so many near copies of one picture cost
    about one search each, not one per pair of them."""
    new = _as_hashes(new_hashes, new_keys, "new_hashes")
    old = _as_hashes(old_hashes, old_keys, "old_hashes")
    if not 0 <= max_distance < 64:
        raise ValueError(f"max_distance must be in [0, 63], got {max_distance}")
    if not new.size:
        return []
    values, first, inverse = np.unique(new, return_index=True, return_inverse=True)
    inverse = inverse.ravel()

    best_old, best_old_dist = _best_old(values, old, max_distance)

    # The kept new images. A later image of a kept hash is a copy of its first one; a hash
    # not kept is matched among its kept neighbours, closest first, then the earliest.
    by_first = np.argsort(first, kind="stable")
    kept = _kept_values(values, by_first[best_old[by_first] < 0], max_distance)
    is_kept = np.zeros(values.size, dtype=bool)
    is_kept[kept] = True
    others = np.flatnonzero(~is_kept)
    vi, ki, dist = _close_pairs(values[others], values[kept], max_distance)
    vi, kept_at = others[vi], first[kept[ki]]
    order = np.lexsort((kept_at, dist, vi))
    vi, kept_at, dist = vi[order], kept_at[order], dist[order]
    bounds = np.searchsorted(vi, np.arange(values.size + 1)).tolist()
    near_at, near_dist = kept_at.tolist(), dist.tolist()

    records = np.arange(new.size)
    duplicates = ~(is_kept[inverse] & (first[inverse] == records))
    out: list[tuple[str, str, int]] = []
    for i, v in zip(records[duplicates].tolist(), inverse[duplicates].tolist(), strict=True):
        if is_kept[v]:
            out.append((new_keys[i], new_keys[int(first[v])], 0))
            continue
        match, match_dist = -1, int(best_old_dist[v])
        for j in range(bounds[v], bounds[v + 1]):
            if near_at[j] < i:  # the best kept image before this one
                if near_dist[j] < match_dist:
                    match, match_dist = near_at[j], near_dist[j]
                break
        if match >= 0:
            out.append((new_keys[i], new_keys[match], match_dist))
        elif best_old[v] >= 0:
            out.append((new_keys[i], old_keys[best_old[v]], match_dist))
        else:  # pragma: no cover - an image not kept is within reach of a kept one
            raise AssertionError(f"image {new_keys[i]!r} is neither kept nor a duplicate")
    return out
