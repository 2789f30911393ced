"""Hostile drops: a seeded generator of bad-input cases for the ingest -> final pipeline.

Each `Case` writes its files into a folder of its own inside a drop (``c0042/...``), so many
cases share one drop and every raw row can be traced back to its case by ``source_file`` (or,
for an image drop's manifest, by manifest line). A case states what the pipeline must make of
it: how many raw rows, how many of them quarantined and with which reason codes, whether the
file as a whole is refused, which ids must come through verbatim.

A canary lives outside the drop (`Outside`): files whose content must never reach a warehouse
table, reached from the drop through absolute and relative symlinks, symlinked folders, chains
of links, and manifest paths that climb out with ``..``.
"""

import csv
import gzip
import hashlib
import io
import json
import os
import random
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from annotation_assets.core import images as im
from annotation_assets.core import ingest as ing
from annotation_assets.warehouse import codes

MANIFEST = im.MANIFEST
TEXT = "text"
IMAGE = "image"
# A spec's limits for the text drops (the defaults) and the image drops (small, so real
# decompression bombs stay cheap to make).
MAX_LINE_BYTES = 1_000_000
MAX_TEXT_CHARS = 20_000
IMAGE_MAX_PIXELS = 250_000

IDS_REASONS = frozenset({ing.MISSING_ID, ing.INVALID_ID})
IMAGE_BAD = frozenset({im.CORRUPT_IMAGE, im.NOT_AN_IMAGE})


@dataclass(frozen=True)
class Link:
    """A symlink a case places in its folder. `to` is one of: ``secret:<name>`` (absolute path
    of a file or folder of `Outside`), ``relsecret:<name>`` (the same, as a relative path),
    ``inside:<path>`` (relative to the case folder) or ``raw:<target>`` (verbatim)."""

    name: str
    to: str


@dataclass(frozen=True)
class Case:
    """One hostile input and what the pipeline must make of it.

    rows: raw rows it yields (None: any number). bad: how many of them are quarantined
    (None: any number). reasons: the reason codes its quarantined rows may carry; must: codes
    that must occur. refused: every quarantined row is a whole file refused (no line number,
    a message in `detail`). duplicates: rows expected among the duplicates (text drops).
    ids: record ids that must come through verbatim (kept or as a duplicate)."""

    name: str
    family: str
    kind: str
    files: tuple[tuple[str, bytes], ...] = ()
    links: tuple[Link, ...] = ()
    manifest: tuple[bytes, ...] = ()
    rows: int | None = None
    bad: int | None = None
    reasons: frozenset[str] = frozenset()
    must: frozenset[str] = frozenset()
    refused: bool = False
    duplicates: int | None = 0
    ids: tuple[str, ...] = ()


@dataclass
class Placed:
    """Where a case landed in its drop: its folder and its manifest line numbers."""

    case: Case
    folder: str
    manifest_lines: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Outside:
    """The canary: secret files beside, never inside, the drops."""

    root: Path
    token: str
    image_sha256: str

    @property
    def needles(self) -> tuple[str, ...]:
        return (self.token, self.image_sha256)


# ---------------------------------------------------------------------------- helpers

_WORDS = [
    "amber",
    "basket",
    "candle",
    "drawer",
    "engine",
    "falcon",
    "garden",
    "harbor",
    "island",
    "jacket",
    "kettle",
    "ladder",
    "magnet",
    "napkin",
    "orchard",
    "pebble",
    "quilt",
    "ribbon",
    "saddle",
    "teapot",
    "umbrella",
    "valley",
    "wagon",
    "yarn",
    "zipper",
    "anchor",
    "bottle",
    "cactus",
    "desert",
    "ember",
    "feather",
    "glacier",
    "hammer",
    "igloo",
    "jungle",
    "kayak",
    "lantern",
    "meadow",
    "needle",
    "oyster",
    "parrot",
    "quarry",
    "rocket",
    "salmon",
    "tunnel",
    "urchin",
    "violin",
    "walnut",
    "xylophone",
    "yogurt",
    "zebra",
    "acorn",
    "blanket",
    "compass",
    "dolphin",
    "eagle",
    "fountain",
    "goblet",
    "helmet",
    "ivory",
    "jigsaw",
    "kitten",
    "lemon",
    "marble",
    "nutmeg",
    "olive",
    "pepper",
    "quartz",
    "raven",
    "spinach",
    "thimble",
    "unicorn",
    "velvet",
    "whistle",
    "yacht",
    "zinnia",
]


class _Gen:
    """Seeded source of unique ids and texts (distinct enough that no two are near
    duplicates)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.n = 0

    def uid(self, prefix: str = "h") -> str:
        self.n += 1
        return f"{prefix}{self.n:05d}"

    def text(self) -> str:
        words = " ".join(self.rng.choice(_WORDS) for _ in range(9))
        return f"{words} {self.rng.getrandbits(48):012x}"

    def record(self, **extra: Any) -> dict[str, Any]:
        return {"id": self.uid(), "text": self.text(), **extra}

    def line(self, **extra: Any) -> bytes:
        return json.dumps(self.record(**extra)).encode()

    def lines(self, n: int) -> list[bytes]:
        return [self.line() for _ in range(n)]

    def noise_png(self, side: int = 24, fmt: str = "PNG") -> bytes:
        img = Image.frombytes("RGB", (side, side), self.rng.randbytes(side * side * 3))
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        return buf.getvalue()


def _jsonl(lines: Sequence[bytes], *, final_newline: bool = True) -> bytes:
    return b"\n".join(lines) + (b"\n" if final_newline else b"")


def _csv(rows: Sequence[Sequence[str]], delimiter: str = ",") -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def _parquet(table: pa.Table, row_group_size: int = 10) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=row_group_size)
    return sink.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header(width: int, height: int, *extra: bytes) -> bytes:
    ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    idat = _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(extra) + idat + _png_chunk(b"IEND", b"")


def _gif_header(width: int, height: int) -> bytes:
    screen = struct.pack("<HHBBB", width, height, 0, 0, 0)
    frame = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return b"GIF89a" + screen + frame + b"\x02\x02\x44\x01\x00;"


def _jpeg_header(width: int, height: int) -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00"
    return b"\xff\xd8" + sof + sos + b"\x00" * 16 + b"\xff\xd9"


def _webp_header(width: int, height: int) -> bytes:
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _solid_image(width: int, height: int, fmt: str) -> bytes:
    buf = io.BytesIO()
    mode = "P" if fmt == "GIF" else "RGB"
    Image.new(mode, (width, height), 3 if mode == "P" else (200, 30, 30)).save(buf, format=fmt)
    return buf.getvalue()


def _case(family: str, variant: str, kind: str = TEXT, **kw: Any) -> Case:
    return Case(name=f"{family}/{variant}", family=family, kind=kind, **kw)


def _reasons(*codes: str) -> frozenset[str]:
    return frozenset(codes)


# -------------------------------------------------------------------------- text cases


def _json_truncated(g: _Gen) -> Iterator[Case]:
    for i in range(80):
        rec = g.record(note=g.rng.choice(["", "café ☕", "naïve — “quotes”", "plain"]))
        whole = json.dumps(rec, ensure_ascii=bool(i % 2)).encode()
        cut = g.rng.randrange(1, len(whole))
        body = whole[:cut]
        last = i % 5 == 0  # the damaged line is the last one, without a newline
        lines = [g.line(), g.line(), body] if last else [g.line(), body, g.line()]
        yield _case(
            "json_truncated",
            f"cut-{cut}-of-{len(whole)}-{i}",
            files=(("part.jsonl", _jsonl(lines, final_newline=not last)),),
            rows=3,
            bad=1,
            reasons=_reasons(ing.MALFORMED_JSON, ing.INVALID_UTF8),
        )


_BROKEN_JSON = [
    b'{"id": "X", "text": "trailing comma",}',
    b"{'id': 'X', 'text': 'single quotes'}",
    b'{id: "X", text: "bare keys"}',
    b'{"id" "X", "text": "missing colon"}',
    b'{"id": "X", "text": "extra brace"}}',
    b'{"id": "X", "text": "two objects"}{"id": "Y"}',
    b'{"id": "X", "text": "comment"} // trailing',
    b'/* c */ {"id": "X", "text": "comment first"}',
    b'{"id": "X", "text": "unterminated}',
    b'{"id": "X", "text": "bad escape \\q"}',
    b'{"id": "X", "text": "bad unicode \\u12"}',
    b'{"id": "X", "text": "raw tab \t inside"}',
    b'{"id": "X", "text": "raw cr \r inside"}',
    b'{"id": "X", "text": undefined}',
    b'{"id": "X", "text": "x", "n": 01}',
    b'{"id": "X", "text": "x", "n": +1}',
    b'{"id": "X", "text": "x", "n": .5}',
    b'{"id": "X", "text": "x", "n": 0x1F}',
    b'{"id": "X", "text": "x", "n": True}',
    b'{"id": "X", "text": "x", "n": None}',
    b'{"id": "X" "text": "x"}',
    b'{"id": "X",, "text": "x"}',
    b"{,}",
    b"{",
    b"}",
    b"]",
    b":",
    b'"unterminated',
    b"nul",
    b"<html><body>503 Service Unavailable</body></html>",
    b"id,text",
    b"\x1b[31mred\x1b[0m",
    b'{"id": "X", "text": "\xc3\xa9", "x": "\\ud800\\u"}',
    b'{"a":1}{"b":2}{"c":3}',
    b'{"id": "X", "text": "ok"} garbage',
    b'\xef\xbb\xbf{"id": "X", "text": "bom on a later line"}',
]
_NOT_OBJECTS = [b"[]", b"[1, 2, 3]", b'"a string"', b"42", b"-1.5e3", b"null", b"true", b"false"]


def _json_syntax(g: _Gen) -> Iterator[Case]:
    for i, line in enumerate(_BROKEN_JSON):
        yield _case(
            "json_syntax",
            f"broken-{i}",
            files=(("part.jsonl", _jsonl([g.line(), line, g.line()])),),
            rows=3,
            bad=1,
            reasons=_reasons(ing.MALFORMED_JSON),
        )
    for i, line in enumerate(_NOT_OBJECTS):
        yield _case(
            "json_syntax",
            f"not-object-{i}",
            files=(("part.ndjson", _jsonl([line, g.line()])),),
            rows=2,
            bad=1,
            reasons=_reasons(ing.NOT_AN_OBJECT),
        )
    for sep, label in ((b"\r\n", "crlf"), (b"\n\n\n", "blank-lines"), (b"\n  \t\n", "ws-lines")):
        yield _case(
            "json_syntax",
            f"separators-{label}",
            files=(("part.jsonl", sep.join(g.lines(3)) + sep),),
            rows=3,
            bad=0,
        )
    yield _case(
        "json_syntax",
        "cr-only-line-ends",
        files=(("part.jsonl", b"\r".join(g.lines(3)) + b"\r"),),
        rows=1,
        bad=1,
        reasons=_reasons(ing.MALFORMED_JSON),
    )
    yield _case(
        "json_syntax",
        "bom-first-line",
        files=(("part.jsonl", b"\xef\xbb\xbf" + _jsonl(g.lines(2))),),
        rows=2,
        bad=0,
    )
    yield _case(
        "json_syntax",
        "pretty-printed-object",
        files=(("part.jsonl", json.dumps(g.record(), indent=2).encode() + b"\n"),),
        rows=4,
        bad=4,
        reasons=_reasons(ing.MALFORMED_JSON),
    )
    yield _case(
        "json_syntax",
        "json-array-file",
        files=(("part.jsonl", json.dumps([g.record(), g.record()]).encode()),),
        rows=1,
        bad=1,
        reasons=_reasons(ing.NOT_AN_OBJECT),
    )


def _scrapy_feed(items: Sequence[bytes]) -> bytes:
    """A JSON array as Scrapy's JSON feed export lays it out: one element per line."""
    return b"[\n" + b",\n".join(items) + b"\n]"


def _indented_array(items: Sequence[bytes]) -> bytes:
    """A JSON array as `json.dump(..., indent=2)` lays it out, each element's text (which may
    be broken) put in place of an indented object."""
    marks = [f"@@{i}@@" for i in range(len(items))]
    text = json.dumps([{"_": m} for m in marks], indent=2).encode()
    for mark, item in zip(marks, items, strict=True):
        text = text.replace(f'{{\n    "_": "{mark}"\n  }}'.encode(), item)
    return text


# Reasons a broken element of a JSON array may give: text that does not parse, or pieces of it
# that parse to values which are not records.
_JSON_ELEMENT_REASONS = _reasons(
    ing.MALFORMED_JSON, ing.NOT_AN_OBJECT, ing.MISSING_ID, ing.MISSING_TEXT, ing.INVALID_UTF8
)


def _json_files(g: _Gen) -> Iterator[Case]:
    """`.json` files: JSON arrays (Scrapy's feed, minified, indented) and values one after
    another, whole and damaged. The records around a damaged element must come through."""
    for layout, build in (("scrapy", _scrapy_feed), ("indented", _indented_array)):
        for i, line in enumerate(_BROKEN_JSON):
            line = line.replace(b'"X"', json.dumps(g.uid()).encode())
            line = line.replace(b'"Y"', json.dumps(g.uid()).encode())
            before, after = g.record(), g.record()
            yield _case(
                "json_file",
                f"{layout}-broken-{i}",
                files=(("items.json", build([_dumps(before), line, _dumps(after)])),),
                rows=None,
                bad=None,
                reasons=_JSON_ELEMENT_REASONS,
                duplicates=None,
                ids=(before["id"], after["id"]),
            )
        for i, item in enumerate(_NOT_OBJECTS):
            kept = g.record()
            yield _case(
                "json_file",
                f"{layout}-not-object-{i}",
                files=(("items.json", build([item, _dumps(kept)])),),
                rows=2,
                bad=1,
                reasons=_reasons(ing.NOT_AN_OBJECT),
                ids=(kept["id"],),
            )
    for i in range(40):
        records = [
            g.record(note=g.rng.choice(["", "café ☕", "naïve — “quotes”"])) for _ in range(5)
        ]
        items = [json.dumps(r, ensure_ascii=bool(i % 2)).encode() for r in records]
        whole = _scrapy_feed(items) if i % 3 else _indented_array(items)
        cut = g.rng.randrange(2, len(whole))
        body = whole[:cut]
        whole_before = [r["id"] for r, item in zip(records, items, strict=True) if item in body]
        yield _case(
            "json_file",
            f"truncated-{cut}-of-{len(whole)}-{i}",
            files=(("items.json", body),),
            rows=None,
            bad=None,
            reasons=_reasons(ing.MALFORMED_JSON, ing.INVALID_UTF8),
            ids=tuple(whole_before),
        )
    layouts = {
        "minified": lambda rs: json.dumps(rs).encode(),
        "indented": lambda rs: json.dumps(rs, indent=2).encode(),
        "indented-tabs": lambda rs: json.dumps(rs, indent="\t").encode(),
        "scrapy": lambda rs: _scrapy_feed([_dumps(r) for r in rs]),
        "json-lines": lambda rs: _jsonl([_dumps(r) for r in rs]),
        "concatenated": lambda rs: b"".join(_dumps(r) for r in rs),
        "bom-crlf": lambda rs: (
            b"\xef\xbb\xbf" + json.dumps(rs, indent=1).encode().replace(b"\n", b"\r\n")
        ),
        "missing-commas": lambda rs: b"[\n" + b"\n".join(_dumps(r) for r in rs) + b"\n]",
    }
    for name, build in layouts.items():
        for suffix, wrap in (("json", bytes), ("json.gz", lambda b: gzip.compress(b, mtime=0))):
            records = [g.record() for _ in range(3)]
            yield _case(
                "json_file",
                f"layout-{name}-{suffix}",
                files=((f"items.{suffix}", wrap(build(records))),),
                rows=3,
                bad=0,
                ids=tuple(r["id"] for r in records),
            )
    yield _case(
        "json_file",
        "one-pretty-object",
        files=(("item.json", json.dumps(g.record(), indent=4).encode()),),
        rows=1,
        bad=0,
    )
    kept = g.record()
    yield _case(
        "json_file",
        "invalid-utf8-element",
        files=(("items.json", _scrapy_feed([b'{"id": "u1", "text": "caf\xe9"}', _dumps(kept)])),),
        rows=2,
        bad=1,
        reasons=_reasons(ing.INVALID_UTF8),
        ids=(kept["id"],),
    )
    kept = g.record()
    nul = b'{"id": "n1", "text": "nul \x00 byte"}'
    yield _case(
        "json_file",
        "raw-nul-in-element",
        files=(("items.json", _scrapy_feed([nul, _dumps(kept)])),),
        rows=2,
        bad=1,
        reasons=_reasons(ing.MALFORMED_JSON),
        ids=(kept["id"],),
    )
    kept = g.record()
    yield _case(
        "json_file",
        "deep-nesting-element",
        files=(("items.json", _scrapy_feed([b"[" * 50_000 + b"]" * 50_000, _dumps(kept)])),),
        rows=2,
        bad=1,
        reasons=_reasons(ing.MALFORMED_JSON),
        ids=(kept["id"],),
    )
    records = [g.record() for _ in range(2)]
    minified = json.dumps(records).encode().replace(b'", "text"', b'" "text"', 1)
    yield _case(
        "json_file",
        "minified-damaged",  # no line to pick up at: the rest of the file is one row
        files=(("items.json", minified),),
        rows=1,
        bad=1,
        reasons=_reasons(ing.MALFORMED_JSON),
    )
    yield _case(
        "json_file",
        "trailing-text",
        files=(("items.json", json.dumps([g.record()]).encode() + b"\n<!-- cached -->\n"),),
        rows=2,
        bad=1,
        reasons=_reasons(ing.MALFORMED_JSON),
    )


def _dumps(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode()


def _csv_quoting(g: _Gen) -> Iterator[Case]:
    def good_rows(n: int) -> list[list[str]]:
        return [[g.uid(), g.text()] for _ in range(n)]

    broken: list[tuple[str, Callable[[str, str], bytes], int]] = [
        ("unclosed-quote", lambda i, t: f'{i},"{t}\n'.encode(), 1),
        ("quote-then-text", lambda i, t: f'{i},"{t}"tail\n'.encode(), 1),
        ("stray-quote-in-quoted", lambda i, t: f'{i},"{t[:5]}"{t[5:]}"\n'.encode(), 1),
        ("extra-field", lambda i, t: f"{i},{t},extra\n".encode(), 1),
        ("missing-field", lambda i, t: f"{i}\n".encode(), 1),
        ("quoted-extra-field", lambda i, t: f'{i},"{t}","x,y"\n'.encode(), 1),
        ("double-quote-id", lambda i, t: f'"{i}"",{t}\n'.encode(), 1),
        ("semicolons", lambda i, t: f"{i};{t}\n".encode(), 1),
    ]
    for name, make, nbad in broken:
        for before in (0, 1, 3):
            for after in (0, 2, 5):
                rows_before, rows_after = good_rows(before), good_rows(after)
                bad_line = make(g.uid(), g.text())
                data = _csv([["id", "text"], *rows_before]) + bad_line + _csv(rows_after)
                yield _case(
                    "csv_quoting",
                    f"{name}-{before}-{after}",
                    files=(("part.csv", data),),
                    rows=before + after + nbad,
                    bad=nbad,
                    reasons=_reasons(ing.MALFORMED_CSV, ing.MISSING_ID),
                )
    # The same damage in files separated by semicolons (spreadsheets) and tabs (.tsv).
    for delimiter, label, file in ((";", "semicolon", "part.csv"), ("\t", "tab", "part.tsv")):
        for name, make, nbad in broken:
            if name == "semicolons":
                continue
            for before, after in ((0, 0), (1, 2), (3, 5)):
                rows_before, rows_after = good_rows(before), good_rows(after)
                bad_line = make(g.uid(), g.text()).replace(b",", delimiter.encode())
                data = (
                    _csv([["id", "text"], *rows_before], delimiter)
                    + bad_line
                    + _csv(rows_after, delimiter)
                )
                yield _case(
                    "csv_quoting",
                    f"{label}-{name}-{before}-{after}",
                    files=((file, data),),
                    rows=before + after + nbad,
                    bad=nbad,
                    reasons=_reasons(ing.MALFORMED_CSV, ing.MISSING_ID),
                )
        text = "\n".join(g.text() for _ in range(3)) + f" and, {delimiter} separators"
        data = _csv([["id", "text"], [g.uid(), text], *good_rows(2)], delimiter)
        yield _case(
            "csv_quoting",
            f"{label}-multiline-quoted",
            files=((file, data),),
            rows=3,
            bad=0,
        )
        data = _csv([["id", "text", "note\n(free, text)"], *[[*r, "n"] for r in good_rows(2)]])
        yield _case(
            "csv_quoting",
            f"{label}-multiline-header-name",
            files=((file, data.replace(b",", delimiter.encode())),),
            rows=2,
            bad=0,
        )
        yield _case(
            "csv_quoting",
            f"{label}-row-of-separators",
            files=((file, _csv([["id", "text"], *good_rows(1), ["", ""]], delimiter)),),
            rows=2,
            bad=1,
            reasons=_reasons(ing.MISSING_ID),
        )
    yield _case(
        "csv_quoting",
        "excel-separator-line",
        files=(("part.csv", b"sep=;\r\n" + _csv([["id", "text"], *good_rows(3)], ";")),),
        rows=3,
        bad=0,
    )
    for n in (MAX_CSV := ing.MAX_CSV_RECORD_LINES, MAX_CSV + 5):
        rows = good_rows(n)
        data = _csv([["id", "text"]]) + f'{g.uid()},"opened\n'.encode() + _csv(rows)
        yield _case(
            "csv_quoting",
            f"unclosed-quote-before-{n}-lines",
            files=(("part.csv", data),),
            rows=n + 1,
            bad=1,
            reasons=_reasons(ing.MALFORMED_CSV),
        )
    for i in range(6):
        text = "\n".join(g.text() for _ in range(i + 2))
        data = _csv([["id", "text"], [g.uid(), text], *good_rows(2)])
        yield _case(
            "csv_quoting",
            f"multiline-quoted-{i}",
            files=(("part.csv", data),),
            rows=3,
            bad=0,
        )
    yield _case(
        "csv_quoting",
        "header-only",
        files=(("part.csv", b"id,text\n"),),
        rows=0,
    )
    yield _case(
        "csv_quoting",
        "duplicate-header-names",
        files=(("part.csv", _csv([["id", "text", "text"], [g.uid(), g.text(), g.text()]])),),
        rows=1,
        bad=0,
    )
    yield _case(
        "csv_quoting",
        "no-id-column",
        files=(("part.csv", _csv([["key", "text"], [g.uid(), g.text()]])),),
        rows=1,
        bad=1,
        reasons=_reasons(ing.MISSING_ID),
    )
    yield _case(
        "csv_quoting",
        "crlf",
        files=(("part.csv", _csv([["id", "text"], *good_rows(3)]).replace(b"\n", b"\r\n")),),
        rows=3,
        bad=0,
    )
    yield _case(
        "csv_quoting",
        "quote-at-eof",
        files=(("part.csv", _csv([["id", "text"], *good_rows(2)]) + b'"'),),
        rows=3,
        bad=1,
        reasons=_reasons(ing.MALFORMED_CSV),
    )


_BAD_UTF8 = {
    "latin1-e-acute": b"caf\xe9",
    "lone-continuation": b"\x80",
    "overlong-slash": b"\xc0\xaf",
    "overlong-nul": b"\xc0\x80",
    "surrogate-half": b"\xed\xa0\x80",
    "above-max": b"\xf4\x90\x80\x80",
    "f5-byte": b"\xf5",
    "ff-byte": b"\xff",
    "truncated-3byte": b"\xe2\x82",
    "truncated-4byte": b"\xf0\x9f\x98",
    "cp1252-quotes": b"\x93quoted\x94",
    "utf16-bom-inline": b"\xff\xfeh\x00i\x00",
}


def _invalid_utf8(g: _Gen) -> Iterator[Case]:
    for label, bad in _BAD_UTF8.items():
        for where in ("id", "text", "key", "meta"):
            rec = g.record()
            parts = {
                "id": b'{"id": "' + rec["id"].encode() + bad + b'", "text": "x"}',
                "text": b'{"id": "' + rec["id"].encode() + b'", "text": "a ' + bad + b' b"}',
                "key": b'{"id": "' + rec["id"].encode() + b'", "t' + bad + b'": "x"}',
                "meta": b'{"id": "' + rec["id"].encode() + b'", "text": "x", "m": "' + bad + b'"}',
            }
            yield _case(
                "invalid_utf8",
                f"jsonl-{where}-{label}",
                files=(("part.jsonl", _jsonl([g.line(), parts[where], g.line()])),),
                rows=3,
                bad=1,
                reasons=_reasons(ing.INVALID_UTF8),
            )
        for where in ("id", "text"):
            uid, text = g.uid().encode(), g.text().encode()
            row = (uid + bad + b"," + text) if where == "id" else (uid + b"," + text + bad)
            data = _csv([["id", "text"], [g.uid(), g.text()]]) + row + b"\n"
            data += _csv([[g.uid(), g.text()]])
            yield _case(
                "invalid_utf8",
                f"csv-{where}-{label}",
                files=(("part.csv", data),),
                rows=3,
                bad=1,
                reasons=_reasons(ing.INVALID_UTF8),
            )
    loose = _reasons(
        ing.INVALID_UTF8, ing.MALFORMED_JSON, ing.MALFORMED_CSV, ing.MISSING_ID, ing.MISSING_TEXT
    )
    for encoding in ("latin-1", "cp1252", "utf-16", "utf-16-be", "utf-32", "shift_jis", "cp500"):
        records = [{"id": g.uid(), "text": "Größe ½ — ﾃｽﾄ café"} for _ in range(3)]
        jsonl_text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        csv_text = "id,text\n" + "".join(f"{r['id']},{r['text']}\n" for r in records)
        for suffix, body in (("jsonl", jsonl_text), ("csv", csv_text)):
            encoded = body.encode(encoding, errors="replace")
            yield _case(
                "invalid_utf8",
                f"file-in-{encoding}-{suffix}",
                files=((f"part.{suffix}", encoded),),
                rows=None,
                bad=None,
                reasons=loose,
            )


def _nul_bytes(g: _Gen) -> Iterator[Case]:
    for pos in range(12):
        whole = g.line()
        cut = 1 + (pos * (len(whole) - 2)) // 11
        line = whole[:cut] + b"\x00" + whole[cut:]
        yield _case(
            "nul_bytes",
            f"raw-nul-at-{cut}",
            files=(("part.jsonl", _jsonl([line, g.line()])),),
            rows=2,
            bad=1,
            reasons=_reasons(ing.MALFORMED_JSON),
        )
    for n in (1, 16, 4096, 65536):
        yield _case(
            "nul_bytes",
            f"nul-line-{n}",
            files=(("part.jsonl", _jsonl([b"\x00" * n, g.line()])),),
            rows=2,
            bad=1,
            reasons=_reasons(ing.MALFORMED_JSON),
        )
        yield _case(
            "nul_bytes",
            f"nul-file-{n}",
            files=(("part.jsonl", b"\x00" * n),),
            rows=1,
            bad=1,
            reasons=_reasons(ing.MALFORMED_JSON),
        )
    escaped = {
        "text": (lambda u: {"id": u, "text": g.text() + " a\u0000b\u0000 c"}, 0, frozenset()),
        "text-only-nul": (lambda u: {"id": u, "text": "\u0000\u0000"}, 1, {codes.EMPTY_TEXT}),
        "id": (lambda u: {"id": u + "\u0000", "text": g.text()}, 1, {ing.INVALID_ID}),
        "meta-value": (lambda u: {"id": u, "text": g.text(), "m": "a\u0000"}, 0, frozenset()),
        "meta-key": (lambda u: {"id": u, "text": g.text(), "k\u0000": 1}, 0, frozenset()),
        "field-name": (lambda u: {"id\u0000": u, "text": g.text()}, 1, {ing.MISSING_ID}),
    }
    for label, (make, nbad, reasons) in escaped.items():
        for fmt in ("jsonl", "parquet"):
            rec = make(g.uid())
            if fmt == "jsonl":
                data = _jsonl([json.dumps(rec).encode(), g.line()])
            else:
                data = _parquet(pa.Table.from_pylist([rec]))
            yield _case(
                "nul_bytes",
                f"escaped-{label}-{fmt}",
                files=((f"part.{fmt}", data),),
                rows=2 if fmt == "jsonl" else 1,
                bad=nbad,
                reasons=frozenset(reasons),
            )
    data = b"id,text\n" + g.uid().encode() + b',"a\x00b ' + g.text().encode() + b'"\n'
    data += _csv([[g.uid(), g.text()]])
    yield _case("nul_bytes", "csv-field", files=(("part.csv", data),), rows=2, bad=0)
    data = b"id,text\n" + g.uid().encode() + b",a\x00b " + g.text().encode() + b"\n"
    yield _case("nul_bytes", "csv-unquoted", files=(("part.csv", data),), rows=1, bad=0)
    data = gzip.compress(_jsonl([b"\x00" * 100, g.line()]), mtime=0)
    yield _case(
        "nul_bytes",
        "gzip-nul-line",
        files=(("part.jsonl.gz", data),),
        rows=2,
        bad=1,
        reasons=_reasons(ing.MALFORMED_JSON),
    )


def _long_lines(g: _Gen, *, big: int) -> Iterator[Case]:
    ten_mb = json.dumps({"id": g.uid(), "text": "x" * big}).encode()
    yield _case(
        "long_line",
        "10mb-jsonl",
        files=(("part.jsonl", _jsonl([g.line(), ten_mb, g.line()])),),
        rows=3,
        bad=1,
        reasons=_reasons(ing.LINE_TOO_LONG),
    )
    yield _case(
        "long_line",
        "10mb-jsonl-no-newline",
        files=(("part.jsonl", _jsonl([g.line(), ten_mb], final_newline=False)),),
        rows=2,
        bad=1,
        reasons=_reasons(ing.LINE_TOO_LONG),
    )
    yield _case(
        "long_line",
        "10mb-not-json",
        files=(("part.jsonl", b"y" * big),),
        rows=1,
        bad=1,
        reasons=_reasons(ing.LINE_TOO_LONG),
    )
    data = b"id,text\n" + g.uid().encode() + b"," + b"z" * big + b"\n" + _csv([[g.uid(), "ok"]])
    yield _case(
        "long_line",
        "10mb-csv",
        files=(("part.csv", data),),
        rows=2,
        bad=1,
        reasons=_reasons(ing.LINE_TOO_LONG),
    )
    data = gzip.compress(_jsonl([ten_mb, g.line()]), mtime=0)
    yield _case(
        "long_line",
        "10mb-gzip",
        files=(("part.jsonl.gz", data),),
        rows=2,
        bad=1,
        reasons=_reasons(ing.LINE_TOO_LONG),
    )
    quoted = b"id,text\n" + g.uid().encode() + b',"' + b"q\n" * 60 + b"w" * MAX_LINE_BYTES
    quoted += b'"\n' + _csv([[g.uid(), "after"]])
    yield _case(
        "long_line",
        "csv-quoted-field-over-limit",
        files=(("part.csv", quoted),),
        rows=None,
        bad=None,
        reasons=_reasons(ing.LINE_TOO_LONG, ing.MALFORMED_CSV),
        must=_reasons(ing.LINE_TOO_LONG),
    )
    for delta in (-1, 0, 1):
        head = json.dumps({"id": g.uid(), "text": ""}).encode()
        pad = MAX_LINE_BYTES + delta - len(head)
        line = head[:-2] + b"t" * pad + b'"}'
        ok = len(line) <= MAX_LINE_BYTES
        yield _case(
            "long_line",
            f"limit{delta:+d}",
            files=(("part.jsonl", _jsonl([line])),),
            rows=1,
            bad=1,
            reasons=_reasons(codes.TEXT_TOO_LONG if ok else ing.LINE_TOO_LONG),
        )
    for chars, nbad in ((MAX_TEXT_CHARS, 0), (MAX_TEXT_CHARS + 1, 1)):
        words = ("ab " * (chars // 3 + 1))[:chars].strip()
        words = words + "c" * (chars - len(words))
        yield _case(
            "long_line",
            f"text-{chars}-chars",
            files=(("part.jsonl", _jsonl([json.dumps({"id": g.uid(), "text": words}).encode()])),),
            rows=1,
            bad=nbad,
            reasons=_reasons(codes.TEXT_TOO_LONG),
        )


def _deep_nesting(g: _Gen) -> Iterator[Case]:
    depths = (2, 10, 50, 100, 500, 900, 960, 990, 995, 1000, 1010, 1500, 5000, 100_000)
    for depth in depths:
        clear = depth <= 500
        deep = depth >= 1500
        arr = "[" * depth + "]" * depth
        obj = '{"a":' * depth + "1" + "}" * depth
        placements = {
            "meta-array": (f'{{"id": "{g.uid()}", "text": "{g.text()}", "m": {arr}}}', frozenset()),
            "meta-object": (
                f'{{"id": "{g.uid()}", "text": "{g.text()}", "m": {obj}}}',
                frozenset(),
            ),
            "top-array": (arr, {ing.NOT_AN_OBJECT}),
            "in-id": (f'{{"id": {arr}, "text": "t"}}', {ing.INVALID_ID}),
            "in-text": (f'{{"id": "{g.uid()}", "text": {obj}}}', {ing.INVALID_TEXT}),
        }
        for where, (line, reasons) in placements.items():
            if reasons:  # wrong shape at any depth: always quarantined
                bad: int | None = 1
            else:
                bad = 0 if clear else (1 if deep else None)
            yield _case(
                "deep_nesting",
                f"{where}-{depth}",
                files=(("part.jsonl", _jsonl([line.encode(), g.line()])),),
                rows=2,
                bad=bad,
                reasons=frozenset(reasons) | {ing.MALFORMED_JSON},
            )


_MISSING_IDS: list[tuple[str, Any]] = [
    ("absent", ...),
    ("null", None),
    ("empty", ""),
    ("spaces", "   "),
    ("whitespace", "\t\n\r "),
    ("list", ["a"]),
    ("empty-list", []),
    ("object", {"id": "a"}),
    ("true", True),
    ("false", False),
    ("float", 1.5),
    ("negative-fraction", -0.5),  # whole floats (-0.0, 2.0) are ids: 0, 2
    ("too-long", "i" * (ing.MAX_ID_CHARS + 1)),
]


def _missing_ids(g: _Gen) -> Iterator[Case]:
    for label, value in _MISSING_IDS:
        rec: dict[str, Any] = {"text": g.text()}
        if value is not ...:
            rec["id"] = value
        yield _case(
            "missing_id",
            f"jsonl-{label}",
            files=(("part.jsonl", _jsonl([json.dumps(rec).encode(), g.line()])),),
            rows=2,
            bad=1,
            reasons=IDS_REASONS,
        )
    for raw, label in (
        (b"NaN", "nan"),
        (b"Infinity", "inf"),
        (b"-Infinity", "-inf"),
        (b"1e400", "1e400"),
    ):
        line = b'{"id": ' + raw + b', "text": "' + g.text().encode() + b'"}'
        yield _case(
            "missing_id",
            f"jsonl-{label}",
            files=(("part.jsonl", _jsonl([line, g.line()])),),
            rows=2,
            bad=1,
            reasons=IDS_REASONS,
        )
    for label, value in (("empty", ""), ("spaces", "   ")):
        yield _case(
            "missing_id",
            f"csv-{label}",
            files=(("part.csv", _csv([["id", "text"], [value, g.text()], [g.uid(), g.text()]])),),
            rows=2,
            bad=1,
            reasons=IDS_REASONS,
        )
    for label, values in (("nulls", [None, "x"]), ("floats", [1.5, 2.0]), ("bools", [True, False])):
        table = pa.table({"id": values, "text": [g.text(), g.text()]})
        yield _case(
            "missing_id",
            f"parquet-{label}",
            files=(("part.parquet", _parquet(table)),),
            rows=2,
            bad=None,
            reasons=IDS_REASONS,
        )
    yield _case(
        "missing_id",
        "max-length-kept",
        files=(
            (
                "part.jsonl",
                _jsonl([json.dumps({"id": "k" * ing.MAX_ID_CHARS, "text": g.text()}).encode()]),
            ),
        ),
        rows=1,
        bad=0,
    )


def _duplicate_ids(g: _Gen) -> Iterator[Case]:
    for k in (2, 3, 5, 8):
        uid, text = g.uid(), g.text()
        lines = [json.dumps({"id": uid, "text": text}).encode() for _ in range(k)]
        yield _case(
            "duplicate_id",
            f"same-id-same-text-x{k}",
            files=(("part.jsonl", _jsonl(lines)),),
            rows=k,
            bad=0,
            duplicates=k - 1,
            ids=(uid,),
        )
        uid = g.uid()
        lines = [json.dumps({"id": uid, "text": g.text()}).encode() for _ in range(k)]
        yield _case(
            "duplicate_id",
            f"same-id-other-text-x{k}",
            files=(("part.jsonl", _jsonl(lines)),),
            rows=k,
            bad=k - 1,
            reasons=_reasons(codes.DUPLICATE_ID),
            ids=(uid,),
        )
        text = g.text()
        lines = [json.dumps({"id": g.uid(), "text": text}).encode() for _ in range(k)]
        yield _case(
            "duplicate_id",
            f"other-id-same-text-x{k}",
            files=(("part.jsonl", _jsonl(lines)),),
            rows=k,
            bad=0,
            duplicates=k - 1,
        )
    uid, text = g.uid(), g.text()
    yield _case(
        "duplicate_id",
        "across-jsonl-and-csv",
        files=(
            ("a.jsonl", _jsonl([json.dumps({"id": uid, "text": text}).encode()])),
            ("b.csv", _csv([["id", "text"], [uid, g.text()]])),
        ),
        rows=2,
        bad=1,
        reasons=_reasons(codes.DUPLICATE_ID),
    )
    n = g.rng.randrange(10**6, 10**7)
    yield _case(
        "duplicate_id",
        "int-and-string",
        files=(
            (
                "part.jsonl",
                _jsonl(
                    [
                        json.dumps({"id": n, "text": g.text()}).encode(),
                        json.dumps({"id": str(n), "text": g.text()}).encode(),
                    ]
                ),
            ),
        ),
        rows=2,
        bad=1,
        reasons=_reasons(codes.DUPLICATE_ID),
    )
    uid = g.uid()
    yield _case(
        "duplicate_id",
        "padded-with-spaces",
        files=(
            (
                "part.jsonl",
                _jsonl(
                    [
                        json.dumps({"id": uid, "text": g.text()}).encode(),
                        json.dumps({"id": f"  {uid}\t", "text": g.text()}).encode(),
                    ]
                ),
            ),
        ),
        rows=2,
        bad=1,
        reasons=_reasons(codes.DUPLICATE_ID),
    )
    base = g.uid()
    for label, (a, b) in {
        "case": (base + "abc", base + "ABC"),
        "nfc-nfd": (base + "\u00e9", base + "e\u0301"),
        "zero-width": (base + "x", base + "x\u200b"),
    }.items():
        yield _case(
            "duplicate_id",
            f"distinct-{label}",
            files=(
                (
                    "part.jsonl",
                    _jsonl(
                        [
                            json.dumps({"id": a, "text": g.text()}).encode(),
                            json.dumps({"id": b, "text": g.text()}).encode(),
                        ]
                    ),
                ),
            ),
            rows=2,
            bad=0,
            ids=(a, b),
        )


_SQL_IDS = [
    "'",
    "''",
    '"',
    '""',
    ";",
    "--",
    "/*",
    "*/",
    "' OR '1'='1",
    "' OR 1=1 --",
    "'); DROP TABLE reviews.raw_records; --",
    '"; DELETE FROM reviews.final_dataset; --',
    "1; ATTACH 'x.db' AS x",
    "%",
    "_",
    "%_%",
    "\\",
    "\\'",
    "\\x00",
    "$1",
    "$drop",
    "?",
    ":name",
    "@var",
    "#",
    "`",
    "${HOME}",
    "$(touch pwned)",
    "{{7*7}}",
    "<script>alert(1)</script>",
    "NULL",
    "null",
    "None",
    "0",
    "-1",
    "1e3",
    "a\u202eb",
    "x\u200by",
    "😀",
    "日本語",
    "a\nb",
    "a\tb",
    "a\rb",
    "a,b",
    '"quoted"',
]
_PATH_IDS = [
    "../../etc/passwd",
    "..",
    ".",
    "/",
    "/etc/shadow",
    "a/b/c",
    "..\\..\\windows\\system32",
    "C:\\Windows",
    "~/.ssh/id_rsa",
    "file:///etc/passwd",
    "%2e%2e%2f%2e%2e%2f",
    "\\\\server\\share",
    "a/../b",
    "..%00",
    "./x",
    "x/",
    "s3://bucket/../key",
    "....//....//",
]


def _odd_ids(g: _Gen) -> Iterator[Case]:
    for family, values in (("sql_id", _SQL_IDS), ("path_id", _PATH_IDS)):
        for i, value in enumerate(values):
            for fmt in ("jsonl", "csv", "parquet"):
                uid = g.uid() + value if i % 2 else value + g.uid()
                text = g.text()
                if fmt == "jsonl":
                    data = _jsonl([json.dumps({"id": uid, "text": text}).encode()])
                elif fmt == "csv":
                    data = _csv([["id", "text"], [uid, text]])
                else:
                    data = _parquet(pa.table({"id": [uid], "text": [text]}))
                bare_cr = fmt == "csv" and "\r" in uid
                yield _case(
                    family,
                    f"{fmt}-{i}",
                    files=((f"part.{fmt}", data),),
                    rows=1,
                    bad=1 if bare_cr else 0,
                    reasons=_reasons(ing.MALFORMED_CSV),
                    ids=() if bare_cr else (uid.strip(),),
                )


_ODD_NAMES = [
    "a..b.jsonl",
    "x..jsonl",
    "a ..b.jsonl",
    "name with spaces.jsonl",
    "quote'name.jsonl",
    'dq"name.jsonl',
    "semi;colon.jsonl",
    "percent%s.jsonl",
    "back\\slash.jsonl",
    "new\nline.jsonl",
    "tab\tname.jsonl",
    "unicodé.jsonl",
    "emoji😀.jsonl",
    "rtl\u202egnp.jsonl",
    "UPPER.JSONL",
    "Mixed.JsonL",
    "-rf.jsonl",
    "*.jsonl",
    "[a].jsonl",
    "$(touch x).jsonl",
    "'; DROP TABLE x; --.jsonl",
    "n" * 240 + ".jsonl",
    "a..b/inner.jsonl",
    "/".join("d" * 30) + "/deep.jsonl",
    "bad\udcffname.jsonl",
    "bad\udcfe\udcfddir/inner.jsonl",
]
_REFUSED_NAMES = [
    "notes.jsonl.txt",
    "noext",
    "data.json5",
    "data.jsonl ",
    "data.parquet.gz",
    "data.xlsx",
    "data.jsonl.zip",
    "data.jsonl~",
]
_HIDDEN_NAMES = [
    "..evil.jsonl",
    "...jsonl",
    ".. .jsonl",
    ".hidden.csv",
    "_SUCCESS",
    "_x.jsonl",
    "..x/inner.jsonl",
    "_tmp/inner.jsonl",
]


def _file_names(g: _Gen) -> Iterator[Case]:
    for i, name in enumerate(_ODD_NAMES):
        valid = "\udcff" not in name and "\udcfe" not in name
        if valid:
            yield _case(
                "file_name",
                f"odd-{i}",
                files=((name, _jsonl(g.lines(2))),),
                rows=2,
                bad=0,
            )
        else:  # a name that is not UTF-8 cannot be stored; the file is refused, not lost
            yield _case(
                "file_name",
                f"not-utf8-{i}",
                files=((name, _jsonl(g.lines(2))),),
                rows=1,
                bad=1,
                reasons=_reasons(ing.UNSUPPORTED_FILE),
                refused=True,
            )
    for i, name in enumerate(_REFUSED_NAMES):
        yield _case(
            "file_name",
            f"unsupported-{i}",
            files=((name, _jsonl(g.lines(2))),),
            rows=1,
            bad=1,
            reasons=_reasons(ing.UNSUPPORTED_FILE),
            refused=True,
        )
    for i, name in enumerate(_HIDDEN_NAMES):  # hidden and marker files are not drop files
        yield _case("file_name", f"hidden-{i}", files=((name, _jsonl(g.lines(2))),), rows=0)


_SECRET_FILES = ("secret.jsonl", "secret.csv", "secret.parquet", "secret.jsonl.gz")


def _symlinks(g: _Gen) -> Iterator[Case]:
    outside = _reasons(ing.OUTSIDE_DROP)
    for target in _SECRET_FILES:
        suffix = target.removeprefix("secret")
        for mode in ("secret", "relsecret"):
            yield _case(
                "symlink",
                f"{mode}-{target}",
                links=(Link(f"link{suffix}", f"{mode}:{target}"),),
                rows=1,
                bad=1,
                reasons=outside,
                refused=True,
            )
        yield _case(
            "symlink",
            f"chain-{target}",
            links=(
                Link(f"hop{suffix}", f"secret:{target}"),
                Link(f"link{suffix}", f"inside:hop{suffix}"),
            ),
            rows=2,
            bad=2,
            reasons=outside,
            refused=True,
        )
        yield _case(
            "symlink",
            f"via-secret-dir-{target}",
            links=(Link(f"link{suffix}", f"secret:dir/{target}"),),
            rows=1,
            bad=1,
            reasons=outside,
            refused=True,
        )
        yield _case(
            "symlink",
            f"dotdot-name-{target}",
            links=(Link(f"a..b{suffix}", f"relsecret:{target}"),),
            rows=1,
            bad=1,
            reasons=outside,
            refused=True,
        )
        yield _case(
            "symlink",
            f"hidden-dotdot-name-{target}",
            links=(Link(f"..evil{suffix}", f"relsecret:{target}"),),
            rows=0,
        )
    for mode in ("secret", "relsecret"):
        for name in ("dir", "dir.jsonl", "folder"):
            yield _case(
                "symlink",
                f"{mode}-folder-as-{name}",
                links=(Link(name, f"{mode}:dir"),),
                rows=1,
                bad=1,
                reasons=outside,
                refused=True,
            )
    yield _case(
        "symlink",
        "parent-of-drop",
        links=(Link("up", "raw:../.."),),
        rows=1,
        bad=1,
        reasons=outside,
        refused=True,
    )
    yield _case(
        "symlink",
        "filesystem-root",
        links=(Link("root.jsonl", "raw:/"),),
        rows=1,
        bad=1,
        reasons=outside,
        refused=True,
    )
    for label, links, nbad in (
        ("self-loop", (Link("self.jsonl", "raw:self.jsonl"),), 1),
        ("pair-loop", (Link("a.jsonl", "raw:b.jsonl"), Link("b.jsonl", "raw:a.jsonl")), 2),
        ("dangling-inside", (Link("gone.jsonl", "raw:missing.jsonl"),), 1),
        ("dangling-csv", (Link("gone.csv", "raw:nowhere/missing.csv"),), 1),
    ):
        yield _case(
            "symlink",
            label,
            links=links,
            rows=nbad,
            bad=nbad,
            reasons=_reasons(ing.UNREADABLE_FILE, ing.OUTSIDE_DROP),
            refused=True,
        )
    yield _case(
        "symlink",
        "dangling-outside",
        links=(Link("gone.jsonl", "secret:no-such-file.jsonl"),),
        rows=1,
        bad=1,
        reasons=outside,
        refused=True,
    )
    yield _case(
        "symlink",
        "to-file-inside",
        files=(("real.jsonl", _jsonl(g.lines(2))),),
        links=(Link("alias.jsonl", "inside:real.jsonl"),),
        rows=4,
        bad=0,
        duplicates=2,
    )
    yield _case(
        "symlink",
        "to-folder-inside",
        files=(("sub/real.jsonl", _jsonl(g.lines(2))),),
        links=(Link("alias", "inside:sub"),),
        rows=3,
        bad=1,
        reasons=_reasons(ing.UNSUPPORTED_FILE),
        refused=True,
    )


_EMPTY: list[tuple[str, bytes]] = [
    ("empty.jsonl", b""),
    ("empty.ndjson", b""),
    ("empty.csv", b""),
    ("spaces.jsonl", b"   \n\t\n"),
    ("newlines.csv", b"\n\n\n"),
    ("crlf.jsonl", b"\r\n\r\n"),
    ("bom.jsonl", b"\xef\xbb\xbf"),
    ("bom.csv", b"\xef\xbb\xbf"),
    ("empty.jsonl.gz", gzip.compress(b"", mtime=0)),
    ("empty.csv.gz", gzip.compress(b"", mtime=0)),
    ("blank.jsonl.gz", gzip.compress(b"\n\n", mtime=0)),
    ("empty.json", b""),
    ("spaces.json", b" \n\t\r\n"),
    ("empty-array.json", b"[]"),
    ("empty-array-lines.json", b"[\n]\n"),
    ("bom.json", b"\xef\xbb\xbf"),
    ("empty.json.gz", gzip.compress(b"", mtime=0)),
]


def _empty_files(g: _Gen) -> Iterator[Case]:
    for name, data in _EMPTY:
        yield _case("empty_file", name, files=((name, data),), rows=0)
    for name in ("empty.parquet", "zero.jsonl.gz", "zero.csv.gz"):
        yield _case(
            "empty_file",
            f"zero-byte-{name}",
            files=((name, b""),),
            rows=None if name.endswith(".gz") else 1,
            bad=None if name.endswith(".gz") else 1,
            reasons=_reasons(ing.UNREADABLE_FILE),
            refused=True,
        )
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    yield _case(
        "empty_file",
        "parquet-no-rows",
        files=(("rows0.parquet", _parquet(schema.empty_table())),),
        rows=0,
    )


def _truncated_parquet(g: _Gen) -> Iterator[Case]:
    table = pa.table({"id": [g.uid() for _ in range(40)], "text": [g.text() for _ in range(40)]})
    whole = _parquet(table)
    refused = _reasons(ing.UNREADABLE_FILE)
    for k in range(30):
        cut = max(1, (k * len(whole)) // 30 + g.rng.randrange(0, 7))
        yield _case(
            "truncated_parquet",
            f"cut-{cut}-of-{len(whole)}",
            files=(("part.parquet", whole[:cut]),),
            rows=1,
            bad=1,
            reasons=refused,
            refused=True,
        )
    for _ in range(20):
        flipped = bytearray(whole)
        pos = g.rng.randrange(4, len(whole) - 8)
        for j in range(4):
            flipped[pos + j] ^= 0xFF
        yield _case(
            "truncated_parquet",
            f"bitflip-{pos}",
            files=(("part.parquet", bytes(flipped)),),
            rows=None,
            bad=None,
            reasons=_reasons(
                ing.UNREADABLE_FILE,
                ing.MISSING_ID,
                ing.INVALID_ID,
                ing.MISSING_TEXT,
                ing.INVALID_TEXT,
                codes.EMPTY_TEXT,
                codes.TEXT_TOO_LONG,
                codes.DUPLICATE_ID,
            ),
            duplicates=None,
        )
    for label, data in (
        ("magic-only", b"PAR1"),
        ("two-magics", b"PAR1PAR1"),
        ("footer-only", whole[-200:]),
        ("random-bytes", g.rng.randbytes(2048)),
        ("jsonl-named-parquet", _jsonl(g.lines(2))),
        ("gzip-named-parquet", gzip.compress(whole, mtime=0)),
    ):
        yield _case(
            "truncated_parquet",
            label,
            files=(("part.parquet", data),),
            rows=1,
            bad=1,
            reasons=refused,
            refused=True,
        )
    shapes: list[tuple[str, pa.Table, int, frozenset[str]]] = [
        ("int-text", pa.table({"id": [g.uid()], "text": [7]}), 1, _reasons(ing.INVALID_TEXT)),
        (
            "null-text",
            pa.table({"id": [g.uid()], "text": pa.array([None], pa.string())}),
            1,
            _reasons(ing.MISSING_TEXT),
        ),
        (
            "list-text",
            pa.table({"id": [g.uid()], "text": [["a", "b"]]}),
            1,
            _reasons(ing.INVALID_TEXT),
        ),
        ("struct-id", pa.table({"id": [{"a": 1}], "text": [g.text()]}), 1, IDS_REASONS),
        (
            "binary-text",
            pa.table({"id": [g.uid()], "text": pa.array([b"\xff\xfe"], pa.binary())}),
            1,
            _reasons(ing.INVALID_TEXT),
        ),
        (
            "no-text-column",
            pa.table({"id": [g.uid()], "body": [g.text()]}),
            1,
            _reasons(ing.MISSING_TEXT),
        ),
        (
            "dictionary-text",
            pa.table({"id": [g.uid()], "text": pa.array([g.text()]).dictionary_encode()}),
            0,
            frozenset(),
        ),
        (
            "large-string",
            pa.table({"id": [g.uid()], "text": pa.array([g.text()], pa.large_string())}),
            0,
            frozenset(),
        ),
        (
            "timestamp-meta",
            pa.table({"id": [g.uid()], "text": [g.text()], "at": pa.array([0], pa.timestamp("s"))}),
            0,
            frozenset(),
        ),
        (
            "decimal-meta",
            pa.table(
                {"id": [g.uid()], "text": [g.text()], "d": pa.array([1], pa.decimal128(5, 2))}
            ),
            0,
            frozenset(),
        ),
    ]
    for label, tbl, nbad, reasons in shapes:
        yield _case(
            "truncated_parquet",
            f"shape-{label}",
            files=(("part.parquet", _parquet(tbl)),),
            rows=1,
            bad=nbad,
            reasons=reasons,
        )


def _damaged_gzip(g: _Gen) -> Iterator[Case]:
    for k in range(16):
        whole = gzip.compress(_jsonl(g.lines(30)), mtime=0)
        cut = 10 + (k * (len(whole) - 12)) // 16
        yield _case(
            "damaged_gzip",
            f"cut-{cut}-of-{len(whole)}",
            files=(("part.jsonl.gz", whole[:cut]),),
            rows=None,
            bad=None,
            reasons=_reasons(ing.UNREADABLE_FILE, ing.MALFORMED_JSON, ing.INVALID_UTF8),
            must=_reasons(ing.UNREADABLE_FILE),
        )
    yield _case(
        "damaged_gzip",
        "not-gzip",
        files=(("part.csv.gz", b"id,text\n1,plain\n"),),
        rows=1,
        bad=1,
        reasons=_reasons(ing.UNREADABLE_FILE),
        refused=True,
    )
    yield _case(
        "damaged_gzip",
        "two-members",
        files=(
            (
                "part.jsonl.gz",
                gzip.compress(_jsonl(g.lines(2)), mtime=0)
                + gzip.compress(_jsonl(g.lines(2)), mtime=0),
            ),
        ),
        rows=4,
        bad=0,
    )
    yield _case(
        "damaged_gzip",
        "trailing-garbage",
        files=(("part.jsonl.gz", gzip.compress(_jsonl(g.lines(2)), mtime=0) + b"garbage!"),),
        rows=None,
        bad=None,
        reasons=_reasons(ing.UNREADABLE_FILE),
    )


def _corrupt_deflate(g: _Gen) -> Iterator[Case]:
    """Gzip files whose deflate data is damaged (zlib.error, not an OSError, is raised)."""
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    for name in ("part.jsonl.gz", "part.csv.gz", "part.json.gz", "part.ndjson.gz"):
        yield _case(
            "damaged_gzip",
            f"invalid-block-{name}",
            files=((name, header + b"\xff\xff\xff\xff"),),
            rows=1,
            bad=1,
            reasons=_reasons(ing.UNREADABLE_FILE),
            refused=True,
        )
    for k in range(12):  # damage inside the stream: the lines before it may come through
        whole = bytearray(gzip.compress(_jsonl(g.lines(40)), mtime=0))
        at = 10 + (k * (len(whole) - 20)) // 12
        whole[at : at + 6] = bytes(g.rng.randrange(256) for _ in range(6))
        yield _case(
            "damaged_gzip",
            f"overwritten-{at}-of-{len(whole)}",
            files=(("part.jsonl.gz", bytes(whole)),),
            rows=None,
            bad=None,
            reasons=_ANY_LINE_DAMAGE,
        )


# What a line of a damaged stream may come out as, besides the file being unreadable.
_ANY_LINE_DAMAGE = _reasons(
    ing.UNREADABLE_FILE,
    ing.MALFORMED_JSON,
    ing.INVALID_UTF8,
    ing.NOT_AN_OBJECT,
    ing.MISSING_ID,
    ing.INVALID_ID,
    ing.MISSING_TEXT,
    ing.INVALID_TEXT,
)


def _one_text(g: _Gen, label: str, text: Any, reasons: frozenset[str]) -> Case:
    """A drop of one JSON line whose text field is `text`, quarantined for one of `reasons`."""
    line = json.dumps({"id": g.uid(), "text": text}).encode()
    return _case(
        "text_content",
        label,
        files=(("part.jsonl", _jsonl([line])),),
        rows=1,
        bad=1,
        reasons=reasons,
    )


def _text_content(g: _Gen) -> Iterator[Case]:
    empty = _reasons(codes.EMPTY_TEXT, ing.MISSING_TEXT)  # Unicode spaces count as missing
    for label, text in {
        "html-only": "<p> </p><br/>",
        "script-only": "<script>alert(1)</script>",
        "style-only": "<style>p{color:red}</style>",
        "comment-only": "<!-- nothing -->",
        "zero-width": "\u200b\u200c\u200d\ufeff",
        "controls": "\x01\x02\x7f\x1b",
        "ideographic-space": "\u3000\u3000",
        "escaped-markup": "&lt;p&gt;&lt;/p&gt;",
        "nbsp": "\xa0\xa0",
        "lone-surrogates": "\udfff\ud800",
    }.items():
        yield _one_text(g, label, text, empty)
    for label, value in {
        "number": 12.5,
        "int": 7,
        "list": ["a", "b"],
        "object": {"t": "x"},
        "true": True,
    }.items():
        yield _one_text(g, f"invalid-{label}", value, _reasons(ing.INVALID_TEXT))
    surrogate: dict[str, tuple[dict[str, Any], int, frozenset[str]]] = {
        "text-lone-high": ({"text": g.text() + " \ud83d then"}, 0, frozenset()),
        "text-lone-low": ({"text": g.text() + " \udc00 then"}, 0, frozenset()),
        "text-pair": ({"text": g.text() + " \ud83d\ude00 then"}, 0, frozenset()),
        "meta-lone": ({"text": g.text(), "m": "x\ud800"}, 0, frozenset()),
        "meta-key-lone": ({"text": g.text(), "k\udfff": 1}, 0, frozenset()),
        "id-lone": ({"id": g.uid() + "\ud800", "text": g.text()}, 1, IDS_REASONS),
    }
    for label, (rec, nbad, reasons) in surrogate.items():
        full = {"id": g.uid(), **rec}
        yield _case(
            "text_content",
            f"surrogate-{label}",
            files=(("part.jsonl", _jsonl([json.dumps(full).encode(), g.line()])),),
            rows=2,
            bad=nbad,
            reasons=reasons,
        )
    # Openers that never close, one line of 800k characters: linear cleanup, then too long.
    for label, opener in {
        "unclosed-comments": "<!--",
        "unclosed-styles": "<style",
        "escaped-comments": "&lt;!--",
    }.items():
        text = opener * (800_000 // len(opener))
        yield _one_text(g, label, text, _reasons(codes.TEXT_TOO_LONG))
    for label, raw in (("nan", b"NaN"), ("inf", b"Infinity"), ("big-int", b"1" * 400)):
        line = b'{"id": "' + g.uid().encode() + b'", "text": "' + g.text().encode()
        line += b'", "title": ' + raw + b"}"
        yield _case(
            "text_content",
            f"meta-{label}",
            files=(("part.jsonl", _jsonl([line])),),
            rows=1,
            bad=None,
            reasons=_reasons(ing.MALFORMED_JSON),
        )


def text_cases(seed: int = 0, *, big_line: int = 10_000_000) -> list[Case]:
    """Every hostile case for a text task, in a fixed order for a given seed."""
    g = _Gen(seed)
    families = (
        _json_truncated(g),
        _json_syntax(g),
        _csv_quoting(g),
        _invalid_utf8(g),
        _nul_bytes(g),
        _long_lines(g, big=big_line),
        _deep_nesting(g),
        _missing_ids(g),
        _duplicate_ids(g),
        _odd_ids(g),
        _file_names(g),
        _symlinks(g),
        _empty_files(g),
        _truncated_parquet(g),
        _damaged_gzip(g),
        _corrupt_deflate(g),
        _json_files(g),
        _text_content(g),
    )
    return [case for family in families for case in family]


# ------------------------------------------------------------------------- image cases


def _manifest_line(g: _Gen, file: str, **extra: Any) -> bytes:
    return json.dumps({"id": g.uid("img"), "file": file, "title": g.text(), **extra}).encode()


def _truncated_images(g: _Gen) -> Iterator[Case]:
    fractions = (0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("GIF", "gif")):
        for side in (40, 96):
            whole = g.noise_png(side, fmt)
            for f in fractions:
                cut = max(1, int(len(whole) * f))
                strict = f <= 0.9
                yield _case(
                    "truncated_image",
                    f"{ext}-{side}-cut-{cut}-of-{len(whole)}",
                    IMAGE,
                    files=((f"cut.{ext}", whole[:cut]),),
                    rows=1,
                    bad=1 if strict else None,
                    reasons=IMAGE_BAD,
                )


def _bombs(g: _Gen) -> Iterator[Case]:
    bomb = _reasons(im.DECOMPRESSION_BOMB)
    loose = bomb | IMAGE_BAD
    dims = [
        (501, 500),
        (1000, 1000),
        (20_000, 20_000),
        (65_535, 65_535),
        (100_000, 1),
        (1, 100_000),
        (10_000, 9_000),
        (30_000, 30_000),
        (2**31 - 1, 1),
        (2**31 - 1, 2**31 - 1),
    ]
    for w, h in dims:
        # Pillow takes a zlib stream that ends early for the end of the image, so a header
        # that is no bomb (1 x 100000) but whose few rows decode may be accepted.
        over = w * h > IMAGE_MAX_PIXELS
        yield _case(
            "bomb",
            f"png-header-{w}x{h}",
            IMAGE,
            files=(("bomb.png", _png_header(w, h)),),
            rows=1,
            bad=1 if over else None,
            reasons=loose,
            must=bomb if over else frozenset(),
        )
        gw, gh = min(w, 65_535), min(h, 65_535)
        ww, wh = min(w, 2**24), min(h, 2**24)
        for ext, data, pixels in (
            ("gif", _gif_header(gw, gh), gw * gh),
            ("jpg", _jpeg_header(gw, gh), gw * gh),
            ("webp", _webp_header(ww, wh), ww * wh),
        ):
            yield _case(
                "bomb",
                f"{ext}-header-{w}x{h}",
                IMAGE,
                files=((f"bomb.{ext}", data),),
                rows=1,
                bad=1 if pixels > IMAGE_MAX_PIXELS else None,
                reasons=loose,
            )
    for side in (501, 700, 1200, 2500):
        for fmt, ext in (("PNG", "png"), ("GIF", "gif"), ("JPEG", "jpg"), ("WEBP", "webp")):
            yield _case(
                "bomb",
                f"real-{ext}-{side}",
                IMAGE,
                files=((f"big.{ext}", _solid_image(side, side - 1, fmt)),),
                rows=1,
                bad=1,
                reasons=bomb,
                must=bomb,
            )
    for mb in (2, 20):
        ztxt = _png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"\x00" * (mb << 20), 9))
        iccp = _png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(b"\x00" * (mb << 20), 9))
        for label, chunk in (("ztxt", ztxt), ("iccp", iccp)):
            yield _case(
                "bomb",
                f"png-{label}-{mb}mb",
                IMAGE,
                files=((f"{label}.png", _png_header(16, 16, chunk)),),
                rows=1,
                bad=1,
                reasons=bomb,
                must=bomb,
            )


_FAKES = {
    "html": b"<html><body>403 Forbidden</body></html>",
    "json": b'{"error": "not found"}',
    "bmp": None,  # filled in with a real BMP
    "tiff": None,
    "ico": None,
    "pdf": b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF",
    "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n(/etc/passwd) (r) file\n",
    "psd": b"8BPS\x00\x01" + b"\x00" * 40,
    "svg-xxe": (
        b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY x SYSTEM "file://{outside}/secret.jsonl">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg"><text>&x;</text></svg>'
    ),
    "random": None,
    "png-magic-only": b"\x89PNG\r\n\x1a\n",
    "png-magic-garbage": b"\x89PNG\r\n\x1a\n" + b"\xde\xad\xbe\xef" * 16,
    "gif-magic-only": b"GIF89a",
    "jpeg-soi-only": b"\xff\xd8\xff",
    "riff-not-webp": b"RIFF\x10\x00\x00\x00WAVEfmt ",
    "webp-bad-chunk": b"RIFF\x10\x00\x00\x00WEBPVP8 \xff\xff\xff\xff",
    "nul-bytes": b"\x00" * 512,
}


def _fake_images(g: _Gen) -> Iterator[Case]:
    for label, data in _FAKES.items():
        if label in ("bmp", "tiff", "ico"):
            buf = io.BytesIO()
            Image.new("RGB", (16, 16), (1, 2, 3)).save(buf, format=label.upper())
            data = buf.getvalue()
        elif label == "random":
            data = g.rng.randbytes(1024)
        for ext in ("png", "jpg", "gif", "webp"):
            yield _case(
                "fake_image",
                f"{label}-as-{ext}",
                IMAGE,
                files=((f"fake.{ext}", data or b""),),
                rows=1,
                bad=1,
                reasons=IMAGE_BAD,
            )
    for ext in ("png", "jpg", "jpeg", "gif", "webp", "PNG"):
        yield _case(
            "fake_image",
            f"empty-{ext}",
            IMAGE,
            files=((f"empty.{ext}", b""),),
            rows=1,
            bad=1,
            reasons=_reasons(im.EMPTY_FILE),
        )
    for name in ("photo.bmp", "photo.svg", "photo.png.txt", "noext", "photo.tif"):
        yield _case(
            "fake_image",
            f"unsupported-{name}",
            IMAGE,
            files=((name, g.noise_png()),),
            rows=1,
            bad=1,
            reasons=_reasons(ing.UNSUPPORTED_FILE),
        )


def _image_names(g: _Gen) -> Iterator[Case]:
    names = [
        "a..b.png",
        "x..png",
        "name with spaces.png",
        "quote'name.png",
        'dq"name.jpg',
        "semi;colon.png",
        "new\nline.png",
        "unicodé.png",
        "emoji😀.png",
        "UPPER.PNG",
        "'; DROP TABLE x; --.png",
        "a..b/inner.png",
        "/".join("d" * 20) + "/deep.png",
    ]
    for i, name in enumerate(names):
        fmt = "JPEG" if name.endswith(".jpg") else "PNG"
        yield _case(
            "image_name", f"odd-{i}", IMAGE, files=((name, g.noise_png(fmt=fmt)),), rows=1, bad=0
        )
    yield _case(
        "image_name",
        "not-utf8",
        IMAGE,
        files=(("bad\udcffname.png", g.noise_png()),),
        rows=1,
        bad=1,
        reasons=_reasons(ing.UNSUPPORTED_FILE),
    )
    for name in ("..evil.png", ".hidden.png", "_marker.png", "..x/inner.png"):
        yield _case("image_name", f"hidden-{name}", IMAGE, files=((name, g.noise_png()),), rows=0)


def _image_symlinks(g: _Gen) -> Iterator[Case]:
    outside = _reasons(ing.OUTSIDE_DROP)
    for mode in ("secret", "relsecret"):
        for name in ("link.png", "a..b.png", "link.jpg"):
            yield _case(
                "image_symlink",
                f"{mode}-{name}",
                IMAGE,
                links=(Link(name, f"{mode}:secret.png"),),
                rows=1,
                bad=1,
                reasons=outside,
            )
        yield _case(
            "image_symlink",
            f"{mode}-folder",
            IMAGE,
            links=(Link("pics", f"{mode}:dir"),),
            rows=1,
            bad=1,
            reasons=outside,
        )
        yield _case(
            "image_symlink",
            f"{mode}-with-manifest-line",
            IMAGE,
            links=(Link("linked.png", f"{mode}:secret.png"),),
            manifest=(_manifest_line(g, "{dir}/linked.png"),),
            rows=1,
            bad=1,
            reasons=outside,
        )
    yield _case(
        "image_symlink",
        "chain",
        IMAGE,
        links=(Link("hop.png", "secret:secret.png"), Link("link.png", "inside:hop.png")),
        rows=2,
        bad=2,
        reasons=outside,
    )
    for label, links, n in (
        ("self-loop", (Link("self.png", "raw:self.png"),), 1),
        ("pair-loop", (Link("a.png", "raw:b.png"), Link("b.png", "raw:a.png")), 2),
        ("dangling", (Link("gone.png", "raw:missing.png"),), 1),
    ):
        yield _case(
            "image_symlink",
            label,
            IMAGE,
            links=links,
            rows=n,
            bad=n,
            reasons=_reasons(ing.UNREADABLE_FILE, ing.OUTSIDE_DROP),
        )
    yield _case(
        "image_symlink",
        "to-file-inside",
        IMAGE,
        files=(("real.png", g.noise_png()),),
        links=(Link("alias.png", "inside:real.png"),),
        rows=2,
        bad=0,
        duplicates=None,
    )


def _manifests(g: _Gen) -> Iterator[Case]:
    def with_line(label: str, line: bytes, **kw: Any) -> Case:
        return _case(
            "manifest",
            label,
            IMAGE,
            files=(("pic.png", g.noise_png()),),
            manifest=(line,),
            **kw,
        )

    broken = [
        b'{"file": "{dir}/pic.png", "id": ',
        b"{'file': '{dir}/pic.png'}",
        b'{"file": "{dir}/pic.png",}',
        b'{"file": "{dir}/pic.png"} trailing',
        b'{"file": "{dir}/pic.png", "title": "raw \x00 nul"}',
        b'{"file": "{dir}/pic.png", "title": "tab \t raw"}',
        b"<html>oops</html>",
        b"{",
        b"\x00\x00\x00",
    ]
    for i, line in enumerate(broken):
        yield with_line(f"broken-{i}", line, rows=2, bad=1, reasons=_reasons(ing.MALFORMED_JSON))
    for i, line in enumerate(_NOT_OBJECTS[:5]):
        yield with_line(f"not-object-{i}", line, rows=2, bad=1, reasons=_reasons(ing.NOT_AN_OBJECT))
    for label, bad in list(_BAD_UTF8.items())[:8]:
        line = b'{"file": "{dir}/pic.png", "title": "' + bad + b'"}'
        yield with_line(f"utf8-{label}", line, rows=2, bad=1, reasons=_reasons(ing.INVALID_UTF8))
    for depth in (10, 500, 2000, 100_000):
        line = b'{"file": "{dir}/pic.png", "m": ' + b"[" * depth + b"]" * depth + b"}"
        yield with_line(
            f"nesting-{depth}",
            line,
            rows=2 if depth > 1000 else 1,
            bad=1 if depth > 1000 else 0,
            reasons=_reasons(ing.MALFORMED_JSON),
        )
    big = b'{"file": "{dir}/pic.png", "title": "' + b"x" * (im.MAX_MANIFEST_LINE_BYTES + 10) + b'"}'
    yield with_line("line-too-long", big, rows=2, bad=1, reasons=_reasons(ing.LINE_TOO_LONG))
    escapes = [
        "../secret.png",
        "../../secret.png",
        "../../outside/secret.png",
        "{outside}/secret.png",
        "{outside}/dir/secret.png",
        "{dir}/../../secret.png",
        "{dir}/./../../secret.png",
        "..\\secret.png",
        "{dir}\\..\\..\\secret.png",
        "C:\\secret.png",
        "\\\\host\\share\\secret.png",
        "/etc/passwd",
        "~/secret.png",
        "file:///secret.png",
        "%2e%2e/secret.png",
        "{dir}/pic.png/../../../secret.png",
    ]
    for i, path in enumerate(escapes):
        line = json.dumps({"file": path, "title": g.text()}).encode()
        climbs = ".." in path.replace("\\", "/").split("/")
        climbs = climbs or path.startswith(("/", "\\", "{outside}"))
        climbs = climbs or path[1:3] == ":\\"
        yield with_line(
            f"escape-{i}",
            line,
            rows=2,
            bad=1,
            reasons=_reasons(ing.OUTSIDE_DROP) if climbs else _reasons(im.MISSING_FILE),
        )
    for i, value in enumerate(
        (None, "", "   ", 7, ["{dir}/pic.png"], {"p": 1}, ".", "{dir}/nope.png")
    ):
        line = json.dumps({"file": value, "title": g.text()}).encode()
        yield with_line(f"bad-file-{i}", line, rows=2, bad=1, reasons=_reasons(im.MISSING_FILE))
    yield _case(
        "manifest",
        "duplicate-entry",
        IMAGE,
        files=(("pic.png", g.noise_png()),),
        manifest=(_manifest_line(g, "{dir}/pic.png"), _manifest_line(g, "{dir}/pic.png")),
        rows=2,
        bad=1,
        reasons=_reasons(im.DUPLICATE_ENTRY),
    )
    for i, value in enumerate(_SQL_IDS[:24] + _PATH_IDS[:10]):
        uid = value + g.uid("img")
        line = json.dumps({"id": uid, "file": "{dir}/pic.png", "title": g.text()}).encode()
        yield with_line(f"odd-id-{i}", line, rows=1, bad=0, ids=(uid.strip(),))
    bad_ids: list[tuple[str, Any]] = [
        ("list", ["a"]),
        ("object", {"a": 1}),
        ("bool", True),
        ("float", 2.5),
        ("nul", "a\u0000b"),
        ("surrogate", "a\ud800"),
        ("too-long", "i" * (ing.MAX_ID_CHARS + 1)),
    ]
    for label, value in bad_ids:
        line = json.dumps({"id": value, "file": "{dir}/pic.png"}).encode()
        yield with_line(
            f"invalid-id-{label}", line, rows=1, bad=1, reasons=_reasons(ing.INVALID_ID)
        )
    uid = g.uid("img")
    yield _case(
        "manifest",
        "same-id-two-images",
        IMAGE,
        files=(("a.png", g.noise_png()), ("b.png", g.noise_png())),
        manifest=(
            json.dumps({"id": uid, "file": "{dir}/a.png"}).encode(),
            json.dumps({"id": uid, "file": "{dir}/b.png"}).encode(),
        ),
        rows=2,
        bad=1,
        reasons=_reasons(codes.DUPLICATE_ID),
    )
    for label, raw in (("nan", b"NaN"), ("inf", b"-Infinity")):
        line = b'{"file": "{dir}/pic.png", "title": "t", "score": ' + raw + b"}"
        yield with_line(
            f"meta-{label}", line, rows=None, bad=None, reasons=_reasons(ing.MALFORMED_JSON)
        )
    for label, title in (("surrogate", "t \ud83d x"), ("nul", "t \u0000 x"), ("html", "<b>t</b>")):
        line = json.dumps({"file": "{dir}/pic.png", "title": title}).encode()
        yield with_line(f"title-{label}", line, rows=1, bad=0)


def image_cases(seed: int = 0) -> list[Case]:
    """Every hostile case for an image task, in a fixed order for a given seed."""
    g = _Gen(seed + 1)
    families = (
        _truncated_images(g),
        _bombs(g),
        _fake_images(g),
        _image_names(g),
        _image_symlinks(g),
        _manifests(g),
    )
    return [case for family in families for case in family]


# ------------------------------------------------------------------------------ writing


def make_outside(root: Path, seed: int = 0) -> Outside:
    """Writes the canary files into `root`, a folder outside every drop."""
    rng = random.Random(seed + 99)
    token = f"CANARY{rng.getrandbits(96):024x}"
    (root / "dir").mkdir(parents=True, exist_ok=True)
    record = {"id": token, "text": f"{token} the secret text {token}"}
    jsonl = _jsonl([json.dumps(record).encode()])
    files = {
        "secret.jsonl": jsonl,
        "secret.csv": _csv([["id", "text"], [record["id"], record["text"]]]),
        "secret.parquet": _parquet(pa.Table.from_pylist([record])),
        "secret.jsonl.gz": gzip.compress(jsonl, mtime=0),
    }
    img = Image.frombytes("RGB", (32, 32), rng.randbytes(32 * 32 * 3))
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=None)
    files["secret.png"] = buf.getvalue()
    for name, data in files.items():
        (root / name).write_bytes(data)
        (root / "dir" / name).write_bytes(data)
    return Outside(root, token, hashlib.sha256(files["secret.png"]).hexdigest())


def _link_target(link: Link, at: Path, case_dir: Path, outside: Outside) -> str:
    mode, _, what = link.to.partition(":")
    if mode == "secret":
        return str(outside.root / what)
    if mode == "relsecret":
        return os.path.relpath(outside.root / what, at.parent)
    if mode == "inside":
        return os.path.relpath(case_dir / what, at.parent)
    return what


def write_drop(
    drop_dir: Path, cases: Sequence[Case], outside: Outside, *, start: int = 0
) -> list[Placed]:
    """Writes the cases into `drop_dir`, each in its own folder `cNNNN` (numbered from `start`),
    plus the manifest lines of image cases in `manifest.jsonl` at the drop root; returns where
    each case landed. ``{dir}`` in a manifest line becomes the case's folder and ``{outside}``
    (there and in file contents) the canary folder's absolute path."""
    drop_dir.mkdir(parents=True, exist_ok=True)
    placed: list[Placed] = []
    manifest: list[bytes] = []
    for n, case in enumerate(cases, start=start):
        folder = f"c{n:04d}"
        case_dir = drop_dir / folder
        case_dir.mkdir()
        for name, data in case.files:
            path = case_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.replace(b"{outside}", str(outside.root).encode()))
        for link in case.links:
            at = case_dir / link.name
            at.parent.mkdir(parents=True, exist_ok=True)
            at.symlink_to(_link_target(link, at, case_dir, outside))
        lines = []
        for line in case.manifest:
            line = line.replace(b"{outside}", str(outside.root).encode())
            manifest.append(line.replace(b"{dir}", folder.encode()))
            lines.append(len(manifest))
        placed.append(Placed(case, folder, lines))
    if manifest:
        (drop_dir / MANIFEST).write_bytes(_jsonl(manifest))
    return placed


def batches(cases: Sequence[Case], size: int) -> list[list[Case]]:
    """The cases dealt round-robin into drops of at most `size`, so every drop mixes
    families (and holds some good records beside the bad)."""
    n = max(1, -(-len(cases) // size))
    return [list(cases[i::n]) for i in range(n)]
