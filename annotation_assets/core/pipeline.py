"""The stage computations of one drop (partition), over a DuckDB warehouse; no Dagster here.

Each stage reads its inputs from the task's schema, computes, replaces the drop's rows of its
output tables in one transaction, and returns what it measured. Stages take a `connect`
factory rather than a connection so long computations (the encoder) hold no database lock.
"""

import json
import os
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar, overload

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from annotation_assets.core import dedup, images, ingest, normalize, reconcile
from annotation_assets.core.arrays import ramps
from annotation_assets.core.calibration import threshold_what_if
from annotation_assets.core.classifier import (
    HEAD,
    LabelModel,
    head_version,
    prototype_model,
    train_head,
)
from annotation_assets.core.encoder import DEFAULT_BATCH_SIZE
from annotation_assets.core.fast_model import (
    NGRAM,
    FastModel,
    NgramFeaturizer,
    fast_model_version,
    train_fast_model,
)
from annotation_assets.core.routing import NO_LABEL, Routed, StageVotes, route_by_confidence
from annotation_assets.core.rules import (
    LabelingFunction,
    apply_labeling_functions,
    build_labeling_functions,
    combine_rule_votes,
    rule_summary,
)
from annotation_assets.core.spec import TaskSpec
from annotation_assets.core.tables import column_names, first_row, scalar, transaction

Connect = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
Progress = Callable[[str, int, int | None], None]


SOURCES = ("rule", "model", "heavy", "human")
IMAGE_TEXT_SOURCE = "model_text"
TEXT_TOO_LONG = "text_too_long"
EMPTY_TEXT = "empty_text"
DUPLICATE_ID = "duplicate_id"
CHUNK_ROWS = 50_000


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _q(task: str, table: str) -> str:
    return f'"{task}"."{table}"'


def _replace(
    conn: duckdb.DuckDBPyConnection,
    task: str,
    table: str,
    drop_id: str,
    frame: pd.DataFrame | pa.Table,
) -> None:
    conn.execute(f"DELETE FROM {_q(task, table)} WHERE drop_id = ?", [drop_id])
    _append(conn, task, table, frame)


def _append(
    conn: duckdb.DuckDBPyConnection, task: str, table: str, frame: pd.DataFrame | pa.Table
) -> None:
    if isinstance(frame, pa.Table):
        if frame.num_rows == 0:
            return
        cols = [c for c in column_names(table) if c in frame.column_names]
        incoming: pd.DataFrame | pa.Table = frame.select(cols)
    else:
        if frame.empty:
            return
        cols = [c for c in column_names(table) if c in frame.columns]
        incoming = frame[cols]
    col_sql = ", ".join(f'"{c}"' for c in cols)
    name = f"_incoming_{table}"
    conn.register(name, incoming)
    try:
        conn.execute(f"INSERT INTO {_q(task, table)} ({col_sql}) SELECT {col_sql} FROM {name}")
    finally:
        conn.unregister(name)


def drop_seq(conn: duckdb.DuckDBPyConnection, task: str, drop_id: str) -> int:
    row = first_row(
        conn.execute(f"SELECT seq FROM {_q(task, 'drops')} WHERE drop_id = ?", [drop_id])
    )
    if row is None:
        raise LookupError(f"drop {drop_id!r} of task {task!r} has not been ingested")
    return int(row[0])


# ---------------------------------------------------------------------------------- ingest


@dataclass
class IngestStats:
    ingested: int = 0
    parse_errors: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)


RAW_TABLE_COLUMNS = column_names("raw_records")


def ingest_drop(
    connect: Connect,
    spec: TaskSpec,
    drop_id: str,
    drop_dir: Path,
    *,
    location: str | None = None,
    progress: Progress | None = None,
) -> IngestStats:
    """Streams every record file of the drop into raw_records (bad lines kept with a reason)."""
    task = spec.name
    stats = IngestStats()
    now = _now()
    total_bytes = sum(p.stat().st_size for p in ingest.list_drop_files(drop_dir) if p.is_file())
    done_bytes = 0
    if progress:
        progress("ingest", 0, None)
    fields = ingest.FieldMap(id=spec.fields.id, text=spec.fields.text)
    with connect() as conn:
        # Rows go to a temporary table first, outside any transaction: DuckDB keeps a
        # transaction's uncommitted rows in memory, but spills a temporary table to disk
        # beyond the warehouse's memory_limit. One short transaction then publishes the drop.
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE _raw AS SELECT * FROM {_q(task, 'raw_records')} LIMIT 0"
        )
        chunks = (
            images.iter_image_raw_chunks(
                drop_dir,
                id_field=spec.fields.id,
                max_pixels=spec.images.max_pixels,
                chunk_size=CHUNK_ROWS,
            )
            if spec.is_image
            else ingest.iter_raw_chunks(
                drop_dir,
                fields=fields,
                max_line_bytes=spec.limits.max_line_bytes,
                chunk_size=CHUNK_ROWS,
            )
        )
        for chunk in chunks:
            chunk.insert(0, "drop_id", drop_id)
            chunk.insert(1, "row_num", np.arange(stats.ingested, stats.ingested + len(chunk)))
            chunk["ingested_at"] = now
            _insert_temp(conn, "_raw", chunk[[c for c in RAW_TABLE_COLUMNS if c in chunk.columns]])
            stats.ingested += len(chunk)
            for reason, n in chunk["error"].value_counts().items():
                stats.parse_errors[str(reason)] = stats.parse_errors.get(str(reason), 0) + int(n)
            for name, n in chunk["source_file"].value_counts().items():
                stats.files[str(name)] = stats.files.get(str(name), 0) + int(n)
            if progress:
                done_bytes += int(chunk["payload"].fillna("").str.len().sum()) + len(chunk)
                progress(
                    "ingest",
                    stats.ingested,
                    _estimated_total(stats.ingested, done_bytes, total_bytes),
                )
        with transaction(conn):
            conn.execute(
                f"INSERT INTO {_q(task, 'drops')} SELECT ?, coalesce(max(seq), 0) + 1, ?, ? "
                f"FROM {_q(task, 'drops')} ON CONFLICT DO NOTHING",
                [drop_id, location or str(drop_dir), now],
            )
            conn.execute(f"DELETE FROM {_q(task, 'raw_records')} WHERE drop_id = ?", [drop_id])
            # a plain scan keeps insertion (row_num) order
            conn.execute(f"INSERT INTO {_q(task, 'raw_records')} SELECT * FROM _raw")
        conn.execute("DROP TABLE _raw")
    return stats


def _estimated_total(done: int, done_bytes: int, total_bytes: int) -> int | None:
    """Records in the whole drop, extrapolated from the bytes read so far (for an ETA);
    None when nothing can be estimated (e.g. Parquet, whose rows carry no raw line)."""
    if done_bytes <= done or total_bytes <= 0:
        return None
    return max(done, round(done * total_bytes / done_bytes))


# ------------------------------------------------------------------------------- normalize


@dataclass
class NormalizeStats:
    normalized: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)


def _iter_chunks(
    conn: duckdb.DuckDBPyConnection, sql: str, params: list[Any]
) -> Iterator[pd.DataFrame]:
    """Streams a query's rows in DataFrames of about CHUNK_ROWS, on a cursor of its own so the
    caller may keep using `conn` meanwhile."""
    cursor = conn.cursor()
    cursor.execute(sql, params)
    while True:
        chunk = cursor.fetch_df_chunk(vectors_per_chunk=max(1, CHUNK_ROWS // 2048))
        if chunk.empty:
            return
        yield chunk


def normalize_drop(
    connect: Connect, spec: TaskSpec, drop_id: str, *, progress: Progress | None = None
) -> NormalizeStats:
    """Cleans text, quarantines unusable rows, and drops exact and near duplicates (within the
    drop and against the records every other drop of the task kept) with a pointer to the kept
    record. Whichever drop is normalized first keeps a shared text, so concurrent runs and
    re-runs agree."""
    task = spec.name
    stats = NormalizeStats()
    with connect() as conn:
        # The candidates are built in temporary tables outside any transaction, where DuckDB
        # can spill them to disk beyond the warehouse's memory_limit; one transaction then
        # replaces the drop's rows.
        drop_seq(conn, task, drop_id)
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE _cand (row_num BIGINT, record_id VARCHAR, text VARCHAR,"
            " dedup_key VARCHAR, minhash UINTEGER[], meta VARCHAR, source_file VARCHAR,"
            " line_no BIGINT, ingested_at TIMESTAMP, payload VARCHAR)"
        )
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE _quar (row_num BIGINT, source_file VARCHAR,"
            " line_no BIGINT, record_id VARCHAR, reason VARCHAR, detail VARCHAR, payload VARCHAR)"
        )
        total_raw = int(
            scalar(
                conn, f"SELECT count(*) FROM {_q(task, 'raw_records')} WHERE drop_id = ?", [drop_id]
            )
        )
        if progress:
            progress("normalize", 0, total_raw)
        raw_sql = (
            "SELECT row_num, source_file, line_no, record_id, text, meta, payload, error, detail,"
            f" ingested_at FROM {_q(task, 'raw_records')} WHERE drop_id = ? ORDER BY row_num"
        )
        done = 0
        for chunk in _iter_chunks(conn, raw_sql, [drop_id]):
            cand, quar = _normalize_chunk(chunk, spec)
            _insert_temp(conn, "_cand", cand)
            _insert_temp(conn, "_quar", quar)
            done += len(chunk)
            if progress:
                progress("normalize", done, total_raw)
        _mark_exact_duplicates(conn, task, drop_id)
        near = (
            _near_duplicate_images(conn, task, drop_id, spec.images.phash_max_distance)
            if spec.is_image
            else _near_duplicates(conn, task, drop_id)
        )
        if not near.empty:
            near["duplicate_of_drop"] = near["duplicate_of_drop"].fillna(drop_id)
            conn.register("_near_df", near)
            conn.execute(
                "INSERT INTO _dups SELECT n.row_num, n.record_id, 'near', n.duplicate_of_drop,"
                " n.duplicate_of_id, n.similarity FROM _near_df n"
            )
            conn.unregister("_near_df")
        with transaction(conn):
            for table in ("quarantine", "duplicates", "normalized_records"):
                conn.execute(f"DELETE FROM {_q(task, table)} WHERE drop_id = ?", [drop_id])
            conn.execute(
                f"INSERT INTO {_q(task, 'quarantine')} SELECT ?, row_num, source_file, line_no,"
                " record_id, reason, detail, payload FROM _quar",
                [drop_id],
            )
            conn.execute(
                f"INSERT INTO {_q(task, 'duplicates')} SELECT ?, row_num, record_id, kind,"
                " duplicate_of_drop, duplicate_of_id, similarity FROM _dups",
                [drop_id],
            )
            conn.execute(
                f"INSERT INTO {_q(task, 'normalized_records')} SELECT ?, c.row_num, c.record_id,"
                " c.text, c.dedup_key, c.minhash, c.meta, c.source_file, c.line_no,"
                " c.ingested_at FROM _cand c ANTI JOIN _dups d ON c.row_num = d.row_num"
                " ANTI JOIN _quar q ON c.row_num = q.row_num ORDER BY c.row_num",
                [drop_id],
            )
        for reason, n in conn.execute("SELECT reason, count(*) FROM _quar GROUP BY 1").fetchall():
            stats.quarantined[reason] = int(n)
        for kind, n in conn.execute("SELECT kind, count(*) FROM _dups GROUP BY 1").fetchall():
            stats.duplicates[kind] = int(n)
        stats.normalized = int(
            scalar(
                conn,
                f"SELECT count(*) FROM {_q(task, 'normalized_records')} WHERE drop_id = ?",
                [drop_id],
            )
        )
        for temp in ("_cand", "_quar", "_dups", "_classified"):
            conn.execute(f"DROP TABLE IF EXISTS {temp}")
    return stats


def _insert_temp(conn: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    if frame.empty:
        return
    conn.register("_chunk", frame)
    try:
        cols = ", ".join(f'"{c}"' for c in frame.columns)
        conn.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _chunk")
    finally:
        conn.unregister("_chunk")


def _normalize_chunk(chunk: pd.DataFrame, spec: TaskSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    bad = chunk["error"].notna()
    quar = chunk.loc[bad, ["row_num", "source_file", "line_no", "record_id", "payload"]].copy()
    quar["reason"] = chunk.loc[bad, "error"]
    quar["detail"] = chunk.loc[bad, "detail"]
    good = chunk.loc[~bad].copy()
    good["text"] = normalize.normalize_texts(good["text"].tolist())
    lengths = good["text"].map(len).astype("int64")  # `.str` refuses an empty object column
    empty = lengths == 0
    too_long = lengths > spec.limits.max_text_chars
    rejected = good.loc[empty | too_long, ["row_num", "source_file", "line_no", "record_id"]].copy()
    rejected["payload"] = chunk.loc[rejected.index, "payload"]
    rejected["reason"] = np.where(empty[empty | too_long], EMPTY_TEXT, TEXT_TOO_LONG)
    rejected["detail"] = np.where(
        empty[empty | too_long],
        "no text left after cleanup",
        lengths[empty | too_long].astype(str) + f" chars > {spec.limits.max_text_chars}",
    )
    good = good.loc[~(empty | too_long)]
    if spec.is_image:
        content = [json.loads(m)["sha256"] for m in good["meta"]]
        good["dedup_key"] = [h[:32] for h in content]
        good["minhash"] = None
    else:
        good["dedup_key"] = [normalize.dedup_key(t) for t in good["text"]]
        good["minhash"] = _list_column(dedup.minhash_signatures(good["text"].tolist()), good.index)
    cand = good[
        [
            "row_num",
            "record_id",
            "text",
            "dedup_key",
            "minhash",
            "meta",
            "source_file",
            "line_no",
            "ingested_at",
            "payload",
        ]
    ]
    return cand, pd.concat([quar, rejected], ignore_index=True)


def _list_column(matrix: np.ndarray, index: pd.Index) -> pd.Series:
    """An (n, k) array as a pandas column of length-k lists backed by Arrow: DuckDB reads it
    without a Python object per value (millions of ints would fragment the heap)."""
    flat = pa.array(np.ascontiguousarray(matrix).ravel())
    lists = pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1]).cast(pa.list_(flat.type))
    return pd.Series(pd.arrays.ArrowExtensionArray(lists), index=index)


def _mark_exact_duplicates(conn: duckdb.DuckDBPyConnection, task: str, drop_id: str) -> None:
    """Fills temp table _dups with exact duplicates and moves id collisions to _quar.

    Precedence per candidate: its id was kept by another drop (same text: duplicate; other
    text: quarantined as duplicate_id); else its id occurred earlier in this drop (likewise);
    else its text was kept by another drop; else its text occurred earlier in this drop."""
    conn.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _classified AS
        WITH earlier AS (
            SELECT n.record_id, n.dedup_key, n.drop_id, d.seq
            FROM {_q(task, "normalized_records")} n JOIN {_q(task, "drops")} d USING (drop_id)
            WHERE n.drop_id <> $drop
        ),
        firsts AS (
            SELECT row_num, record_id, dedup_key,
                   first_value(row_num) OVER (PARTITION BY record_id ORDER BY row_num) AS id_first,
                   first_value(dedup_key) OVER (PARTITION BY record_id ORDER BY row_num) AS id_key,
                   first_value(row_num) OVER (PARTITION BY dedup_key ORDER BY row_num) AS key_first,
                   first_value(record_id) OVER (PARTITION BY dedup_key ORDER BY row_num) AS key_id
            FROM _cand
        ),
        by_id AS (
            SELECT record_id, min_by(dedup_key, seq) AS dedup_key, min_by(drop_id, seq) AS drop_id
            FROM earlier GROUP BY record_id
        ),
        by_key AS (
            SELECT dedup_key, min_by(record_id, seq) AS record_id, min_by(drop_id, seq) AS drop_id
            FROM earlier GROUP BY dedup_key
        )
        SELECT f.*, i.dedup_key AS old_id_key, i.drop_id AS old_id_drop,
               k.record_id AS old_key_id, k.drop_id AS old_key_drop
        FROM firsts f
        LEFT JOIN by_id i ON f.record_id = i.record_id
        LEFT JOIN by_key k ON f.dedup_key = k.dedup_key
        """,
        {"drop": drop_id},
    )
    conn.execute(
        """
        CREATE OR REPLACE TEMP TABLE _dups AS
        SELECT row_num, record_id, 'exact' AS kind,
               CASE WHEN old_id_drop IS NOT NULL THEN old_id_drop
                    WHEN row_num <> id_first THEN $drop
                    ELSE coalesce(old_key_drop, $drop) END AS duplicate_of_drop,
               CASE WHEN old_id_drop IS NOT NULL OR row_num <> id_first THEN record_id
                    ELSE coalesce(old_key_id, key_id) END AS duplicate_of_id,
               1.0::DOUBLE AS similarity
        FROM _classified
        WHERE (old_id_drop IS NOT NULL AND old_id_key = dedup_key)
           OR (old_id_drop IS NULL AND row_num <> id_first AND id_key = dedup_key)
           OR (old_id_drop IS NULL AND row_num = id_first
               AND (old_key_drop IS NOT NULL OR row_num <> key_first))
        """,
        {"drop": drop_id},
    )
    conn.execute(
        """
        INSERT INTO _quar
        SELECT c.row_num, c.source_file, c.line_no, c.record_id, 'duplicate_id',
               CASE WHEN k.old_id_drop IS NOT NULL
                    THEN 'id already used in drop ' || k.old_id_drop || ' for another text'
                    ELSE 'id already used earlier in this drop for another text' END,
               c.payload
        FROM _classified k JOIN _cand c USING (row_num)
        WHERE (k.old_id_drop IS NOT NULL AND k.old_id_key <> k.dedup_key)
           OR (k.old_id_drop IS NULL AND k.row_num <> k.id_first AND k.id_key <> k.dedup_key)
        """
    )


_NEAR_COLUMNS = ["row_num", "record_id", "duplicate_of_drop", "duplicate_of_id", "similarity"]


def _near_candidate_queries(
    task: str, drop_id: str, new_columns: str, old_columns: str
) -> tuple[tuple[str, list[Any]], tuple[str, list[Any]]]:
    """SQL (with parameters) selecting `new_columns` of the candidates still standing (in row
    order) and `old_columns` of every other drop's kept records (in drop, then row order)."""
    new = (
        f"SELECT {new_columns} FROM _cand c"
        " ANTI JOIN _dups d ON c.row_num = d.row_num ANTI JOIN _quar q ON c.row_num = q.row_num"
        " ORDER BY c.row_num"
    )
    old = (
        f"SELECT {old_columns} FROM {_q(task, 'normalized_records')} c"
        f" JOIN {_q(task, 'drops')} d USING (drop_id) WHERE c.drop_id <> ?"
        " ORDER BY d.seq, c.drop_id, c.row_num"
    )
    return (new, []), (old, [drop_id])


def _near_candidates(
    conn: duckdb.DuckDBPyConnection, task: str, drop_id: str, column: str
) -> tuple[pa.Table, pa.Table]:
    """The candidates still standing (in row order) and every other drop's kept records,
    with one fingerprint column `fp` (an SQL expression over the table), as Arrow tables (a
    million fingerprints as Python objects would take gigabytes)."""
    (new_sql, new_args), (old_sql, old_args) = _near_candidate_queries(
        task,
        drop_id,
        f"c.row_num, c.record_id, {column} AS fp",
        f"c.drop_id, c.record_id, {column} AS fp",
    )
    new = conn.sql(new_sql, params=new_args).to_arrow_table()
    old = conn.sql(old_sql, params=old_args).to_arrow_table()
    return new, old


def _signature_matrix(reader: pa.RecordBatchReader, ids: pa.Table) -> np.ndarray:
    """A (rows of `ids`, NUM_PERM) uint32 matrix filled batch by batch from a stream of
    `ids`' columns plus a last column of MinHash signatures, so only one batch is ever held
    twice; each batch's ids must be the next rows of `ids` (the same rows, in the same order)."""
    out = np.empty((ids.num_rows, dedup.NUM_PERM), dtype=np.uint32)
    at = 0
    for part in reader:
        if part.num_rows == 0:
            continue
        expected = ids.slice(at, part.num_rows)
        if any(
            not part.column(i).equals(expected.column(i).combine_chunks())
            for i in range(ids.num_columns)
        ):
            raise LookupError(f"MinHash signatures out of step with their records at row {at}")
        column = part.column(ids.num_columns)
        if column.null_count:
            raise ValueError(f"{column.null_count} records have no MinHash signature")
        flat = column.flatten().to_numpy(zero_copy_only=False)
        out[at : at + len(column)] = np.asarray(flat, dtype=np.uint32).reshape(len(column), -1)
        at += len(column)
    if at != ids.num_rows:
        raise LookupError(f"expected {ids.num_rows} MinHash signatures, read {at}")
    return out


def _near_duplicates(conn: duckdb.DuckDBPyConnection, task: str, drop_id: str) -> pd.DataFrame:
    """Near duplicates (MinHash) among the candidates still standing, against other drops'
    kept records and earlier candidates of this drop. The signatures are streamed into their
    matrices by a second query of the same rows, never held as Arrow lists as well."""
    new_ids, old_ids = "c.row_num, c.record_id", "c.drop_id, c.record_id"
    (new_sql, new_args), (old_sql, old_args) = _near_candidate_queries(
        task, drop_id, new_ids, old_ids
    )
    new = conn.sql(new_sql, params=new_args).to_arrow_table()
    if new.num_rows == 0:
        return pd.DataFrame(columns=_NEAR_COLUMNS)
    old = conn.sql(old_sql, params=old_args).to_arrow_table()
    (sig_new_sql, _), (sig_old_sql, _) = _near_candidate_queries(
        task, drop_id, f"{new_ids}, c.minhash", f"{old_ids}, c.minhash"
    )
    new_sigs = _signature_matrix(
        conn.sql(sig_new_sql, params=new_args).to_arrow_reader(SIGNATURE_BATCH), new
    )
    old_sigs = _signature_matrix(
        conn.sql(sig_old_sql, params=old_args).to_arrow_reader(SIGNATURE_BATCH), old
    )
    new_keys, old_keys = _IndexKeys("n", new.num_rows), _IndexKeys("o", old.num_rows)
    pairs = dedup.near_duplicate_pairs(new_keys, new_sigs, old_keys, old_sigs)
    del new_sigs, old_sigs
    return _pointers(pairs, new, old)


class _IndexKeys(Sequence[str]):
    """The keys `<prefix>0`, `<prefix>1`, ... made on demand (a million strings cost ~60 MB)."""

    def __init__(self, prefix: str, n: int) -> None:
        self.prefix, self.n = prefix, n

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return f"{self.prefix}{i % self.n}"


def _near_duplicate_images(
    conn: duckdb.DuckDBPyConnection, task: str, drop_id: str, max_distance: int
) -> pd.DataFrame:
    """Near-duplicate images: perceptual hashes within `max_distance` bits (Hamming) of a
    kept image of another drop or an earlier image of this drop."""
    new_fp, old_fp = _near_candidates(conn, task, drop_id, "json_extract_string(c.meta, '$.phash')")
    if new_fp.num_rows == 0:
        return pd.DataFrame(columns=_NEAR_COLUMNS)

    def to_bits(table: pa.Table) -> np.ndarray:
        return np.array([int(h, 16) for h in table.column("fp").to_pylist()], dtype=np.uint64)

    new_keys, old_keys = _IndexKeys("n", new_fp.num_rows), _IndexKeys("o", old_fp.num_rows)
    found = images.hamming_near_duplicates(
        new_keys, to_bits(new_fp), old_keys, to_bits(old_fp), max_distance=max_distance
    )
    pairs = [(n, k, 1.0 - d / 64.0) for n, k, d in found]
    return _pointers(pairs, new_fp.drop_columns(["fp"]), old_fp.drop_columns(["fp"]))


def _pointers(
    pairs: Sequence[tuple[str, str, float]], new: pa.Table, old: pa.Table
) -> pd.DataFrame:
    """One row per near duplicate: its row and id, and the drop (None: this drop) and id of
    the record it duplicates. Keys are `n<i>`/`o<i>`, positions in `new`/`old`."""
    if not pairs:
        return pd.DataFrame(columns=_NEAR_COLUMNS)
    dup = np.array([int(a[1:]) for a, _, _ in pairs], dtype=np.int64)
    kept_old = np.array([b.startswith("o") for _, b, _ in pairs], dtype=bool)
    kept = np.array([int(b[1:]) for _, b, _ in pairs], dtype=np.int64)
    new_rows = new.take(pa.array(dup)).to_pandas()
    kept_new = new.take(pa.array(kept[~kept_old])).column("record_id").to_pylist()
    kept_olds = old.take(pa.array(kept[kept_old])).to_pandas()
    of_drop = np.full(len(pairs), None, dtype=object)
    of_id = np.empty(len(pairs), dtype=object)
    of_drop[kept_old] = kept_olds["drop_id"].to_numpy(dtype=object)
    of_id[kept_old] = kept_olds["record_id"].to_numpy(dtype=object)
    of_id[~kept_old] = kept_new
    return pd.DataFrame(
        {
            "row_num": new_rows["row_num"].to_numpy(),
            "record_id": new_rows["record_id"].to_numpy(dtype=object),
            "duplicate_of_drop": of_drop,
            "duplicate_of_id": of_id,
            "similarity": np.array([float(sim) for _, _, sim in pairs], dtype=np.float64),
        }
    )


# --------------------------------------------------------------------------- human decisions


def human_decisions(conn: duckdb.DuckDBPyConnection, spec: TaskSpec) -> pd.DataFrame:
    """The reconciled human decision (or contested/awaiting status) of every voted record."""
    votes = conn.execute(
        "SELECT record_id, label, annotator, decided_at, imported_at"
        f" FROM {_q(spec.name, 'human_labels')}"
    ).fetchdf()
    return reconcile.reconcile_votes(
        votes,
        annotators_per_record=spec.review.annotators_per_record,
        min_agreement=spec.review.min_agreement,
        adjudicators=set(spec.review.adjudicators),
    )


def _decided(conn: duckdb.DuckDBPyConnection, spec: TaskSpec) -> pd.DataFrame:
    decisions = human_decisions(conn, spec)
    return decisions[decisions["status"] == reconcile.DECIDED]


# ----------------------------------------------------------------------------------- rules


@dataclass
class RulesResult:
    n_records: int
    n_labeled: int
    n_conflicts: int
    summary: list[dict[str, Any]]


def label_by_rules(connect: Connect, spec: TaskSpec, drop_id: str) -> RulesResult:
    """Applies the spec's rules to the drop's records and writes rule_labels."""
    task = spec.name
    lfs = build_labeling_functions(spec)
    label_names = spec.label_names
    with connect() as conn, transaction(conn):
        # The fields the rules read, as Arrow: both the RE2 matcher and the lexicon scorer
        # read the texts' bytes in place.
        fields = sorted({lf.field for lf in lfs})
        selects = "".join(
            f', {expr} AS "f{i}"' for i, expr in enumerate(_field_sql(fields).values())
        )
        stored = conn.sql(
            f"SELECT record_id{selects} FROM {_q(task, 'normalized_records')}"
            " WHERE drop_id = $drop ORDER BY row_num",
            params={"drop": drop_id, **_field_params(fields)},
        ).to_arrow_table()
        frame = pd.DataFrame(
            {
                name: pd.arrays.ArrowExtensionArray(stored.column(i + 1))
                for i, name in enumerate(fields)
            },
            index=pd.RangeIndex(stored.num_rows),
        )
        matrix = apply_labeling_functions(frame, lfs)
        record_ids = stored.column(0)
        decisions = _decided(conn, spec)
        # Label index of each record's human decision; ambiguous (duplicate) ids count as none.
        decided = decisions.drop_duplicates("record_id", keep=False)
        index = {label: i for i, label in enumerate(label_names)}
        gold_index = decided["label"].astype(str).map(index).fillna(NO_LABEL).to_numpy(np.int64)
        at = pc.index_in(
            record_ids, value_set=pa.array(decided["record_id"].astype(str), record_ids.type)
        )
        found = at.is_valid().to_numpy(zero_copy_only=False)
        gold = np.full(len(frame), NO_LABEL, dtype=np.int64)
        gold[found] = gold_index[at.drop_null().to_numpy()]
        summary = rule_summary(matrix, lfs, gold=gold)
        if spec.review.calibrate_rules and lfs:
            lfs = _calibrated_rules(conn, spec, drop_id, lfs, decisions, summary)
        votes = combine_rule_votes(matrix, lfs, len(label_names))
        for row, lf in zip(summary, lfs, strict=True):
            row["confidence_used"] = lf.confidence
        n = len(frame)
        unlabeled = votes.label_index == NO_LABEL
        out = pa.table(
            {
                "drop_id": pa.DictionaryArray.from_arrays(
                    pa.array(np.zeros(n, dtype=np.int32)), pa.array([drop_id], pa.string())
                ),
                "record_id": record_ids,
                "rule_label": pa.DictionaryArray.from_arrays(
                    pa.array(
                        np.where(unlabeled, 0, votes.label_index).astype(np.int32), mask=unlabeled
                    ),
                    pa.array(label_names, pa.string()),
                ),
                "rule_confidence": pa.array(votes.confidence, pa.float64(), mask=unlabeled),
                "rules_fired": _fired_rule_lists(matrix, [lf.name for lf in lfs]),
                "rule_conflict": pa.array(votes.conflict, pa.bool_()),
            }
        )
        _replace(conn, task, "rule_labels", drop_id, out)
    return RulesResult(
        n_records=len(frame),
        n_labeled=int((votes.label_index != NO_LABEL).sum()),
        n_conflicts=int(votes.conflict.sum()),
        summary=summary,
    )


def _field_sql(fields: Sequence[str]) -> dict[str, str]:
    """The SQL expression of each record field a rule reads: `text`, or a key of `meta` (its
    JSON path passed as parameter $f<i>, from `_field_params`). A name with dots that is not a
    key itself reaches into nested objects ($n<i>), as ingest.field_value reads the record."""
    exprs = {}
    for i, f in enumerate(fields):
        if f == "text":
            exprs[f] = "text"
        elif ingest.nested_parts(f) is None:
            exprs[f] = f"json_extract_string(meta, $f{i})"
        else:
            exprs[f] = (
                f"CASE WHEN json_exists(meta, $f{i}) THEN json_extract_string(meta, $f{i})"
                f" ELSE json_extract_string(meta, $n{i}) END"
            )
    return exprs


def _field_params(fields: Sequence[str]) -> dict[str, str]:
    """The parameters `_field_sql(fields)` uses: the JSON path of each `meta` field, and of
    its nested reading when its name walks nested objects."""
    params: dict[str, str] = {}
    for i, f in enumerate(fields):
        if f != "text":
            params[f"f{i}"] = _json_path([f])
            parts = ingest.nested_parts(f)
            if parts is not None:
                params[f"n{i}"] = _json_path(parts)
    return params


def _json_path(keys: Sequence[str]) -> str:
    """A DuckDB JSON path to the nested keys, each quoted (a key may hold dots, spaces,
    quotes or backslashes)."""
    quoted = (k.replace("\\", "\\\\").replace('"', '\\"') for k in keys)
    return "$" + "".join(f'."{k}"' for k in quoted)


def _fired_rule_lists(matrix: np.ndarray, names: Sequence[str]) -> pa.ListArray:
    """Per record, the names of the rules that fired on it, in rule order, as an Arrow list
    array built from one integer code per record's firing pattern."""
    n = len(matrix)
    fired = matrix != NO_LABEL
    if len(names) <= 62:  # one integer code per record, then unique codes
        codes = np.zeros(n, dtype=np.int64)
        for j in range(len(names)):
            codes = codes * 2 + fired[:, j]
        pattern_of, patterns = pd.factorize(codes)
        members = [
            [j for j in range(len(names)) if code >> (len(names) - 1 - j) & 1]
            for code in patterns.tolist()
        ]
    else:  # unique rows of the firing matrix
        rows, pattern_of = np.unique(fired, axis=0, return_inverse=True)
        members = [np.flatnonzero(row).tolist() for row in rows]
    pattern_of = pattern_of.reshape(-1)
    sizes = np.array([len(m) for m in members], dtype=np.int64)
    flat = np.array([j for m in members for j in m], dtype=np.int64)
    pattern_start = np.cumsum(sizes) - sizes
    record_sizes = sizes[pattern_of]
    offsets = np.concatenate([[0], np.cumsum(record_sizes)]).astype(np.int64)
    at = np.repeat(pattern_start[pattern_of], record_sizes) + ramps(record_sizes)
    values = pa.DictionaryArray.from_arrays(
        pa.array(flat[at].astype(np.int32)), pa.array(list(names), pa.string())
    )
    return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values)


def _calibrated_rules(
    conn: duckdb.DuckDBPyConnection,
    spec: TaskSpec,
    drop_id: str,
    lfs: list[LabelingFunction],
    decisions: pd.DataFrame,
    summary: list[dict[str, Any]],
) -> list[LabelingFunction]:
    """Each rule's confidence moved from the stated value towards its precision measured on
    human-decided records where it fired (this drop and every other), as the mean of a Beta
    prior worth `review.rule_prior_strength` records at the stated confidence: a rule people
    keep overruling stops auto-accepting, one they keep confirming gains confidence (at most
    0.99). The evidence comes from records that reached review: conflicts, low-confidence
    rules, and audit samples (`annotate review export --audit N`)."""
    rules = pd.DataFrame({"rule": [lf.name for lf in lfs], "rule_label": [lf.label for lf in lfs]})
    conn.register("_rules", rules)
    conn.register("_decided_labels", decisions[["record_id", "label"]])
    elsewhere = dict(
        (name, (int(n), int(correct)))
        for name, n, correct in conn.execute(
            f"""
            SELECT f.rule, count(*), sum((d.label = r.rule_label)::INTEGER)
            FROM (SELECT record_id, unnest(rules_fired) AS rule
                  FROM {_q(spec.name, "rule_labels")} WHERE drop_id <> ?) f
            JOIN _decided_labels d USING (record_id)
            JOIN _rules r USING (rule)
            GROUP BY f.rule
            """,
            [drop_id],
        ).fetchall()
    )
    conn.unregister("_rules")
    conn.unregister("_decided_labels")
    k = spec.review.rule_prior_strength
    calibrated = []
    for lf, row in zip(lfs, summary, strict=True):
        n_here = int(row["n_gold"] or 0)
        correct_here = round((row["accuracy"] or 0.0) * n_here)
        n_other, correct_other = elsewhere.get(lf.name, (0, 0))
        n, correct = n_here + n_other, correct_here + correct_other
        row["evidence"] = n
        confidence = min(0.99, (lf.confidence * k + correct) / (k + n)) if n else lf.confidence
        calibrated.append(replace(lf, confidence=float(confidence)))
    return calibrated


# ----------------------------------------------------------------------------------- model


class Encoder(Protocol):
    name: str
    dim: int

    def encode(
        self, texts: Sequence[str], *, progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray: ...


class HeavyScorer(Protocol):
    """A slower, stronger model consulted only for records the small model left unsure."""

    version: str

    def predict_proba(self, texts: Sequence[str], label_names: Sequence[str]) -> np.ndarray: ...


StoredModel = TypeVar("StoredModel", LabelModel, FastModel)


class ModelStore:
    """Trained label models, pickled under one folder by version."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, version: str) -> Path:
        return self.root / f"{version}.pkl"

    def load(
        self,
        version: str,
        kind: type[StoredModel] = LabelModel,  # type: ignore[assignment]
    ) -> StoredModel | None:
        path = self.path(version)
        if not path.exists():
            return None
        with open(path, "rb") as fh:
            model = pickle.load(fh)
        return model if isinstance(model, kind) else None

    def save(self, model: LabelModel | FastModel) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(model.version)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # hidden: a kill may leave it
        try:
            with open(tmp, "wb") as fh:
                pickle.dump(model, fh)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path


EMBED_CHUNK = 2048
SIGNATURE_BATCH = 65_536  # MinHash signatures per streamed batch (16 MiB)
RULE_TRAIN_CAP = 2000


def _batch_size(encoder: Encoder) -> int:
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
    batch_size = _batch_size(encoder)
    starts = (unique.groupby("group", sort=False).cumcount() % batch_size == 0).to_numpy()
    batch = np.cumsum(starts) - 1
    missing = np.ones(len(unique), dtype=bool)
    with connect() as conn:
        conn.register("_want", unique[["dedup_key"]])
        try:
            reader = conn.sql(
                f"SELECT e.dedup_key, e.vector FROM {_q(task, 'embeddings')} e"
                " JOIN _want w USING (dedup_key) WHERE e.encoder = ?",
                params=[encoder.name],
            ).to_arrow_reader(EMBED_CHUNK)
            for part in reader:
                if part.num_rows == 0:
                    continue
                flat = part.column(1).flatten().to_numpy(zero_copy_only=False)
                rows = row_of.loc[part.column(0).to_pylist()].to_numpy()
                result[position[rows]] = np.asarray(flat, dtype=np.float32).reshape(
                    part.num_rows, -1
                )
                missing[rows] = False
        finally:
            conn.unregister("_want")
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
            conn.register("_emb", frame)
            conn.execute(
                f"INSERT INTO {_q(task, 'embeddings')} SELECT n.encoder, n.dedup_key,"
                f" n.vector::FLOAT[] FROM _emb n ANTI JOIN {_q(task, 'embeddings')} e"
                " ON e.encoder = n.encoder AND e.dedup_key = n.dedup_key"
            )
            conn.unregister("_emb")
        result[position[rows[new]]] = emb[new]
        done += len(fresh)
        if progress:
            progress(stage, done, n_missing)
    if repeated.any():  # a key asked for twice gets the vector of its first request row
        again = order["dedup_key"].to_numpy()[repeated]
        result[repeated] = result[position[row_of.loc[again].to_numpy()]]
    return result, n_missing


def training_set(conn: duckdb.DuckDBPyConnection, spec: TaskSpec, seq: int) -> pd.DataFrame:
    """Labeled texts for the head: human decisions (weight 1), the spec's few-shot examples
    (weight 1) and confident, conflict-free rule labels of this and earlier drops (weight
    `model.rule_label_weight`, at most RULE_TRAIN_CAP per label). One row per distinct text,
    human decisions first; `seq` is the sequence number of the drop a text came from (0 for
    the examples)."""
    task = spec.name
    decided = _decided(conn, spec)[["record_id", "label"]]
    conn.register("_decided", decided)
    humans = conn.execute(
        f"SELECT n.dedup_key, n.text, d.label, s.seq FROM _decided d"
        f" JOIN {_q(task, 'normalized_records')} n USING (record_id)"
        f" JOIN {_q(task, 'drops')} s USING (drop_id)"
    ).fetchdf()
    conn.unregister("_decided")
    rules = conn.execute(
        f"""
        SELECT dedup_key, text, label, seq FROM (
            SELECT n.dedup_key, n.text, r.rule_label AS label, d.seq,
                   row_number() OVER (PARTITION BY r.rule_label ORDER BY hash(n.dedup_key)) AS rn
            FROM {_q(task, "rule_labels")} r
            JOIN {_q(task, "normalized_records")} n USING (drop_id, record_id)
            JOIN {_q(task, "drops")} d USING (drop_id)
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
    if _enough_examples(spec, train):
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
            model = train_head(x, y, w, n_labels=len(labels), version=version, reviewed=reviewed)
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


def _enough_examples(spec: TaskSpec, train: pd.DataFrame) -> bool:
    counts = train["label"].value_counts()
    minimum = spec.model.min_examples_per_label
    return all(counts.get(label, 0) >= minimum for label in spec.label_names)


def _fast_tier_unchecked(fast: Any, spec: TaskSpec) -> bool:
    """Whether the n-gram tier's confidence has not yet been checked against enough human
    decisions (`model.fast_tier_min_reviewed`). Trained on rule-labeled texts only, a bag of
    n-grams is over-confident on texts unlike the rules' (measured well below the threshold's
    promise on generated reviews), so until then it only scores and the encoder decides."""
    reviewed = int(fast.model.metrics.get("reviewed_n", 0) or 0)
    return reviewed < spec.model.fast_tier_min_reviewed


def fast_model_for(
    connect: Connect, spec: TaskSpec, store: ModelStore, train: pd.DataFrame
) -> FastModel | None:
    """The n-gram tier trained on exactly the head's training set (loaded when this set was
    trained before); None when `model.fast_tier` is off, for image tasks, and on a cold start
    (some label below `model.min_examples_per_label`)."""
    settings = spec.model
    if not settings.fast_tier or spec.is_image or not _enough_examples(spec, train):
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
            f"INSERT INTO {_q(task, 'model_versions')} VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [
                model.version,
                model.kind,
                encoder,
                _now(),
                len(train),
                json.dumps(train["origin"].value_counts().to_dict()) if len(train) else "{}",
                json.dumps(model.metrics),
                artifact,
            ],
        )


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

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._last
        self._last = now


SCORE_SLICE = 32_768


def _embed_and_score(
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
    batch = _batch_size(encoder)
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


def _texts_at(
    connect: Connect, task: str, drop_id: str, frame: pd.DataFrame, positions: np.ndarray
) -> list[str]:
    """The normalized texts of the records at `positions` of `frame` (record_id, dedup_key),
    in that order: a stage reads only the texts it scores rather than the whole drop's. The
    text must still have the key the stage read with it, so a drop re-normalized meanwhile
    fails the stage instead of caching a vector under another text's key."""
    if len(positions) == 0:
        return []
    want = pd.DataFrame(
        {
            "record_id": frame["record_id"].iloc[positions].to_numpy(),
            "dedup_key": frame["dedup_key"].iloc[positions].to_numpy(),
            "ord": np.arange(len(positions)),
        }
    )
    with connect() as conn:
        conn.register("_want_texts", want)
        try:
            found = conn.execute(
                f"SELECT n.text FROM _want_texts w JOIN {_q(task, 'normalized_records')} n"
                " ON n.record_id = w.record_id AND n.dedup_key = w.dedup_key AND n.drop_id = ?"
                " ORDER BY w.ord",
                [drop_id],
            ).fetchall()
        finally:
            conn.unregister("_want_texts")
    if len(found) != len(positions):
        raise LookupError(
            f"drop {drop_id!r}: {len(positions) - len(found)} records changed while the stage"
            " ran (normalized again?); run the stage again"
        )
    return [row[0] for row in found]


def label_by_model(
    connect: Connect,
    spec: TaskSpec,
    drop_id: str,
    *,
    encoder: Encoder,
    store: ModelStore,
    heavy: HeavyScorer | None = None,
    item_root: Path | None = None,
    progress: Progress | None = None,
) -> ModelResult:
    """Scores records the rules did not settle, runs the heavy model on those still unsure,
    routes every record through the cascade, and writes model_labels.

    The small model reads the record's text; for image tasks that is the image's metadata
    (title, alt text, file name), so its source is `model_text`. The heavy model gets the text
    of text records, or the image files (under `item_root`) of image records."""
    task = spec.name
    labels = spec.label_names
    index = {label: i for i, label in enumerate(labels)}
    threshold = spec.thresholds.auto_accept
    small_source = IMAGE_TEXT_SOURCE if spec.is_image else "model"
    with connect() as conn:
        seq = drop_seq(conn, task, drop_id)
        previous = conn.execute(
            f"SELECT * FROM {_q(task, 'model_labels')} WHERE drop_id = ?", [drop_id]
        ).fetchdf()
        # texts are read later, for only the records the rules leave (`_texts_at`); ids and
        # keys stay in Arrow (no Python string per record)
        frame = _arrow_frame(
            conn.sql(
                "SELECT n.record_id, n.dedup_key, r.rule_label, r.rule_confidence,"
                " json_extract_string(n.meta, '$.file') AS file"
                f" FROM {_q(task, 'normalized_records')} n"
                f" LEFT JOIN {_q(task, 'rule_labels')} r USING (drop_id, record_id)"
                " WHERE n.drop_id = ? ORDER BY n.row_num",
                params=[drop_id],
            ).to_arrow_table()
        )
        train = training_set(conn, spec, seq)
    clock = _Clock()
    model, n_train_encoded = label_model_for(
        connect, spec, seq, encoder, store, progress=progress, train=train
    )
    clock.lap("train_encoder_head")
    fast = fast_model_for(connect, spec, store, train) if model.kind == HEAD else None
    clock.lap(f"train_{NGRAM}")
    rule_idx = frame["rule_label"].map(index).fillna(NO_LABEL).to_numpy(dtype=np.int64)
    rule_conf = frame["rule_confidence"].fillna(0.0).to_numpy(dtype=np.float64)
    needs_model = ~(rule_conf >= threshold)
    n = len(frame)
    model_idx = np.full(n, NO_LABEL, dtype=np.int64)
    model_conf = np.full(n, np.nan)
    model_probs = np.full((n, len(labels)), np.nan)  # rows without a score stay NaN
    model_version: list[str | None] = [None] * n
    where = np.flatnonzero(needs_model)
    texts = pd.Series(_texts_at(connect, task, drop_id, frame, where), index=where)
    if fast is not None and len(where):
        if progress:
            progress("n-gram tier", 0, len(where))
        fast_probs = fast.predict_proba(texts)
        settled = fast_probs.max(axis=1) >= threshold
        if _fast_tier_unchecked(fast, spec):
            settled[:] = False  # scored, but it may not accept yet: the encoder decides
        _fill_scores(
            where[settled],
            fast_probs[settled],
            fast.version,
            model_idx,
            model_conf,
            model_probs,
            model_version,
        )
        if progress:
            progress("n-gram tier", len(where), len(where))
        to_encode = where[~settled]
    else:
        to_encode = where
    clock.lap(NGRAM)
    probs, n_encoded = _embed_and_score(
        connect,
        task,
        encoder,
        model,
        frame["dedup_key"].iloc[to_encode],
        texts.loc[to_encode],
        progress=progress,
    )
    _fill_scores(to_encode, probs, model.version, model_idx, model_conf, model_probs, model_version)
    clock.lap("encoder")
    may_accept = model.kind == HEAD or spec.model.zero_shot_auto_accept
    stages = [
        StageVotes("rule", rule_idx, rule_conf),
        StageVotes(small_source, model_idx, model_conf, may_accept=may_accept),
    ]
    heavy_idx = np.full(n, NO_LABEL, dtype=np.int64)
    heavy_conf = np.full(n, np.nan)
    if heavy is not None:
        first = route_by_confidence(stages, threshold=threshold)
        unsure = np.flatnonzero(~first.accepted)
        if spec.is_image:
            # Ingest records every image's file; a record without one (a table edited by
            # hand) gets no heavy vote instead of stopping the stage.
            root = item_root or Path(".")
            files = frame["file"].iloc[unsure].tolist()
            named = np.array([isinstance(f, str) and f != "" for f in files], dtype=bool)
            unsure = unsure[named]
            image_paths = [str(root / f) for f, ok in zip(files, named, strict=True) if ok]
        if len(unsure):
            if spec.is_image:
                items = image_paths
            else:
                items = (
                    texts.reindex(unsure).tolist()
                    if np.isin(unsure, where).all()
                    else _texts_at(connect, task, drop_id, frame, unsure)
                )
            heavy_probs = heavy.predict_proba(items, labels)
            heavy_idx[unsure] = heavy_probs.argmax(axis=1)
            heavy_conf[unsure] = heavy_probs.max(axis=1)
        stages.append(StageVotes("heavy", heavy_idx, heavy_conf))
    clock.lap("heavy")
    routed = route_by_confidence(stages, threshold=threshold)
    if spec.images.unknown_label is not None:
        routed = _route_unknown(routed, stages, spec, index[spec.images.unknown_label])
    out = pd.DataFrame(
        {
            "drop_id": drop_id,
            "record_id": frame["record_id"],
            "dedup_key": frame["dedup_key"],
            "model_label": [labels[i] if i != NO_LABEL else None for i in model_idx],
            "model_confidence": model_conf,
            "model_probs": _probability_lists(model_probs, model_version),
            "model_version": model_version,
            "heavy_label": [labels[i] if i != NO_LABEL else None for i in heavy_idx],
            "heavy_confidence": heavy_conf,
            "heavy_version": [
                heavy.version if heavy is not None and i != NO_LABEL else None for i in heavy_idx
            ],
            "label": [labels[i] if i != NO_LABEL else None for i in routed.label_index],
            "confidence": routed.confidence,
            "source": [s or None for s in routed.source],
            "accepted": routed.accepted,
        }
    )
    out, kept = _keep_earlier_acceptances(out, previous, threshold)
    with connect() as conn, transaction(conn):
        _replace(conn, task, "model_labels", drop_id, out)
    clock.lap("route_and_write")
    accepted = out.loc[out["accepted"], "source"].value_counts().to_dict()
    best = np.fmax(rule_conf, np.where(may_accept, np.nan_to_num(model_conf), 0.0))
    best = np.fmax(best, np.nan_to_num(heavy_conf))
    accuracy = {row["threshold"]: row["accuracy"] for row in model.what_if}
    what_if = [
        {
            "threshold": row["threshold"],
            "review_rate": row["review_rate"],
            "accuracy_on_reviewed": accuracy.get(row["threshold"]),
        }
        for row in threshold_what_if(best, None)
    ]
    tiers = {
        "rules": int(n - len(where)),
        f"{NGRAM}_scored": int(len(where) if fast is not None else 0),
        f"{NGRAM}_settled": int(len(where) - len(to_encode)),
        "encoder_scored": int(len(to_encode)),
        "heavy_scored": int(np.count_nonzero(heavy_idx != NO_LABEL)),
    }
    return ModelResult(
        model_version=model.version,
        model_kind=model.kind,
        fast_version=fast.version if fast is not None else None,
        tiers=tiers,
        fast_metrics=dict(fast.model.metrics) if fast is not None else {},
        seconds=clock.laps,
        n_records=n,
        n_scored=len(where),
        n_encoded=n_encoded + n_train_encoded,
        accepted={str(k): int(v) for k, v in accepted.items()},
        pending=int((~out["accepted"]).sum()),
        kept_earlier=kept,
        model_confidence=model_conf[where],
        metrics=dict(model.metrics),
        what_if=what_if,
    )


def _fill_scores(
    rows: np.ndarray,
    probs: np.ndarray,
    version: str,
    label: np.ndarray,
    confidence: np.ndarray,
    all_probs: np.ndarray,
    versions: list[str | None],
) -> None:
    """Writes one tier's scores of `rows` into the stage's per-record columns."""
    if not len(rows):
        return
    label[rows] = probs.argmax(axis=1)
    confidence[rows] = probs.max(axis=1)
    all_probs[rows] = probs.round(6)
    for i in rows.tolist():
        versions[i] = version


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


MODEL_SOURCES = ("model", IMAGE_TEXT_SOURCE, "heavy")


def _keep_earlier_acceptances(
    out: pd.DataFrame, previous: pd.DataFrame, threshold: float
) -> tuple[pd.DataFrame, int]:
    """Re-scoring after new human decisions re-scores the records still waiting; a record a
    model already auto-accepted keeps that label (and its model version) as long as its text
    is unchanged, its confidence still clears the threshold and no rule now settles it, so a
    dataset does not churn and the review queue does not refill with records that had left
    it."""
    if previous.empty:
        return out, 0
    earlier = previous[
        previous["accepted"]
        & previous["source"].isin(MODEL_SOURCES)
        & (previous["confidence"] >= threshold)
    ].set_index("record_id")
    current = out.set_index("record_id")
    same = current.index.intersection(earlier.index)
    same = same[
        (current.loc[same, "dedup_key"].to_numpy() == earlier.loc[same, "dedup_key"].to_numpy())
        & (current.loc[same, "source"].to_numpy() != "rule")
    ]
    if len(same) == 0:
        return out, 0
    columns = [c for c in current.columns if c in earlier.columns and c != "drop_id"]
    current.loc[same, columns] = earlier.loc[same, columns]
    return current.reset_index()[out.columns], len(same)


def _route_unknown(
    routed: Routed, stages: Sequence[StageVotes], spec: TaskSpec, unknown: int
) -> Routed:
    """Records no stage accepted whose best score of any stage is below
    `images.unknown_below` get the unknown label: accepted (`unknown_route: label`, at
    confidence 1 - best score) or as the suggestion for review (`unknown_route: review`)."""
    best = np.zeros(len(routed.label_index))
    for stage in stages:
        best = np.fmax(best, np.nan_to_num(stage.confidence))
    low = ~routed.accepted & (best < spec.images.unknown_below)
    label = routed.label_index.copy()
    label[low] = unknown
    if spec.images.unknown_route == "review":
        return Routed(label, routed.confidence, routed.source, routed.accepted)
    confidence = routed.confidence.copy()
    confidence[low] = 1.0 - best[low]
    source = routed.source.copy()
    source[low] = stages[-1].source
    accepted = routed.accepted | low
    return Routed(label, confidence, source, accepted)


# ------------------------------------------------------------------------ review and final


@dataclass
class PendingResult:
    n_pending: int
    by_reason: dict[str, int]
    by_suggestion: dict[str, int]


def queue_for_review(connect: Connect, spec: TaskSpec, drop_id: str) -> PendingResult:
    """Writes hitl_pending: the drop's records no stage accepted and no human has decided,
    plus those with human votes but no decision yet, with the most confident suggestion and
    why they wait."""
    task = spec.name
    with connect() as conn, transaction(conn):
        conn.register("_decisions", human_decisions(conn, spec))
        frame = conn.execute(
            f"""
            SELECT m.drop_id, m.record_id, n.text, m.label AS suggested_label,
                   m.confidence, m.source AS suggested_by,
                   CASE WHEN h.status = 'contested' THEN 'contested'
                        WHEN h.status = 'awaiting_votes' THEN 'awaiting_votes'
                        WHEN r.rule_conflict THEN 'rule_conflict'
                        WHEN m.label IS NULL THEN 'no_suggestion'
                        ELSE 'low_confidence' END AS reason,
                   m.model_version
            FROM {_q(task, "model_labels")} m
            JOIN {_q(task, "normalized_records")} n USING (drop_id, record_id)
            LEFT JOIN {_q(task, "rule_labels")} r USING (drop_id, record_id)
            LEFT JOIN _decisions h USING (record_id)
            WHERE m.drop_id = ? AND coalesce(h.status, '') <> 'decided'
              AND (NOT m.accepted OR h.status IS NOT NULL)
            ORDER BY m.confidence NULLS FIRST, n.row_num
            """,
            [drop_id],
        ).fetchdf()
        conn.unregister("_decisions")
        _replace(conn, task, "hitl_pending", drop_id, frame)
    return PendingResult(
        n_pending=len(frame),
        by_reason={str(k): int(v) for k, v in frame["reason"].value_counts().items()},
        by_suggestion={
            str(k): int(v)
            for k, v in frame["suggested_label"].fillna("(none)").value_counts().items()
        },
    )


@dataclass
class FinalResult:
    n_rows: int
    by_source: dict[str, int]
    by_label: dict[str, int]
    confidence: np.ndarray


def build_final_dataset(connect: Connect, spec: TaskSpec, drop_id: str) -> FinalResult:
    """Writes final_dataset: auto-accepted records plus human-decided ones (a human decision
    overrides any automatic label), with lineage. A record people have voted on but not
    decided (contested, awaiting votes) stays out even when a model is sure: people finish
    what they started."""
    task = spec.name
    table = _q(task, "final_dataset")
    with connect() as conn, transaction(conn):
        conn.register("_decisions", human_decisions(conn, spec))
        conn.execute(f"DELETE FROM {table} WHERE drop_id = ?", [drop_id])
        # one INSERT ... SELECT: the drop's rows (text included) never pass through pandas
        conn.execute(
            f"""
            INSERT INTO {table} BY NAME
            SELECT n.record_id AS id, n.drop_id, n.text,
                   coalesce(h.label, m.label) AS label,
                   CASE WHEN h.label IS NOT NULL THEN 'human' ELSE m.source END AS source,
                   CASE WHEN h.label IS NOT NULL THEN h.share ELSE m.confidence END AS confidence,
                   r.rules_fired AS rule_names, m.model_version,
                   h.annotators, n.source_file, n.line_no, n.ingested_at
            FROM {_q(task, "normalized_records")} n
            JOIN {_q(task, "model_labels")} m USING (drop_id, record_id)
            LEFT JOIN {_q(task, "rule_labels")} r USING (drop_id, record_id)
            LEFT JOIN _decisions h ON h.record_id = n.record_id
            WHERE n.drop_id = ?
              AND (h.status = 'decided' OR (m.accepted AND h.status IS NULL))
            ORDER BY n.row_num
            """,
            [drop_id],
        )
        conn.unregister("_decisions")

        def counts(column: str) -> dict[str, int]:
            rows = conn.execute(
                f"SELECT {column}, count(*) FROM {table} WHERE drop_id = ?"
                " GROUP BY 1 ORDER BY 2 DESC, 1",
                [drop_id],
            ).fetchall()
            return {str(k): int(v) for k, v in rows}

        by_source, by_label = counts("source"), counts("label")
        confidence = conn.execute(
            f"SELECT confidence FROM {table} WHERE drop_id = ?", [drop_id]
        ).fetchnumpy()["confidence"]
    return FinalResult(
        n_rows=sum(by_source.values()),
        by_source=by_source,
        by_label=by_label,
        confidence=np.asarray(confidence, dtype=np.float64),
    )


def drop_counts(conn: duckdb.DuckDBPyConnection, task: str, drop_id: str) -> dict[str, Any]:
    """The conservation figures of one drop, as in the `annotate run` summary line."""

    def count(table: str) -> int:
        return int(
            scalar(conn, f"SELECT count(*) FROM {_q(task, table)} WHERE drop_id = ?", [drop_id])
        )

    by_source = dict.fromkeys(SOURCES, 0)
    for source, n in conn.execute(
        f"SELECT source, count(*) FROM {_q(task, 'final_dataset')} WHERE drop_id = ? GROUP BY 1",
        [drop_id],
    ).fetchall():
        by_source[source] = int(n)
    final = count("final_dataset")
    return {
        "task": task,
        "drop": drop_id,
        "ingested": count("raw_records"),
        "quarantined": count("quarantine"),
        "duplicates": count("duplicates"),
        "auto_accepted": final - by_source["human"],
        "hitl_pending": count("hitl_pending"),
        "final_rows": final,
        "by_source": by_source,
    }


def record_stage_time(
    connect: Connect, task: str, drop_id: str, stage: str, seconds: float, records: int
) -> None:
    """Keeps the latest wall time of one stage for one drop (for the throughput figure)."""
    with connect() as conn, transaction(conn):
        conn.execute(
            f"DELETE FROM {_q(task, 'stage_timings')} WHERE drop_id = ? AND stage = ?",
            [drop_id, stage],
        )
        conn.execute(
            f"INSERT INTO {_q(task, 'stage_timings')} VALUES (?, ?, ?, ?, ?)",
            [drop_id, stage, seconds, records, _now()],
        )


def drop_throughput(
    conn: duckdb.DuckDBPyConnection, spec: TaskSpec, drop_id: str
) -> dict[str, Any]:
    """Throughput of the labeling process for a drop:
    T = records / (t_auto + hitl_rate * records * latency_human), in records per hour, where
    t_auto is the measured wall time of the automated stages and hitl_rate the share of records
    that needed a person; with each stage's share and, given `costs`, the cost per labeled
    record."""
    task = spec.name
    timings = dict(
        conn.execute(
            f"SELECT stage, seconds FROM {_q(task, 'stage_timings')} WHERE drop_id = ?", [drop_id]
        ).fetchall()
    )
    counts = drop_counts(conn, task, drop_id)
    records = int(
        scalar(
            conn,
            f"SELECT count(*) FROM {_q(task, 'normalized_records')} WHERE drop_id = ?",
            [drop_id],
        )
    )
    scored = first_row(
        conn.execute(
            f"SELECT count(model_version), count(heavy_version) FROM {_q(task, 'model_labels')}"
            " WHERE drop_id = ?",
            [drop_id],
        )
    ) or (0, 0)
    human = counts["by_source"]["human"] + counts["hitl_pending"]
    hitl_rate = human / records if records else 0.0
    t_auto = float(sum(timings.values()))
    t_human = hitl_rate * records * spec.review.latency_human_s
    total = t_auto + t_human
    out: dict[str, Any] = {
        "records": records,
        "t_auto_s": round(t_auto, 3),
        "hitl_rate": round(hitl_rate, 4),
        "latency_human_s": spec.review.latency_human_s,
        "throughput_per_hour": round(3600 * records / total, 1) if total > 0 else None,
        "share": {
            s: round(n / records, 4) if records else 0.0
            for s, n in counts["by_source"].items()
            if s != "human"
        }
        | {"human": round(hitl_rate, 4)},
    }
    if spec.costs is not None and counts["final_rows"]:
        c = spec.costs
        spend = (
            records * c.rule + int(scored[0]) * c.model + int(scored[1]) * c.heavy + human * c.human
        )
        out["cost_per_labeled_record"] = round(spend / counts["final_rows"], 6)
    return out
