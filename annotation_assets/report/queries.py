"""The quality report's figures of one task, read from its warehouse schema: per-drop
counts, class balance before and after balancing, confidences, drift, rules, votes and
agreement, calibration, the latest model and the threshold what-if."""

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from annotation_assets.core import drift, reconcile
from annotation_assets.core.balance import balance_dataset
from annotation_assets.core.calibration import (
    DEFAULT_THRESHOLDS,
    expected_calibration_error,
    reliability_table,
    threshold_what_if,
)
from annotation_assets.core.spec import TaskSpec
from annotation_assets.report.data import AgreementSummary, ReportData
from annotation_assets.stages.human import decisions_frame
from annotation_assets.warehouse.codes import SOURCES
from annotation_assets.warehouse.counts import drop_counts, drop_throughput
from annotation_assets.warehouse.decisions import human_decisions
from annotation_assets.warehouse.sql import q

COUNTED = ("ingested", "quarantined", "duplicates", "records", *SOURCES, "final", "pending")


def _drop_table(conn: duckdb.DuckDBPyConnection, spec: TaskSpec) -> pd.DataFrame:
    """One row per drop in `seq` order: its conservation counts (`drop_counts`, the figures of
    the `annotate run` summary line), its normalized records and throughput
    (`drop_throughput`), and its review rate."""
    task = spec.name
    drops = conn.execute(f"SELECT drop_id, seq FROM {q(task, 'drops')} ORDER BY seq").fetchall()
    rows: list[list[Any]] = []
    throughput: list[float | None] = []
    cost: list[float | None] = []
    for drop_id, seq in drops:
        counts = drop_counts(conn, task, drop_id)
        figures = drop_throughput(conn, spec, drop_id, counts)
        rows.append(
            [drop_id, seq]
            + [counts["ingested"], counts["quarantined"], counts["duplicates"]]
            + [figures["records"], *(counts["by_source"][s] for s in SOURCES)]
            + [counts["final_rows"], counts["hitl_pending"]]
        )
        throughput.append(figures["throughput_per_hour"])
        cost.append(figures.get("cost_per_labeled_record"))
    frame = pd.DataFrame(rows, columns=["drop_id", "seq", *COUNTED])
    for col in frame.columns.drop(["drop_id"]):
        frame[col] = frame[col].astype("int64")
    frame["auto_accepted"] = frame["final"] - frame["human"]
    sent = frame["human"] + frame["pending"]
    frame["review_rate"] = np.where(
        frame["records"] > 0, sent / frame["records"].clip(lower=1), 0.0
    )
    frame["throughput_per_hour"] = throughput
    # spec `costs` per record and stage, plus the heavy model's token cost
    frame["cost_per_labeled_record"] = pd.Series(cost, dtype="float64")
    return frame


def _class_counts(frame: pd.DataFrame, drops: Sequence[str], labels: Sequence[str]) -> pd.DataFrame:
    """Rows per drop (in order) and one column per label (spec labels first) of counts."""
    extra = sorted(set(frame["label"]) - set(labels)) if len(frame) else []
    columns = [*labels, *extra]
    if frame.empty:
        return pd.DataFrame(0, index=pd.Index(list(drops), name="drop_id"), columns=columns)
    counts = pd.crosstab(frame["drop_id"], frame["label"])
    return counts.reindex(index=list(drops), columns=columns, fill_value=0).astype("int64")


def _balance(final: pd.DataFrame, spec: TaskSpec) -> tuple[pd.DataFrame, str]:
    """The final rows an export keeps under the spec's `balance` settings; with balance mode
    none, downsampling to checks.class_balance.max_ratio instead (what the bound would keep)."""
    settings = spec.balance
    if settings.mode == "none":
        mode, max_ratio = "downsample", spec.checks.class_balance.max_ratio
        how = (
            f"balance.mode is none, so this shows mode downsample to at most {max_ratio:g}"
            " times the smallest class (checks.class_balance.max_ratio)"
        )
    else:
        mode, max_ratio = settings.mode, settings.max_ratio
        how = f"the spec's balance settings: mode {mode}" + (
            f", max_ratio {max_ratio:g}" if mode == "downsample" else ""
        )
    rows = final.set_index("id")
    kept = balance_dataset(
        rows["label"], mode=mode, max_ratio=max_ratio, target=settings.target, seed=settings.seed
    )
    return rows.loc[kept].reset_index(), f"{how}, seed {settings.seed}"


def _confidences(conn: duckdb.DuckDBPyConnection, task: str) -> dict[str, np.ndarray]:
    def values(sql: str) -> np.ndarray:
        return np.array([r[0] for r in conn.execute(sql).fetchall()], dtype=np.float64)

    out = {
        "rule (rule-accepted)": values(
            f"SELECT r.rule_confidence FROM {q(task, 'heavy_labels')} m"
            f" JOIN {q(task, 'rule_labels')} r USING (drop_id, record_id)"
            " WHERE m.accepted AND m.source = 'rule' AND r.rule_confidence IS NOT NULL"
        ),
        "model": values(
            f"SELECT model_confidence FROM {q(task, 'model_labels')}"
            " WHERE model_confidence IS NOT NULL"
        ),
        "heavy": values(
            f"SELECT heavy_confidence FROM {q(task, 'heavy_labels')}"
            " WHERE heavy_confidence IS NOT NULL"
        ),
    }
    for source in SOURCES:
        out[f"final: {source}"] = values(
            f"SELECT confidence FROM {q(task, 'final_dataset')} WHERE source = '{source}'"
        )
    return out


def _drift(counts: pd.DataFrame) -> list[dict[str, Any]]:
    """PSI and chi-square p-value of each drop's labels against all earlier drops."""
    labels = list(counts.columns)
    rows = []
    earlier = pd.Series(0, index=counts.columns, dtype="int64")
    for drop_id, current in counts.iterrows():
        psi = p_value = None
        if earlier.sum() > 0 and current.sum() > 0:
            e = {str(k): int(v) for k, v in earlier.items()}
            a = {str(k): int(v) for k, v in current.items()}
            psi = drift.population_stability_index(e, a, labels=labels)
            p = drift.chi_square_p_value(e, a, labels=labels)
            p_value = p if math.isfinite(p) else None
        rows.append({"drop_id": drop_id, "psi": psi, "chi_square_p": p_value})
        earlier = earlier + current
    return rows


def _rule_table(
    conn: duckdb.DuckDBPyConnection, spec: TaskSpec, decided: pd.DataFrame
) -> list[dict[str, Any]]:
    """Per spec rule over every drop, from rule_labels.rules_fired: how often it fired,
    coverage, overlap (fired with another rule), conflict (fired with a rule of another
    label), and accuracy against human decisions where they exist."""
    if not spec.rules:
        return []
    task = spec.name
    rules = pd.DataFrame(
        {
            "rule": [r.name for r in spec.rules],
            "rule_label": [r.label for r in spec.rules],
            "pos": range(len(spec.rules)),
        }
    )
    conn.register("_report_rules", rules)
    conn.register("_report_decided", decided[["record_id", "label"]])
    try:
        total = int(conn.execute(f"SELECT count(*) FROM {q(task, 'rule_labels')}").fetchone()[0])  # type: ignore[index]
        frame = conn.execute(
            f"""
            WITH fired AS (
                SELECT f.drop_id, f.record_id, f.rule, s.rule_label
                FROM (SELECT drop_id, record_id, unnest(rules_fired) AS rule
                      FROM {q(task, "rule_labels")}) f
                JOIN _report_rules s USING (rule)
            ), per_record AS (
                SELECT drop_id, record_id, count(*) AS n_rules,
                       count(DISTINCT rule_label) AS n_labels
                FROM fired GROUP BY ALL
            ), stats AS (
                SELECT f.rule, count(*) AS fired,
                       count(*) FILTER (WHERE p.n_rules > 1) AS overlapping,
                       count(*) FILTER (WHERE p.n_labels > 1) AS conflicting,
                       count(h.label) AS n_gold,
                       avg(CASE WHEN h.label IS NULL THEN NULL
                                WHEN h.label = f.rule_label THEN 1.0 ELSE 0.0 END) AS accuracy
                FROM fired f JOIN per_record p USING (drop_id, record_id)
                LEFT JOIN _report_decided h USING (record_id)
                GROUP BY f.rule
            )
            SELECT s.rule, s.rule_label AS label, coalesce(t.fired, 0) AS fired,
                   coalesce(t.overlapping, 0) AS overlapping,
                   coalesce(t.conflicting, 0) AS conflicting,
                   coalesce(t.n_gold, 0) AS n_gold, t.accuracy
            FROM _report_rules s LEFT JOIN stats t USING (rule)
            ORDER BY s.pos
            """
        ).fetchdf()
    finally:
        conn.unregister("_report_rules")
        conn.unregister("_report_decided")
    rows = []
    for row in frame.to_dict("records"):
        fired = int(row["fired"])
        rows.append(
            {
                "rule": str(row["rule"]),
                "label": str(row["label"]),
                "fired": fired,
                "coverage": fired / total if total else 0.0,
                "overlap": int(row["overlapping"]) / total if total else 0.0,
                "conflict": int(row["conflicting"]) / total if total else 0.0,
                "n_gold": int(row["n_gold"]),
                "accuracy": None if pd.isna(row["accuracy"]) else float(row["accuracy"]),
            }
        )
    return rows


def _latest_model(conn: duckdb.DuckDBPyConnection, task: str) -> dict[str, Any] | None:
    """The newest encoder model version that labeled records (else the newest registered);
    the n-gram tier's versions only when there is no other."""
    row = conn.execute(
        f"""
        SELECT version, kind, created_at, n_train, train_by_source, metrics
        FROM {q(task, "model_versions")}
        ORDER BY kind <> 'ngram' DESC,
                 version IN (SELECT model_version FROM {q(task, "model_labels")}
                             WHERE model_version IS NOT NULL) DESC,
                 created_at DESC
        LIMIT 1
        """
    ).fetchall()
    if not row:
        return None
    version, kind, created_at, n_train, by_source, metrics = row[0]
    return {
        "version": version,
        "kind": kind,
        "created_at": created_at,
        "n_train": int(n_train),
        "train_by_source": json.loads(by_source) if by_source else {},
        "metrics": json.loads(metrics) if metrics else {},
    }


def _vote_counts(votes: pd.DataFrame) -> dict[str, int]:
    latest = reconcile.latest_votes(votes)
    per_record = latest.groupby("record_id")["annotator"].nunique() if len(latest) else None
    return {
        "votes": len(votes),
        "annotators": int(votes["annotator"].nunique()) if len(votes) else 0,
        "records_voted": int(len(per_record)) if per_record is not None else 0,
        "records_with_2plus_votes": int((per_record >= 2).sum()) if per_record is not None else 0,
    }


def _what_if(frame: pd.DataFrame, auto_accept: float) -> list[dict[str, Any]]:
    """Per threshold: the share of records the cascade would send to review (best automatic
    confidence below it), and the accuracy of what it would accept, measured on records that
    people decided."""
    conf = frame["confidence"].fillna(0.0).to_numpy(dtype=np.float64)
    known = frame["human"].notna().to_numpy()
    correct = np.where(
        known, (frame["label"].to_numpy() == frame["human"].to_numpy()).astype(float), np.nan
    )
    thresholds = sorted({*DEFAULT_THRESHOLDS, round(auto_accept, 4)})
    rows = threshold_what_if(conf, correct, thresholds=thresholds)
    for row in rows:
        t = row["threshold"]
        row["reviewed_accepted"] = int(((conf >= t) & known).sum())
        row["current"] = math.isclose(t, auto_accept)
    return rows


def collect_report_data(
    conn: duckdb.DuckDBPyConnection,
    spec: TaskSpec,
    *,
    summarize_agreement: AgreementSummary | None = None,
) -> ReportData:
    """Reads the task's schema and computes every figure of the quality report.

    `summarize_agreement(votes, (model_labels, human_labels))` computes the agreement metrics
    (pass `review_assets.agreement_summary`); without it the report shows vote counts only.
    """
    task = spec.name
    labels = spec.label_names
    notes: list[str] = []
    drops = _drop_table(conn, spec)
    drop_ids = drops["drop_id"].tolist()
    final = conn.execute(
        f"SELECT f.id, f.drop_id, f.label FROM {q(task, 'final_dataset')} f"
        f" JOIN {q(task, 'drops')} d USING (drop_id) ORDER BY d.seq, f.id"
    ).fetchdf()
    class_counts = _class_counts(final, drop_ids, labels)
    balanced, balancing = _balance(final, spec)
    balanced_counts = _class_counts(balanced, drop_ids, labels).reindex(
        columns=class_counts.columns, fill_value=0
    )

    decisions = human_decisions(conn, spec)
    decided = decisions[decisions["status"] == reconcile.DECIDED][["record_id", "label"]]
    decided = decided.rename(columns={"label": "human"})
    conn.register("_report_humans", decided)
    try:
        scored = conn.execute(
            f"SELECT d.label, d.confidence, m.model_label, m.model_confidence, h.human"
            f" FROM {q(task, 'model_labels')} m"
            f" JOIN {q(task, 'heavy_labels')} d USING (drop_id, record_id)"
            " LEFT JOIN _report_humans h USING (record_id)"
        ).fetchdf()
    finally:
        conn.unregister("_report_humans")

    reviewed = scored[scored["human"].notna() & scored["model_confidence"].notna()]
    calibration: list[dict[str, Any]] = []
    ece = None
    if len(reviewed):
        conf = reviewed["model_confidence"].to_numpy(dtype=np.float64)
        correct = (reviewed["model_label"] == reviewed["human"]).to_numpy(dtype=np.float64)
        calibration = reliability_table(conf, correct)
        ece = expected_calibration_error(conf, correct)
    elif len(decided):
        notes.append("no human-decided record was scored by the model")

    votes = decisions_frame(conn, task)
    vote_counts = _vote_counts(votes)
    agreement = None
    if summarize_agreement is not None:
        pairs = scored[scored["human"].notna() & scored["label"].notna()]
        agreement = summarize_agreement(
            votes, (pairs["label"].astype(str).tolist(), pairs["human"].astype(str).tolist())
        )

    return ReportData(
        task=task,
        labels=labels,
        auto_accept=spec.thresholds.auto_accept,
        max_psi=spec.checks.drift.max_psi,
        generated_at=datetime.now(UTC).replace(microsecond=0),
        drops=drops,
        class_counts=class_counts,
        balanced_counts=balanced_counts,
        balancing=balancing,
        confidences=_confidences(conn, task),
        drift=_drift(class_counts),
        rules=_rule_table(conn, spec, decided.rename(columns={"human": "label"})),
        votes=vote_counts,
        agreement=agreement,
        n_decided=len(decided),
        calibration=calibration,
        calibration_n=len(reviewed),
        calibration_ece=ece,
        model=_latest_model(conn, task),
        what_if=_what_if(scored, spec.thresholds.auto_accept) if len(scored) else [],
        notes=notes,
    )
