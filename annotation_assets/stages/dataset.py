"""The dataset stage: final_dataset, the drop's auto-accepted and human-decided records with
their lineage."""

from dataclasses import dataclass

import numpy as np

from annotation_assets.core.spec import TaskSpec
from annotation_assets.warehouse.decisions import human_decisions
from annotation_assets.warehouse.sql import Connect, q
from annotation_assets.warehouse.tables import transaction


@dataclass
class FinalResult:
    n_rows: int
    by_source: dict[str, int]
    by_label: dict[str, int]
    confidence: np.ndarray


def build_final_dataset(connect: Connect, spec: TaskSpec, drop_id: str) -> FinalResult:
    """Writes final_dataset: auto-accepted records plus human-decided ones (a human decision
    overrides any automatic label), with lineage. A record people have voted on but not
    decided (contested, awaiting votes) stays out even when a model is sure: people finish
    what they started."""
    task = spec.name
    table = q(task, "final_dataset")
    with connect() as conn, transaction(conn):
        conn.register("_decisions", human_decisions(conn, spec))
        conn.execute(f"DELETE FROM {table} WHERE drop_id = ?", [drop_id])
        # one INSERT ... SELECT: the drop's rows (text included) never pass through pandas
        conn.execute(
            f"""
            INSERT INTO {table} BY NAME
            SELECT n.record_id AS id, n.drop_id, n.text,
                   coalesce(h.label, m.label) AS label,
                   CASE WHEN h.label IS NOT NULL THEN 'human' ELSE m.source END AS source,
                   CASE WHEN h.label IS NOT NULL THEN h.share ELSE m.confidence END AS confidence,
                   r.rules_fired AS rule_names, m.model_version,
                   h.annotators, n.source_file, n.line_no, n.ingested_at
            FROM {q(task, "normalized_records")} n
            JOIN {q(task, "heavy_labels")} m USING (drop_id, record_id)
            LEFT JOIN {q(task, "rule_labels")} r USING (drop_id, record_id)
            LEFT JOIN _decisions h ON h.record_id = n.record_id
            WHERE n.drop_id = ?
              AND (h.status = 'decided' OR (m.accepted AND h.status IS NULL))
            ORDER BY n.row_num
            """,
            [drop_id],
        )
        conn.unregister("_decisions")

        def counts(column: str) -> dict[str, int]:
            rows = conn.execute(
                f"SELECT {column}, count(*) FROM {table} WHERE drop_id = ?"
                " GROUP BY 1 ORDER BY 2 DESC, 1",
                [drop_id],
            ).fetchall()
            return {str(k): int(v) for k, v in rows}

        by_source, by_label = counts("source"), counts("label")
        confidence = conn.execute(
            f"SELECT confidence FROM {table} WHERE drop_id = ?", [drop_id]
        ).fetchnumpy()["confidence"]
    return FinalResult(
        n_rows=sum(by_source.values()),
        by_source=by_source,
        by_label=by_label,
        confidence=np.asarray(confidence, dtype=np.float64),
    )
