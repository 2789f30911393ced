"""The label models' training data and training over the warehouse: the training set (human
decisions, few-shot examples, confident rule labels), the encoder head and the n-gram model
trained on it (loaded from the model store when this exact set was trained before), and their
registration in model_versions."""

import json

import duckdb
import numpy as np
import pandas as pd

from annotation_assets.core import normalize
from annotation_assets.core.classifier import (
    LabelModel,
    head_version,
    prototype_model,
    train_head,
)
from annotation_assets.core.fast_model import (
    FastModel,
    NgramFeaturizer,
    fast_model_version,
    train_fast_model,
)
from annotation_assets.core.model_store import ModelStore
from annotation_assets.core.spec import TaskSpec
from annotation_assets.core.tiers import Encoder, Progress
from annotation_assets.warehouse.decisions import decided_records
from annotation_assets.warehouse.embeddings import embed_cached
from annotation_assets.warehouse.sql import Connect, now, q, registered

RULE_TRAIN_CAP = 2000


def training_set(conn: duckdb.DuckDBPyConnection, spec: TaskSpec, seq: int) -> pd.DataFrame:
    """Labeled texts for the head: human decisions (weight 1), the spec's few-shot examples
    (weight 1) and confident, conflict-free rule labels of this and earlier drops (weight
    `model.rule_label_weight`, at most RULE_TRAIN_CAP per label). One row per distinct text,
    human decisions first; `seq` is the sequence number of the drop a text came from (0 for
    the examples)."""
    task = spec.name
    decided = decided_records(conn, spec)[["record_id", "label"]]
    with registered(conn, "_decided", decided):
        humans = conn.execute(
            f"SELECT n.dedup_key, n.text, d.label, s.seq FROM _decided d"
            f" JOIN {q(task, 'normalized_records')} n USING (record_id)"
            f" JOIN {q(task, 'drops')} s USING (drop_id)"
        ).fetchdf()
    rules = conn.execute(
        f"""
        SELECT dedup_key, text, label, seq FROM (
            SELECT n.dedup_key, n.text, r.rule_label AS label, d.seq,
                   row_number() OVER (PARTITION BY r.rule_label ORDER BY hash(n.dedup_key)) AS rn
            FROM {q(task, "rule_labels")} r
            JOIN {q(task, "normalized_records")} n USING (drop_id, record_id)
            JOIN {q(task, "drops")} d USING (drop_id)
            WHERE d.seq <= ? AND r.rule_confidence >= ? AND NOT r.rule_conflict
        ) WHERE rn <= ?
        """,
        [seq, spec.thresholds.auto_accept, RULE_TRAIN_CAP],
    ).fetchdf()
    example_texts = [
        (label, normalize.normalize_text(t)) for label, ts in spec.examples.items() for t in ts
    ]
    examples = pd.DataFrame(
        {
            "dedup_key": [normalize.dedup_key(t) for _, t in example_texts],
            "text": [t for _, t in example_texts],
            "label": [label for label, _ in example_texts],
            "seq": 0,
        }
    )
    parts = [
        humans.assign(weight=1.0, origin="human"),
        examples.assign(weight=1.0, origin="example"),
        rules.assign(weight=spec.model.rule_label_weight, origin="rule"),
    ]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=["dedup_key", "text", "label", "seq", "weight", "origin"])
    combined = pd.concat(parts, ignore_index=True)
    combined = combined[combined["text"].str.len() > 0]
    combined = combined.drop_duplicates("dedup_key", keep="first")
    # A canonical order: the queries above return rows in whatever order DuckDB's threads
    # finish, and the head's training (folds, optimizer sums) depends on row order.
    rank = combined["origin"].map({"human": 0, "example": 1, "rule": 2})
    return (
        combined.assign(_rank=rank)
        .sort_values(["_rank", "dedup_key"], kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def label_model_for(
    connect: Connect,
    spec: TaskSpec,
    seq: int,
    encoder: Encoder,
    store: ModelStore,
    *,
    progress: Progress | None = None,
    train: pd.DataFrame | None = None,
) -> tuple[LabelModel, int]:
    """The head trained on the current training set (`train`, else read now; loaded when this
    exact set was trained before), or the zero/few-shot prototype scorer while some label has
    too few examples; with the number of training texts newly encoded."""
    task = spec.name
    labels = spec.label_names
    index = {label: i for i, label in enumerate(labels)}
    if train is None:
        with connect() as conn:
            train = training_set(conn, spec, seq)
    if enough_examples(spec, train):
        y = train["label"].map(index).to_numpy(dtype=np.int64)
        w = train["weight"].to_numpy(dtype=np.float64)
        version = head_version(train["dedup_key"].tolist(), y, w, encoder=encoder.name)
        model = store.load(version)
        encoded = 0
        if model is None:
            x, encoded = embed_cached(
                connect,
                task,
                encoder,
                train["dedup_key"],
                train["text"],
                progress=progress,
                stage="embed training set",
                groups=train["seq"].astype("int64"),  # a new drop's texts batch together
            )
            reviewed = (train["origin"] == "human").to_numpy()
            model = train_head(
                x,
                y,
                w,
                n_labels=len(labels),
                version=version,
                reviewed=reviewed,
                calibrate_on=_unseen_by(encoder, train["dedup_key"]),
            )
            model.metrics["train_by_origin"] = json.dumps(train["origin"].value_counts().to_dict())
            store.save(model)
        # also when loaded: a run killed between saving and registering left no row
        _register_model(connect, task, model, encoder.name, train, str(store.path(version)))
        return model, encoded
    descriptions = [
        spec.model.label_template.format(label=label.replace("_", " "))
        + (f" {desc}" if desc else "")
        for label, desc in spec.labels.items()
    ]
    label_vectors = encoder.encode(descriptions)
    examples = []
    for label in labels:
        texts = [normalize.normalize_text(t) for t in spec.examples.get(label, [])]
        examples.append(
            encoder.encode(texts) if texts else np.zeros((0, encoder.dim), dtype=np.float32)
        )
    model = prototype_model(
        label_vectors, examples, temperature=spec.model.zero_shot_temperature, encoder=encoder.name
    )
    if store.load(model.version) is None:
        store.save(model)
    _register_model(connect, task, model, encoder.name, train, str(store.path(model.version)))
    return model, len(descriptions) + sum(len(e) for e in examples)


def _unseen_by(encoder: Encoder, keys: pd.Series) -> np.ndarray | None:
    """For a fine-tuned encoder, the rows whose texts it was not trained on (the head is
    calibrated on those); None for an encoder that was not fine-tuned."""
    seen = getattr(encoder, "trained_keys", None)
    if not seen:
        return None
    return ~keys.isin(seen).to_numpy()


def enough_examples(spec: TaskSpec, train: pd.DataFrame) -> bool:
    counts = train["label"].value_counts()
    minimum = spec.model.min_examples_per_label
    return all(counts.get(label, 0) >= minimum for label in spec.label_names)


def fast_model_for(
    connect: Connect, spec: TaskSpec, store: ModelStore, train: pd.DataFrame
) -> FastModel | None:
    """The n-gram tier trained on exactly the head's training set (loaded when this set was
    trained before); None when `model.fast_tier` is off, for image tasks, and on a cold start
    (some label below `model.min_examples_per_label`)."""
    settings = spec.model
    if not settings.fast_tier or spec.is_image or not enough_examples(spec, train):
        return None
    # SGD depends on the order of its rows, and SQL returns them in any order
    train = train.sort_values(["dedup_key", "label"], kind="stable").reset_index(drop=True)
    featurizer = NgramFeaturizer(
        n_features=settings.fast_tier_n_features,
        word_ngrams=settings.fast_tier_word_ngrams,
        char_ngrams=settings.fast_tier_char_ngrams,
    )
    index = {label: i for i, label in enumerate(spec.label_names)}
    y = train["label"].map(index).to_numpy(dtype=np.int64)
    w = train["weight"].to_numpy(dtype=np.float64)
    version = fast_model_version(featurizer, train["dedup_key"].tolist(), y, w)
    model = store.load(version, FastModel)
    if model is None:
        reviewed = (train["origin"] == "human").to_numpy()
        model = train_fast_model(
            featurizer,
            train["text"],
            y,
            w,
            n_labels=len(index),
            version=version,
            reviewed=reviewed,
        )
        model.model.metrics["train_by_origin"] = json.dumps(
            train["origin"].value_counts().to_dict()
        )
        store.save(model)
    # also when loaded: a run killed between saving and registering left no row
    _register_model(
        connect, spec.name, model.model, featurizer.name, train, str(store.path(version))
    )
    return model


def _register_model(
    connect: Connect,
    task: str,
    model: LabelModel,
    encoder: str,
    train: pd.DataFrame,
    artifact: str,
) -> None:
    with connect() as conn:
        conn.execute(
            f"INSERT INTO {q(task, 'model_versions')} VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [
                model.version,
                model.kind,
                encoder,
                now(),
                len(train),
                json.dumps(train["origin"].value_counts().to_dict()) if len(train) else "{}",
                json.dumps(model.metrics),
                artifact,
            ],
        )
