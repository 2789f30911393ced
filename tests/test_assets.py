"""The Dagster assets and checks of a task, materialized on an ephemeral instance."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from annotation_assets.home import Home
from annotation_assets.project import build_definitions
from annotation_assets.warehouse.codes import SOURCES
from annotation_assets.warehouse.counts import drop_counts
from resources import Warehouse
from tests.conftest import review_records, write_jsonl

TASK = "reviews"


class Deployment:
    """A home with definitions bound to it and an ephemeral instance, as `dagster dev` has."""

    def __init__(self, home: Home, tasks: Path, encoder: Path, clip: Path | None = None) -> None:
        self.home = home
        self.tasks = tasks
        self.defs = build_definitions(
            home, tasks, encoder_path=str(encoder), clip_path=str(clip or "")
        )
        self.instance = dg.DagsterInstance.ephemeral()

    def drop(self, drop_id: str, records: list[Any], task: str = TASK) -> Path:
        return write_jsonl(self.home.drop_dir(task, drop_id), records).parent

    def run(self, drop_id: str, task: str = TASK) -> dg.ExecuteInProcessResult:
        if not self.instance.has_dynamic_partition(f"{task}_drops", drop_id):
            self.instance.add_dynamic_partitions(f"{task}_drops", [drop_id])
        job = self.defs.resolve_job_def(f"{task}_pipeline")
        return job.execute_in_process(partition_key=drop_id, instance=self.instance)

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with Warehouse.for_home(self.home).connect() as conn:
            return conn.execute(query, list(params)).fetchall()

    def counts(self, drop_id: str, task: str = TASK) -> dict[str, Any]:
        with Warehouse.for_home(self.home).connect() as conn:
            return drop_counts(conn, task, drop_id)


def use_backend(home: Home, backend: str) -> Home:
    """Configures the home's warehouse backend as a user would, in annotation.yaml."""
    home.root.mkdir(parents=True, exist_ok=True)
    home.config_file.write_text(f"warehouse: {{backend: {backend}}}\n")
    return home


@pytest.fixture(params=["duckdb", "parquet"])
def deployment(
    request: pytest.FixtureRequest,
    home: Home,
    tasks_dir: Callable[..., Path],
    tiny_encoder_dir: Path,
) -> Deployment:
    return Deployment(use_backend(home, request.param), tasks_dir(), tiny_encoder_dir)


def _metadata(result: dg.ExecuteInProcessResult, table: str) -> dict[str, Any]:
    mats = result.asset_materializations_for_node(f"{TASK}__{table}") or [
        m
        for m in result.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey([TASK, table])
    ]
    event = mats[-1]
    materialization = getattr(event, "materialization", event)
    return {k: v.value for k, v in materialization.metadata.items()}


def _check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        f"{e.asset_check_key.asset_key.path[-1]}:{e.asset_check_key.name}": e.passed
        for e in result.get_asset_check_evaluations()
    }


def test_one_drop_fills_every_stage_table_and_conserves_rows(deployment: Deployment) -> None:
    deployment.drop("d1", [*review_records(40), "{broken json", {"id": "x1"}])
    result = deployment.run("d1")
    assert result.success
    counts = deployment.counts("d1")
    assert counts["ingested"] == 42
    assert counts["quarantined"] == 2
    accounted = counts["final_rows"] + counts["hitl_pending"] + counts["quarantined"]
    assert counts["ingested"] == accounted + counts["duplicates"]
    assert counts["by_source"]["rule"] > 0
    for table in SOURCES:
        assert table in counts["by_source"]


def test_a_wrapped_json_feed_runs_through_its_record_path(
    home: Home, tasks_dir: Callable[..., Path], tiny_encoder_dir: Path
) -> None:
    d = Deployment(home, tasks_dir({"fields": {"records": "data.results"}}), tiny_encoder_dir)
    folder = home.drop_dir(TASK, "d1")
    folder.mkdir(parents=True)
    pages = [{"data": {"results": review_records(5, offset=5 * i)}, "page": i} for i in range(3)]
    (folder / "feed.json").write_text("\n".join(json.dumps(page) for page in pages))
    (folder / "_SUCCESS").write_text("")
    assert d.run("d1").success
    counts = d.counts("d1")
    assert counts["ingested"] == 15 and counts["quarantined"] == 0
    assert (
        counts["ingested"] == counts["final_rows"] + counts["hitl_pending"] + counts["duplicates"]
    )


def test_every_check_runs_and_passes_on_a_clean_drop(deployment: Deployment) -> None:
    deployment.drop("d1", review_records(40))
    checks = _check_results(deployment.run("d1"))
    for table in (
        "raw_records",
        "normalized_records",
        "quarantine",
        "duplicates",
        "rule_labels",
        "model_labels",
        "heavy_labels",
        "hitl_pending",
        "final_dataset",
    ):
        assert checks[f"{table}:schema"], table
    assert checks["final_dataset:rows_conserved"]
    assert checks["final_dataset:unique_ids"]
    assert "final_dataset:label_drift" in checks
    assert "final_dataset:class_balance" in checks
    assert "hitl_pending:review_rate" in checks


def test_rerunning_a_partition_replaces_its_rows(deployment: Deployment) -> None:
    deployment.drop("d1", review_records(30))
    deployment.run("d1")
    first = deployment.sql(f"SELECT * FROM {TASK}.final_dataset ORDER BY id")
    pending = deployment.sql(f"SELECT record_id FROM {TASK}.hitl_pending ORDER BY 1")
    deployment.run("d1")
    again = deployment.sql(f"SELECT * FROM {TASK}.final_dataset ORDER BY id")
    assert [r[:6] for r in again] == [r[:6] for r in first]
    assert deployment.sql(f"SELECT record_id FROM {TASK}.hitl_pending ORDER BY 1") == pending
    raw = deployment.sql(f"SELECT count(*), count(DISTINCT row_num) FROM {TASK}.raw_records")
    assert raw == [(30, 30)]


def test_second_drop_drops_exact_and_near_duplicates_of_the_first(deployment: Deployment) -> None:
    first = review_records(20)
    deployment.drop("d1", first)
    deployment.run("d1")
    long_text = (
        "The blender is loud but crushes ice well, the jar is sturdy and the lid seals tight "
        "even when full of soup."
    )
    deployment.drop("d2", [{"id": "a", "text": long_text}])
    deployment.run("d2")
    second = [
        {"id": "n1", "text": first[3]["text"]},
        {"id": "n2", "text": long_text.replace("tight", "tight!")},
        {"id": "fresh1", "text": "The lamp flickers whenever the fridge kicks in"},
        {"id": "fresh2", "text": "Strap feels cheap; buckle bent within a week"},
    ]
    deployment.drop("d3", second)
    result = deployment.run("d3")
    assert result.success
    dups = deployment.sql(
        f"SELECT record_id, kind, duplicate_of_drop, duplicate_of_id FROM {TASK}.duplicates"
        " WHERE drop_id = 'd3' ORDER BY record_id"
    )
    assert dups == [("n1", "exact", "d1", first[3]["id"]), ("n2", "near", "d2", "a")]
    assert "final_dataset:label_drift" in _check_results(result)


def test_an_id_reused_for_another_text_in_a_later_drop_is_quarantined(
    deployment: Deployment,
) -> None:
    deployment.drop("d1", [{"id": "same", "text": "love it so much"}])
    deployment.run("d1")
    deployment.drop("d2", [{"id": "same", "text": "I want a refund now"}])
    deployment.run("d2")
    assert deployment.sql(f"SELECT reason FROM {TASK}.quarantine WHERE drop_id = 'd2'") == [
        ("duplicate_id",)
    ]


def test_bad_records_are_quarantined_with_reason_and_payload(deployment: Deployment) -> None:
    bad = [
        "{broken json",
        "[1, 2]",
        json.dumps({"id": "no-text"}),
        json.dumps({"text": "no id"}),
        json.dumps({"id": "html-only", "text": "<script>x()</script><p> </p>"}),
        json.dumps({"id": "long", "text": "word " * 5000}),
    ]
    deployment.drop("d1", [*review_records(5), *bad])
    deployment.home.drop_dir(TASK, "d1").joinpath("notes.txt").write_text("not records")
    assert deployment.run("d1").success
    rows = dict(
        deployment.sql(f"SELECT reason, payload FROM {TASK}.quarantine WHERE drop_id = 'd1'")
    )
    assert set(rows) == {
        "malformed_json",
        "not_an_object",
        "missing_text",
        "missing_id",
        "empty_text",
        "text_too_long",
        "unsupported_file",
    }
    assert rows["malformed_json"] == "{broken json"
    counts = deployment.counts("d1")
    assert counts["quarantined"] == 7


def test_rerun_reuses_cached_embeddings(deployment: Deployment) -> None:
    deployment.drop("d1", review_records(30))
    first = _metadata(deployment.run("d1"), "model_labels")
    assert first["newly_encoded"] > 0
    second = _metadata(deployment.run("d1"), "model_labels")
    assert second["newly_encoded"] == 0
    assert second["model_version"] == first["model_version"]


def test_head_is_trained_once_labels_suffice_and_labels_name_its_version(
    deployment: Deployment,
) -> None:
    deployment.drop("d1", review_records(60))
    meta = _metadata(deployment.run("d1"), "model_labels")
    assert meta["model_kind"] == "head"
    assert meta["model_version"].startswith("head-")
    assert "model_cv_ece_calibrated" in meta
    versions = deployment.sql(
        f"SELECT DISTINCT model_version FROM {TASK}.model_labels WHERE model_version IS NOT NULL"
    )
    fast = meta["fast_model_version"]
    assert fast.startswith("ngram-")
    assert versions and {v for (v,) in versions} <= {meta["model_version"], fast}
    registered = dict(deployment.sql(f"SELECT version, kind FROM {TASK}.model_versions"))
    assert registered == {meta["model_version"]: "head", fast: "ngram"}


def test_cold_start_without_rules_or_examples_sends_everything_to_review(
    home: Home, tasks_dir: Callable[..., Path], tiny_encoder_dir: Path
) -> None:
    tasks = tasks_dir({"name": "cold", "rules": [], "examples": {}})
    deployment = Deployment(home, tasks, tiny_encoder_dir)
    deployment.drop("d1", review_records(12), task="cold")
    assert deployment.run("d1", task="cold").success
    counts = deployment.counts("d1", task="cold")
    assert counts["final_rows"] == 0
    assert counts["hitl_pending"] == 12
    suggestions = deployment.sql(
        "SELECT count(*) FROM cold.hitl_pending WHERE suggested_by = 'model'"
        " AND suggested_label IS NOT NULL"
    )
    assert suggestions == [(12,)]


def test_human_decision_overrides_the_automatic_label(deployment: Deployment) -> None:
    deployment.drop("d1", review_records(14))
    deployment.run("d1")
    (rid, label), *_ = deployment.sql(
        f"SELECT id, label FROM {TASK}.final_dataset WHERE source = 'rule' ORDER BY id"
    )
    other = "neutral" if label != "neutral" else "negative"
    with Warehouse.for_home(deployment.home).connect() as conn:
        conn.execute(
            f"INSERT INTO {TASK}.human_labels VALUES (?, ?, 'ann1', now(), 'test.csv', now())",
            [rid, other],
        )
    deployment.run("d1")
    assert deployment.sql(f"SELECT label, source FROM {TASK}.final_dataset WHERE id = ?", rid) == [
        (other, "human")
    ]


def test_missing_drop_folder_fails_the_run_with_a_clear_message(deployment: Deployment) -> None:
    deployment.instance.add_dynamic_partitions(f"{TASK}_drops", ["ghost"])
    job = deployment.defs.resolve_job_def(f"{TASK}_pipeline")
    result = job.execute_in_process(
        partition_key="ghost", instance=deployment.instance, raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "does not exist" in str(failure.step_failure_data.error)


def test_definitions_expose_stage_groups_checks_sensor_and_job(
    home: Home, tasks_dir: Callable[..., Path], tiny_encoder_dir: Path
) -> None:
    defs = build_definitions(home, tasks_dir({}, {"name": "other"}), encoder_path="")
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    for task in ("reviews", "other"):
        assert f"{task}/final_dataset" in keys
        assert f"{task}/quarantine" in keys
        assert defs.resolve_job_def(f"{task}_pipeline") is not None
        assert defs.resolve_sensor_def(f"{task}_new_drops") is not None
        assert defs.resolve_sensor_def(f"{task}_new_reviews") is not None
        assert defs.resolve_sensor_def(f"{task}_rescore_after_reviews") is not None
        assert defs.resolve_job_def(f"{task}_rescore") is not None
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()}
    cascade = {"reviews_rules", "reviews_model", "reviews_heavy", "reviews_review"}
    assert {"reviews_ingest", "reviews_dataset"} | cascade <= groups
    assert graph.get(dg.AssetKey(["reviews", "heavy_labels"])).group_name == "reviews_heavy"
    # 9 schema checks, conservation, unique ids, balance, drift, review rate, agreement
    assert len(list(graph.asset_check_keys)) == 2 * 15


def test_a_record_with_split_human_votes_stays_pending_even_if_a_rule_is_sure(
    home: Home, tasks_dir: Callable[..., Path], tiny_encoder_dir: Path
) -> None:
    tasks = tasks_dir({"review": {"annotators_per_record": 2}})
    deployment = Deployment(home, tasks, tiny_encoder_dir)
    deployment.drop("d1", review_records(14))
    deployment.run("d1")
    (rid,), *_ = deployment.sql(f"SELECT id FROM {TASK}.final_dataset WHERE source = 'rule'")
    with Warehouse.for_home(deployment.home).connect() as conn:
        for annotator, label in (("a1", "positive"), ("a2", "negative")):
            conn.execute(
                f"INSERT INTO {TASK}.human_labels VALUES (?, ?, ?, now(), 'f.csv', now())",
                [rid, label, annotator],
            )
    deployment.run("d1")
    assert deployment.sql(f"SELECT count(*) FROM {TASK}.final_dataset WHERE id = ?", rid) == [(0,)]
    assert deployment.sql(f"SELECT reason FROM {TASK}.hitl_pending WHERE record_id = ?", rid) == [
        ("contested",)
    ]
    counts = deployment.counts("d1")
    assert counts["ingested"] == (
        counts["final_rows"] + counts["hitl_pending"] + counts["quarantined"] + counts["duplicates"]
    )


def test_rescoring_keeps_earlier_model_acceptances_and_rescores_the_rest(
    deployment: Deployment,
) -> None:
    deployment.drop("d1", review_records(60))
    deployment.run("d1")
    accepted_before = deployment.sql(
        f"SELECT record_id, label, model_version, model_probs FROM {TASK}.model_labels"
        " WHERE accepted AND source = 'model' ORDER BY 1"
    )
    # Records no model accepted (pending ones, or rule-settled ones when the n-gram tier left
    # nothing pending): deciding them changes the training set, so both models are retrained.
    undecided = [
        r
        for (r,) in deployment.sql(
            f"SELECT record_id FROM {TASK}.model_labels WHERE coalesce(source, '') <> 'model'"
            " ORDER BY accepted, 1"
        )
    ]
    assert undecided and accepted_before
    with Warehouse.for_home(deployment.home).connect() as conn:
        for rid in undecided[:5]:
            conn.execute(
                f"INSERT INTO {TASK}.human_labels VALUES (?, 'neutral', 'a1', now(), 'f', now())",
                [rid],
            )
    deployment.run("d1")
    after = deployment.sql(
        f"SELECT record_id, label, model_version, model_probs FROM {TASK}.model_labels"
        f" WHERE record_id IN (SELECT record_id FROM {TASK}.model_labels"
        "  WHERE accepted AND source = 'model') ORDER BY 1"
    )
    # kept acceptances keep their probabilities too (lists are not hashable: compare as tuples)
    assert all(probs for *_, probs in accepted_before)
    assert {(*r[:3], tuple(r[3])) for r in accepted_before} <= {
        (*r[:3], tuple(r[3] or ())) for r in after
    }


def test_a_rule_people_keep_overruling_stops_auto_accepting(deployment: Deployment) -> None:
    deployment.drop("d1", review_records(280))
    deployment.run("d1")
    fired = [
        r
        for (r,) in deployment.sql(
            f"SELECT record_id FROM {TASK}.rule_labels WHERE list_contains(rules_fired, 'praise')"
            " ORDER BY record_id"
        )
    ]
    assert len(fired) >= 60
    with Warehouse.for_home(deployment.home).connect() as conn:
        for rid in fired[:30]:
            conn.execute(
                f"INSERT INTO {TASK}.human_labels VALUES (?, 'negative', 'a1', now(), 'f', now())",
                [rid],
            )
    result = deployment.run("d1")
    per_rule = _metadata(result, "rule_labels")["per_rule"]
    assert "confidence_used" in per_rule
    # stated 0.95 with a prior worth 20 records, then 0 of 30 confirmed: (0.95*20 + 0) / 50
    confidence = deployment.sql(
        f"SELECT DISTINCT rule_confidence FROM {TASK}.rule_labels WHERE rules_fired = ['praise']"
    )
    assert confidence == [(pytest.approx(0.38),)]
    undecided = fired[30:]
    rule_accepted = deployment.sql(
        f"SELECT count(*) FROM {TASK}.final_dataset WHERE source = 'rule'"
        " AND list_contains(rule_names, 'praise')"
    )
    assert rule_accepted == [(0,)]
    assert undecided


def test_review_queue_can_add_a_stable_audit_sample_of_auto_accepted_records(
    deployment: Deployment,
) -> None:
    from annotation_assets.core.spec import load_task_spec
    from annotation_assets.stages import human

    deployment.drop("d1", review_records(60))
    deployment.run("d1")
    spec = load_task_spec(deployment.tasks / f"{TASK}.yaml")
    with Warehouse.for_home(deployment.home).connect() as conn:
        plain = human.review_queue(conn, spec)
        queue = human.review_queue(conn, spec, audit=5)
        again = human.review_queue(conn, spec, audit=5)
        auto = {
            r
            for (r,) in conn.execute(
                f"SELECT id FROM {TASK}.final_dataset WHERE source <> 'human'"
            ).fetchall()
        }
    audit = queue[queue["reason"] == "audit"]
    assert len(audit) == 5
    assert set(audit["record_id"]) <= auto
    assert queue["record_id"].tolist()[: len(plain)] == plain["record_id"].tolist()
    assert audit["record_id"].tolist() == again[again["reason"] == "audit"]["record_id"].tolist()
    assert set(audit["suggested_by"]) <= {"rule", "model"}


def test_an_empty_drop_runs_every_stage_with_zero_rows(deployment: Deployment) -> None:
    folder = deployment.home.drop_dir(TASK, "d1")
    folder.mkdir(parents=True)
    (folder / "empty.jsonl").write_text("")
    (folder / "blank.csv").write_text("\n\n")
    assert deployment.run("d1").success
    counts = deployment.counts("d1")
    assert counts["ingested"] == counts["final_rows"] == counts["hitl_pending"] == 0
