"""Writing reviews as a drop: `part-NNNNN.<fmt>` files (JSONL, CSV or Parquet), optionally
with malformed lines, and an empty `_SUCCESS` marker."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable, Sized
from itertools import islice
from pathlib import Path
from typing import Any

from tools.synthetic.generator import FIELDS

FORMATS: dict[str, str] = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}


def _broken_json(rng: random.Random, rec: dict[str, Any]) -> str:
    line = json.dumps(rec, ensure_ascii=False)
    return line[: rng.randint(min(10, len(line) - 1), len(line) - 2)]


def _broken_csv(rng: random.Random, row: list[str]) -> str:
    row = [v.replace("\n", " ") for v in row]
    if rng.random() < 0.35:
        text = row[1].replace('"', "")
        text = text[: max(1, rng.randint(len(text) // 2, len(text)))]
        return ",".join([row[0], '"' + text, *row[2:]])
    if rng.random() < 0.5:
        short = row[: rng.randint(1, len(row) - 1)]
    else:
        short = row + ["", "extra"][: rng.randint(1, 2)]
    return ",".join(_csv_field(v) for v in short)


def _csv_field(value: str) -> str:
    if any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _row_values(rec: dict[str, Any], columns: list[str]) -> list[str]:
    return ["" if rec.get(c) is None else str(rec[c]) for c in columns]


def _write_part(
    path: Path,
    fmt: str,
    rows: list[dict[str, Any]],
    breaks: dict[int, int],
    columns: list[str],
    rng: random.Random,
) -> None:
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {"rating": pa.int64()}
        schema = pa.schema([(c, types.get(c, pa.string())) for c in columns])
        table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows], schema=schema)
        pq.write_table(table, path)
        return
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        if fmt == "csv":
            writer.writerow(columns)
        for i, rec in enumerate(rows):
            for _ in range(breaks.get(i, 0)):
                if fmt == "jsonl":
                    fh.write(_broken_json(rng, rec) + "\n")
                else:
                    fh.write(_broken_csv(rng, _row_values(rec, columns)) + "\n")
            if fmt == "jsonl":
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            else:
                writer.writerow(_row_values(rec, columns))


def write_drop(
    folder: Path,
    records: Iterable[dict[str, Any]],
    *,
    fmt: str = "jsonl",
    include_gold: bool = False,
    broken_lines: int = 0,
    file_rows: int = 50_000,
    seed: int = 0,
) -> list[Path]:
    """Write records as `part-NNNNN.<fmt>` files of `file_rows` each, then an empty `_SUCCESS`.

    `broken_lines` malformed lines go before seeded records (anywhere in a sized collection, in
    the first file otherwise; not for parquet). Returns the record files written.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {sorted(FORMATS)}, got {fmt!r}")
    if file_rows <= 0:
        raise ValueError("file_rows must be positive")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"write_drop/{seed}")
    columns = [c for c in FIELDS if include_gold or c != "gold_label"]
    n_broken = 0 if fmt == "parquet" else max(0, broken_lines)
    positions: list[int] | None = None
    if n_broken and isinstance(records, Sized) and len(records) > 0:
        positions = sorted(rng.randrange(len(records)) for _ in range(n_broken))
    it = iter(records)
    paths: list[Path] = []
    offset = 0
    while True:
        chunk = list(islice(it, file_rows))
        if not chunk:
            break
        rows = [{k: v for k, v in r.items() if include_gold or k != "gold_label"} for r in chunk]
        if positions is None and n_broken and offset == 0:
            positions = sorted(rng.randrange(len(rows)) for _ in range(n_broken))
        breaks: dict[int, int] = {}
        for p in positions or ():
            if offset <= p < offset + len(rows):
                breaks[p - offset] = breaks.get(p - offset, 0) + 1
        path = folder / f"part-{len(paths):05d}{FORMATS[fmt]}"
        _write_part(path, fmt, rows, breaks, columns, rng)
        paths.append(path)
        offset += len(rows)
    (folder / "_SUCCESS").write_bytes(b"")
    return paths
