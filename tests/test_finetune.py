"""Fine-tuning the encoder on people's decisions (core/finetune.py, warehouse/tuning.py): a
tiny BERT built from a config trains in seconds; the same inputs give the same version and
weights; the time budget and a kill midway leave the encoder in force; a challenger replaces
the champion only when it wins on held-out decisions; the model stage uses the champion."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest

from annotation_assets.core.classifier import fit_head_logits
from annotation_assets.core.encoder import TextEncoder
from annotation_assets.core.finetune import (
    FinetuneSettings,
    challenger_wins,
    finetune_encoder,
    finetune_version,
    read_meta,
    trained_keys,
    write_version,
)
from annotation_assets.home import Home
from annotation_assets.warehouse.tuning import (
    ATTEMPTS,
    CHAMPION,
    COMPARISONS,
    _append_line,
    base_identity,
    champion_version,
    comparisons,
    encoders_dir,
    prune,
    tune_encoder,
)
from resources import Warehouse
from tests.conftest import make_spec
from tests.test_assets import TASK, Deployment, _metadata, use_backend

LABELS = ["negative", "neutral", "positive"]
POOLS = {
    "negative": ["broken", "awful", "refund", "cracked", "faulty", "returned", "useless"],
    "neutral": ["average", "okay", "arrived", "standard", "plain", "normal", "ordinary"],
    "positive": ["superb", "lovely", "perfect", "brilliant", "great", "sturdy", "delightful"],
}
FILLER = ["the", "item", "box", "color", "size", "seller", "price", "week", "order", "it"]


def corpus(n: int, seed: int, prefix: str = "t") -> tuple[list[dict[str, str]], dict[str, str]]:
    """Records whose label shows in a few words among filler, and the truth by text."""
    rng = random.Random(seed)
    records, truth = [], {}
    for i in range(n):
        label = LABELS[i % 3]
        words = rng.sample(POOLS[label], 2) + rng.sample(FILLER, 5)
        rng.shuffle(words)
        text = " ".join(words) + f" {prefix}{i}"
        records.append({"id": f"{prefix}{i}", "text": text})
        truth[text] = label
    return records, truth


FAST = FinetuneSettings(epochs=4, batch_size=16, max_length=32, learning_rate=1e-3, patience=2)


def _train(tiny: Path, out: Path, settings: FinetuneSettings = FAST, **kw: Any) -> dict[str, Any]:
    records, truth = corpus(150, 1)
    texts = [r["text"] for r in records]
    y = np.array([LABELS.index(truth[t]) for t in texts])
    stop, stop_truth = corpus(30, 2, "s")
    return finetune_encoder(
        tiny,
        texts,
        y,
        np.ones(len(y)),
        n_labels=3,
        stop_texts=[r["text"] for r in stop],
        stop_labels=np.array([LABELS.index(stop_truth[r["text"]]) for r in stop]),
        settings=settings,
        out_dir=out,
        **kw,
    )


def _accuracy(encoder_dir: Path) -> float:
    """A logistic head's accuracy on new texts over this encoder's vectors."""
    enc = TextEncoder(encoder_dir, max_length=32, precision="float32")
    train, truth = corpus(150, 1)
    test, test_truth = corpus(90, 3, "x")
    x_train = enc.encode([r["text"] for r in train])
    x_test = enc.encode([r["text"] for r in test])
    y_train = np.array([LABELS.index(truth[r["text"]]) for r in train])
    y_test = np.array([LABELS.index(test_truth[r["text"]]) for r in test])
    logits = fit_head_logits(x_train, y_train, np.ones(len(y_train)), x_test, n_labels=3)
    return float((logits.argmax(axis=1) == y_test).mean())


def test_a_tiny_encoder_fine_tunes_in_seconds_and_separates_better(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    metrics = _train(tiny_encoder_dir, tmp_path / "tuned")
    assert time.monotonic() - started < 60
    assert metrics["train_rows"] == 150 and metrics["stop_rows"] == 30
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= 4
    assert metrics["stopped"] in ("epochs", "early_stop")
    assert [h["epoch"] for h in metrics["history"]] == list(range(1, metrics["epochs_run"] + 1))
    # the folder is an ordinary transformers encoder, and its vectors separate the labels
    tuned = _accuracy(tmp_path / "tuned")
    frozen = _accuracy(tiny_encoder_dir)
    assert tuned >= 0.9 and tuned > frozen, (tuned, frozen)


def test_the_same_inputs_give_the_same_version_and_weights(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    from safetensors.numpy import load_file

    one = _train(tiny_encoder_dir, tmp_path / "a", FinetuneSettings(epochs=1, max_length=32))
    two = _train(tiny_encoder_dir, tmp_path / "b", FinetuneSettings(epochs=1, max_length=32))
    wa, wb = (load_file(tmp_path / d / "model.safetensors") for d in ("a", "b"))
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert one["history"] == two["history"]

    keys, y, w = ["k1", "k2", "k3"], np.array([0, 1, 2]), np.ones(3)
    version = finetune_version("enc@1", keys, y, w, ["k9"], FAST)
    assert version == finetune_version("enc@1", keys[::-1], y[::-1], w, ["k9"], FAST)
    # the time budget is not part of the recipe; the seed, data and base encoder are
    budget = FinetuneSettings(**{**FAST.__dict__, "max_seconds": 5.0})
    assert version == finetune_version("enc@1", keys, y, w, ["k9"], budget)
    seeded = FinetuneSettings(**{**FAST.__dict__, "seed": 1})
    assert version != finetune_version("enc@1", keys, y, w, ["k9"], seeded)
    assert version != finetune_version("enc@2", keys, y, w, ["k9"], FAST)
    assert version != finetune_version("enc@1", keys, np.array([0, 1, 1]), w, ["k9"], FAST)


def test_the_time_budget_stops_training_with_the_best_epoch_so_far(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    ticks = iter(range(10_000))
    seen: list[tuple[str, int, int | None]] = []
    metrics = _train(
        tiny_encoder_dir,
        tmp_path / "tuned",
        FinetuneSettings(epochs=5, max_length=32, max_seconds=3),
        clock=lambda: float(next(ticks)),  # one "second" per call
        progress=lambda stage, done, total: seen.append((stage, done, total)),
    )
    assert metrics["stopped"] == "time_budget" and metrics["epochs_run"] == 1
    assert metrics["history"][0]["complete"] == 0.0
    assert (tmp_path / "tuned" / "config.json").exists()
    # progress counts examples towards every epoch's total, so the reporter can give an ETA
    assert seen[0] == ("fine-tune encoder", 0, 5 * 10 * 16) and seen[-1][1] > 0


def test_the_challenger_must_keep_precision_and_accept_more() -> None:
    good = {"precision": 0.92, "coverage": 0.5}
    assert challenger_wins(good, None, 0.85)[0]
    assert challenger_wins(good, {"precision": 0.95, "coverage": 0.4}, 0.85)[0]
    assert not challenger_wins(good, {"precision": 0.95, "coverage": 0.5}, 0.85)[0]
    # a champion whose accepted share is below the threshold's precision accepts nothing
    assert challenger_wins(good, {"precision": 0.7, "coverage": 0.9}, 0.85)[0]
    assert not challenger_wins({"precision": 0.8, "coverage": 0.9}, None, 0.85)[0]
    why = challenger_wins({"precision": float("nan"), "coverage": 0.0}, None, 0.85)
    assert why == (False, "challenger precision nan below the threshold 0.85")


KILL_CHILD = """
import sys, time
from pathlib import Path
import numpy as np
from annotation_assets.core.finetune import FinetuneSettings, finetune_encoder, write_version
tiny, store, marker = map(Path, sys.argv[1:4])
texts = [f"word{i % 7} filler text {i}" for i in range(400)]
y = np.arange(400) % 3

def progress(stage, done, total):
    if done:
        marker.write_text(str(done))
        time.sleep(0.2)

write_version(
    store,
    "tuned-killed",
    lambda tmp: finetune_encoder(
        tiny, texts, y, np.ones(400), n_labels=3, stop_texts=[], stop_labels=np.zeros(0, int),
        settings=FinetuneSettings(epochs=3, max_length=16), out_dir=tmp, progress=progress,
    ),
    trained_keys=["a"],
    meta={"base": "x"},
)
"""


def test_a_fine_tune_killed_midway_leaves_the_champion_in_force(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "models" / "reviews"
    store = encoders_dir(root)
    store.mkdir(parents=True)
    (store / "tuned-champ").mkdir()
    (store / "tuned-champ" / "finetune.json").write_text(json.dumps({"base": "x"}))
    (store / CHAMPION).write_text("tuned-champ\n")
    marker = tmp_path / "marker"
    child = subprocess.Popen(
        [sys.executable, "-c", KILL_CHILD, str(tiny_encoder_dir), str(store), str(marker)],
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the child never started training"
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    # nothing but a hidden folder: no version, the champion unchanged
    assert not (store / "tuned-killed").exists()
    assert [p.name for p in store.glob(".tuned-killed.*.tmp")]
    assert champion_version(root, "x") == "tuned-champ"
    # the next attempt clears the leftover and completes
    done = write_version(
        store, "tuned-killed", lambda tmp: {"ok": 1}, trained_keys=["k"], meta={"base": "x"}
    )
    assert read_meta(done)["metrics"] == {"ok": 1} and trained_keys(done) == {"k"}
    assert not list(store.glob(".tuned-killed.*.tmp"))


# -- through the warehouse and Dagster -------------------------------------------------------

TUNE = {
    "finetune_min_reviewed": 60,
    "finetune_holdout_share": 0.4,
    "finetune_epochs": 4,
    "finetune_max_length": 32,
    "finetune_learning_rate": 1e-3,
    "finetune_keep_versions": 1,
}


def _deploy(home: Home, tasks_dir: Callable[..., Path], tiny: Path, **model: Any) -> Deployment:
    spec = {"rules": [], "examples": {}, "model": {"min_examples_per_label": 3, **TUNE, **model}}
    return Deployment(home, tasks_dir(spec), tiny)


def _decide(d: Deployment, truth: dict[str, str], name: str) -> None:
    """People decide every record waiting for review (the truth), as a CSV in reviews/."""
    queue = d.sql(
        f"SELECT p.record_id, n.text FROM {TASK}.hitl_pending p"
        f" JOIN {TASK}.normalized_records n USING (drop_id, record_id)"
    )
    folder = d.home.reviews / TASK
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["record_id,label,annotator"] + [f"{rid},{truth[text]},ann" for rid, text in queue]
    (folder / name).write_text("\n".join(rows) + "\n")


def _import(d: Deployment) -> dg.ExecuteInProcessResult:
    job = d.defs.resolve_job_def(f"{TASK}_import_reviews")
    result = job.execute_in_process(instance=d.instance)
    assert result.success
    return result


@pytest.mark.parametrize("backend", ["duckdb", "parquet"])
def test_review_import_fine_tunes_compares_and_records_either_way(
    backend: str, home: Home, tasks_dir: Callable[..., Path], tiny_encoder_dir: Path
) -> None:
    d = _deploy(use_backend(home, backend), tasks_dir, tiny_encoder_dir)
    records, truth = corpus(180, 5)
    d.drop("d1", records)
    assert d.run("d1").success
    _decide(d, truth, "first.csv")
    meta = _metadata(_import(d), "tuned_encoder")
    assert meta["status"] == "tuned", meta
    version = meta["challenger"]
    root = home.models / TASK
    folder = encoders_dir(root) / version
    assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()
    [record] = comparisons(root)
    assert record["version"] == version and record["promoted"] == meta["promoted"]
    assert record["n_heldout"] >= 20
    for side in ("challenger", "champion"):
        assert set(record[side]) >= {"accuracy", "coverage", "precision", "ece_calibrated"}
        assert meta[f"{side}_n"] == record["n_heldout"]
    rows = d.sql(f"SELECT kind FROM {TASK}.model_versions WHERE version = ?", version)
    assert rows == [("tuned_encoder",)]
    # the held-out decisions were never trained on
    held = len(trained_keys(folder))
    assert held and record["n_heldout"] + held <= len(records)

    # on these texts the tuned encoder wins, and the model stage scores with it: its head is
    # calibrated on the texts the encoder was not trained on (the held-out decisions)
    assert meta["promoted"] is True and champion_version(root, record["base"]) == version
    assert d.run("d1").success
    heads = d.sql(f"SELECT encoder, metrics FROM {TASK}.model_versions WHERE kind = 'head'")
    [(encoder, metrics)] = heads
    assert encoder.startswith(f"{version}@")
    assert json.loads(metrics)["calibration_rows"] == record["n_heldout"]

    # nothing new decided: not due again
    again = _metadata(_import(d), "tuned_encoder")
    assert again["status"] == "skipped" and "next starts at" in again["reason"]
    assert len(comparisons(root)) == 1


class _Vectors:
    """A stand-in encoder: vectors that carry each text's true label (`informative`) or only
    noise, so a test decides which contender is better."""

    dim = 8

    def __init__(self, name: str, truth: dict[str, str], informative: bool) -> None:
        self.name, self.truth, self.informative = name, truth, informative

    def encode(self, texts: Sequence[str], *, progress: Any = None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            rng = np.random.default_rng(abs(hash(text)) % 2**32)
            out[i] = rng.normal(size=self.dim) * 0.1
            if self.informative:
                out[i, LABELS.index(self.truth[text])] += 1.0
        return out


@pytest.mark.parametrize("challenger_better", [True, False])
def test_a_challenger_replaces_the_champion_only_when_it_wins_on_held_out_decisions(
    challenger_better: bool,
    home: Home,
    tasks_dir: Callable[..., Path],
    tiny_encoder_dir: Path,
) -> None:
    d = _deploy(home, tasks_dir, tiny_encoder_dir, finetune=False)
    records, truth = corpus(180, 6)
    d.drop("d1", records)
    assert d.run("d1").success
    _decide(d, truth, "first.csv")
    assert _metadata(_import(d), "tuned_encoder")["status"] == "off"
    spec = make_spec(name=TASK, rules=[], examples={}, model={"min_examples_per_label": 3, **TUNE})
    root = home.models / TASK
    base = _Vectors("base@1", truth, informative=not challenger_better)
    outcome = tune_encoder(
        Warehouse.for_home(home).connect,
        spec,
        root,
        base_path=tiny_encoder_dir,
        base=base,
        load=lambda path: _Vectors(f"{path.name}@1", truth, informative=challenger_better),
    )
    assert outcome.status == "tuned" and outcome.promoted is challenger_better
    assert (outcome.challenger["precision"] >= 0.85) is challenger_better
    base_id = base_identity(tiny_encoder_dir)
    assert champion_version(root, base_id) == (outcome.version if challenger_better else None)
    [record] = comparisons(root)
    assert record["promoted"] is challenger_better and record["reason"] == outcome.reason
    # another base encoder does not inherit the champion
    assert champion_version(root, "other@1") is None


def test_two_imports_at_once_fine_tune_once(
    home: Home, tasks_dir: Callable[..., Path], tiny_encoder_dir: Path
) -> None:
    d = _deploy(home, tasks_dir, tiny_encoder_dir, finetune=False)
    records, truth = corpus(180, 7)
    d.drop("d1", records)
    assert d.run("d1").success
    _decide(d, truth, "first.csv")
    _import(d)
    spec = make_spec(name=TASK, rules=[], examples={}, model={"min_examples_per_label": 3, **TUNE})
    root = home.models / TASK
    outcomes: list[Any] = []

    def tune() -> None:
        outcomes.append(
            tune_encoder(
                Warehouse.for_home(home).connect,
                spec,
                root,
                base_path=tiny_encoder_dir,
                base=_Vectors("base@1", truth, informative=False),
                load=lambda path: _Vectors(f"{path.name}@1", truth, informative=True),
            )
        )

    threads = [threading.Thread(target=tune) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # the second waited for the first, then found its comparison: not due
    assert sorted(o.status for o in outcomes) == ["skipped", "tuned"]
    assert len(comparisons(root)) == 1
    assert [p.name for p in encoders_dir(root).iterdir() if p.name.endswith(".tmp")] == []

    # a fine-tune killed three times is not tried again (its count stays in attempts.json)
    (encoders_dir(root) / COMPARISONS).unlink()
    version = outcomes[0].version or outcomes[1].version
    shutil.rmtree(encoders_dir(root) / version)
    (encoders_dir(root) / CHAMPION).unlink()
    (encoders_dir(root) / ATTEMPTS).write_text(json.dumps({version: 3}))
    outcomes.clear()
    tune()
    assert outcomes[0].status == "skipped" and "interrupted 3 times" in outcomes[0].reason


def test_the_comparison_log_survives_a_cut_line_and_pruning_keeps_the_replaced_champion(
    tmp_path: Path,
) -> None:
    root = tmp_path / "models" / "t"
    folder = encoders_dir(root)
    folder.mkdir(parents=True)
    row = {"base": "b", "promoted": False, "reason": "r", "n_reviewed": 1}
    _append_line(folder / COMPARISONS, {**row, "version": "v1"})
    with open(folder / COMPARISONS, "a") as fh:  # a kill in the middle of a line
        fh.write('{"version": "v2", "ba')
    _append_line(folder / COMPARISONS, {**row, "version": "v3"})
    with open(folder / COMPARISONS, "a") as fh:
        fh.write('[1]\n{"version": "v4"}\n')  # JSON, but not a comparison
    assert [c["version"] for c in comparisons(root)] == ["v1", "v3"]

    for name in ("v1", "v2", "v3", ".v5.1.abc.tmp"):
        (folder / name).mkdir()
    # keep 1 recent (v3), the champion and the one it replaced (v2, v1): nothing to remove
    assert prune(folder, keep=1, also={"v2", "v1"}) == []
    assert prune(folder, keep=1, also={"v2"}) == ["v1"]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["v2", "v3"]
