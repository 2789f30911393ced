"""Human decisions feed back into the model: with the real bundled MiniLM, a second drop needs
fewer reviews once the first drop's decisions are imported."""

from collections.abc import Callable
from pathlib import Path

import duckdb

from annotation_assets.core.encoder import bundled_encoder_path
from annotation_assets.core.spec import load_task_spec
from annotation_assets.home import Home
from annotation_assets.stages import human
from tests.test_assets import Deployment
from tools.synthetic import generate_reviews

TASK = "reviews"


def _review_rate(d: Deployment, drop_id: str) -> float:
    c = d.counts(drop_id)
    return c["hitl_pending"] / (c["ingested"] - c["quarantined"] - c["duplicates"])


def _answer_queue(d: Deployment, gold: dict[str, str]) -> int:
    """Answers every queued record with its gold label through a CSV import, then runs the
    import job and re-scores every drop, as `annotate review import` does."""
    spec = load_task_spec(d.tasks / f"{TASK}.yaml")
    with duckdb.connect(str(d.home.warehouse)) as conn:
        queue = human.review_queue(conn, spec)
    path = d.home.reviews / TASK / "answers.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["record_id,label,annotator"]
    lines += [f"{rid},{gold[rid]},gold" for rid in queue["record_id"]]
    path.write_text("\n".join(lines) + "\n")
    d.defs.resolve_job_def(f"{TASK}_import_reviews").execute_in_process(instance=d.instance)
    for drop_id in d.instance.get_dynamic_partitions(f"{TASK}_drops"):
        d.defs.resolve_job_def(f"{TASK}_rescore").execute_in_process(
            partition_key=drop_id, instance=d.instance
        )
    return len(queue)


def test_second_drops_review_rate_falls_after_first_drops_decisions(
    home: Home, tasks_dir: Callable[..., Path]
) -> None:
    tasks = tasks_dir({"rules": [], "examples": {}, "model": {"min_examples_per_label": 8}})
    d = Deployment(home, tasks, bundled_encoder_path())
    records = generate_reviews(400, seed=7, html_rate=0.1, duplicate_rate=0, near_duplicate_rate=0)
    gold = {r["id"]: r["gold_label"] for r in records}
    strip = lambda rs: [{"id": r["id"], "text": r["text"]} for r in rs]  # noqa: E731
    d.drop("d1", strip(records[:200]))
    assert d.run("d1").success
    first_rate = _review_rate(d, "d1")
    answered = _answer_queue(d, gold)
    assert answered > 0
    d.drop("d2", strip(records[200:]))
    assert d.run("d2").success
    second_rate = _review_rate(d, "d2")
    print(f"review rate {first_rate:.2f} -> {second_rate:.2f}")
    assert second_rate < first_rate
    with duckdb.connect(str(d.home.warehouse), read_only=True) as conn:
        auto = conn.execute(
            f"SELECT id, label FROM {TASK}.final_dataset WHERE drop_id = 'd2' AND source <> 'human'"
        ).fetchall()
    assert auto, "the retrained model auto-accepted nothing in the second drop"
    precision = sum(gold[i] == label for i, label in auto) / len(auto)
    print(f"auto-accepted precision {precision:.2f} on {len(auto)}")
    assert precision >= 0.7, precision
