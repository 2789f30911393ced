"""The embedding cache gives every text the same vector whatever was cached before.

Real float32 encoders return slightly different vectors for one text in differently shaped
batches. The fake encoder below makes that effect large: each vector is shifted by a term
that depends on the whole batch it was encoded in."""

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence

import duckdb
import numpy as np
import pandas as pd
import pytest

from annotation_assets.stages.ingest import ingest_drop
from annotation_assets.stages.model import _texts_at
from annotation_assets.stages.normalize import normalize_drop
from annotation_assets.warehouse import embeddings
from annotation_assets.warehouse.tables import create_statements
from annotation_assets.warehouse.training import training_set
from resources.warehouse import Warehouse
from tests.conftest import make_spec, write_jsonl


class BatchSensitiveEncoder:
    name = "batchy@test"
    dim = 4

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.encoded: list[str] = []
        self.vectors: dict[str, np.ndarray] = {}  # what encode() returned, by text

    def encode(
        self, texts: Sequence[str], *, progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        # the real encoder's contract: length-sorted (stable) batches of `batch_size`
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = [texts[i] for i in idx]
            shape_term = (sum(len(t) for t in batch) + len(batch)) / 1000.0
            for i, text in zip(idx, batch, strict=True):
                seed = int.from_bytes(hashlib.sha1(text.encode()).digest()[:4], "big")
                out[i] = np.random.default_rng(seed).random(self.dim) + shape_term
                self.vectors[text] = out[i].copy()
            self.encoded.extend(batch)
        return out


def _warehouse(tmp_path) -> Callable[[], contextlib.AbstractContextManager]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as conn:
        for statement in create_statements("t"):
            conn.execute(statement)

    @contextlib.contextmanager
    def connect() -> Iterator[duckdb.DuckDBPyConnection]:
        with duckdb.connect(str(path)) as conn:
            yield conn

    return connect


def _texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ["good", "bad", "slow", "box", "refund", "great", "meh", "late", "ok"]
    return [" ".join(rng.choice(words, size=int(rng.integers(1, 12)))) + f" #{i}" for i in range(n)]


@pytest.mark.parametrize("cached_share", [0.0, 0.3, 0.9])
def test_vectors_do_not_depend_on_what_was_cached(tmp_path, monkeypatch, cached_share):
    monkeypatch.setattr(embeddings, "EMBED_CHUNK", 32)  # several chunks, as a kill would cut
    texts = _texts(300, seed=1)
    keys = [f"k{i}" for i in range(len(texts))]
    request = list(range(len(texts))) + [5, 7, 5]  # repeated keys come back in place

    clean = _warehouse(tmp_path / "clean")
    fresh = BatchSensitiveEncoder(16)
    expected, n_clean = embeddings.embed_cached(
        clean, "t", fresh, [keys[i] for i in request], [texts[i] for i in request]
    )
    assert n_clean == len(texts)
    # every row is the vector the encoder gave its text, repeated keys included
    np.testing.assert_array_equal(expected, np.stack([fresh.vectors[texts[i]] for i in request]))

    # a killed run stored some of the request's vectors (any subset of them);
    # the re-run must produce exactly the uninterrupted run's matrix
    killed = _warehouse(tmp_path / "killed")
    rng = np.random.default_rng(2)
    first = rng.permutation(len(texts))[: int(cached_share * len(texts))]
    if len(first):
        with killed() as conn:  # what the uninterrupted run stored for those keys
            conn.executemany(
                "INSERT INTO t.embeddings VALUES (?, ?, ?)",
                [("batchy@test", keys[i], expected[i].tolist()) for i in sorted(first)],
            )
    encoder = BatchSensitiveEncoder(16)
    again, n_again = embeddings.embed_cached(
        killed, "t", encoder, [keys[i] for i in request], [texts[i] for i in request]
    )
    assert n_again == len(texts) - len(first)
    np.testing.assert_array_equal(again, expected)
    assert set(encoder.encoded) >= {texts[i] for i in set(range(len(texts))) - set(first)}


def test_a_different_request_reuses_cached_vectors_unchanged(tmp_path):
    connect = _warehouse(tmp_path)
    texts = _texts(100, seed=3)
    keys = [f"k{i}" for i in range(100)]
    first, _ = embeddings.embed_cached(
        connect, "t", BatchSensitiveEncoder(8), keys[:60], texts[:60]
    )
    # overlapping request: batches mix cached and new texts; cached vectors are kept
    encoder = BatchSensitiveEncoder(8)
    second, n_new = embeddings.embed_cached(connect, "t", encoder, keys[40:], texts[40:])
    assert n_new == 40
    np.testing.assert_array_equal(second[:20], first[40:60])
    with connect() as conn:
        assert conn.execute("SELECT count(*) FROM t.embeddings").fetchone() == (100,)


def test_empty_request(tmp_path):
    matrix, n = embeddings.embed_cached(_warehouse(tmp_path), "t", BatchSensitiveEncoder(8), [], [])
    assert matrix.shape == (0, 4) and n == 0


def test_the_training_set_comes_out_in_one_order_whatever_order_the_tables_hold(tmp_path):
    """The head's training depends on row order, and its version does not, so one training
    set must always come in one order, whatever order DuckDB returns rows in."""
    from pathlib import Path

    from annotation_assets.core.spec import load_task_spec

    spec = load_task_spec(Path(__file__).resolve().parents[1] / "tasks" / "product_reviews.yaml")
    task = spec.name
    rng = np.random.default_rng(4)
    n = 400
    texts = _texts(n, seed=5)
    labels = rng.choice(["negative", "positive"], size=n)

    def build(order: np.ndarray, folder: str):
        connect = _warehouse(tmp_path / folder)
        with connect() as conn:
            for statement in create_statements(task):
                conn.execute(statement)
            conn.execute(f"INSERT INTO {task}.drops VALUES ('d1', 1, 'x', now())")
            for i in order:
                conn.execute(
                    f"INSERT INTO {task}.normalized_records (drop_id, row_num, record_id, text,"
                    " dedup_key, source_file, ingested_at) VALUES ('d1', ?, ?, ?, ?, 'f', now())",
                    [int(i), f"r{i}", texts[i], f"key{i:04d}"],
                )
                conn.execute(
                    f"INSERT INTO {task}.rule_labels VALUES ('d1', ?, ?, 0.9, [], false)",
                    [f"r{i}", str(labels[i])],
                )
            return training_set(conn, spec, 1)

    forward = build(np.arange(n), "forward")
    shuffled = build(rng.permutation(n), "shuffled")
    assert len(forward) == n + sum(len(v) for v in spec.examples.values())
    # canonical: examples before rule labels, each block sorted by key (DuckDB returns the
    # rule rows in whatever order its threads finish, e.g. one label's rows before the other's)
    assert forward["origin"].tolist() == sorted(forward["origin"], key=["example", "rule"].index)
    for _, block in forward.groupby("origin"):
        assert block["dedup_key"].is_monotonic_increasing
    assert forward.equals(shuffled)


def test_embeddings_have_no_in_memory_index_and_are_stored_once(tmp_path):
    """DuckDB cannot spill an ART index, so a unique index on embeddings would exhaust the
    warehouse's memory_limit once millions of texts were cached; earlier warehouses lose it."""
    connect = _warehouse(tmp_path)
    with connect() as conn:
        conn.execute('CREATE UNIQUE INDEX embeddings_key ON "t".embeddings (encoder, dedup_key)')
        for statement in create_statements("t"):  # what ensure_task runs on every start
            conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM duckdb_indexes()").fetchone() == (0,)
    texts = _texts(50, seed=6)
    keys = [f"k{i}" for i in range(50)]
    for _ in range(2):  # the second request finds everything cached
        embeddings.embed_cached(connect, "t", BatchSensitiveEncoder(8), keys, texts)
    embeddings.embed_cached(connect, "t", BatchSensitiveEncoder(8), keys + ["new"], texts + ["x"])
    with connect() as conn:
        rows = conn.execute("SELECT count(*), count(DISTINCT dedup_key) FROM t.embeddings")
        assert rows.fetchone() == (51, 51)


def test_a_new_group_batches_on_its_own_so_a_mostly_cached_request_encodes_little(tmp_path):
    connect = _warehouse(tmp_path)
    texts = _texts(200, seed=8)
    keys = [f"k{i}" for i in range(200)]
    old, new = list(range(180)), list(range(180, 200))  # a training set that gained 20 texts
    embeddings.embed_cached(
        connect,
        "t",
        BatchSensitiveEncoder(16),
        [keys[i] for i in old],
        [texts[i] for i in old],
        groups=[1] * len(old),
    )
    encoder = BatchSensitiveEncoder(16)
    both, n_new = embeddings.embed_cached(
        connect, "t", encoder, keys, texts, groups=[1] * len(old) + [2] * len(new)
    )
    assert n_new == 20
    assert sorted(encoder.encoded) == sorted(texts[i] for i in new)  # nothing re-encoded

    # and the vectors do not depend on what was cached when the request started
    fresh, _ = embeddings.embed_cached(
        _warehouse(tmp_path / "fresh"),
        "t",
        BatchSensitiveEncoder(16),
        keys,
        texts,
        groups=[1] * len(old) + [2] * len(new),
    )
    np.testing.assert_array_equal(both, fresh)


class RowWiseModel:
    """A stand-in head whose probabilities depend on each row alone."""

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        e = np.exp(x[:, :2].astype(np.float64))
        return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("every", [0, 2])
def test_model_stage_scores_slices_that_match_one_request(tmp_path, monkeypatch, every):
    texts = _texts(100, seed=5)
    keys = [f"k{i}" for i in range(100)]
    whole, _ = embeddings.embed_cached(
        _warehouse(tmp_path / "whole"), "t", BatchSensitiveEncoder(4), keys, texts
    )
    sliced = _warehouse(tmp_path / "sliced")
    stored = list(range(0, 100, every)) if every else []  # what a killed run stored
    if stored:
        with sliced() as conn:
            conn.executemany(
                "INSERT INTO t.embeddings VALUES (?, ?, ?)",
                [("batchy@test", keys[i], whole[i].tolist()) for i in stored],
            )
    cached = len(stored)
    monkeypatch.setattr(embeddings, "SCORE_SLICE", 10)  # slices of 8 texts: 13 calls
    reports: list[tuple[int, int | None]] = []
    probs, n_new = embeddings.embed_and_score(
        sliced,
        "t",
        BatchSensitiveEncoder(4),
        RowWiseModel(),
        pd.Series(keys, index=range(500, 600)),  # any index: results follow the order
        pd.Series(texts, index=range(500, 600)),
        progress=lambda stage, done, total: reports.append((done, total)),
    )
    assert n_new == 100 - cached
    # the slices formed the encoder batches one request forms: the same vectors, bit for bit
    np.testing.assert_array_equal(probs, RowWiseModel().predict_proba(whole))
    done = [d for d, _ in reports]
    assert done == sorted(done) and reports[-1] == (n_new, n_new)
    assert all(total is not None and d <= total for d, total in reports)


def test_progress_completes_when_the_last_slices_are_cached(tmp_path, monkeypatch):
    texts = _texts(64, seed=6)
    keys = [f"k{i}" for i in range(64)]
    connect = _warehouse(tmp_path)
    encoder = BatchSensitiveEncoder(4)
    # cache everything but the shortest texts, which the first slice holds
    by_length = sorted(range(64), key=lambda i: (len(texts[i]), keys[i]))
    embeddings.embed_cached(
        connect, "t", encoder, [keys[i] for i in by_length[8:]], [texts[i] for i in by_length[8:]]
    )
    monkeypatch.setattr(embeddings, "SCORE_SLICE", 8)  # 8 slices; only the first has misses
    reports: list[tuple[int, int | None]] = []
    _, n_new = embeddings.embed_and_score(
        connect,
        "t",
        BatchSensitiveEncoder(4),
        RowWiseModel(),
        pd.Series(keys),
        pd.Series(texts),
        progress=lambda stage, done, total: reports.append((done, total)),
    )
    assert n_new == 8
    assert reports[-1] == (8, 8)


def test_repeated_keys_are_scored_like_their_first_row(tmp_path, monkeypatch):
    texts = _texts(40, seed=7)
    keys = [f"k{i}" for i in range(40)]
    rows = list(range(40)) + [3, 17, 3]
    connect = _warehouse(tmp_path)
    monkeypatch.setattr(embeddings, "SCORE_SLICE", 8)
    probs, n_new = embeddings.embed_and_score(
        connect,
        "t",
        BatchSensitiveEncoder(4),
        RowWiseModel(),
        pd.Series([keys[i] for i in rows]),
        pd.Series([texts[i] for i in rows]),
    )
    assert n_new == 40
    np.testing.assert_array_equal(probs[40:], probs[[3, 17, 3]])
    whole, _ = embeddings.embed_cached(
        _warehouse(tmp_path / "whole"), "t", BatchSensitiveEncoder(4), keys, texts
    )
    np.testing.assert_array_equal(probs[:40], RowWiseModel().predict_proba(whole))


def test_texts_whose_key_changed_since_the_stage_read_it_fail_the_stage(tmp_path):
    spec = make_spec()
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    warehouse.ensure_task(spec.name)
    records = [{"id": f"r{i}", "text": text} for i, text in enumerate(_texts(4, seed=8))]
    folder = write_jsonl(tmp_path / "drops" / "d1", records).parent
    ingest_drop(warehouse.connect, spec, "d1", folder)
    normalize_drop(warehouse.connect, spec, "d1")
    with warehouse.connect() as conn:
        frame = conn.execute(
            f'SELECT record_id, dedup_key, text FROM "{spec.name}".normalized_records'
            " ORDER BY row_num"
        ).fetchdf()
    at = np.array([2, 0])
    assert _texts_at(warehouse.connect, spec.name, "d1", frame, at) == list(frame["text"].iloc[at])
    # the drop was normalized again meanwhile: record r0 now holds another text
    stale = frame.assign(dedup_key=frame["dedup_key"].where(frame["record_id"] != "r0", "old"))
    with pytest.raises(LookupError, match="1 records changed while the stage ran"):
        _texts_at(warehouse.connect, spec.name, "d1", stale, at)
