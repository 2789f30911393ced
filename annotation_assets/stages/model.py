"""The model stage: the learned cascade over the records the rules did not settle.

The tiers (core/tiers.py) run in order, each scoring only the records every earlier stage
left below the auto-accept threshold: the n-gram tier, then the sentence encoder and its head
(or the zero/few-shot prototype scorer on a cold start). Every record is routed through the
rules and these tiers and model_labels written; the heavy tier comes after, in its own stage
(stages/heavy.py). The models are trained (or loaded from the model store) by
warehouse/training.py."""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from annotation_assets.core.calibration import threshold_what_if
from annotation_assets.core.classifier import HEAD, LabelModel
from annotation_assets.core.fast_model import NGRAM, FastModel
from annotation_assets.core.model_store import ModelStore
from annotation_assets.core.routing import (
    NO_LABEL,
    StageVotes,
    keep_earlier_acceptances,
    route_by_confidence,
)
from annotation_assets.core.spec import TaskSpec
from annotation_assets.core.tiers import (
    MODEL,
    Batch,
    Encoder,
    NgramTier,
    Progress,
    Tier,
    scored_rows,
)
from annotation_assets.warehouse.codes import IMAGE_TEXT_SOURCE, SMALL_MODEL_SOURCES
from annotation_assets.warehouse.embeddings import embed_and_score
from annotation_assets.warehouse.sql import Connect, drop_seq, drop_texts, q, replace_rows
from annotation_assets.warehouse.tables import transaction
from annotation_assets.warehouse.training import fast_model_for, label_model_for, training_set


def _fast_tier_unchecked(fast: Any, spec: TaskSpec) -> bool:
    """Whether the n-gram tier's confidence has not yet been checked against enough human
    decisions (`model.fast_tier_min_reviewed`). Trained on rule-labeled texts only, a bag of
    n-grams is over-confident on texts unlike the rules' (measured well below the threshold's
    promise on generated reviews), so until then it only scores and the encoder decides."""
    reviewed = int(fast.model.metrics.get("reviewed_n", 0) or 0)
    return reviewed < spec.model.fast_tier_min_reviewed


@dataclass
class ModelResult:
    model_version: str
    model_kind: str
    n_records: int
    n_scored: int
    n_encoded: int
    accepted: dict[str, int]
    pending: int
    model_confidence: np.ndarray
    metrics: dict[str, Any]
    what_if: list[dict[str, Any]]
    kept_earlier: int = 0
    fast_version: str | None = None
    tiers: dict[str, int] = field(default_factory=dict)
    fast_metrics: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


class _Clock:
    """Wall seconds of the consecutive parts of a stage, by name."""

    def __init__(self, names: Sequence[str] = ()) -> None:
        self.laps: dict[str, float] = dict.fromkeys(names, 0.0)  # reported even if never run
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._last
        self._last = now


def _texts_at(
    connect: Connect, task: str, drop_id: str, frame: pd.DataFrame, positions: np.ndarray
) -> list[str]:
    """The normalized texts of the records at `positions` of `frame` (record_id, dedup_key),
    in that order, each still under the key the stage read with it."""
    with connect() as conn:
        return drop_texts(
            conn,
            task,
            drop_id,
            frame["record_id"].iloc[positions].tolist(),
            frame["dedup_key"].iloc[positions].tolist(),
        )


class EncoderTier(Tier):
    """The sentence encoder and the model over its vectors: the trained head, or the
    zero/few-shot prototype scorer on a cold start. Vectors come from (and go to) the
    warehouse's embedding cache, a slice of texts at a time."""

    name = "encoder"

    def __init__(
        self, connect: Connect, task: str, encoder: Encoder, model: LabelModel, *, may_accept: bool
    ) -> None:
        super().__init__(model.version, may_accept=may_accept)
        self.connect, self.task, self.encoder, self.model = connect, task, encoder, model

    def predict_proba(self, batch: Batch, progress: Progress | None) -> np.ndarray:
        probs, encoded = embed_and_score(
            self.connect,
            self.task,
            self.encoder,
            self.model,
            batch.keys,
            batch.texts,
            progress=progress,
        )
        self.cost.encoded += encoded
        return probs


def cascade_tiers(
    connect: Connect,
    spec: TaskSpec,
    encoder: Encoder,
    model: LabelModel,
    fast: FastModel | None,
) -> list[Tier]:
    """The task's small-model tiers in cascade order: the n-gram tier (when trained), then
    the encoder with its head."""
    tiers: list[Tier] = []
    if fast is not None:
        tiers.append(NgramTier(fast, may_accept=not _fast_tier_unchecked(fast, spec)))
    may_accept = model.kind == HEAD or spec.model.zero_shot_auto_accept
    tiers.append(EncoderTier(connect, spec.name, encoder, model, may_accept=may_accept))
    return tiers


# records_by_tier and the stage's timings name the text cascade's tiers even when one is off
REPORTED_COUNTS = (f"{NGRAM}_scored", f"{NGRAM}_settled", "encoder_scored")
REPORTED_LAPS = ("train_encoder_head", f"train_{NGRAM}", NGRAM, "encoder")


@dataclass
class _Votes:
    """One vote slot of model_labels, filled tier by tier (a later tier overwrites the
    records it rescored): label index, confidence, rounded probabilities, whether the score
    may accept, and the version of the tier that scored each record."""

    label: np.ndarray
    confidence: np.ndarray
    probs: np.ndarray
    may_accept: np.ndarray
    version: list[str | None]

    @classmethod
    def empty(cls, n: int, n_labels: int) -> "_Votes":
        return cls(
            label=np.full(n, NO_LABEL, dtype=np.int64),
            confidence=np.full(n, np.nan),
            probs=np.full((n, n_labels), np.nan),  # rows without a score stay NaN
            may_accept=np.ones(n, dtype=bool),
            version=[None] * n,
        )

    def fill(self, rows: np.ndarray, probs: np.ndarray, tier: Tier) -> None:
        if not len(rows):
            return
        self.label[rows] = probs.argmax(axis=1)
        self.confidence[rows] = probs.max(axis=1)
        self.probs[rows] = probs.round(6)
        self.may_accept[rows] = tier.may_accept
        for i in rows.tolist():
            self.version[i] = tier.version


def _route_through(
    tiers: Sequence[Tier],
    settled: np.ndarray,
    batch_of: Callable[[np.ndarray], Batch],
    votes: dict[str, _Votes],
    *,
    threshold: float,
    clock: _Clock,
    progress: Progress | None,
) -> dict[str, int]:
    """Runs the tiers in order, each on the records not yet `settled` (updated in place) and
    filling its slot of `votes`; returns how many records each screening tier settled."""
    settled_by: dict[str, int] = {}
    for tier in tiers:
        rows = np.flatnonzero(~settled)
        if len(rows):
            probs = tier.score(batch_of(rows), progress)
            scored = scored_rows(probs)
            rows = rows[scored]
            slot = votes[tier.slot]
            slot.fill(rows, probs[scored], tier)
            sure = rows[(slot.confidence[rows] >= threshold) & tier.may_accept]
            settled[sure] = True
            settled_by[tier.name] = settled_by.get(tier.name, 0) + len(sure)
        clock.lap(tier.name)
    return settled_by


class _DropTexts:
    """The texts of a drop's records, read for the records a tier asks about; the first read
    is kept, so a later tier scoring some of the same records reads nothing more."""

    def __init__(self, connect: Connect, task: str, drop_id: str, frame: pd.DataFrame) -> None:
        self.connect, self.task, self.drop_id, self.frame = connect, task, drop_id, frame
        self.kept: pd.Series | None = None

    def at(self, rows: np.ndarray) -> pd.Series:
        if self.kept is not None and np.isin(rows, self.kept.index).all():
            return self.kept.loc[rows]
        texts = pd.Series(
            _texts_at(self.connect, self.task, self.drop_id, self.frame, rows), index=rows
        )
        if self.kept is None:
            self.kept = texts
        return texts


def label_by_model(
    connect: Connect,
    spec: TaskSpec,
    drop_id: str,
    *,
    encoder: Encoder,
    store: ModelStore,
    progress: Progress | None = None,
) -> ModelResult:
    """Scores records the rules did not settle through the small model's tiers (n-gram,
    encoder with head), routes every record through rules and tiers, and writes model_labels.

    The small model reads the record's text; for image tasks that is the image's metadata
    (title, alt text, file name), so its source is `model_text`."""
    task = spec.name
    labels = spec.label_names
    index = {label: i for i, label in enumerate(labels)}
    threshold = spec.thresholds.auto_accept
    with connect() as conn:
        seq = drop_seq(conn, task, drop_id)
        previous = conn.execute(
            f"SELECT * FROM {q(task, 'model_labels')} WHERE drop_id = ?", [drop_id]
        ).fetchdf()
        # texts are read later, for only the records the rules leave (`_texts_at`); ids and
        # keys stay in Arrow (no Python string per record)
        frame = _arrow_frame(
            conn.sql(
                "SELECT n.record_id, n.dedup_key, r.rule_label, r.rule_confidence"
                f" FROM {q(task, 'normalized_records')} n"
                f" LEFT JOIN {q(task, 'rule_labels')} r USING (drop_id, record_id)"
                " WHERE n.drop_id = ? ORDER BY n.row_num",
                params=[drop_id],
            ).to_arrow_table()
        )
        train = training_set(conn, spec, seq)
    clock = _Clock(REPORTED_LAPS)
    model, n_train_encoded = label_model_for(
        connect, spec, seq, encoder, store, progress=progress, train=train
    )
    clock.lap("train_encoder_head")
    fast = fast_model_for(connect, spec, store, train) if model.kind == HEAD else None
    clock.lap(f"train_{NGRAM}")
    tiers = cascade_tiers(connect, spec, encoder, model, fast)
    rule_idx = frame["rule_label"].map(index).fillna(NO_LABEL).to_numpy(dtype=np.int64)
    rule_conf = frame["rule_confidence"].fillna(0.0).to_numpy(dtype=np.float64)
    n = len(frame)
    settled = rule_conf >= threshold
    where = np.flatnonzero(~settled)
    texts = _DropTexts(connect, task, drop_id, frame)

    def batch_of(rows: np.ndarray) -> Batch:
        return Batch(frame["dedup_key"].iloc[rows], lambda: texts.at(rows), lambda: [])

    votes = {MODEL: _Votes.empty(n, len(labels))}
    settled_by = _route_through(
        tiers, settled, batch_of, votes, threshold=threshold, clock=clock, progress=progress
    )
    small = votes[MODEL]
    stages = [
        StageVotes("rule", rule_idx, rule_conf),
        StageVotes(
            IMAGE_TEXT_SOURCE if spec.is_image else "model",
            small.label,
            small.confidence,
            may_accept=small.may_accept,
        ),
    ]
    routed = route_by_confidence(stages, threshold=threshold)
    out = pd.DataFrame(
        {
            "drop_id": drop_id,
            "record_id": frame["record_id"],
            "dedup_key": frame["dedup_key"],
            "model_label": [labels[i] if i != NO_LABEL else None for i in small.label],
            "model_confidence": small.confidence,
            "model_probs": _probability_lists(small.probs, small.version),
            "model_version": small.version,
            "label": [labels[i] if i != NO_LABEL else None for i in routed.label_index],
            "confidence": routed.confidence,
            "source": [s or None for s in routed.source],
            "accepted": routed.accepted,
        }
    )
    out, kept = keep_earlier_acceptances(out, previous, threshold, SMALL_MODEL_SOURCES)
    with connect() as conn, transaction(conn):
        replace_rows(conn, task, "model_labels", drop_id, out)
    clock.lap("route_and_write")
    accepted = out.loc[out["accepted"], "source"].value_counts().to_dict()
    best = rule_conf
    for stage in stages[1:]:
        best = np.fmax(best, np.where(stage.may_accept, np.nan_to_num(stage.confidence), 0.0))
    accuracy = {row["threshold"]: row["accuracy"] for row in model.what_if}
    what_if = [
        {
            "threshold": row["threshold"],
            "review_rate": row["review_rate"],
            "accuracy_on_reviewed": accuracy.get(row["threshold"]),
        }
        for row in threshold_what_if(best, None)
    ]
    counts = {"rules": int(n - len(where))} | dict.fromkeys(REPORTED_COUNTS, 0)
    for tier in tiers:
        counts[f"{tier.name}_scored"] = tier.cost.records
        if tier.screens:
            counts[f"{tier.name}_settled"] = settled_by.get(tier.name, 0)
    return ModelResult(
        model_version=model.version,
        model_kind=model.kind,
        fast_version=fast.version if fast is not None else None,
        tiers=counts,
        fast_metrics=dict(fast.model.metrics) if fast is not None else {},
        seconds=clock.laps,
        n_records=n,
        n_scored=len(where),
        n_encoded=sum(tier.cost.encoded for tier in tiers) + n_train_encoded,
        accepted={str(k): int(v) for k, v in accepted.items()},
        pending=int((~out["accepted"]).sum()),
        kept_earlier=kept,
        model_confidence=small.confidence[where],
        metrics=dict(model.metrics),
        what_if=what_if,
    )


def _probability_lists(probs: np.ndarray, versions: Sequence[str | None]) -> pd.Series:
    """The model_probs column: each scored record's probabilities as a list (null for the
    records no model scored), built in Arrow from the (n, labels) matrix."""
    scored = np.array([v is not None for v in versions], dtype=bool)
    n, k = probs.shape
    offsets = np.concatenate([[0], np.cumsum(np.where(scored, k, 0))]).astype(np.int32)
    lists = pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(probs[scored].reshape(-1)), mask=pa.array(~scored)
    )
    return pd.Series(pd.arrays.ArrowExtensionArray(lists))


def _arrow_frame(table: pa.Table) -> pd.DataFrame:
    """A DataFrame of `table` whose string columns stay Arrow-backed (pd.ArrowDtype), so a
    stage holding a whole drop's ids and keys makes no Python string per value."""

    def arrow_strings(kind: pa.DataType) -> pd.ArrowDtype | None:
        text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
        return pd.ArrowDtype(kind) if text else None

    return table.to_pandas(types_mapper=arrow_strings)
