"""The normalize stage: texts cleaned, unusable rows quarantined, and exact and near duplicates
(MinHash for texts, perceptual hashes for images) set aside with a pointer to the record kept."""

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from annotation_assets.core import dedup, images, normalize
from annotation_assets.core.spec import TaskSpec
from annotation_assets.core.tiers import Progress
from annotation_assets.warehouse.codes import EMPTY_TEXT, TEXT_TOO_LONG
from annotation_assets.warehouse.sql import CHUNK_ROWS, Connect, drop_seq, insert_temp, q
from annotation_assets.warehouse.tables import scalar, transaction

SIGNATURE_BATCH = 65_536  # MinHash signatures per streamed batch (16 MiB)


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
                conn, f"SELECT count(*) FROM {q(task, 'raw_records')} WHERE drop_id = ?", [drop_id]
            )
        )
        if progress:
            progress("normalize", 0, total_raw)
        raw_sql = (
            "SELECT row_num, source_file, line_no, record_id, text, meta, payload, error, detail,"
            f" ingested_at FROM {q(task, 'raw_records')} WHERE drop_id = ? ORDER BY row_num"
        )
        done = 0
        for chunk in _iter_chunks(conn, raw_sql, [drop_id]):
            cand, quar = _normalize_chunk(chunk, spec)
            insert_temp(conn, "_cand", cand)
            insert_temp(conn, "_quar", quar)
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
                conn.execute(f"DELETE FROM {q(task, table)} WHERE drop_id = ?", [drop_id])
            conn.execute(
                f"INSERT INTO {q(task, 'quarantine')} SELECT ?, row_num, source_file, line_no,"
                " record_id, reason, detail, payload FROM _quar",
                [drop_id],
            )
            conn.execute(
                f"INSERT INTO {q(task, 'duplicates')} SELECT ?, row_num, record_id, kind,"
                " duplicate_of_drop, duplicate_of_id, similarity FROM _dups",
                [drop_id],
            )
            conn.execute(
                f"INSERT INTO {q(task, 'normalized_records')} SELECT ?, c.row_num, c.record_id,"
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
                f"SELECT count(*) FROM {q(task, 'normalized_records')} WHERE drop_id = ?",
                [drop_id],
            )
        )
        for temp in ("_cand", "_quar", "_dups", "_classified"):
            conn.execute(f"DROP TABLE IF EXISTS {temp}")
    return stats


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
            FROM {q(task, "normalized_records")} n JOIN {q(task, "drops")} d USING (drop_id)
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
        f"SELECT {old_columns} FROM {q(task, 'normalized_records')} c"
        f" JOIN {q(task, 'drops')} d USING (drop_id) WHERE c.drop_id <> ?"
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
