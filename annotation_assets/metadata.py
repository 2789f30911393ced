"""Materialization metadata: schemas, previews, histograms and stat tables for the UI."""

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from annotation_assets.warehouse.tables import TABLES

_TYPES = {"VARCHAR": "string", "BIGINT": "int", "INTEGER": "int", "DOUBLE": "float"}


def column_schema(table: str) -> dg.TableSchema:
    cols = []
    for name, sqltype in TABLES[table].items():
        base = sqltype.split()[0]
        cols.append(
            dg.TableColumn(
                name,
                _TYPES.get(base, base.lower()),
                constraints=dg.TableColumnConstraints(nullable="NOT NULL" not in sqltype),
            )
        )
    return dg.TableSchema(columns=cols)


def _cell(value: Any, width: int = 80) -> str:
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "_(no rows)_"
    cols = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = []
        for c in cols:
            v = row.get(c)
            cells.append(f"{v:.3f}" if isinstance(v, float) and not np.isnan(v) else _cell(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def preview(frame: pd.DataFrame, *, rows: int = 10) -> dg.MetadataValue:
    records = [{str(k): v for k, v in row.items()} for row in frame.head(rows).to_dict("records")]
    return dg.MetadataValue.md(markdown_table(records))


def histogram(values: np.ndarray, *, bins: int = 10, lo: float = 0.0, hi: float = 1.0) -> str:
    """A markdown histogram with text bars, for confidence distributions."""
    values = values[~np.isnan(values)] if len(values) else values
    if len(values) == 0:
        return "_(no values)_"
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    peak = max(int(counts.max()), 1)
    rows = [
        {
            "bin": f"{edges[i]:.2f}–{edges[i + 1]:.2f}",
            "count": int(c),
            "": "█" * max(0, round(30 * c / peak)),
        }
        for i, c in enumerate(counts)
    ]
    return markdown_table(rows)


def counts_json(counts: Mapping[Any, int]) -> dg.MetadataValue:
    return dg.MetadataValue.json({str(k): int(v) for k, v in counts.items()})
