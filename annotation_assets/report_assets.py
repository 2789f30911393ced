"""The quality_report asset: one self-contained HTML report per task, with its key plots in
the asset's metadata."""

from pathlib import Path

import dagster as dg

from annotation_assets.core.files import write_atomically
from annotation_assets.core.spec import TaskSpec
from annotation_assets.home import Home
from annotation_assets.report.figures import REPORT_DPI, UI_DPI, plot_pngs_at
from annotation_assets.report.markdown import key_plots_markdown
from annotation_assets.report.queries import collect_report_data
from annotation_assets.report.render import render_report
from annotation_assets.review_assets import agreement_summary
from resources import Warehouse


def report_path(home: Home, task: str) -> Path:
    return home.exports / task / "quality_report.html"


def build_quality_report_asset(spec: TaskSpec, home: Home) -> dg.AssetsDefinition:
    task = spec.name
    path = report_path(home, task)

    @dg.asset(
        key=dg.AssetKey([task, "quality_report"]),
        deps=[dg.AssetKey([task, "final_dataset"]), dg.AssetKey([task, "human_labels"])],
        group_name=f"{task}_dataset",
        kinds={"html"},
        description=f"Dataset quality report of {task} over every drop (exports/{task}/"
        "quality_report.html): class balance, confidence per stage, stage shares, drift, "
        "rules, agreement, calibration and the threshold what-if.",
    )
    def quality_report(warehouse: Warehouse) -> dg.MaterializeResult:
        warehouse.ensure_task(task)
        with warehouse.connect() as conn:
            data = collect_report_data(conn, spec, summarize_agreement=agreement_summary)
        pngs = plot_pngs_at(data, (REPORT_DPI, UI_DPI))
        write_atomically(path, render_report(data, pngs[REPORT_DPI]))
        plots = key_plots_markdown(data, dpi=UI_DPI, pngs=pngs[UI_DPI])
        review_rate = data.review_rate
        return dg.MaterializeResult(
            metadata={
                "report_path": dg.MetadataValue.path(str(path)),
                "report_url": dg.MetadataValue.url(path.resolve().as_uri()),
                "drops": len(data.drops),
                "final_rows": data.final_rows,
                "review_rate": review_rate,
                "model_version": data.model_version or "",
                **{name: dg.MetadataValue.md(text) for name, text in plots.items()},
            }
        )

    return quality_report
