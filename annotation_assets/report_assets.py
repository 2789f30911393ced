"""The quality_report asset: one self-contained HTML report per task, with its key plots in
the asset's metadata."""

import os
import tempfile
from pathlib import Path

import dagster as dg

from annotation_assets.core.report import collect_report_data, key_plots_markdown, render_report
from annotation_assets.core.spec import TaskSpec
from annotation_assets.home import Home
from annotation_assets.review_assets import agreement_summary
from resources import Warehouse


def report_path(home: Home, task: str) -> Path:
    return home.exports / task / "quality_report.html"


def write_atomically(path: Path, text: str) -> None:
    """Writes to a temporary file beside `path`, then renames it over `path`, so a reader
    never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        write_atomically(path, render_report(data))
        plots = key_plots_markdown(data)
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
