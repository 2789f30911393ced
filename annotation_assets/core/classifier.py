"""Label models over sentence embeddings: a zero/few-shot prototype scorer for a cold start and
a calibrated logistic-regression head once enough labels exist.

Calibration: the head's logits are divided by a temperature fitted (by NLL) on out-of-fold
logits from stratified k-fold cross-validation of the same training set, so a confidence of
0.9 means about 90% of such predictions agreed with held-out labels. The expected calibration
error before and after is recorded with every model version. Prototype scores have no labeled
data to calibrate on; their confidences are advisory and are not auto-accepted by default.
"""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from annotation_assets.core.calibration import (
    expected_calibration_error,
    fit_temperature,
    softmax,
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
    head: LogisticRegression | None = None
    metrics: dict[str, float | int | str | None] = field(default_factory=dict)

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        if self.kind == PROTOTYPE:
            assert self.prototypes is not None
            return embeddings @ self.prototypes.T
        assert self.head is not None
        return _full_logits(self.head, embeddings, self.n_labels)

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        if len(embeddings) == 0:
            return np.zeros((0, self.n_labels))
        return softmax(self.logits(embeddings), temperature=self.temperature)


def _full_logits(clf: LogisticRegression, x: np.ndarray, n_labels: int) -> np.ndarray:
    raw = clf.decision_function(x)
    if raw.ndim == 1:
        raw = np.stack([np.zeros_like(raw), raw], axis=1)
    out = np.full((len(x), n_labels), -1e4)
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
    keys: Sequence[str], labels: np.ndarray, weights: np.ndarray, *, encoder: str
) -> str:
    """The version a head trained on exactly this data would get (content-addressed)."""
    rows = sorted(zip(keys, labels.tolist(), np.round(weights, 6).tolist(), strict=True))
    return f"{HEAD}-{_digest(encoder, 'logreg-v1', rows)}"


def train_head(
    embeddings: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    *,
    n_labels: int,
    version: str,
    folds: int = 5,
    seed: int = 0,
) -> LabelModel:
    """Fits a class-balanced logistic regression and its calibration temperature."""
    balanced = _balanced_weights(labels, weights, n_labels)
    min_count = int(np.bincount(labels, minlength=n_labels)[np.unique(labels)].min())
    n_splits = min(folds, min_count)
    oof = np.zeros((len(labels), n_labels))
    if n_splits >= 2:
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        for train_idx, test_idx in splitter.split(embeddings, labels):
            clf = _fit(embeddings[train_idx], labels[train_idx], balanced[train_idx])
            oof[test_idx] = _full_logits(clf, embeddings[test_idx], n_labels)
        temperature = fit_temperature(oof, labels)
    else:
        temperature = 1.0
    head = _fit(embeddings, labels, balanced)
    metrics: dict[str, float | int | str | None] = {
        "n_train": int(len(labels)),
        "cv_folds": n_splits,
    }
    if n_splits >= 2:
        raw = softmax(oof)
        calibrated = softmax(oof, temperature=temperature)
        correct = (raw.argmax(axis=1) == labels).astype(float)
        metrics.update(
            cv_accuracy=float(correct.mean()),
            cv_ece_raw=float(expected_calibration_error(raw.max(axis=1), correct)),
            cv_ece_calibrated=float(expected_calibration_error(calibrated.max(axis=1), correct)),
            temperature=float(temperature),
        )
    return LabelModel(
        version=version,
        kind=HEAD,
        n_labels=n_labels,
        temperature=float(temperature),
        head=head,
        metrics=metrics,
    )


def _fit(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> LogisticRegression:
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
