"""Small markdown versions of the quality report's key figures, for the Dagster UI."""

from collections.abc import Mapping, Sequence
from typing import Any

from annotation_assets.report.data import NO_HUMANS, ReportData
from annotation_assets.report.figures import UI_DPI, plot_pngs
from annotation_assets.report.render import SUMMARY_COLUMNS, fmt, metrics_rows


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]], kinds: Sequence[str]) -> str:
    def cell(value: Any, kind: str) -> str:
        return fmt(value, kind).replace("|", "\\|")

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
            ["metric", "value"], metrics_rows(data.model), ["", ""]
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
