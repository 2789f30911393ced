"""Per-drop figures read back from the warehouse: the conservation counts of a drop, the
stages' wall times and the throughput (and cost) of labeling a drop."""

from typing import Any

import duckdb

from annotation_assets.core.spec import Costs, TaskSpec
from annotation_assets.warehouse.codes import SOURCES
from annotation_assets.warehouse.sql import Connect, now, q
from annotation_assets.warehouse.tables import first_row, scalar, transaction


def drop_counts(conn: duckdb.DuckDBPyConnection, task: str, drop_id: str) -> dict[str, Any]:
    """The conservation figures of one drop, as in the `annotate run` summary line."""

    def count(table: str) -> int:
        return int(
            scalar(conn, f"SELECT count(*) FROM {q(task, table)} WHERE drop_id = ?", [drop_id])
        )

    by_source = dict.fromkeys(SOURCES, 0)
    for source, n in conn.execute(
        f"SELECT source, count(*) FROM {q(task, 'final_dataset')} WHERE drop_id = ? GROUP BY 1",
        [drop_id],
    ).fetchall():
        by_source[source] = int(n)
    final = count("final_dataset")
    return {
        "task": task,
        "drop": drop_id,
        "ingested": count("raw_records"),
        "quarantined": count("quarantine"),
        "duplicates": count("duplicates"),
        "auto_accepted": final - by_source["human"],
        "hitl_pending": count("hitl_pending"),
        "final_rows": final,
        "by_source": by_source,
    }


def record_stage_time(
    connect: Connect, task: str, drop_id: str, stage: str, seconds: float, records: int
) -> None:
    """Keeps the latest wall time of one stage for one drop (for the throughput figure)."""
    with connect() as conn, transaction(conn):
        conn.execute(
            f"DELETE FROM {q(task, 'stage_timings')} WHERE drop_id = ? AND stage = ?",
            [drop_id, stage],
        )
        conn.execute(
            f"INSERT INTO {q(task, 'stage_timings')} VALUES (?, ?, ?, ?, ?)",
            [drop_id, stage, seconds, records, now()],
        )


def drop_throughput(
    conn: duckdb.DuckDBPyConnection,
    spec: TaskSpec,
    drop_id: str,
    counts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Throughput of the labeling process for a drop:
    T = records / (t_auto + hitl_rate * records * latency_human), in records per hour, where
    t_auto is the measured wall time of the automated stages and hitl_rate the share of records
    that needed a person; with each stage's share and, given `costs`, the cost per labeled
    record. `counts` is the drop's `drop_counts`, where the caller already has it."""
    task = spec.name
    timings = dict(
        conn.execute(
            f"SELECT stage, seconds FROM {q(task, 'stage_timings')} WHERE drop_id = ?", [drop_id]
        ).fetchall()
    )
    if counts is None:
        counts = drop_counts(conn, task, drop_id)
    records = int(
        scalar(
            conn,
            f"SELECT count(*) FROM {q(task, 'normalized_records')} WHERE drop_id = ?",
            [drop_id],
        )
    )
    scored = first_row(
        conn.execute(
            "SELECT count(model_version),"
            " count(*) FILTER (WHERE heavy_status IN ('answered', 'invalid_answer')),"
            " coalesce(sum(cost), 0)"
            f" FROM {q(task, 'heavy_labels')} WHERE drop_id = ?",
            [drop_id],
        )
    ) or (0, 0, 0.0)
    human = counts["by_source"]["human"] + counts["hitl_pending"]
    hitl_rate = human / records if records else 0.0
    t_auto = float(sum(timings.values()))
    t_human = hitl_rate * records * spec.review.latency_human_s
    total = t_auto + t_human
    out: dict[str, Any] = {
        "records": records,
        "t_auto_s": round(t_auto, 3),
        "hitl_rate": round(hitl_rate, 4),
        "latency_human_s": spec.review.latency_human_s,
        "throughput_per_hour": round(3600 * records / total, 1) if total > 0 else None,
        "share": {
            s: round(n / records, 4) if records else 0.0
            for s, n in counts["by_source"].items()
            if s != "human"
        }
        | {"human": round(hitl_rate, 4)},
    }
    if scored[1]:
        out["heavy_records"] = int(scored[1])
        out["heavy_token_cost"] = round(float(scored[2]), 6)  # heavy.price_per_*_token
    if (spec.costs is not None or scored[2]) and counts["final_rows"]:
        c = spec.costs or Costs()
        spend = (
            records * c.rule
            + int(scored[0]) * c.model
            + int(scored[1]) * c.heavy
            + float(scored[2])
            + human * c.human
        )
        out["cost_per_labeled_record"] = round(spend / counts["final_rows"], 6)
    return out
