"""The embedding cache: sentence vectors kept in the task's embeddings table by (encoder,
dedup key), computed only for the texts it misses, and the scoring of a drop's texts in
slices through it."""

from collections.abc import Sequence

import numpy as np
import pandas as pd

from annotation_assets.core.classifier import LabelModel
from annotation_assets.core.encoder import DEFAULT_BATCH_SIZE
from annotation_assets.core.tiers import Encoder, Progress
from annotation_assets.warehouse.sql import Connect, q, registered

EMBED_CHUNK = 2048
SCORE_SLICE = 32_768


def encoder_batch_size(encoder: Encoder) -> int:
    """The encoder's batch size (test doubles without one get the default)."""
    return max(1, int(getattr(encoder, "batch_size", DEFAULT_BATCH_SIZE)))


def embed_cached(
    connect: Connect,
    task: str,
    encoder: Encoder,
    keys: Sequence[str] | pd.Series,
    texts: Sequence[str] | pd.Series,
    *,
    progress: Progress | None = None,
    stage: str = "embed",
    groups: Sequence[int] | pd.Series | None = None,
) -> tuple[np.ndarray, int]:
    """Embeddings for (key, text) pairs, reusing the warehouse cache and storing what was
    computed. Returns the (n, dim) matrix and how many texts were newly encoded.

    Float32 kernels give slightly different vectors for one text in differently shaped batches,
    so the encoder batches are formed over the whole request, whatever is cached: the distinct
    texts sorted by (group, length, key) and cut every `batch_size` within each group. A batch
    holding any uncached text is encoded whole, and only its uncached vectors are stored and
    used. A run killed halfway therefore re-runs to the very vectors an uninterrupted run
    computes. `groups` (e.g. the drop each text came from) keeps texts that arrive together in
    batches of their own, so a request that is mostly cached (a training set that gained one
    drop's texts) re-encodes little besides the new texts."""
    order = pd.DataFrame(
        {
            "dedup_key": list(keys),
            "text": list(texts),
            "group": np.zeros(len(keys), dtype=np.int64) if groups is None else list(groups),
        }
    )
    # One (n, dim) matrix, filled in place: no per-key dict of vectors, no second copy.
    result = np.empty((len(order), encoder.dim), dtype=np.float32)
    if len(order) == 0:
        return result, 0
    repeated = order["dedup_key"].duplicated().to_numpy()
    unique = order[~repeated].assign(_pos=np.flatnonzero(~repeated))
    unique = (
        unique.assign(_len=unique["text"].str.len())
        .sort_values(["group", "_len", "dedup_key"], kind="stable")
        .drop(columns="_len")
        .reset_index(drop=True)
    )
    position = unique["_pos"].to_numpy()  # request row of each unique row
    row_of = pd.Series(np.arange(len(unique)), index=unique["dedup_key"].to_numpy())
    batch_size = encoder_batch_size(encoder)
    starts = (unique.groupby("group", sort=False).cumcount() % batch_size == 0).to_numpy()
    batch = np.cumsum(starts) - 1
    missing = np.ones(len(unique), dtype=bool)
    with connect() as conn, registered(conn, "_want", unique[["dedup_key"]]):
        reader = conn.sql(
            f"SELECT e.dedup_key, e.vector FROM {q(task, 'embeddings')} e"
            " JOIN _want w USING (dedup_key) WHERE e.encoder = ?",
            params=[encoder.name],
        ).to_arrow_reader(EMBED_CHUNK)
        for part in reader:
            if part.num_rows == 0:
                continue
            flat = part.column(1).flatten().to_numpy(zero_copy_only=False)
            rows = row_of.loc[part.column(0).to_pylist()].to_numpy()
            result[position[rows]] = np.asarray(flat, dtype=np.float32).reshape(part.num_rows, -1)
            missing[rows] = False
    n_missing = int(missing.sum())
    todo = np.unique(batch[missing])  # batches to encode, in request order
    if progress and n_missing:
        progress(stage, 0, n_missing)
    done = 0
    per_chunk = max(1, EMBED_CHUNK // batch_size)
    for first in range(0, len(todo), per_chunk):
        rows = np.flatnonzero(np.isin(batch, todo[first : first + per_chunk]))
        part = unique.iloc[rows]
        # one call per batch: the encoder re-sorts what it gets by length, which would mix
        # batches of different groups
        bounds = np.flatnonzero(np.diff(batch[rows])) + 1
        texts_of = part["text"].tolist()
        emb = np.vstack(
            [
                encoder.encode(texts_of[a:b])
                for a, b in zip([0, *bounds.tolist()], [*bounds.tolist(), len(rows)], strict=True)
            ]
        )
        new = missing[rows]
        fresh = part["dedup_key"].to_numpy()[new]
        with connect() as conn:
            frame = pd.DataFrame(
                {"encoder": encoder.name, "dedup_key": fresh, "vector": list(emb[new])}
            )
            with registered(conn, "_emb", frame):
                conn.execute(
                    f"INSERT INTO {q(task, 'embeddings')} SELECT n.encoder, n.dedup_key,"
                    f" n.vector::FLOAT[] FROM _emb n ANTI JOIN {q(task, 'embeddings')} e"
                    " ON e.encoder = n.encoder AND e.dedup_key = n.dedup_key"
                )
        result[position[rows[new]]] = emb[new]
        done += len(fresh)
        if progress:
            progress(stage, done, n_missing)
    if repeated.any():  # a key asked for twice gets the vector of its first request row
        again = order["dedup_key"].to_numpy()[repeated]
        result[repeated] = result[position[row_of.loc[again].to_numpy()]]
    return result, n_missing


def embed_and_score(
    connect: Connect,
    task: str,
    encoder: Encoder,
    model: LabelModel,
    keys: pd.Series,
    texts: pd.Series,
    *,
    progress: Progress | None = None,
) -> tuple[np.ndarray, int]:
    """The model's probabilities for `texts` (in order) and how many were newly encoded.

    The texts are embedded and scored in slices of about SCORE_SLICE, so memory holds one
    slice's vectors rather than the whole drop's. The slices are cut from the texts sorted by
    (length, key), as `embed_cached` sorts a request, at a multiple of the encoder's batch size:
    the encoder batches are the ones a single request would form, and each slice is the same
    on every run, whatever the cache holds."""
    n = len(keys)
    batch = encoder_batch_size(encoder)
    step = max(1, SCORE_SLICE // batch) * batch
    keys = keys.reset_index(drop=True)
    texts = texts.reset_index(drop=True)
    # slices are cut over distinct keys, as embed_cached batches them; a repeated key's rows
    # go to the slice of its first row
    first = ~keys.duplicated().to_numpy()
    ranked = (
        pd.DataFrame({"_len": texts.str.len(), "key": keys})[first]
        .sort_values(["_len", "key"], kind="stable")["key"]
        .to_numpy()
    )
    slice_of = pd.Series(np.arange(len(ranked)) // step, index=ranked).loc[keys].to_numpy()
    n_slices = -(-len(ranked) // step)
    probs = np.zeros((n, 0))
    encoded = 0
    last: tuple[int, int] = (0, 0)
    for number in range(n_slices):
        part = np.flatnonzero(slice_of == number)
        report = None
        if progress is not None:
            # one running count over the slices; the total counts later slices' texts as
            # still to encode until their cache lookup says otherwise
            def report(
                stage: str,
                done: int,
                total: int | None,
                _base: int = encoded,
                _later: int = len(ranked) - min(len(ranked), (number + 1) * step),
            ) -> None:
                nonlocal last
                last = (_base + done, _base + (total or 0) + _later)
                progress(stage, *last)

        emb, new = embed_cached(
            connect,
            task,
            encoder,
            keys.iloc[part],
            texts.iloc[part],
            progress=report,
            stage="embed records",
        )
        scored = model.predict_proba(emb)
        if probs.shape[1] == 0:
            probs = np.zeros((n, scored.shape[1]))
        probs[part] = scored
        encoded += new
    if progress is not None and encoded and last != (encoded, encoded):
        progress("embed records", encoded, encoded)  # later slices were all cached
    return probs, encoded
