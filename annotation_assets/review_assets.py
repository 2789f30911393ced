"""The human side of a task: the human_labels asset, its agreement check, and the sensors that
import dropped decision files and re-score every drop after new decisions."""

import hashlib
import json
import math
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from annotation_assets import metadata as md
from annotation_assets.core import agreement, reconcile, reviews
from annotation_assets.core.spec import TaskSpec
from annotation_assets.home import Home
from annotation_assets.stages import human
from annotation_assets.warehouse.decisions import human_decisions
from resources import Warehouse

REVIEW_SUFFIXES = (".json", ".csv")


def review_files(home: Home, task: str) -> list[Any]:
    folder = home.reviews / task
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in REVIEW_SUFFIXES and not p.name.startswith(".")
    )


def _finite(value: float) -> float | None:
    return float(value) if isinstance(value, float | int) and math.isfinite(value) else None


# Annotator pairs whose Cohen's kappa the summary lists: all of them up to this many, else
# this many with the lowest kappa (a crowd of annotators has tens of thousands of pairs).
PAIRS_LISTED = 20


def agreement_summary(
    votes: pd.DataFrame, model_vs_human: tuple[list[str], list[str]]
) -> dict[str, Any]:
    """Inter-annotator and model-vs-human agreement over the latest vote per annotator."""
    ratings = reviews.annotator_ratings(votes)
    overlapping = [u for u in reviews.labels_by_record(ratings) if len(u) >= 2]
    kappas = {
        f"{a} vs {b}": _finite(k) for (a, b), k in agreement.pairwise_cohens_kappa(ratings).items()
    }
    n_pairs = len(kappas)
    finite = [k for k in kappas.values() if k is not None]
    if n_pairs > PAIRS_LISTED:
        lowest = sorted(kappas, key=lambda p: (kappas[p] is None, kappas[p] or 0.0))
        kappas = {p: kappas[p] for p in lowest[:PAIRS_LISTED]}
    out: dict[str, Any] = {
        "annotators": len(ratings),
        "records_with_2plus_votes": len(overlapping),
        "krippendorff_alpha": _finite(agreement.krippendorff_alpha_nominal(overlapping))
        if overlapping
        else None,
        "annotator_pairs": n_pairs,
        "pairwise_kappa_median": float(np.median(finite)) if finite else None,
        "pairwise_cohens_kappa": kappas,
        "per_class_agreement": {
            str(k): _finite(v) for k, v in agreement.per_class_agreement(overlapping).items()
        }
        if overlapping
        else {},
    }
    if len({len(u) for u in overlapping}) == 1:
        out["fleiss_kappa"] = _finite(agreement.fleiss_kappa_from_ratings(overlapping))
    model, human = model_vs_human
    out["model_vs_human_kappa"] = _finite(agreement.cohens_kappa(model, human)) if model else None
    out["model_vs_human_n"] = len(model)
    return out


def build_human_labels_asset(spec: TaskSpec, home: Home) -> dg.AssetsDefinition:
    task = spec.name

    @dg.asset(
        key=dg.AssetKey([task, "human_labels"]),
        group_name=f"{task}_review",
        kinds={"duckdb"},
        description=f"Every human decision imported from reviews/{task}/ (Label Studio JSON or "
        "CSV), reconciled per record; agreement metrics in the metadata.",
    )
    def human_labels(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        warehouse.ensure_task(task)
        files: dict[str, Any] = {}
        with warehouse.connect() as conn:
            replayed = human.replayed_files(conn, spec)
            for path in review_files(home, task):
                try:
                    raw = reviews.read_decisions(path)
                    digest = hashlib.sha256(raw).hexdigest()
                    if (path.name, digest) in replayed:
                        # every row was valid when these bytes were last replayed
                        files[path.name] = {"unchanged": True, "rows": replayed[path.name, digest]}
                        continue
                    parsed = reviews.parse_decisions(path, raw)
                except reviews.ReviewFileError as err:
                    files[path.name] = {"error": str(err)}
                    context.log.warning(f"{path.name}: {err}")
                    continue
                report = human.import_decisions(conn, spec, parsed, source_file=path.name)
                files[path.name] = {
                    "imported": report.imported,
                    "already_imported": report.already_imported,
                    "row_errors": len(report.errors),
                }
                for error in report.errors[:20]:
                    context.log.warning(f"{path.name}: {error}")
                if not report.errors:
                    # rows with errors (an id not ingested yet, a label the spec lacks) may
                    # import later, so only a file without any is not replayed again
                    human.record_replayed(conn, spec, path.name, digest, len(parsed.rows))
            votes = human.decisions_frame(conn, task)
            decisions = human_decisions(conn, spec)
            conn.register("_decided", decisions[decisions["status"] == reconcile.DECIDED])
            pairs = conn.execute(
                f'SELECT m.label, d.label FROM "{task}".heavy_labels m JOIN _decided d'
                " USING (record_id) WHERE m.label IS NOT NULL"
            ).fetchall()
            conn.unregister("_decided")
        summary = agreement_summary(votes, ([p[0] for p in pairs], [p[1] for p in pairs]))
        contested = sorted(
            label
            for label, value in summary["per_class_agreement"].items()
            if value is not None and value < spec.review.min_class_agreement
        )
        status = decisions["status"].value_counts().to_dict() if not decisions.empty else {}
        by_annotator = votes["annotator"].value_counts().to_dict() if not votes.empty else {}
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(votes),
                "dagster/column_schema": md.column_schema("human_labels"),
                "files": dg.MetadataValue.json(files),
                "records_by_status": md.counts_json(status),
                "votes_by_annotator": md.counts_json(by_annotator),
                "agreement": dg.MetadataValue.json(summary),
                "krippendorff_alpha": summary["krippendorff_alpha"],
                "model_vs_human_kappa": summary["model_vs_human_kappa"],
                "contested_categories": dg.MetadataValue.json(contested),
            }
        )

    return human_labels


def build_agreement_check(spec: TaskSpec) -> dg.AssetChecksDefinition:
    task = spec.name

    @dg.asset_check(
        asset=dg.AssetKey([task, "human_labels"]),
        name="agreement",
        description="Inter-annotator agreement (Krippendorff's alpha, nominal) stays at or above "
        "review.min_kappa once records have two or more votes.",
    )
    def agreement_check(warehouse: Warehouse) -> dg.AssetCheckResult:
        with warehouse.connect() as conn:
            votes = human.decisions_frame(conn, task)
        summary = agreement_summary(votes, ([], []))
        alpha = summary["krippendorff_alpha"]
        bound = spec.review.min_kappa
        if alpha is None:
            return dg.AssetCheckResult(
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                description="no record has two or more votes yet",
            )
        return dg.AssetCheckResult(
            passed=alpha >= bound,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"Krippendorff's alpha {alpha:.3f} (bound {bound})",
            metadata={"alpha": alpha, "overlap": summary["records_with_2plus_votes"]},
        )

    return agreement_check


def build_review_sensors(
    spec: TaskSpec,
    home: Home,
    import_job: Any,
    rescore_job: Any,
    partitions: dg.DynamicPartitionsDefinition,
) -> list[dg.SensorDefinition]:
    """A sensor importing decision files dropped in reviews/<task>/, one re-scoring every drop
    whenever human_labels is materialized (by that sensor, the CLI or the UI), and one
    re-scoring them again when the import promoted a tuned encoder."""
    task = spec.name
    folder = home.reviews / task

    @dg.sensor(
        name=f"{task}_new_reviews",
        job=import_job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Imports new or changed decision files in {folder}.",
    )
    def new_reviews(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        seen: dict[str, float] = json.loads(context.cursor) if context.cursor else {}
        current = {p.name: p.stat().st_mtime for p in review_files(home, task)}
        changed = sorted(name for name, mtime in current.items() if seen.get(name) != mtime)
        if not changed:
            return dg.SkipReason("no new decision files")
        key = "|".join(f"{n}@{current[n]}" for n in changed)
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=key, tags={"annotate/review_files": key[:200]})],
            cursor=json.dumps(current),
        )

    @dg.asset_sensor(
        asset_key=dg.AssetKey([task, "human_labels"]),
        job=rescore_job,
        name=f"{task}_rescore_after_reviews",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Retrains on new human decisions and re-scores every drop's pending records.",
    )
    def rescore_after_reviews(
        context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry
    ) -> dg.SensorResult:
        return _rescore_every_drop(context, f"rescore:{asset_event.run_id}")

    @dg.asset_sensor(
        asset_key=dg.AssetKey([task, "tuned_encoder"]),
        job=rescore_job,
        name=f"{task}_rescore_after_promotion",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Re-scores every drop with a newly promoted tuned encoder (the import's "
        "re-scoring may have started before the fine-tune ended).",
    )
    def rescore_after_promotion(
        context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry
    ) -> dg.SensorResult | dg.SkipReason:
        materialization = asset_event.asset_materialization
        promoted = materialization.metadata.get("promoted") if materialization else None
        if promoted is None or not getattr(promoted, "value", False):
            return dg.SkipReason("no new encoder promoted")
        return _rescore_every_drop(context, f"promoted:{asset_event.run_id}")

    def _rescore_every_drop(context: dg.SensorEvaluationContext, stamp: str) -> dg.SensorResult:
        drops = context.instance.get_dynamic_partitions(partitions.name or "")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(partition_key=d, run_key=f"{stamp}:{d}") for d in drops]
        )

    return [new_reviews, rescore_after_reviews, rescore_after_promotion]
