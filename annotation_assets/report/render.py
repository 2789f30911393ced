"""The quality report as one self-contained HTML page: each section's tables, plots and notes
as plain values, filled into templates/quality_report.html.j2."""

import html
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from annotation_assets.core import drift
from annotation_assets.report.data import NO_HUMANS, NO_OVERLAP, SECTIONS, SHARE_PARTS, ReportData
from annotation_assets.report.figures import plot_pngs, stage_shares

TEMPLATE = "quality_report.html.j2"

# One piece of a section, for the template: a table, a figure (a PNG), a note or a heading.
Block = dict[str, Any]


def fmt(value: Any, kind: str = "") -> str:
    """A figure as the report shows it: `pct` a share as a percentage, `rate` one decimal,
    counts with thousands separators, other numbers to three decimals; `–` for none."""
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
) -> Block:
    kinds = kinds or [""] * len(header)

    def cells(row: Sequence[Any]) -> list[str]:
        return [fmt(v, k) for v, k in zip(row, kinds, strict=True)]

    return {
        "kind": "table",
        "id": table_id,
        "header": [str(h) for h in header],
        "rows": [cells(r) for r in rows],
        "total": cells(total) if total else None,
    }


def _img(name: str, pngs: Mapping[str, str], alt: str) -> list[Block]:
    """The plot `name` as a figure, or nothing when it was not drawn."""
    if name not in pngs:
        return []
    return [{"kind": "figure", "name": name, "png": pngs[name], "alt": alt}]


def _note(text: str) -> Block:
    return {"kind": "note", "text": text}


def _heading(text: str) -> Block:
    return {"kind": "heading", "text": text}


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
    ("cost / labeled record", "cost_per_labeled_record", ""),
)


def _summary_section(data: ReportData) -> list[Block]:
    if data.drops.empty:
        return [_note("no drops yet")]
    header = [h for h, _, _ in SUMMARY_COLUMNS]
    kinds = [k for _, _, k in SUMMARY_COLUMNS]
    rows = [[row[c] for _, c, _ in SUMMARY_COLUMNS] for _, row in data.drops.iterrows()]
    sums = data.drops[[c for _, c, _ in SUMMARY_COLUMNS[1:8]]].sum()
    total = ["all drops", *(int(v) for v in sums), data.review_rate, None, None]
    return [
        _table(header, rows, table_id="summary-table", kinds=kinds, total=total),
        _note(
            "review rate = (human-decided + pending) / normalized records; throughput = records"
            " / (automated wall time + review rate × records × human latency), per hour; cost"
            " from the spec's `costs` and the heavy model's token prices."
        ),
    ]


def _class_table(counts: pd.DataFrame, table_id: str, labels: Sequence[str]) -> Block:
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


def _class_section(data: ReportData, pngs: Mapping[str, str]) -> list[Block]:
    labels = [str(c) for c in data.class_counts.columns]
    if data.class_counts.to_numpy().sum() == 0:
        return [_note("the final dataset is empty")]
    return [
        *_img("class_distribution", pngs, "class distribution per drop and overall"),
        _heading("Before balancing (final_dataset)"),
        _class_table(data.class_counts, "class-distribution-before", labels),
        _heading("After balancing"),
        _note(data.balancing),
        _class_table(data.balanced_counts, "class-distribution-after", labels),
    ]


def _confidence_section(data: ReportData, pngs: Mapping[str, str]) -> list[Block]:
    if "confidence" not in pngs:
        return [_note("no labeled records yet")]
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
    return [
        *_img("confidence", pngs, "confidence histograms per stage"),
        _table(header, rows, table_id="confidence-table", kinds=kinds),
    ]


def _stage_section(data: ReportData, pngs: Mapping[str, str]) -> list[Block]:
    if "stage_share" not in pngs:
        return [_note("no records yet")]
    shares = stage_shares(data)
    rows = [[d, *row.tolist()] for d, row in shares.iterrows()]
    header = ["drop", *SHARE_PARTS]
    kinds = ["", *("pct" for _ in SHARE_PARTS)]
    return [
        *_img("stage_share", pngs, "stage share over drops"),
        _table(header, rows, table_id="stage-share-table", kinds=kinds),
    ]


def _drift_section(data: ReportData, pngs: Mapping[str, str]) -> list[Block]:
    if not data.drift:
        return [_note("no drops yet")]
    rows = []
    for r in data.drift:
        above = None if r["psi"] is None else r["psi"] > data.max_psi
        rows.append([r["drop_id"], r["psi"], r["chi_square_p"], above])
    parts = _img("drift", pngs, "PSI of each drop against earlier drops")
    if "drift" not in pngs:
        parts.append(_note("drift needs at least two drops with labeled records"))
    parts.append(
        _table(
            ["drop", "PSI vs earlier drops", "chi-square p", f"above bound {data.max_psi:g}"],
            rows,
            table_id="drift-table",
        )
    )
    return parts


def _rules_section(data: ReportData, pngs: Mapping[str, str]) -> list[Block]:
    if not data.rules:
        return [_note("the task has no rules")]
    cols = ("rule", "label", "fired", "coverage", "overlap", "conflict", "n_gold", "accuracy")
    kinds = ["", "", "", "pct", "pct", "pct", "", "pct"]
    header = [*cols[:6], "human-decided", "accuracy"]
    rows = [[r[c] for c in cols] for r in data.rules]
    parts = _img("rules", pngs, "per-rule coverage, conflict and accuracy")
    if "rules" not in pngs:
        parts.append(_note("no records yet"))
    parts.append(_table(header, rows, table_id="rules-table", kinds=kinds))
    if not data.n_decided:
        parts.append(_note(f"{NO_HUMANS}: rule accuracy appears once people decide records"))
    return parts


def _agreement_section(data: ReportData, pngs: Mapping[str, str]) -> list[Block]:
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
        parts += _img("agreement", pngs, "agreement metrics")
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
    return parts


def metrics_rows(model: Mapping[str, Any]) -> list[list[Any]]:
    """The latest model version's figures as (metric, value) rows."""
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


def _calibration_section(data: ReportData, pngs: Mapping[str, str]) -> list[Block]:
    parts: list[Block] = []
    if data.calibration:
        parts += _img("calibration", pngs, "reliability diagram")
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
        parts.append(_heading("Latest model version"))
        parts.append(_table(["metric", "value"], metrics_rows(data.model), table_id="model"))
    return parts


def _what_if_section(data: ReportData, pngs: Mapping[str, str]) -> list[Block]:
    if not data.what_if:
        return [_note("no scored records yet")]
    parts = _img("threshold_what_if", pngs, "review rate against accuracy per threshold")
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
            "each record's automatic label and confidence from heavy_labels (the cascade's"
            " decision after its last automated tier); accuracy is"
            " measured on the records people decided that the threshold would auto-accept."
        )
    )
    return parts


def _escape(value: Any) -> Markup:
    """What the template prints of a value: as html.escape escapes it (quotes included, `'`
    as `&#x27;`), unless it is markup already (a macro's output)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value)))


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("annotation_assets.report", "templates"),
        autoescape=True,
        finalize=_escape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template(TEMPLATE)


def render_report(data: ReportData, pngs: Mapping[str, str] | None = None) -> str:
    """The quality report as one self-contained HTML page (`pngs`: the plots, from
    `plot_pngs`, when already drawn)."""
    pngs = plot_pngs(data) if pngs is None else pngs
    blocks = {
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
    return _template().render(
        title=f"{data.task}: dataset quality report",
        generated_at=f"{data.generated_at:%Y-%m-%d %H:%M:%S}",
        drops=str(len(data.drops)),
        final_rows=f"{data.final_rows:,}",
        review_rate=fmt(data.review_rate, "pct"),
        auto_accept=f"{data.auto_accept:g}",
        model=data.model_version or "–",
        sections=[
            {"key": key, "heading": SECTIONS[key], "blocks": content}
            for key, content in blocks.items()
        ],
    )
