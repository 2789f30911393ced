"""Builds each task's partitioned stage assets from its spec."""

import time
from dataclasses import dataclass
from typing import Any

import dagster as dg
import numpy as np
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

from annotation_assets import metadata as md
from annotation_assets.core.s3 import S3Error, parse_s3_url
from annotation_assets.core.spec import TaskSpec
from annotation_assets.core.staging import S3_DROP_TAG, stage_s3_drop
from annotation_assets.home import Home
from annotation_assets.progress import ProgressReporter
from annotation_assets.review_assets import build_human_labels_asset
from annotation_assets.stages.dataset import build_final_dataset
from annotation_assets.stages.heavy import label_by_heavy
from annotation_assets.stages.ingest import ingest_drop
from annotation_assets.stages.model import label_by_model
from annotation_assets.stages.normalize import normalize_drop
from annotation_assets.stages.review import queue_for_review
from annotation_assets.stages.rules import label_by_rules
from annotation_assets.warehouse.counts import drop_throughput, record_stage_time
from annotation_assets.warehouse.tuning import (
    TuneOutcome,
    base_identity,
    champion_version,
    tune_encoder,
)
from resources import LabelModels, S3Storage, Warehouse

STAGES = ("ingest", "normalize", "rules", "model", "heavy", "review", "dataset")
STAGE_TABLES = (
    "raw_records",
    "normalized_records",
    "quarantine",
    "duplicates",
    "rule_labels",
    "model_labels",
    "heavy_labels",
    "hitl_pending",
    "final_dataset",
)


def _stage_from_s3(
    context: dg.AssetExecutionContext, s3: S3Storage, spec: TaskSpec, home: Home, drop_id: str
) -> None:
    """Stages a drop of an S3-sourced task into the home (the prefix from the sensor's run tag,
    else `<source><drop_id>/`); refused keys become outside_drop quarantine rows."""
    default = str(parse_s3_url(spec.source or "").child(drop_id))
    url = context.run.tags.get(S3_DROP_TAG) or default
    try:
        staged = stage_s3_drop(
            context.resources.s3.client(), parse_s3_url(url), home.drops / spec.name
        )
    except (S3Error, ValueError) as err:
        raise dg.Failure(str(err)) from None
    context.log.info(f"staged {staged.files} objects ({staged.bytes} bytes) from {url}")
    for key, reason in staged.refused:
        context.log.warning(f"refused object {key!r} from {url}: {reason} (quarantined)")


def drops_partitions(task: str) -> dg.DynamicPartitionsDefinition:
    return dg.DynamicPartitionsDefinition(name=f"{task}_drops")


def group_name(task: str, stage: str) -> str:
    return f"{task}_{stage}"


@dataclass(frozen=True)
class TaskAssets:
    spec: TaskSpec
    partitions: dg.DynamicPartitionsDefinition
    assets: list[dg.AssetsDefinition]
    job: UnresolvedAssetJobDefinition
    import_reviews_job: UnresolvedAssetJobDefinition
    rescore_job: UnresolvedAssetJobDefinition

    def key(self, table: str) -> dg.AssetKey:
        return dg.AssetKey([self.spec.name, table])

    @property
    def jobs(self) -> list[UnresolvedAssetJobDefinition]:
        return [self.job, self.import_reviews_job, self.rescore_job]


class _Timer:
    """Records a stage's wall time for the drop (throughput figures)."""

    def __init__(self, warehouse: Warehouse, task: str, drop_id: str, stage: str) -> None:
        self.args = (warehouse, task, drop_id, stage)
        self.records = 0

    def __enter__(self) -> "_Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            warehouse, task, drop_id, stage = self.args
            seconds = time.perf_counter() - self.start
            record_stage_time(warehouse.connect, task, drop_id, stage, seconds, self.records)


def _finite(value: Any) -> float | int | None:
    """A number for metadata (None for a missing or non-finite one)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if np.isfinite(value) else None


def _reporter(context: dg.AssetExecutionContext) -> ProgressReporter:
    return ProgressReporter(context.log.info)


def _preview(
    warehouse: Warehouse, task: str, table: str, drop_id: str, cols: str
) -> dg.MetadataValue:
    with warehouse.connect() as conn:
        frame = conn.execute(
            f'SELECT {cols} FROM "{task}"."{table}" WHERE drop_id = ? LIMIT 10', [drop_id]
        ).fetchdf()
    return md.preview(frame)


def build_task_assets(spec: TaskSpec, home: Home) -> TaskAssets:
    """The stage assets of one task, keyed `<task>/<table>`, one dynamic partition per drop."""
    task = spec.name
    parts = drops_partitions(task)
    key = lambda table: dg.AssetKey([task, table])  # noqa: E731

    @dg.asset(
        key=key("raw_records"),
        partitions_def=parts,
        group_name=group_name(task, "ingest"),
        kinds={"duckdb"},
        description=f"Every line of every record file of a {task} drop, bad lines included.",
    )
    def raw_records(
        context: dg.AssetExecutionContext, warehouse: Warehouse, s3: S3Storage
    ) -> dg.MaterializeResult:
        drop_id = context.partition_key
        drop_dir = home.drop_dir(task, drop_id)
        if not drop_dir.is_dir() and spec.source:
            _stage_from_s3(context, s3, spec, home, drop_id)
        if not drop_dir.is_dir():
            raise dg.Failure(f"drop folder {drop_dir} does not exist")
        warehouse.ensure_task(task)
        with _Timer(warehouse, task, drop_id, "ingest") as timer:
            stats = ingest_drop(
                warehouse.connect, spec, drop_id, drop_dir, progress=_reporter(context)
            )
            timer.records = stats.ingested
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": stats.ingested,
                "dagster/column_schema": md.column_schema("raw_records"),
                "parse_errors": md.counts_json(stats.parse_errors),
                "rows_by_file": md.counts_json(stats.files),
                "preview": _preview(
                    warehouse,
                    task,
                    "raw_records",
                    drop_id,
                    "source_file, line_no, record_id, text, error, detail",
                ),
            }
        )

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                key("normalized_records"),
                deps=[key("raw_records")],
                description="Clean, unique records: HTML stripped, NFKC, whitespace collapsed.",
                kinds={"duckdb"},
            ),
            dg.AssetSpec(
                key("quarantine"),
                deps=[key("raw_records")],
                description="Records that cannot be labeled, with a reason code and raw payload.",
                kinds={"duckdb"},
            ),
            dg.AssetSpec(
                key("duplicates"),
                deps=[key("raw_records")],
                description="Exact and near duplicates, pointing at the record that was kept.",
                kinds={"duckdb"},
            ),
        ],
        name=f"{task}__normalize",
        partitions_def=parts,
        group_name=group_name(task, "normalize"),
    )
    def normalize(context: dg.AssetExecutionContext, warehouse: Warehouse):  # type: ignore[no-untyped-def]
        drop_id = context.partition_key
        with _Timer(warehouse, task, drop_id, "normalize") as timer:
            stats = normalize_drop(warehouse.connect, spec, drop_id, progress=_reporter(context))
            timer.records = stats.normalized
        yield dg.MaterializeResult(
            asset_key=key("normalized_records"),
            metadata={
                "dagster/row_count": stats.normalized,
                "dagster/column_schema": md.column_schema("normalized_records"),
                "preview": _preview(
                    warehouse, task, "normalized_records", drop_id, "record_id, text"
                ),
            },
        )
        yield dg.MaterializeResult(
            asset_key=key("quarantine"),
            metadata={
                "dagster/row_count": sum(stats.quarantined.values()),
                "dagster/column_schema": md.column_schema("quarantine"),
                "by_reason": md.counts_json(stats.quarantined),
                "preview": _preview(
                    warehouse, task, "quarantine", drop_id, "source_file, line_no, reason, detail"
                ),
            },
        )
        yield dg.MaterializeResult(
            asset_key=key("duplicates"),
            metadata={
                "dagster/row_count": sum(stats.duplicates.values()),
                "dagster/column_schema": md.column_schema("duplicates"),
                "by_kind": md.counts_json(stats.duplicates),
                "preview": _preview(
                    warehouse,
                    task,
                    "duplicates",
                    drop_id,
                    "record_id, kind, duplicate_of_drop, duplicate_of_id, similarity",
                ),
            },
        )

    @dg.asset(
        key=key("rule_labels"),
        deps=[key("normalized_records"), key("human_labels")],
        partitions_def=parts,
        group_name=group_name(task, "rules"),
        kinds={"duckdb"},
        description="Labels from the task's deterministic rules (regex, keywords, lexicon).",
    )
    def rule_labels(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        with _Timer(warehouse, task, context.partition_key, "rules") as timer:
            result = label_by_rules(warehouse.connect, spec, context.partition_key)
            timer.records = result.n_records
        coverage = result.n_labeled / result.n_records if result.n_records else 0.0
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": result.n_records,
                "dagster/column_schema": md.column_schema("rule_labels"),
                "labeled": result.n_labeled,
                "conflicts": result.n_conflicts,
                "coverage": float(coverage),
                "per_rule": dg.MetadataValue.md(md.markdown_table(result.summary)),
            }
        )

    @dg.asset(
        key=key("tuned_encoder"),
        deps=[key("human_labels")],
        group_name=group_name(task, "model"),
        kinds={"pytorch"},
        description="The task's sentence encoder fine-tuned on human decisions, the spec's "
        "examples and confident rule labels, once enough decisions exist (model.finetune_*); "
        "a new version replaces the one in force only when it beats it on held-out decisions.",
    )
    def tuned_encoder(
        context: dg.AssetExecutionContext, warehouse: Warehouse, label_models: LabelModels
    ) -> dg.MaterializeResult:
        warehouse.ensure_task(task)
        base_path = label_models.base_encoder_path(spec)
        base = label_models.open_encoder(spec, base_path)
        store = label_models.store_for(task).root
        try:
            outcome = tune_encoder(
                warehouse.connect,
                spec,
                store,
                base_path=base_path,
                base=base,
                load=lambda path: label_models.open_encoder(spec, path),
                progress=_reporter(context),
                forget_vectors=warehouse.backend == "duckdb",
            )
        except Exception as err:  # noqa: BLE001
            # the decisions are already imported and the encoder in force is unchanged: a
            # failed fine-tune must not stop re-scoring with them
            context.log.error(f"fine-tuning failed, the encoder in force stays: {err!r}")
            outcome = TuneOutcome(
                "failed",
                f"{type(err).__name__}: {err}"[:500],
                champion_version(store, base_identity(base_path)),
            )
        context.log.info(f"tuned encoder: {outcome.status}: {outcome.reason}")
        meta: dict[str, Any] = {
            "status": outcome.status,
            "reason": outcome.reason,
            "champion": outcome.champion or "base encoder",
        }
        if outcome.version is not None:
            meta |= {"challenger": outcome.version, "promoted": outcome.promoted}
            meta |= {f"challenger_{k}": _finite(v) for k, v in outcome.challenger.items()}
            meta |= {f"champion_{k}": _finite(v) for k, v in outcome.incumbent.items()}
            for name in ("train_seconds", "epochs_run", "best_epoch", "train_rows"):
                meta[name] = _finite(outcome.metrics.get(name))
            meta["stopped"] = str(outcome.metrics.get("stopped"))
            meta["pruned_versions"] = dg.MetadataValue.json(outcome.pruned)
        return dg.MaterializeResult(metadata=meta)

    @dg.asset(
        key=key("model_labels"),
        deps=[key("rule_labels"), key("human_labels"), key("tuned_encoder")],
        partitions_def=parts,
        group_name=group_name(task, "model"),
        kinds={"duckdb", "pytorch"},
        description="Small-model labels (n-gram tier, sentence encoder and head) for records "
        "the rules left unsure, and the decision after rules and small model for every record.",
    )
    def model_labels(
        context: dg.AssetExecutionContext, warehouse: Warehouse, label_models: LabelModels
    ) -> dg.MaterializeResult:
        with _Timer(warehouse, task, context.partition_key, "model") as timer:
            result = label_by_model(
                warehouse.connect,
                spec,
                context.partition_key,
                encoder=label_models.encoder_for(spec),
                store=label_models.store_for(task),
                progress=_reporter(context),
            )
            timer.records = result.n_scored
        meta: dict[str, Any] = {
            "dagster/row_count": result.n_records,
            "dagster/column_schema": md.column_schema("model_labels"),
            "model_version": result.model_version,
            "model_kind": result.model_kind,
            "scored_by_model": result.n_scored,
            "newly_encoded": result.n_encoded,
            "accepted_by_source": md.counts_json(result.accepted),
            "left_for_review": result.pending,
            "kept_earlier_acceptances": result.kept_earlier,
            "records_by_tier": md.counts_json(result.tiers),
            "fast_model_version": result.fast_version or "off",
            "model_confidence_histogram": dg.MetadataValue.md(
                md.histogram(result.model_confidence)
            ),
        }
        meta["threshold_what_if"] = dg.MetadataValue.md(md.markdown_table(result.what_if))
        for name, value in result.metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                meta[f"model_{name}"] = float(value) if np.isfinite(value) else None
        for name, value in result.fast_metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                meta[f"fast_model_{name}"] = float(value) if np.isfinite(value) else None
        return dg.MaterializeResult(metadata=meta)

    @dg.asset(
        key=key("heavy_labels"),
        deps=[key("model_labels"), key("human_labels")],
        partitions_def=parts,
        group_name=group_name(task, "heavy"),
        kinds={"duckdb", "pytorch"} if spec.is_image else {"duckdb", "openai"},
        description="The heavy tier (a language model behind an OpenAI-compatible server for "
        "text, zero-shot CLIP for images) on the records rules and small model left unsure, "
        "and the cascade's decision for every record.",
    )
    def heavy_labels(
        context: dg.AssetExecutionContext, warehouse: Warehouse, label_models: LabelModels
    ) -> dg.MaterializeResult:
        drop_id = context.partition_key
        labeler = scorer = None
        if spec.is_image:
            scorer, heavy_model = label_models.clip_for(spec)
            if scorer is None:
                context.log.warning(
                    f"{heavy_model}: labeling images from their metadata text only "
                    "(source=model_text)"
                )
        else:
            labeler, heavy_model = label_models.labeler_for(spec)
            if labeler is None and spec.heavy is not None:
                context.log.warning(f"heavy model off: {heavy_model}; records wait for review")
        with _Timer(warehouse, task, drop_id, "heavy") as timer:
            result = label_by_heavy(
                warehouse.connect,
                spec,
                drop_id,
                labeler=labeler,
                scorer=scorer,
                model=heavy_model,
                item_root=home.drop_dir(task, drop_id),
                progress=_reporter(context),
            )
            timer.records = result.sent
        if result.unavailable:
            context.log.warning(
                f"heavy model unavailable for {result.unavailable} records (they wait for "
                "review; a later run asks again)"
            )
        meta: dict[str, Any] = {
            "dagster/row_count": result.n_records,
            "dagster/column_schema": md.column_schema("heavy_labels"),
            "heavy_model": heavy_model,
            "heavy_version": result.version or "off",
            "records_sent": result.sent,
            "accepted": result.accepted,
            "invalid_answers": result.invalid_answers,
            "unavailable": result.unavailable,
            "not_sent": result.not_sent,
            "cache_hits": result.cache_hits,
            "latency_p50_s": result.latency_p50_s,
            "latency_p95_s": result.latency_p95_s,
            "tokens_in": result.tokens_in,
            "tokens_out": result.tokens_out,
            "cost": result.cost,
            "may_accept": result.may_accept,
            "accepted_by_source": md.counts_json(result.accepted_by_source),
            "left_for_review": result.pending,
            "kept_earlier_acceptances": result.kept_earlier,
        }
        for name, value in result.calibration.items():
            if isinstance(value, bool):
                meta[f"calibration_{name}"] = value
            elif isinstance(value, int | float):
                meta[f"calibration_{name}"] = float(value) if np.isfinite(value) else None
        return dg.MaterializeResult(metadata=meta)

    @dg.asset(
        key=key("hitl_pending"),
        deps=[key("heavy_labels"), key("human_labels")],
        partitions_def=parts,
        group_name=group_name(task, "review"),
        kinds={"duckdb"},
        description="Records waiting for a human decision, with the best suggestion.",
    )
    def hitl_pending(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        result = queue_for_review(warehouse.connect, spec, context.partition_key)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": result.n_pending,
                "dagster/column_schema": md.column_schema("hitl_pending"),
                "by_reason": md.counts_json(result.by_reason),
                "by_suggestion": md.counts_json(result.by_suggestion),
                "preview": _preview(
                    warehouse,
                    task,
                    "hitl_pending",
                    context.partition_key,
                    "record_id, text, suggested_label, confidence, reason",
                ),
            }
        )

    @dg.asset(
        key=key("final_dataset"),
        deps=[key("hitl_pending"), key("human_labels")],
        partitions_def=parts,
        group_name=group_name(task, "dataset"),
        kinds={"duckdb"},
        description="The labeled dataset: auto-accepted and human-decided records with lineage.",
    )
    def final_dataset(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        result = build_final_dataset(warehouse.connect, spec, context.partition_key)
        with warehouse.connect() as conn:
            throughput = drop_throughput(conn, spec, context.partition_key)
        return dg.MaterializeResult(
            metadata={
                "throughput_per_hour": throughput["throughput_per_hour"],
                "throughput": dg.MetadataValue.json(throughput),
                "dagster/row_count": result.n_rows,
                "dagster/column_schema": md.column_schema("final_dataset"),
                "by_source": md.counts_json(result.by_source),
                "by_label": md.counts_json(result.by_label),
                "confidence_histogram": dg.MetadataValue.md(md.histogram(result.confidence)),
                "preview": _preview(
                    warehouse,
                    task,
                    "final_dataset",
                    context.partition_key,
                    "id, text, label, source, confidence",
                ),
            }
        )

    human_labels = build_human_labels_asset(spec, home)
    stages = [
        raw_records,
        normalize,
        rule_labels,
        model_labels,
        heavy_labels,
        hitl_pending,
        final_dataset,
    ]
    job = dg.define_asset_job(
        name=f"{task}_pipeline",
        selection=dg.AssetSelection.assets(*stages),
        description=f"Every stage of task {task} for one drop.",
    )
    import_reviews_job = dg.define_asset_job(
        name=f"{task}_import_reviews",
        selection=dg.AssetSelection.assets(human_labels, tuned_encoder),
        description=f"Imports the decision files in reviews/{task}/ into human_labels, then "
        "fine-tunes the encoder when due.",
    )
    rescore_job = dg.define_asset_job(
        name=f"{task}_rescore",
        selection=dg.AssetSelection.assets(
            rule_labels, model_labels, heavy_labels, hitl_pending, final_dataset
        ),
        description="Retrains on the latest human decisions and re-scores one drop.",
    )
    return TaskAssets(
        spec=spec,
        partitions=parts,
        assets=[*stages, human_labels, tuned_encoder],
        job=job,
        import_reviews_job=import_reviews_job,
        rescore_job=rescore_job,
    )
