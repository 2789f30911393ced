"""The quality report's plots, drawn with matplotlib's object API (no pyplot state) and
saved as base64 PNGs."""

import base64
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from annotation_assets.report.data import SHARE_PARTS, ReportData
from annotation_assets.warehouse.codes import SOURCES

_STAGE_COLORS = {
    "rule": "#4c72b0",
    "model": "#55a868",
    "heavy": "#8172b2",
    "human": "#dd8452",
    "pending": "#c7c7c7",
}


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
