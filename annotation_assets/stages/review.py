"""The review stage: hitl_pending, the drop's records waiting for a person, with the most
confident suggestion and why they wait."""

from dataclasses import dataclass

from annotation_assets.core.spec import TaskSpec
from annotation_assets.warehouse.decisions import human_decisions
from annotation_assets.warehouse.sql import Connect, q, replace_rows
from annotation_assets.warehouse.tables import transaction


@dataclass
class PendingResult:
    n_pending: int
    by_reason: dict[str, int]
    by_suggestion: dict[str, int]


def queue_for_review(connect: Connect, spec: TaskSpec, drop_id: str) -> PendingResult:
    """Writes hitl_pending: the drop's records no stage accepted and no human has decided,
    plus those with human votes but no decision yet, with the most confident suggestion and
    why they wait."""
    task = spec.name
    with connect() as conn, transaction(conn):
        conn.register("_decisions", human_decisions(conn, spec))
        frame = conn.execute(
            f"""
            SELECT m.drop_id, m.record_id, n.text, m.label AS suggested_label,
                   m.confidence, m.source AS suggested_by,
                   CASE WHEN h.status = 'contested' THEN 'contested'
                        WHEN h.status = 'awaiting_votes' THEN 'awaiting_votes'
                        WHEN r.rule_conflict THEN 'rule_conflict'
                        WHEN m.heavy_status = 'invalid_answer' THEN 'invalid_answer'
                        WHEN m.heavy_status = 'unavailable' THEN 'heavy_unavailable'
                        WHEN m.label IS NULL THEN 'no_suggestion'
                        ELSE 'low_confidence' END AS reason,
                   m.model_version
            FROM {q(task, "heavy_labels")} m
            JOIN {q(task, "normalized_records")} n USING (drop_id, record_id)
            LEFT JOIN {q(task, "rule_labels")} r USING (drop_id, record_id)
            LEFT JOIN _decisions h USING (record_id)
            WHERE m.drop_id = ? AND coalesce(h.status, '') <> 'decided'
              AND (NOT m.accepted OR h.status IS NOT NULL)
            ORDER BY m.confidence NULLS FIRST, n.row_num
            """,
            [drop_id],
        ).fetchdf()
        conn.unregister("_decisions")
        replace_rows(conn, task, "hitl_pending", drop_id, frame)
    return PendingResult(
        n_pending=len(frame),
        by_reason={str(k): int(v) for k, v in frame["reason"].value_counts().items()},
        by_suggestion={
            str(k): int(v)
            for k, v in frame["suggested_label"].fillna("(none)").value_counts().items()
        },
    )
