"""The n-gram tier: what it learns, its calibration, and its place before the encoder."""

import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from annotation_assets.core.calibration import expected_calibration_error, softmax
from annotation_assets.core.classifier import logits_from_decision
from annotation_assets.core.encoder import load_encoder
from annotation_assets.core.fast_model import (
    FastModel,
    NgramFeaturizer,
    fast_model_version,
    train_fast_model,
)
from annotation_assets.core.model_store import ModelStore
from annotation_assets.core.spec import SpecError, TaskSpec
from annotation_assets.stages.ingest import ingest_drop
from annotation_assets.stages.model import label_by_model
from annotation_assets.stages.normalize import normalize_drop
from annotation_assets.stages.rules import label_by_rules
from resources import Warehouse
from tests.conftest import make_spec, write_jsonl

LABELS = ["negative", "neutral", "positive"]
WORDS = {
    0: ["broken", "awful", "refund", "useless", "cracked", "returned"],
    1: ["arrived", "package", "tuesday", "box", "shipped", "delivered"],
    2: ["lovely", "perfect", "superb", "delighted", "brilliant", "wonderful"],
}
FILLER = ["the", "it", "was", "my", "and", "this", "item", "really", "so", "a"]


def toy_texts(n: int, *, seed: int, noise: float = 0.0) -> tuple[list[str], np.ndarray]:
    """Texts of filler words plus two words of their class; a `noise` share of the labels
    is replaced by a random class (so a model that fits the words is overconfident)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    texts = []
    for label in y:
        words = list(rng.choice(FILLER, size=6)) + list(rng.choice(WORDS[int(label)], size=2))
        rng.shuffle(words)
        texts.append(" ".join(words))
    flip = rng.random(n) < noise
    y = np.where(flip, rng.integers(0, 3, size=n), y)
    return texts, y.astype(np.int64)


def featurizer() -> NgramFeaturizer:
    return NgramFeaturizer(n_features=2**16, word_ngrams=(1, 2), char_ngrams=(3, 5))


def train(texts: list[str], y: np.ndarray, **kw: Any) -> FastModel:
    f = featurizer()
    w = np.ones(len(y))
    version = fast_model_version(f, texts, y, w)
    return train_fast_model(f, texts, y, w, n_labels=3, version=version, **kw)


def test_learns_a_separable_task() -> None:
    texts, y = toy_texts(600, seed=0)
    held_texts, held_y = toy_texts(400, seed=1)
    model = train(texts, y)
    probs = model.predict_proba(held_texts)
    assert (probs.argmax(axis=1) == held_y).mean() >= 0.98
    assert model.version.startswith("ngram-")


def test_character_ngrams_generalize_to_unseen_inflections() -> None:
    texts, y = toy_texts(600, seed=0)
    model = train(texts, y)
    # "brokenly", "superbly": never seen as words, but share character n-grams
    probs = model.predict_proba(["the item was brokenly awfully", "it was superbly lovelyish"])
    assert probs.argmax(axis=1).tolist() == [0, 2]


def test_training_is_deterministic_and_survives_pickling() -> None:
    texts, y = toy_texts(300, seed=2, noise=0.2)
    held, _ = toy_texts(200, seed=3)
    a, b = train(texts, y), train(texts, y)
    assert a.version == b.version
    restored = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(a.predict_proba(held), b.predict_proba(held))
    np.testing.assert_array_equal(a.predict_proba(held), restored.predict_proba(held))


def test_factored_scoring_equals_scoring_the_full_feature_rows() -> None:
    texts, y = toy_texts(300, seed=4, noise=0.1)
    held, _ = toy_texts(100, seed=5)
    model = train(texts, y)
    full = model.model.predict_proba(model.featurizer.transform(held))
    np.testing.assert_allclose(model.predict_proba(held), full, atol=1e-12)


def test_version_depends_on_data_and_feature_settings() -> None:
    texts, y = toy_texts(50, seed=6)
    w = np.ones(len(y))
    base = fast_model_version(featurizer(), texts, y, w)
    other = NgramFeaturizer(n_features=2**16, word_ngrams=(1, 1), char_ngrams=None)
    assert fast_model_version(other, texts, y, w) != base
    assert fast_model_version(featurizer(), texts, (y + 1) % 3, w) != base


def test_temperature_lowers_held_out_calibration_error() -> None:
    texts, y = toy_texts(1500, seed=7, noise=0.3)
    held, held_y = toy_texts(1500, seed=8, noise=0.3)
    model = train(texts, y)
    head = model.model.head
    assert head is not None
    x = model.featurizer.transform(held)
    raw = softmax(logits_from_decision(head, head.decision_function(x), 3))
    calibrated = model.predict_proba(held)

    def ece(p: np.ndarray) -> float:
        return expected_calibration_error(p.max(axis=1), (p.argmax(axis=1) == held_y) * 1.0)

    assert model.model.temperature > 1.0  # noisy labels: the raw fit is overconfident
    assert ece(calibrated) < ece(raw)


def test_isotonic_map_is_fitted_on_enough_reviewed_rows() -> None:
    texts, y = toy_texts(600, seed=9, noise=0.3)
    reviewed = np.zeros(len(y), dtype=bool)
    reviewed[:200] = True
    model = train(texts, y, reviewed=reviewed)
    assert model.model.metrics["reviewed_n"] == 200
    assert "reviewed_ece_isotonic" in model.model.metrics


@pytest.mark.parametrize("bad", [[0, 2], [3, 2], [1, 7]])
def test_spec_refuses_bad_ngram_ranges(bad: list[int]) -> None:
    with pytest.raises(SpecError):
        make_spec(model={"fast_tier_word_ngrams": bad})


# ------------------------------------------------------------------------------ the cascade


class CountingEncoder:
    """The real (tiny) encoder, remembering every text it was asked to encode."""

    def __init__(self, path: Path) -> None:
        self.inner = load_encoder(str(path))
        self.name = self.inner.name
        self.dim = self.inner.dim
        self.calls: list[list[str]] = []

    @property
    def seen(self) -> list[str]:
        return [t for call in self.calls for t in call]

    def encode(
        self, texts: Sequence[str], *, progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        self.calls.append(list(texts))
        return self.inner.encode(texts, progress=progress)


CASCADE_SPEC = {
    "rules": [
        {"name": "neg", "type": "keywords", "words": ["refund"], "label": "negative"},
        {"name": "neu", "type": "keywords", "words": ["tuesday"], "label": "neutral"},
        {"name": "pos", "type": "keywords", "words": ["superb"], "label": "positive"},
    ],
    "examples": {},
    # accept from the n-gram tier without human decisions, to see the cascade at work
    "model": {"min_examples_per_label": 8, "fast_tier_min_reviewed": 0},
}


def cascade_records() -> list[dict[str, str]]:
    """Rule-settled texts (they name a rule's keyword), texts a model can settle from the
    words they share with those, and texts with no class words at all."""
    texts, _ = toy_texts(240, seed=11)
    filler, _ = toy_texts(40, seed=12)
    filler = [
        " ".join(w for w in t.split() if w in FILLER) + f" item{i}" for i, t in enumerate(filler)
    ]
    return [{"id": f"r{i}", "text": t} for i, t in enumerate(texts + filler)]


def run_drop(tmp_path: Path, spec: TaskSpec, encoder: CountingEncoder) -> list[tuple[Any, ...]]:
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    warehouse.ensure_task(spec.name)
    drop_dir = write_jsonl(tmp_path / "drops" / "d1", cascade_records()).parent
    connect = warehouse.connect
    ingest_drop(connect, spec, "d1", drop_dir)
    normalize_drop(connect, spec, "d1")
    label_by_rules(connect, spec, "d1")
    store = ModelStore(tmp_path / "models")
    result = label_by_model(connect, spec, "d1", encoder=encoder, store=store)
    assert sum(result.tiers[k] for k in ("rules", "ngram_settled", "encoder_scored")) == len(
        cascade_records()
    )
    with connect() as conn:
        return conn.execute(
            "SELECT m.record_id, n.text, r.rule_confidence, m.model_version, m.source,"
            " m.label, m.confidence, m.accepted, m.model_probs"
            f' FROM "{spec.name}".model_labels m'
            f' JOIN "{spec.name}".normalized_records n USING (drop_id, record_id)'
            f' LEFT JOIN "{spec.name}".rule_labels r USING (drop_id, record_id)'
            " ORDER BY m.record_id"
        ).fetchall()


def test_encoder_sees_only_what_rules_and_the_ngram_tier_leave(
    tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    spec = make_spec(**CASCADE_SPEC)
    encoder = CountingEncoder(tiny_encoder_dir)
    rows = run_drop(tmp_path, spec, encoder)
    fast = [r for r in rows if (r[3] or "").startswith("ngram-")]
    head = [r for r in rows if (r[3] or "").startswith("head-")]
    ruled = [r for r in rows if r[3] is None]
    assert fast and head and ruled
    assert all(r[4] == "model" and r[7] and r[6] >= 0.85 for r in fast)
    *training, scoring = encoder.calls  # the head's training set first (rule labels only)
    assert sorted(scoring) == sorted(r[1] for r in head)
    assert {t for call in training for t in call} <= {r[1] for r in ruled}
    assert not {r[1] for r in fast} & set(encoder.seen)


def test_an_ngram_tier_not_yet_checked_by_humans_accepts_nothing(
    tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    model = {"min_examples_per_label": 8}  # default fast_tier_min_reviewed: 30
    spec = make_spec(**CASCADE_SPEC | {"model": model})
    encoder = CountingEncoder(tiny_encoder_dir)
    rows = run_drop(tmp_path, spec, encoder)
    assert not [r for r in rows if (r[3] or "").startswith("ngram-")]
    unsettled = {r[1] for r in rows if r[3] is not None}
    assert unsettled and unsettled <= set(encoder.seen)


def test_without_the_ngram_tier_the_encoder_scores_every_unsettled_record(
    tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    spec = make_spec(**CASCADE_SPEC | {"model": {"min_examples_per_label": 8, "fast_tier": False}})
    encoder = CountingEncoder(tiny_encoder_dir)
    rows = run_drop(tmp_path, spec, encoder)
    assert not [r for r in rows if (r[3] or "").startswith("ngram-")]
    unsettled = {r[1] for r in rows if r[3] is not None}
    assert unsettled and unsettled <= set(encoder.seen)


def test_rerunning_a_drop_through_the_cascade_gives_identical_rows(
    tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    spec = make_spec(**CASCADE_SPEC)
    first = run_drop(tmp_path / "a", spec, CountingEncoder(tiny_encoder_dir))
    again = run_drop(tmp_path / "a", spec, CountingEncoder(tiny_encoder_dir))
    fresh = run_drop(tmp_path / "b", spec, CountingEncoder(tiny_encoder_dir))
    # a reloaded n-gram model may differ from the freshly trained one in the last bits of a
    # probability (summation order); labels, sources, versions and routing must not
    exact = [[r[:6] + (r[7],) for r in rows] for rows in (first, again, fresh)]
    assert exact[0] == exact[1] == exact[2]
    for other in (again, fresh):
        for a, b in zip(first, other, strict=True):
            for x, y in ((a[6], b[6]), (a[8], b[8])):
                assert x == y if x is None or y is None else x == pytest.approx(y, rel=1e-9)


def test_cold_start_skips_the_ngram_tier(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    spec = make_spec(**CASCADE_SPEC | {"model": {"min_examples_per_label": 10_000}})
    rows = run_drop(tmp_path, spec, CountingEncoder(tiny_encoder_dir))
    versions = {r[3].split("-")[0] for r in rows if r[3] is not None}
    assert versions == {"zero_shot"}


def test_a_model_saved_but_not_registered_is_registered_by_the_next_run(
    tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    """A run killed between saving a model and adding its model_versions row must not leave
    the row missing for good: the next run finds the saved model and registers it."""
    spec = make_spec(**CASCADE_SPEC)
    run_drop(tmp_path, spec, CountingEncoder(tiny_encoder_dir))
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    with warehouse.connect() as conn:
        before = conn.execute(f'SELECT version FROM "{spec.name}".model_versions').fetchall()
        conn.execute(f'DELETE FROM "{spec.name}".model_versions')
    assert {v[:5] for (v,) in before} >= {"head-", "ngram"}
    run_drop(tmp_path, spec, CountingEncoder(tiny_encoder_dir))
    with warehouse.connect() as conn:
        after = conn.execute(f'SELECT version FROM "{spec.name}".model_versions').fetchall()
    assert sorted(after) == sorted(before)


def test_model_probs_are_stored_for_exactly_the_records_a_model_scored(
    tmp_path: Path, tiny_encoder_dir: Path
) -> None:
    spec = make_spec(**CASCADE_SPEC)
    rows = run_drop(tmp_path, spec, CountingEncoder(tiny_encoder_dir))
    scored = [r for r in rows if r[3] is not None]
    assert scored and len(scored) < len(rows)
    assert all(r[8] is None for r in rows if r[3] is None)
    for r in scored:
        probs = r[8]
        assert len(probs) == len(spec.label_names)
        assert probs == [round(p, 6) for p in probs]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        if r[4] == "model":  # the model's own label and confidence came from these
            assert spec.label_names[probs.index(max(probs))] == r[5]
            assert max(probs) == pytest.approx(r[6], abs=1e-6)
