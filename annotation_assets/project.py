"""Assembles the Dagster Definitions for every task in the tasks folder."""

import warnings
from pathlib import Path

import dagster as dg

from annotation_assets.core.spec import SpecProblem, load_task_specs_isolated
from annotation_assets.factory import TaskAssets, build_task_assets
from annotation_assets.home import Home
from annotation_assets.report_assets import build_quality_report_asset
from annotation_assets.review_assets import build_agreement_check, build_review_sensors
from annotation_assets.sensors import build_drop_sensor, build_s3_drop_sensor
from checks import build_task_checks
from resources import LabelModels, S3Storage, Warehouse


def build_definitions(
    home: Home,
    tasks_dir: Path,
    *,
    encoder_path: str = "",
    clip_path: str = "",
    executor: dg.ExecutorDefinition | None = None,
) -> dg.Definitions:
    """Assets, checks, jobs and sensors of every task, with resources bound to `home`; every
    job runs on `executor` (default: Dagster's multiprocess executor)."""
    specs, problems = load_task_specs_isolated(tasks_dir)
    built: list[TaskAssets] = [build_task_assets(spec, home) for spec in specs.values()]
    reports = [build_quality_report_asset(ta.spec, home) for ta in built]
    broken = [_spec_problems_asset(tasks_dir, problems)] if problems else []
    report_jobs = [
        dg.define_asset_job(
            f"{ta.spec.name}_quality_report",
            selection=dg.AssetSelection.assets(report),
            description="Rebuilds the dataset quality report over every drop.",
        )
        for ta, report in zip(built, reports, strict=True)
    ]
    sensors = []
    for ta in built:
        sensors.append(build_drop_sensor(ta.spec, home, ta.job, ta.partitions))
        if ta.spec.source:
            sensors.append(build_s3_drop_sensor(ta.spec, ta.job, ta.partitions))
        sensors.extend(
            build_review_sensors(
                ta.spec, home, ta.import_reviews_job, ta.rescore_job, ta.partitions
            )
        )
    return dg.Definitions(
        assets=[*(a for ta in built for a in ta.assets), *reports, *broken],
        asset_checks=[
            *(c for ta in built for c in build_task_checks(ta)),
            *(build_agreement_check(ta.spec) for ta in built),
        ],
        jobs=[*(job for ta in built for job in ta.jobs), *report_jobs],
        sensors=sensors,
        executor=executor,
        resources={
            "warehouse": Warehouse.for_home(home),
            "s3": S3Storage.from_env(),
            "label_models": LabelModels(
                models_dir=str(home.models), encoder_path=encoder_path, clip_path=clip_path
            ),
        },
    )


def _spec_problems_asset(tasks_dir: Path, problems: list[SpecProblem]) -> dg.AssetsDefinition:
    """Where the UI shows the task files that failed validation (the other tasks load and run):
    their one-line errors in the description of the `task_spec_errors` asset, which fails
    with them when materialized. Present only while some file is broken."""
    for problem in problems:
        warnings.warn(f"{problem.message} (this task is skipped)", stacklevel=2)
    listed = "\n".join(f"- {problem.message}" for problem in problems)

    @dg.asset(
        key="task_spec_errors",
        group_name="task_specs",
        description=f"Task files in {tasks_dir} that failed validation; their tasks are not "
        f"loaded (every other task is):\n\n{listed}",
    )
    def task_spec_errors() -> None:
        raise dg.Failure(
            description=f"{len(problems)} task file(s) failed validation",
            metadata={"errors": dg.MetadataValue.md(listed)},
        )

    return task_spec_errors
