"""A task's export read out of the warehouse: the final dataset's labels for the balanced
selection, the JSONL and COCO files, and the lineage an S3 manifest lists. The files are
written by core/export.py's atomic writers."""

from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from annotation_assets.core import export
from annotation_assets.core.spec import TaskSpec
from annotation_assets.warehouse.sql import literal
from annotation_assets.warehouse.tables import scalar

JSONL_COLUMNS = (
    "id, text, label, source, confidence, drop_id, rule_names, model_version, annotators,"
    " source_file, line_no, ingested_at"
)


def balanced_selection(
    conn: duckdb.DuckDBPyConnection, spec: TaskSpec, mode: str
) -> tuple[pd.Index, dict[str, Any]]:
    """The final-dataset ids an export keeps under balance `mode` (spec `balance` settings),
    and what balancing did: class counts before and after."""
    labels = conn.execute(f'SELECT id, label FROM "{spec.name}".final_dataset').fetchdf()
    return export.select_balanced(labels.set_index("id")["label"], spec, mode)


def export_jsonl(
    conn: duckdb.DuckDBPyConnection,
    task: str,
    out_dir: Path,
    *,
    keep_ids: pd.Index | None = None,
) -> tuple[Path, int]:
    """Writes `<out_dir>/<task>.jsonl`, one final record per line in drop order (atomically,
    see `export.write_export_file`), optionally only the rows in `keep_ids`. Returns the path
    and the row count."""
    out_dir.mkdir(parents=True, exist_ok=True)
    where = ""
    if keep_ids is not None:
        conn.register("_keep", pd.DataFrame({"id": keep_ids.astype(str)}))
        where = " WHERE f.id IN (SELECT id FROM _keep)"
    query = (
        f'SELECT {JSONL_COLUMNS} FROM "{task}".final_dataset f'
        f' JOIN "{task}".drops d USING (drop_id){where}'
        " ORDER BY d.seq, f.source_file, f.line_no NULLS LAST, f.id"
    )

    def write(tmp: Path) -> int:
        # DuckDB's own temporary file (tmp_<name>) would be visible and shared: we have one.
        conn.execute(f"COPY ({query}) TO {literal(str(tmp))} (FORMAT json, USE_TMP_FILE false)")
        return int(scalar(conn, f"SELECT count(*) FROM ({query})"))

    try:
        return export.write_export_file(
            out_dir, f"{task}.jsonl", write, errors=(OSError, duckdb.Error)
        )
    finally:
        if keep_ids is not None:
            conn.unregister("_keep")


def export_coco(
    conn: duckdb.DuckDBPyConnection,
    spec: TaskSpec,
    out_dir: Path,
    *,
    keep_ids: pd.Index | None = None,
) -> tuple[Path, int]:
    """Writes `<out_dir>/<task>.coco.json` for an image task: one image and one
    whole-image annotation per final record, in drop order (`export.write_coco_export`).
    Returns the path and the image count."""
    task = spec.name
    rows = conn.execute(
        f"""
        SELECT f.id, f.label, f.source, f.confidence, f.drop_id,
               f.drop_id || '/' || json_extract_string(n.meta, '$.file') AS file,
               CAST(json_extract(n.meta, '$.width') AS INTEGER) AS width,
               CAST(json_extract(n.meta, '$.height') AS INTEGER) AS height
        FROM "{task}".final_dataset f
        JOIN "{task}".normalized_records n ON n.drop_id = f.drop_id AND n.record_id = f.id
        JOIN "{task}".drops d ON d.drop_id = f.drop_id
        ORDER BY d.seq, n.row_num
        """
    ).fetchdf()
    return export.write_coco_export(rows, spec, out_dir, keep_ids=keep_ids)


def dataset_lineage(conn: duckdb.DuckDBPyConnection, task: str) -> dict[str, list[str]]:
    """The model versions and drops (in drop order) that the final dataset's rows come from."""
    models = conn.execute(
        f'SELECT DISTINCT model_version FROM "{task}".final_dataset'
        " WHERE model_version IS NOT NULL ORDER BY 1"
    ).fetchall()
    drops = conn.execute(
        f'SELECT d.drop_id FROM "{task}".drops d WHERE d.drop_id IN'
        f' (SELECT drop_id FROM "{task}".final_dataset) ORDER BY d.seq'
    ).fetchall()
    return {"model_versions": [str(m) for (m,) in models], "drops": [str(d) for (d,) in drops]}
