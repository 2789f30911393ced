"""Dataset exporters: the final dataset as JSONL, written so no reader sees a partial file."""

import os
from pathlib import Path

import duckdb

from annotation_assets.core.tables import scalar

JSONL_COLUMNS = (
    "id, text, label, source, confidence, drop_id, rule_names, model_version, annotators,"
    " source_file, line_no, ingested_at"
)


def export_jsonl(conn: duckdb.DuckDBPyConnection, task: str, out_dir: Path) -> tuple[Path, int]:
    """Writes `<out_dir>/<task>.jsonl`, one final record per line in drop order (atomically:
    a temporary file renamed into place). Returns the path and the row count."""
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{task}.jsonl"
    tmp = out_dir / f".{task}.jsonl.tmp"
    query = (
        f'SELECT {JSONL_COLUMNS} FROM "{task}".final_dataset f'
        f' JOIN "{task}".drops d USING (drop_id) ORDER BY d.seq, f.line_no NULLS LAST, f.id'
    )
    conn.execute(f"COPY ({query}) TO '{_sql_path(tmp)}' (FORMAT json)")
    rows = int(scalar(conn, f"SELECT count(*) FROM ({query})"))
    os.replace(tmp, final)
    return final, rows


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")
