"""The dataset quality report of a task: figures gathered from the warehouse, rendered as one
self-contained HTML page (inline CSS, PNG plots as data URIs, nothing fetched from a network).

`collect_report_data` runs the queries, `render_report` draws and writes the page, and
`key_plots_markdown` gives small markdown versions of the key plots for the Dagster UI.
"""

import base64
import html
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from annotation_assets.core import drift, reconcile, reviews
from annotation_assets.core.balance import balance_dataset
from annotation_assets.core.calibration import (
    DEFAULT_THRESHOLDS,
    expected_calibration_error,
    reliability_table,
    threshold_what_if,
)
from annotation_assets.core.pipeline import SOURCES, drop_throughput, human_decisions
from annotation_assets.core.spec import TaskSpec

AgreementSummary = Callable[[pd.DataFrame, tuple[list[str], list[str]]], dict[str, Any]]

SECTIONS: dict[str, str] = {
    "summary": "Summary per drop",
    "class_distribution": "Class distribution",
    "confidence": "Confidence by stage",
    "stage_share": "Stage share over drops",
    "drift": "Label drift over drops",
    "rules": "Rules",
    "agreement": "Agreement",
    "calibration": "Calibration",
    "threshold_what_if": "Threshold what-if",
}
PLOTS = (
    "class_distribution",
    "confidence",
    "stage_share",
    "drift",
    "rules",
    "agreement",
    "calibration",
    "threshold_what_if",
)
SHARE_PARTS = (*SOURCES, "pending")
NO_OVERLAP = "no overlapping votes yet"
NO_HUMANS = "no human decisions yet"

_STAGE_COLORS = {
    "rule": "#4c72b0",
    "model": "#55a868",
    "heavy": "#8172b2",
    "human": "#dd8452",
    "pending": "#c7c7c7",
}


@dataclass
class ReportData:
    """Everything the quality report shows, for one task; drops in `seq` order."""

    task: str
    labels: list[str]
    auto_accept: float
    max_psi: float
    generated_at: datetime
    drops: pd.DataFrame
    class_counts: pd.DataFrame
    balanced_counts: pd.DataFrame
    balancing: str
    confidences: dict[str, np.ndarray]
    drift: list[dict[str, Any]]
    rules: list[dict[str, Any]]
    votes: dict[str, int]
    agreement: dict[str, Any] | None
    n_decided: int
    calibration: list[dict[str, Any]]
    calibration_n: int
    calibration_ece: float | None
    model: dict[str, Any] | None
    what_if: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    @property
    def final_rows(self) -> int:
        return int(self.drops["final"].sum()) if len(self.drops) else 0

    @property
    def review_rate(self) -> float | None:
        """(Human-decided + pending) over normalized records, over every drop."""
        records = int(self.drops["records"].sum()) if len(self.drops) else 0
        if not records:
            return None
        return float((self.drops["human"].sum() + self.drops["pending"].sum()) / records)

    @property
    def model_version(self) -> str | None:
        return None if self.model is None else str(self.model["version"])


# ------------------------------------------------------------------------------- queries


def _q(task: str, table: str) -> str:
    return f'"{task}"."{table}"'


def _drop_table(conn: duckdb.DuckDBPyConnection, spec: TaskSpec) -> pd.DataFrame:
    task = spec.name

    def per_drop(table: str, alias: str) -> str:
        return (
            f"LEFT JOIN (SELECT drop_id, count(*) AS {alias} FROM {_q(task, table)}"
            f" GROUP BY 1) USING (drop_id)"
        )

    by_source = ", ".join(f"count(*) FILTER (WHERE source = '{s}') AS {s}" for s in SOURCES)
    frame = conn.execute(
        f"""
        SELECT d.drop_id, d.seq,
               coalesce(ingested, 0) AS ingested, coalesce(quarantined, 0) AS quarantined,
               coalesce(duplicates, 0) AS duplicates, coalesce(records, 0) AS records,
               {", ".join(f"coalesce(f.{s}, 0) AS {s}" for s in SOURCES)},
               coalesce(f.final, 0) AS final, coalesce(pending, 0) AS pending
        FROM {_q(task, "drops")} d
        {per_drop("raw_records", "ingested")}
        {per_drop("quarantine", "quarantined")}
        {per_drop("duplicates", "duplicates")}
        {per_drop("normalized_records", "records")}
        {per_drop("hitl_pending", "pending")}
        LEFT JOIN (SELECT drop_id, count(*) AS final, {by_source}
                   FROM {_q(task, "final_dataset")} GROUP BY 1) f USING (drop_id)
        ORDER BY d.seq
        """
    ).fetchdf()
    for col in frame.columns.drop(["drop_id"]):
        frame[col] = frame[col].astype("int64")
    frame["auto_accepted"] = frame["final"] - frame["human"]
    sent = frame["human"] + frame["pending"]
    frame["review_rate"] = np.where(
        frame["records"] > 0, sent / frame["records"].clip(lower=1), 0.0
    )
    frame["throughput_per_hour"] = [
        drop_throughput(conn, spec, d)["throughput_per_hour"] for d in frame["drop_id"]
    ]
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
            f"SELECT r.rule_confidence FROM {_q(task, 'model_labels')} m"
            f" JOIN {_q(task, 'rule_labels')} r USING (drop_id, record_id)"
            " WHERE m.accepted AND m.source = 'rule' AND r.rule_confidence IS NOT NULL"
        ),
        "model": values(
            f"SELECT model_confidence FROM {_q(task, 'model_labels')}"
            " WHERE model_confidence IS NOT NULL"
        ),
        "heavy": values(
            f"SELECT heavy_confidence FROM {_q(task, 'model_labels')}"
            " WHERE heavy_confidence IS NOT NULL"
        ),
    }
    for source in SOURCES:
        out[f"final: {source}"] = values(
            f"SELECT confidence FROM {_q(task, 'final_dataset')} WHERE source = '{source}'"
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
        total = int(conn.execute(f"SELECT count(*) FROM {_q(task, 'rule_labels')}").fetchone()[0])  # type: ignore[index]
        frame = conn.execute(
            f"""
            WITH fired AS (
                SELECT f.drop_id, f.record_id, f.rule, s.rule_label
                FROM (SELECT drop_id, record_id, unnest(rules_fired) AS rule
                      FROM {_q(task, "rule_labels")}) f
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
        FROM {_q(task, "model_versions")}
        ORDER BY kind <> 'ngram' DESC,
                 version IN (SELECT model_version FROM {_q(task, "model_labels")}
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
        f"SELECT f.id, f.drop_id, f.label FROM {_q(task, 'final_dataset')} f"
        f" JOIN {_q(task, 'drops')} d USING (drop_id) ORDER BY d.seq, f.id"
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
            f"SELECT m.label, m.confidence, m.model_label, m.model_confidence, h.human"
            f" FROM {_q(task, 'model_labels')} m LEFT JOIN _report_humans h USING (record_id)"
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

    votes = reviews.decisions_frame(conn, task)
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


# ------------------------------------------------------------------------------- figures


def _figure(width: float = 7.5, height: float = 3.4) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure, *, dpi: int) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _label_colors(labels: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def _stacked(ax: Any, counts: pd.DataFrame, colors: Mapping[str, Any], title: str) -> None:
    x = np.arange(len(counts))
    bottom = np.zeros(len(counts))
    for label in counts.columns:
        values = counts[label].to_numpy(dtype=np.float64)
        ax.bar(x, values, bottom=bottom, color=colors.get(label), label=str(label))
        bottom += values
    ax.set_xticks(x, [str(i) for i in counts.index], rotation=30, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("records")


def plot_class_distribution(data: ReportData) -> Figure | None:
    if data.class_counts.to_numpy().sum() == 0:
        return None
    colors = _label_colors(list(data.class_counts.columns))
    fig = _figure(9.0, 3.6)
    per_before, per_after, overall = fig.subplots(1, 3, width_ratios=[2, 2, 1.4], sharey=False)
    _stacked(per_before, data.class_counts, colors, "per drop, before balancing")
    _stacked(per_after, data.balanced_counts, colors, "per drop, after balancing")
    labels = list(data.class_counts.columns)
    x = np.arange(len(labels))
    before = data.class_counts.sum().to_numpy(dtype=np.float64)
    after = data.balanced_counts.sum().to_numpy(dtype=np.float64)
    overall.bar(x - 0.2, before, 0.4, color=[colors[c] for c in labels], label="before")
    overall.bar(
        x + 0.2,
        after,
        0.4,
        color=[colors[c] for c in labels],
        alpha=0.45,
        hatch="//",
        label="after",
    )
    overall.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    overall.set_title("overall: before / after", fontsize=10)
    overall.legend(fontsize=7)
    per_before.legend(fontsize=7)
    return fig


def plot_confidence(data: ReportData) -> Figure | None:
    conf = data.confidences
    if not any(len(v) for v in conf.values()):
        return None
    panels = [("rule (rule-accepted)", "rule_confidence of rule-accepted records")]
    panels.append(("model", "model_confidence (records scored)"))
    if len(conf.get("heavy", ())):
        panels.append(("heavy", "heavy_confidence"))
    fig = _figure(3.0 * (len(panels) + 1), 3.2)
    axes = fig.subplots(1, len(panels) + 1, sharex=True)
    bins = np.linspace(0.0, 1.0, 21)
    for ax, (key, title) in zip(axes, panels, strict=False):
        values = conf.get(key, np.array([]))
        stage = key.split()[0]
        if len(values):
            ax.hist(values, bins=bins, color=_STAGE_COLORS[stage])
        else:
            ax.text(0.5, 0.5, "no records", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{title}\n(n={len(values)})", fontsize=9)
    last = axes[-1]
    for source in SOURCES:
        values = conf.get(f"final: {source}", np.array([]))
        if len(values):
            last.hist(
                values,
                bins=bins,
                histtype="step",
                linewidth=1.6,
                color=_STAGE_COLORS[source],
                label=f"{source} (n={len(values)})",
            )
    last.set_title("final dataset confidence by source", fontsize=9)
    if last.get_legend_handles_labels()[0]:
        last.legend(fontsize=7)
    for ax in axes:
        ax.axvline(data.auto_accept, color="black", linestyle="--", linewidth=0.8)
        ax.set_xlabel("confidence", fontsize=8)
    axes[0].set_ylabel("records")
    return fig


def stage_shares(data: ReportData) -> pd.DataFrame:
    """Per drop, the share of normalized records each stage labeled (human = decided by
    people) and the share still pending."""
    frame = data.drops.set_index("drop_id")[list(SHARE_PARTS)].astype(np.float64)
    totals = frame.sum(axis=1).replace(0, np.nan)
    return frame.div(totals, axis=0).fillna(0.0)


def plot_stage_share(data: ReportData) -> Figure | None:
    if data.drops.empty or data.drops["records"].sum() == 0:
        return None
    shares = stage_shares(data)
    fig = _figure(7.5, 3.4)
    ax = fig.subplots()
    _stacked(ax, shares, _STAGE_COLORS, "share of each stage per drop")
    ax.set_ylabel("share of records")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def plot_drift(data: ReportData) -> Figure | None:
    if all(r["psi"] is None for r in data.drift):
        return None
    fig = _figure(7.5, 3.2)
    ax = fig.subplots()
    x = np.arange(len(data.drift))
    psi = np.array([np.nan if r["psi"] is None else r["psi"] for r in data.drift])
    ax.plot(x, psi, marker="o", color="#4c72b0", label="PSI vs earlier drops")
    ax.axhline(data.max_psi, color="#c44e52", linestyle="--", label=f"bound {data.max_psi:g}")
    ax.set_xticks(x, [str(r["drop_id"]) for r in data.drift], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("PSI")
    ax.set_ylim(bottom=0)
    ax.set_title("label drift of each drop against all earlier drops", fontsize=10)
    ax.legend(fontsize=7)
    return fig


def plot_rules(data: ReportData) -> Figure | None:
    if not data.rules or data.drops.empty or data.drops["records"].sum() == 0:
        return None
    fig = _figure(max(5.0, 1.2 * len(data.rules) + 2), 3.2)
    ax = fig.subplots()
    x = np.arange(len(data.rules))
    series = (("coverage", "#4c72b0"), ("conflict", "#c44e52"), ("accuracy", "#55a868"))
    for k, (metric, color) in enumerate(series):
        values = [r[metric] if r[metric] is not None else np.nan for r in data.rules]
        ax.bar(x + (k - 1) * 0.27, values, 0.27, color=color, label=metric)
    ax.set_xticks(x, [r["rule"] for r in data.rules], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title("per rule: coverage, conflict, accuracy on human decisions", fontsize=10)
    ax.legend(fontsize=7)
    return fig


def plot_agreement(data: ReportData) -> Figure | None:
    summary = data.agreement
    if not summary or not summary.get("records_with_2plus_votes"):
        return None
    per_class = {k: v for k, v in summary.get("per_class_agreement", {}).items() if v is not None}
    overall: dict[str, float] = {
        name: float(summary[key])
        for name, key in (
            ("Krippendorff alpha", "krippendorff_alpha"),
            ("Fleiss kappa", "fleiss_kappa"),
            ("model vs human kappa", "model_vs_human_kappa"),
        )
        if summary.get(key) is not None
    }
    pairwise = summary.get("pairwise_cohens_kappa", {})
    overall |= {f"kappa {k}": float(v) for k, v in pairwise.items() if v is not None}
    n_pairs = summary.get("annotator_pairs") or len(pairwise)
    fig = _figure(9.0, 3.2)
    left, right = fig.subplots(1, 2)
    left.barh(list(overall), list(overall.values()), color="#4c72b0")
    left.axvline(0, color="black", linewidth=0.6)
    left.set_xlim(min(-0.05, *overall.values()) if overall else -0.05, 1.0)
    shown = (
        "" if n_pairs <= len(pairwise) else f" (kappa: lowest {len(pairwise)} of {n_pairs} pairs)"
    )
    left.set_title(f"agreement coefficients{shown}", fontsize=10)
    left.tick_params(labelsize=8)
    right.bar(list(per_class), list(per_class.values()), color="#55a868")
    right.set_ylim(0, 1.0)
    right.set_title("per-class (specific) agreement", fontsize=10)
    right.tick_params(labelsize=8)
    return fig


def plot_calibration(data: ReportData) -> Figure | None:
    if not data.calibration:
        return None
    fig = _figure(7.5, 3.4)
    ax, hist = fig.subplots(1, 2, width_ratios=[1.3, 1])
    mids = [(r["lo"] + r["hi"]) / 2 for r in data.calibration]
    width = data.calibration[0]["hi"] - data.calibration[0]["lo"]
    ax.bar(
        mids,
        [r["accuracy"] for r in data.calibration],
        width * 0.9,
        color="#4c72b0",
        edgecolor="white",
        label="accuracy",
    )
    ax.plot(
        [r["mean_confidence"] for r in data.calibration],
        [r["accuracy"] for r in data.calibration],
        "o",
        color="#dd8452",
        label="mean confidence",
    )
    ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=0.8, label="perfect")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("model confidence", fontsize=8)
    ax.set_ylabel("share agreeing with people", fontsize=8)
    ece = data.calibration_ece
    ece_text = f", ECE {ece:.3f}" if ece is not None else ""
    ax.set_title(f"reliability (n={data.calibration_n}{ece_text})", fontsize=10)
    ax.legend(fontsize=7)
    hist.bar(mids, [r["count"] for r in data.calibration], width * 0.9, color="#c7c7c7")
    hist.set_xlim(0, 1)
    hist.set_title("records per bin", fontsize=10)
    hist.set_xlabel("model confidence", fontsize=8)
    return fig


def plot_threshold_what_if(data: ReportData) -> Figure | None:
    rows = [r for r in data.what_if if r["review_rate"] is not None]
    if not rows:
        return None
    fig = _figure(7.5, 3.4)
    ax = fig.subplots()
    rate = [r["review_rate"] for r in rows]
    thresholds = [r["threshold"] for r in rows]
    accuracy = [r["accuracy"] if r["accuracy"] is not None else np.nan for r in rows]
    if not all(np.isnan(accuracy)):
        ax.plot(rate, accuracy, marker="o", color="#4c72b0")
        points: dict[tuple[float, float], list[str]] = {}
        for r, a, t in zip(rate, accuracy, thresholds, strict=True):
            if not np.isnan(a):
                points.setdefault((round(r, 6), round(a, 6)), []).append(f"{t:.2f}")
        for (r, a), names in points.items():
            ax.annotate(
                "/".join(names), (r, a), fontsize=6, xytext=(3, 3), textcoords="offset points"
            )
        current = [r for r in rows if r["current"] and r["accuracy"] is not None]
        for r in current:
            ax.plot(r["review_rate"], r["accuracy"], "*", markersize=14, color="#c44e52")
        ax.set_ylabel("accuracy of auto-accepted\n(on human-decided records)", fontsize=8)
        ax.set_xlabel("review rate", fontsize=8)
        ax.set_title("threshold what-if: review rate vs accuracy (★ current)", fontsize=10)
    else:
        ax.plot(thresholds, rate, marker="o", color="#4c72b0")
        ax.axvline(data.auto_accept, color="#c44e52", linestyle="--", label="current threshold")
        ax.set_xlabel("auto-accept threshold", fontsize=8)
        ax.set_ylabel("review rate", fontsize=8)
        ax.set_title(
            "threshold what-if: review rate (no human decisions for accuracy)", fontsize=10
        )
        ax.legend(fontsize=7)
    return fig


_PLOTTERS: dict[str, Callable[[ReportData], Figure | None]] = {
    "class_distribution": plot_class_distribution,
    "confidence": plot_confidence,
    "stage_share": plot_stage_share,
    "drift": plot_drift,
    "rules": plot_rules,
    "agreement": plot_agreement,
    "calibration": plot_calibration,
    "threshold_what_if": plot_threshold_what_if,
}


REPORT_DPI, UI_DPI = 100, 60


def plot_pngs(data: ReportData, *, dpi: int = REPORT_DPI) -> dict[str, str]:
    """Base64 PNG of every plot that has data to show, by plot name."""
    return plot_pngs_at(data, (dpi,))[dpi]


def plot_pngs_at(data: ReportData, dpis: Sequence[int]) -> dict[int, dict[str, str]]:
    """`plot_pngs` at each of `dpis`, every figure drawn once (drawing, not saving, is what
    costs: the report page and the UI's small copies would otherwise draw each twice)."""
    out: dict[int, dict[str, str]] = {dpi: {} for dpi in dpis}
    for name, plot in _PLOTTERS.items():
        fig = plot(data)
        if fig is None:
            continue
        for dpi in dpis:
            out[dpi][name] = _png(fig, dpi=dpi)
        fig.clear()
    return out


# ---------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:1100px;padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem;
border-bottom:1px solid #ddd;padding-bottom:.2rem}h3{font-size:1rem;margin:1rem 0 .3rem}
.meta{color:#666;font-size:.9rem}.note{color:#555;font-size:.9rem;font-style:italic}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}
tr.total td{font-weight:600;background:#fafafa}figure{margin:.8rem 0}
figure img{max-width:100%;height:auto;border:1px solid #eee}
nav a{margin-right:.8rem;font-size:.9rem}
"""


def _fmt(value: Any, kind: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if kind == "pct" and isinstance(value, int | float):
        return f"{100 * value:.1f}%"
    if kind == "rate" and isinstance(value, int | float):
        return f"{value:,.1f}"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        number = float(value)
        return f"{number:,.3f}" if abs(number) < 1000 else f"{number:,.0f}"
    return str(value)


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    table_id: str | None = None,
    kinds: Sequence[str] | None = None,
    total: Sequence[Any] | None = None,
) -> str:
    kinds = kinds or [""] * len(header)
    attr = f' id="{html.escape(table_id)}"' if table_id else ""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row, css in [*((r, "") for r in rows), *([(total, "total")] if total else [])]:
        cells = "".join(
            f"<td>{html.escape(_fmt(v, k))}</td>" for v, k in zip(row, kinds, strict=True)
        )
        body.append(f'<tr class="{css}">{cells}</tr>' if css else f"<tr>{cells}</tr>")
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(name: str, pngs: Mapping[str, str], alt: str) -> str:
    if name not in pngs:
        return ""
    return (
        f'<figure id="plot-{name}"><img src="data:image/png;base64,{pngs[name]}" '
        f'alt="{html.escape(alt)}"></figure>'
    )


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


SUMMARY_COLUMNS = (
    ("drop", "drop_id", ""),
    ("ingested", "ingested", ""),
    ("quarantined", "quarantined", ""),
    ("duplicates", "duplicates", ""),
    ("auto-accepted", "auto_accepted", ""),
    ("human", "human", ""),
    ("pending", "pending", ""),
    ("final", "final", ""),
    ("review rate", "review_rate", "pct"),
    ("throughput (records/h)", "throughput_per_hour", "rate"),
)


def _summary_section(data: ReportData) -> str:
    if data.drops.empty:
        return _note("no drops yet")
    header = [h for h, _, _ in SUMMARY_COLUMNS]
    kinds = [k for _, _, k in SUMMARY_COLUMNS]
    rows = [[row[c] for _, c, _ in SUMMARY_COLUMNS] for _, row in data.drops.iterrows()]
    sums = data.drops[[c for _, c, _ in SUMMARY_COLUMNS[1:8]]].sum()
    total = ["all drops", *(int(v) for v in sums), data.review_rate, None]
    parts = [_table(header, rows, table_id="summary-table", kinds=kinds, total=total)]
    parts.append(
        _note(
            "review rate = (human-decided + pending) / normalized records; throughput = records"
            " / (automated wall time + review rate × records × human latency), per hour."
        )
    )
    return "".join(parts)


def _class_table(counts: pd.DataFrame, table_id: str, labels: Sequence[str]) -> str:
    header = ["drop", *labels, "total", "largest/smallest"]
    rows = []
    for drop_id, row in counts.iterrows():
        values = [int(row[c]) for c in labels]
        ratio = drift.imbalance_ratio({c: int(row[c]) for c in labels}, labels=labels)
        rows.append([drop_id, *values, sum(values), ratio])
    overall = counts.sum()
    ratio = drift.imbalance_ratio({c: int(overall[c]) for c in labels}, labels=labels)
    total = ["overall", *(int(overall[c]) for c in labels), int(overall.sum()), ratio]
    return _table(header, rows, table_id=table_id, total=total)


def _class_section(data: ReportData, pngs: Mapping[str, str]) -> str:
    labels = [str(c) for c in data.class_counts.columns]
    if data.class_counts.to_numpy().sum() == 0:
        return _note("the final dataset is empty")
    return "".join(
        [
            _img("class_distribution", pngs, "class distribution per drop and overall"),
            "<h3>Before balancing (final_dataset)</h3>",
            _class_table(data.class_counts, "class-distribution-before", labels),
            "<h3>After balancing</h3>",
            _note(data.balancing),
            _class_table(data.balanced_counts, "class-distribution-after", labels),
        ]
    )


def _confidence_section(data: ReportData, pngs: Mapping[str, str]) -> str:
    if "confidence" not in pngs:
        return _note("no labeled records yet")
    header = ["stage", "records", "mean", "median", f"≥ {data.auto_accept:g}"]
    rows = []
    for name, values in data.confidences.items():
        if len(values):
            rows.append(
                [
                    name,
                    len(values),
                    float(values.mean()),
                    float(np.median(values)),
                    float((values >= data.auto_accept).mean()),
                ]
            )
    kinds = ["", "", "", "", "pct"]
    return _img("confidence", pngs, "confidence histograms per stage") + _table(
        header, rows, table_id="confidence-table", kinds=kinds
    )


def _stage_section(data: ReportData, pngs: Mapping[str, str]) -> str:
    if "stage_share" not in pngs:
        return _note("no records yet")
    shares = stage_shares(data)
    rows = [[d, *row.tolist()] for d, row in shares.iterrows()]
    header = ["drop", *SHARE_PARTS]
    kinds = ["", *("pct" for _ in SHARE_PARTS)]
    return _img("stage_share", pngs, "stage share over drops") + _table(
        header, rows, table_id="stage-share-table", kinds=kinds
    )


def _drift_section(data: ReportData, pngs: Mapping[str, str]) -> str:
    if not data.drift:
        return _note("no drops yet")
    rows = []
    for r in data.drift:
        above = None if r["psi"] is None else r["psi"] > data.max_psi
        rows.append([r["drop_id"], r["psi"], r["chi_square_p"], above])
    parts = [_img("drift", pngs, "PSI of each drop against earlier drops")]
    if "drift" not in pngs:
        parts.append(_note("drift needs at least two drops with labeled records"))
    parts.append(
        _table(
            ["drop", "PSI vs earlier drops", "chi-square p", f"above bound {data.max_psi:g}"],
            rows,
            table_id="drift-table",
        )
    )
    return "".join(parts)


def _rules_section(data: ReportData, pngs: Mapping[str, str]) -> str:
    if not data.rules:
        return _note("the task has no rules")
    cols = ("rule", "label", "fired", "coverage", "overlap", "conflict", "n_gold", "accuracy")
    kinds = ["", "", "", "pct", "pct", "pct", "", "pct"]
    header = [*cols[:6], "human-decided", "accuracy"]
    rows = [[r[c] for c in cols] for r in data.rules]
    parts = [_img("rules", pngs, "per-rule coverage, conflict and accuracy")]
    if "rules" not in pngs:
        parts.append(_note("no records yet"))
    parts.append(_table(header, rows, table_id="rules-table", kinds=kinds))
    if not data.n_decided:
        parts.append(_note(f"{NO_HUMANS}: rule accuracy appears once people decide records"))
    return "".join(parts)


def _agreement_section(data: ReportData, pngs: Mapping[str, str]) -> str:
    v = data.votes
    parts = [
        _table(
            ["votes", "annotators", "records voted", "records with 2+ votes", "decided"],
            [
                [v["votes"], v["annotators"], v["records_voted"], v["records_with_2plus_votes"]]
                + [data.n_decided]
            ],
            table_id="votes-table",
        )
    ]
    summary = data.agreement
    if not v["records_with_2plus_votes"]:
        parts.append(_note(NO_OVERLAP))
    elif summary is None:
        parts.append(_note("agreement metrics were not computed for this report"))
    else:
        parts.append(_img("agreement", pngs, "agreement metrics"))
        rows: list[list[Any]] = [
            ["Krippendorff's alpha (nominal)", summary.get("krippendorff_alpha")],
            ["Fleiss' kappa", summary.get("fleiss_kappa")],
        ]
        pairwise = summary["pairwise_cohens_kappa"]
        n_pairs = summary.get("annotator_pairs") or len(pairwise)
        if n_pairs > len(pairwise):
            rows += [
                ["annotator pairs with shared records", n_pairs],
                ["median pairwise Cohen's kappa", summary.get("pairwise_kappa_median")],
            ]
            rows += [[f"Cohen's kappa {k} (among the lowest)", x] for k, x in pairwise.items()]
        else:
            rows += [[f"Cohen's kappa {k}", x] for k, x in pairwise.items()]
        rows += [[f"specific agreement: {k}", x] for k, x in summary["per_class_agreement"].items()]
        parts.append(_table(["metric", "value"], rows, table_id="agreement-table"))
    if summary is not None and summary.get("model_vs_human_n"):
        parts.append(
            _table(
                ["automatic label vs human decision", "value"],
                [
                    ["Cohen's kappa", summary.get("model_vs_human_kappa")],
                    ["records", summary.get("model_vs_human_n")],
                ],
            )
        )
    return "".join(parts)


def _metrics_rows(model: Mapping[str, Any]) -> list[list[Any]]:
    created = model["created_at"]
    rows: list[list[Any]] = [
        ["version", model["version"]],
        ["kind", model["kind"]],
        ["created", f"{created:%Y-%m-%d %H:%M:%S}" if isinstance(created, datetime) else created],
        ["training rows", model["n_train"]],
        ["training rows by source", json.dumps(model["train_by_source"])],
    ]
    for key, value in model["metrics"].items():
        rows.append([key, value if isinstance(value, int | float | str) else json.dumps(value)])
    return rows


IN_SAMPLE = (
    "the latest model was trained on these human decisions, so this measure is in-sample and"
    " optimistic; reviewed_accuracy and reviewed_ece in the model's metrics are out-of-fold."
)


def _trained_on_humans(data: ReportData) -> bool:
    return data.model is not None and bool(data.model["train_by_source"].get("human"))


def _calibration_section(data: ReportData, pngs: Mapping[str, str]) -> str:
    parts = []
    if data.calibration:
        parts.append(_img("calibration", pngs, "reliability diagram"))
        rows = [
            [f"{r['lo']:.1f}–{r['hi']:.1f}", r["count"], r["mean_confidence"], r["accuracy"]]
            for r in data.calibration
        ]
        parts.append(
            _table(
                ["confidence bin", "records", "mean confidence", "accuracy"],
                rows,
                table_id="reliability-table",
            )
        )
        parts.append(
            _note(
                "model confidence of the latest model_labels against the human decision, on"
                " human-decided records (these are mostly records the cascade was unsure of)."
            )
        )
        if _trained_on_humans(data):
            parts.append(_note(IN_SAMPLE))
    elif not data.n_decided:
        parts.append(_note(f"{NO_HUMANS}: the model's cross-validated metrics are shown instead"))
    for note in data.notes:
        parts.append(_note(note))
    if data.model is None:
        parts.append(_note("no model version yet"))
    else:
        parts.append("<h3>Latest model version</h3>")
        parts.append(_table(["metric", "value"], _metrics_rows(data.model), table_id="model"))
    return "".join(parts)


def _what_if_section(data: ReportData, pngs: Mapping[str, str]) -> str:
    if not data.what_if:
        return _note("no scored records yet")
    parts = [_img("threshold_what_if", pngs, "review rate against accuracy per threshold")]
    if not data.n_decided:
        parts.append(_note(f"{NO_HUMANS}: accuracy appears once people decide records"))
    elif _trained_on_humans(data):
        parts.append(_note(IN_SAMPLE))
    rows = [
        [
            f"{r['threshold']:.2f}" + (" (current)" if r["current"] else ""),
            r["review_rate"],
            r["auto_accepted"],
            r["reviewed_accepted"],
            r["accuracy"],
        ]
        for r in data.what_if
    ]
    parts.append(
        _table(
            ["threshold", "review rate", "auto-accepted", "of them human-decided", "accuracy"],
            rows,
            table_id="what-if-table",
            kinds=["", "pct", "", "", "pct"],
        )
    )
    parts.append(
        _note(
            "each record's automatic label and confidence from model_labels; accuracy is"
            " measured on the records people decided that the threshold would auto-accept."
        )
    )
    return "".join(parts)


def render_report(data: ReportData, pngs: Mapping[str, str] | None = None) -> str:
    """The quality report as one self-contained HTML page (`pngs`: the plots, from
    `plot_pngs`, when already drawn)."""
    pngs = plot_pngs(data) if pngs is None else pngs
    sections = {
        "summary": _summary_section(data),
        "class_distribution": _class_section(data, pngs),
        "confidence": _confidence_section(data, pngs),
        "stage_share": _stage_section(data, pngs),
        "drift": _drift_section(data, pngs),
        "rules": _rules_section(data, pngs),
        "agreement": _agreement_section(data, pngs),
        "calibration": _calibration_section(data, pngs),
        "threshold_what_if": _what_if_section(data, pngs),
    }
    title = f"{data.task}: dataset quality report"
    review = _fmt(data.review_rate, "pct")
    header = (
        f"<h1>{html.escape(title)}</h1><p class='meta'>generated"
        f" {data.generated_at:%Y-%m-%d %H:%M:%S} UTC · {len(data.drops)} drops ·"
        f" {data.final_rows:,} final rows · review rate {review} · auto-accept threshold"
        f" {data.auto_accept:g} · model {html.escape(data.model_version or '–')}</p>"
    )
    nav = "<nav>" + "".join(f'<a href="#{k}">{html.escape(v)}</a>' for k, v in SECTIONS.items())
    body = "".join(
        f'<section id="{key}"><h2>{html.escape(SECTIONS[key])}</h2>{content}</section>'
        for key, content in sections.items()
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body>{header}{nav}</nav>{body}</body></html>\n"
    )


# ------------------------------------------------------------------------------ markdown


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]], kinds: Sequence[str]) -> str:
    def cell(value: Any, kind: str) -> str:
        return _fmt(value, kind).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(cell(v, k) for v, k in zip(row, kinds, strict=True)) + " |"
        for row in rows
    ]
    return "\n".join(lines)


def key_plots_markdown(
    data: ReportData, *, dpi: int = UI_DPI, pngs: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Small markdown versions of the key figures for the Dagster UI: tables, and PNG images
    as data URIs (each entry well under 200 KB; `pngs`: the plots at `dpi`, when drawn)."""
    pngs = plot_pngs(data, dpi=dpi) if pngs is None else pngs

    def image(name: str, alt: str) -> str:
        return f"![{alt}](data:image/png;base64,{pngs[name]})\n\n" if name in pngs else ""

    out: dict[str, str] = {}
    if data.drops.empty:
        out["summary"] = "_no drops yet_"
    else:
        cols = SUMMARY_COLUMNS
        rows = [[row[c] for _, c, _ in cols] for _, row in data.drops.iterrows()]
        out["summary"] = _md_table([h for h, _, _ in cols], rows, [k for _, _, k in cols])
    labels = [str(c) for c in data.class_counts.columns]
    before, after = data.class_counts.sum(), data.balanced_counts.sum()
    out["class_distribution"] = image("class_distribution", "class distribution") + _md_table(
        ["", *labels],
        [
            ["before balancing", *(int(before[c]) for c in labels)],
            ["after balancing", *(int(after[c]) for c in labels)],
        ],
        ["" for _ in range(len(labels) + 1)],
    )
    out["stage_share"] = image("stage_share", "stage share") or "_no records yet_"
    out["drift"] = image("drift", "label drift") or "_drift needs two drops with labels_"
    if data.calibration:
        out["calibration"] = image("calibration", "reliability diagram")
    elif data.model is not None:
        out["calibration"] = f"_{NO_HUMANS}; latest model metrics:_\n\n" + _md_table(
            ["metric", "value"], _metrics_rows(data.model), ["", ""]
        )
    else:
        out["calibration"] = f"_{NO_HUMANS}; no model yet_"
    out["threshold_what_if"] = image("threshold_what_if", "threshold what-if") + (
        _md_table(
            ["threshold", "review rate", "accuracy"],
            [[r["threshold"], r["review_rate"], r["accuracy"]] for r in data.what_if],
            ["", "pct", "pct"],
        )
        if data.what_if
        else "_no scored records yet_"
    )
    return out
