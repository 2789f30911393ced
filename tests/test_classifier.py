"""Label models over embeddings: the cold-start prototype scorer and the calibrated head."""

import pickle

import numpy as np
import pytest

from annotation_assets.core.classifier import (
    HEAD,
    PROTOTYPE,
    LabelModel,
    head_version,
    prototype_model,
    train_head,
)

DIMS = 32


def _clusters(
    n_per_label: int, *, spread: float, n_labels: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters of unit variance around random centres scaled by `spread`."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_labels, DIMS)) * spread
    x = np.vstack([c + rng.normal(size=(n_per_label, DIMS)) for c in centres])
    y = np.repeat(np.arange(n_labels), n_per_label)
    return x, y


def _head(x: np.ndarray, y: np.ndarray, *, n_labels: int = 3) -> LabelModel:
    return train_head(x, y, np.ones(len(y)), n_labels=n_labels, version="head-test")


def _metric(model: LabelModel, name: str) -> float:
    value = model.metrics[name]
    assert isinstance(value, float | int), value
    return float(value)


def _unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float64)
    return v / np.linalg.norm(v)


NO_EXAMPLES = np.empty((0, 3))


# ------------------------------------------------------------------ prototype model


def test_prototype_probabilities_sum_to_one() -> None:
    labels = np.eye(3)
    model = prototype_model(labels, [NO_EXAMPLES] * 3, temperature=0.05, encoder="e")

    probs = model.predict_proba(np.random.default_rng(0).normal(size=(5, 3)))

    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_prototype_picks_the_nearest_label() -> None:
    model = prototype_model(np.eye(3), [NO_EXAMPLES] * 3, temperature=0.05, encoder="e")

    probs = model.predict_proba(np.vstack([_unit(0.1, 0.9, 0.2), _unit(0.1, 0.2, 0.9)]))

    assert probs.argmax(axis=1).tolist() == [1, 2]
    assert model.kind == PROTOTYPE and model.version.startswith(f"{PROTOTYPE}-")


def test_examples_move_a_prototype_towards_them() -> None:
    labels = np.eye(2)
    query = _unit(1.0, 0.8)
    examples_near_query = np.array([_unit(1.0, 0.8), _unit(1.0, 0.9)])

    without = prototype_model(labels, [np.empty((0, 2))] * 2, temperature=0.05, encoder="e")
    with_examples = prototype_model(
        labels, [np.empty((0, 2)), examples_near_query], temperature=0.05, encoder="e"
    )

    assert without.predict_proba(query[None]).argmax() == 0
    assert with_examples.predict_proba(query[None]).argmax() == 1
    assert with_examples.version != without.version


def test_prototypes_are_unit_vectors() -> None:
    examples = [np.array([[3.0, 4.0, 0.0]]), NO_EXAMPLES, NO_EXAMPLES]
    model = prototype_model(np.eye(3) * 5, examples, temperature=0.05, encoder="e")

    assert model.prototypes is not None
    np.testing.assert_allclose(np.linalg.norm(model.prototypes, axis=1), 1.0, rtol=1e-6)


def test_empty_batch_gives_empty_probabilities() -> None:
    model = prototype_model(np.eye(3), [NO_EXAMPLES] * 3, temperature=0.05, encoder="e")

    assert model.predict_proba(np.empty((0, 3))).shape == (0, 3)


# ------------------------------------------------------------------ trained head


def test_head_on_separable_clusters_reaches_high_cv_accuracy() -> None:
    x, y = _clusters(40, spread=3.0)

    model = _head(x, y)

    assert model.kind == HEAD and model.version == "head-test"
    assert _metric(model, "cv_accuracy") >= 0.95
    assert (model.predict_proba(x).argmax(axis=1) == y).mean() >= 0.95


def test_head_records_calibration_metrics() -> None:
    x, y = _clusters(40, spread=3.0)

    metrics = _head(x, y).metrics

    assert {"cv_ece_raw", "cv_ece_calibrated", "temperature"} <= set(metrics)
    assert (metrics["n_train"], metrics["cv_folds"]) == (120, 5)


def test_temperature_lowers_ece_of_an_overconfident_head() -> None:
    # Overlapping clusters with few samples per dimension: the raw head is overconfident.
    x, y = _clusters(60, spread=0.3, seed=1)

    model = _head(x, y)
    raw = _metric(model, "cv_ece_raw")
    calibrated = _metric(model, "cv_ece_calibrated")

    assert model.temperature > 1.0
    assert raw > 0.1
    assert calibrated < raw / 2


def test_head_uses_its_temperature_when_predicting() -> None:
    x, y = _clusters(60, spread=0.3, seed=1)
    model = _head(x, y)
    assert model.head is not None

    raw_confidence = model.head.predict_proba(x).max(axis=1).mean()
    calibrated_confidence = model.predict_proba(x).max(axis=1).mean()

    assert calibrated_confidence < raw_confidence


def test_label_absent_from_training_gets_no_probability() -> None:
    x, y = _clusters(30, spread=3.0, n_labels=3)

    probs = _head(x, y, n_labels=4).predict_proba(x[:10])

    assert probs.shape == (10, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert probs[:, 3].max() < 1e-9


def test_binary_head_gives_two_columns_in_label_order() -> None:
    x, y = _clusters(30, spread=3.0, n_labels=2)

    probs = _head(x, y, n_labels=2).predict_proba(x)

    assert probs.shape == (60, 2)
    assert (probs.argmax(axis=1) == y).mean() >= 0.95


def test_head_with_too_few_rows_for_folds_skips_calibration() -> None:
    x, y = _clusters(1, spread=3.0, n_labels=3)

    model = _head(x, y)

    assert model.temperature == 1.0
    assert model.metrics["cv_folds"] == 1 and "cv_accuracy" not in model.metrics


def test_pickled_model_predicts_identically() -> None:
    x, y = _clusters(30, spread=1.0)
    model = _head(x, y)

    restored = pickle.loads(pickle.dumps(model))

    np.testing.assert_array_equal(restored.predict_proba(x), model.predict_proba(x))
    assert restored.version == model.version


# ------------------------------------------------------------------ versions

KEYS = ["r1", "r2", "r3", "r4"]
VERSION_LABELS = np.array([0, 1, 2, 1])
WEIGHTS = np.array([1.0, 1.0, 0.5, 1.0])


def test_head_version_ignores_row_order() -> None:
    order = [2, 0, 3, 1]

    shuffled = head_version(
        [KEYS[i] for i in order], VERSION_LABELS[order], WEIGHTS[order], encoder="e"
    )

    assert shuffled == head_version(KEYS, VERSION_LABELS, WEIGHTS, encoder="e")
    assert shuffled.startswith(f"{HEAD}-")


@pytest.mark.parametrize(
    ("labels", "weights", "encoder"),
    [
        (np.array([0, 1, 2, 2]), WEIGHTS, "e"),
        (VERSION_LABELS, np.array([1.0, 1.0, 1.0, 1.0]), "e"),
        (VERSION_LABELS, WEIGHTS, "other-encoder"),
    ],
    ids=["label", "weight", "encoder"],
)
def test_head_version_changes_with_the_training_data(
    labels: np.ndarray, weights: np.ndarray, encoder: str
) -> None:
    assert head_version(KEYS, labels, weights, encoder=encoder) != head_version(
        KEYS, VERSION_LABELS, WEIGHTS, encoder="e"
    )
