"""Label models over sentence embeddings: a zero/few-shot prototype scorer for a cold start and
a calibrated logistic-regression head once enough labels exist.

Calibration: the head's logits are divided by a temperature fitted (by NLL) on out-of-fold
logits from stratified k-fold cross-validation of the same training set, so a confidence of
0.9 means about 90% of such predictions agreed with held-out labels. Once enough records have
human decisions (the hard cases that reached review), a per-class isotonic map is refitted on
their out-of-fold probabilities, because agreement with rule labels flatters the model on
exactly the records people never see. The expected calibration error before and after is
recorded with every model version. Prototype scores have no labeled data to calibrate on;
their confidences are advisory and are not auto-accepted by default.
"""

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.linear_model._base import LinearClassifierMixin
from sklearn.model_selection import StratifiedKFold

from annotation_assets.core.calibration import (
    IsotonicCalibrator,
    expected_calibration_error,
    fit_temperature,
    softmax,
    threshold_what_if,
)

HEAD = "head"
PROTOTYPE = "zero_shot"


@dataclass
class LabelModel:
    """Scores embeddings against the task's labels; `predict_proba` gives (n, n_labels)."""

    version: str
    kind: str
    n_labels: int
    temperature: float
    prototypes: np.ndarray | None = None
    head: LinearClassifierMixin | None = None
    calibrator: IsotonicCalibrator | None = None
    metrics: dict[str, float | int | str | None] = field(default_factory=dict)
    what_if: list[dict[str, float | int | None]] = field(default_factory=list)

    def logits(self, embeddings: Any) -> np.ndarray:
        if self.kind == PROTOTYPE:
            assert self.prototypes is not None
            return embeddings @ self.prototypes.T
        assert self.head is not None
        return _full_logits(self.head, embeddings, self.n_labels)

    def predict_proba(self, embeddings: Any) -> np.ndarray:
        if embeddings.shape[0] == 0:
            return np.zeros((0, self.n_labels))
        return self.proba_from_logits(self.logits(embeddings))

    def proba_from_logits(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities from this model's (n, n_labels) logits."""
        probs = softmax(logits, temperature=self.temperature)
        return self.calibrator.transform(probs) if self.calibrator is not None else probs


def _full_logits(clf: LinearClassifierMixin, x: Any, n_labels: int) -> np.ndarray:
    return logits_from_decision(clf, clf.decision_function(x), n_labels)


def logits_from_decision(clf: LinearClassifierMixin, raw: np.ndarray, n_labels: int) -> np.ndarray:
    """(n, n_labels) logits from a linear classifier's decision values (one column for a
    binary classifier; classes it never saw get a very low logit)."""
    if raw.ndim == 1:
        raw = np.stack([np.zeros_like(raw), raw], axis=1)
    out = np.full((raw.shape[0], n_labels), -1e4)
    out[:, clf.classes_.astype(int)] = raw
    return out


def _digest(*parts: object) -> str:
    h = hashlib.sha1()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:12]


def prototype_model(
    label_vectors: np.ndarray,
    example_vectors: Sequence[np.ndarray],
    *,
    temperature: float,
    encoder: str,
) -> LabelModel:
    """Cold-start scorer: each label's prototype is its description embedding, averaged with
    the mean of its few-shot example embeddings when there are any."""
    protos = []
    for label_vec, examples in zip(label_vectors, example_vectors, strict=True):
        proto = label_vec if len(examples) == 0 else label_vec + examples.mean(axis=0)
        protos.append(proto / max(float(np.linalg.norm(proto)), 1e-12))
    prototypes = np.vstack(protos).astype(np.float32)
    version = f"{PROTOTYPE}-{_digest(encoder, temperature, prototypes)}"
    return LabelModel(
        version=version,
        kind=PROTOTYPE,
        n_labels=len(prototypes),
        temperature=temperature,
        prototypes=prototypes,
    )


def head_version(
    keys: Sequence[str],
    labels: np.ndarray,
    weights: np.ndarray,
    *,
    encoder: str,
    kind: str = HEAD,
) -> str:
    """The version a `kind` model trained on exactly this data over `encoder`'s features
    would get (content-addressed)."""
    rows = sorted(zip(keys, labels.tolist(), np.round(weights, 6).tolist(), strict=True))
    return f"{kind}-{_digest(encoder, 'logreg-v1', rows)}"


def train_head(
    embeddings: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    *,
    n_labels: int,
    version: str,
    reviewed: np.ndarray | None = None,
    min_reviewed: int = 30,
    folds: int = 5,
    seed: int = 0,
    kind: str = HEAD,
    fit: Callable[[Any, np.ndarray, np.ndarray], LinearClassifierMixin] | None = None,
    calibrate_on: np.ndarray | None = None,
) -> LabelModel:
    """Fits a class-balanced linear classifier (`fit(x, y, sample_weight)`, by default an L2
    logistic regression) and its calibration temperature; with at least `min_reviewed`
    human-reviewed rows (`reviewed` mask), also an isotonic recalibration on their out-of-fold
    probabilities, and a threshold what-if table measured on them. `embeddings` may be any
    (n, d) feature matrix, dense or sparse.

    `calibrate_on` (a row mask) limits the temperature and the isotonic map to those rows'
    out-of-fold logits: with a fine-tuned encoder, the rows it was not trained on (its vectors
    of its own training texts are more separable than those of new texts, so their
    out-of-fold confidences would flatter it). Ignored with fewer than `min_reviewed` rows."""
    fit = fit or _fit
    balanced = _balanced_weights(labels, weights, n_labels)
    min_count = int(np.bincount(labels, minlength=n_labels)[np.unique(labels)].min())
    n_splits = min(folds, min_count)
    oof = np.zeros((len(labels), n_labels))
    if n_splits >= 2:
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        for train_idx, test_idx in splitter.split(embeddings, labels):
            clf = fit(embeddings[train_idx], labels[train_idx], balanced[train_idx])
            oof[test_idx] = _full_logits(clf, embeddings[test_idx], n_labels)
        fitted = np.ones(len(labels), dtype=bool)
        if calibrate_on is not None and int(calibrate_on.sum()) >= min_reviewed:
            fitted = calibrate_on
        temperature = fit_temperature(oof[fitted], labels[fitted])
    else:
        fitted = np.ones(len(labels), dtype=bool)
        temperature = 1.0
    head = fit(embeddings, labels, balanced)
    metrics: dict[str, float | int | str | None] = {
        "n_train": int(len(labels)),
        "cv_folds": n_splits,
    }
    if n_splits >= 2:
        raw = softmax(oof[fitted])
        calibrated = softmax(oof[fitted], temperature=temperature)
        correct = (raw.argmax(axis=1) == labels[fitted]).astype(float)
        metrics.update(
            cv_accuracy=float(correct.mean()),
            cv_ece_raw=float(expected_calibration_error(raw.max(axis=1), correct)),
            cv_ece_calibrated=float(expected_calibration_error(calibrated.max(axis=1), correct)),
            temperature=float(temperature),
            calibration_rows=int(fitted.sum()),
        )
    model = LabelModel(
        version=version,
        kind=kind,
        n_labels=n_labels,
        temperature=float(temperature),
        head=head,
        metrics=metrics,
    )
    if n_splits >= 2 and reviewed is not None and int((reviewed & fitted).sum()) > 0:
        probs = softmax(oof[reviewed & fitted], temperature=temperature)
        y = labels[reviewed & fitted]
        _recalibrate_on_reviewed(model, probs, y, min_reviewed=min_reviewed, seed=seed)
    return model


def _recalibrate_on_reviewed(
    model: LabelModel, probs: np.ndarray, y: np.ndarray, *, min_reviewed: int, seed: int
) -> None:
    """Measures calibration on human-reviewed rows; with enough of them, fits the isotonic
    map (its ECE is measured by two-fold cross-fitting, never on the rows it was fitted on)."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(float)
    model.metrics["reviewed_n"] = int(len(y))
    model.metrics["reviewed_accuracy"] = float(correct.mean())
    model.metrics["reviewed_ece"] = float(expected_calibration_error(conf, correct))
    model.what_if = [
        {k: v for k, v in row.items() if k in ("threshold", "accuracy")}
        for row in threshold_what_if(conf, correct)
    ]
    if len(y) < min_reviewed:
        return
    order = np.random.default_rng(seed).permutation(len(y))
    halves = (order[: len(y) // 2], order[len(y) // 2 :])
    crossed = np.zeros_like(probs)
    for fit_idx, eval_idx in (halves, halves[::-1]):
        part = IsotonicCalibrator(min_samples=max(5, min_reviewed // 6))
        crossed[eval_idx] = part.fit(probs[fit_idx], y[fit_idx]).transform(probs[eval_idx])
    crossed_correct = (crossed.argmax(axis=1) == y).astype(float)
    crossed_ece = float(expected_calibration_error(crossed.max(axis=1), crossed_correct))
    model.metrics["reviewed_ece_isotonic"] = crossed_ece
    if crossed_ece < model.metrics["reviewed_ece"]:  # type: ignore[operator]
        model.calibrator = IsotonicCalibrator(min_samples=max(5, min_reviewed // 6)).fit(probs, y)
    model.metrics["isotonic_applied"] = int(model.calibrator is not None)


def fit_head_logits(
    x_train: np.ndarray, y: np.ndarray, w: np.ndarray, x_eval: np.ndarray, *, n_labels: int
) -> np.ndarray:
    """Uncalibrated (n_eval, n_labels) logits of the default head (class-balanced logistic
    regression) fitted on the training rows: contenders compared on held-out rows."""
    clf = _fit(x_train, y, _balanced_weights(y, w, n_labels))
    return _full_logits(clf, x_eval, n_labels)


def _fit(x: Any, y: np.ndarray, w: np.ndarray) -> LogisticRegression:
    clf = LogisticRegression(C=2.0, max_iter=2000)
    clf.fit(x, y, sample_weight=w)
    return clf


def _balanced_weights(labels: np.ndarray, weights: np.ndarray, n_labels: int) -> np.ndarray:
    mass = np.bincount(labels, weights=weights, minlength=n_labels)
    present = mass > 0
    target = mass[present].mean()
    scale = np.ones(n_labels)
    scale[present] = target / mass[present]
    return weights * scale[labels]
