"""Dataset exporters: the final dataset as JSONL, written so no reader sees a partial file."""

import os
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from annotation_assets.core.balance import balance_dataset
from annotation_assets.core.spec import TaskSpec
from annotation_assets.core.tables import scalar

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
    series = labels.set_index("id")["label"]
    kept = balance_dataset(
        series,
        mode=mode,
        max_ratio=spec.balance.max_ratio,
        target=spec.balance.target,
        seed=spec.balance.seed,
    )
    report = {
        "mode": mode,
        "before": {str(k): int(v) for k, v in series.value_counts().sort_index().items()},
        "after": {str(k): int(v) for k, v in series.loc[kept].value_counts().sort_index().items()},
    }
    return kept, report


def export_jsonl(
    conn: duckdb.DuckDBPyConnection,
    task: str,
    out_dir: Path,
    *,
    keep_ids: pd.Index | None = None,
) -> tuple[Path, int]:
    """Writes `<out_dir>/<task>.jsonl`, one final record per line in drop order (atomically:
    a temporary file renamed into place), optionally only the rows in `keep_ids`. Returns the
    path and the row count."""
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{task}.jsonl"
    tmp = out_dir / f".{task}.jsonl.tmp"
    where = ""
    if keep_ids is not None:
        conn.register("_keep", pd.DataFrame({"id": keep_ids.astype(str)}))
        where = " WHERE f.id IN (SELECT id FROM _keep)"
    query = (
        f'SELECT {JSONL_COLUMNS} FROM "{task}".final_dataset f'
        f' JOIN "{task}".drops d USING (drop_id){where}'
        " ORDER BY d.seq, f.source_file, f.line_no NULLS LAST, f.id"
    )
    try:
        conn.execute(f"COPY ({query}) TO '{_sql_path(tmp)}' (FORMAT json)")
        rows = int(scalar(conn, f"SELECT count(*) FROM ({query})"))
    finally:
        if keep_ids is not None:
            conn.unregister("_keep")
    os.replace(tmp, final)
    return final, rows


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def export_coco(
    conn: duckdb.DuckDBPyConnection,
    spec: TaskSpec,
    out_dir: Path,
    *,
    keep_ids: pd.Index | None = None,
) -> tuple[Path, int]:
    """Writes `<out_dir>/<task>.coco.json` for an image task: one image and one
    whole-image annotation per final record. `file_name` is the image's path under the
    home's drops/<task>/ folder (`<drop_id>/<file>`). Returns the path and the image count."""
    from annotation_assets.core.coco import coco_dataset, write_coco

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
    if keep_ids is not None:
        rows = rows[rows["id"].isin(set(keep_ids.astype(str)))]
    dataset = coco_dataset(rows, labels=spec.label_names, task=task, description=spec.description)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{task}.coco.json"
    write_coco(path, dataset)
    return path, len(rows)
