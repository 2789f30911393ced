"""Drop-scoped reads and writes every stage shares: qualified table names, replacing one
drop's rows of a table, appending rows, a drop's sequence number, the texts of some of its
records, and frames registered for one query."""

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime

import duckdb
import pandas as pd
import pyarrow as pa

from annotation_assets.warehouse.tables import column_names, first_row

Connect = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]

# Rows per chunk where a stage streams a drop (ingest's files, normalize's raw rows).
CHUNK_ROWS = 50_000


def now() -> datetime:
    """The current UTC time, naive, as the warehouse's TIMESTAMP columns hold it."""
    return datetime.now(UTC).replace(tzinfo=None)


def q(task: str, table: str) -> str:
    """The quoted, schema-qualified name of one task's table."""
    return f'"{task}"."{table}"'


def literal(value: str) -> str:
    """`value` as a quoted SQL string literal (a path in COPY ... TO, say)."""
    return "'" + value.replace("'", "''") + "'"


def replace_rows(
    conn: duckdb.DuckDBPyConnection,
    task: str,
    table: str,
    drop_id: str,
    frame: pd.DataFrame | pa.Table,
) -> None:
    """Replaces one drop's rows of a table with `frame`'s."""
    conn.execute(f"DELETE FROM {q(task, table)} WHERE drop_id = ?", [drop_id])
    append_rows(conn, task, table, frame)


def append_rows(
    conn: duckdb.DuckDBPyConnection, task: str, table: str, frame: pd.DataFrame | pa.Table
) -> None:
    """Inserts `frame`'s rows, matching the table's columns by name (extra columns dropped)."""
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
    with registered(conn, f"_incoming_{table}", incoming) as name:
        conn.execute(f"INSERT INTO {q(task, table)} ({col_sql}) SELECT {col_sql} FROM {name}")


@contextmanager
def registered(
    conn: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame | pa.Table
) -> Iterator[str]:
    """`frame` visible to SQL as the view `name` inside the block, and gone after it (also
    when the block fails, so a retry on the same connection can register it again)."""
    conn.register(name, frame)
    try:
        yield name
    finally:
        conn.unregister(name)


def drop_texts(
    conn: duckdb.DuckDBPyConnection,
    task: str,
    drop_id: str,
    record_ids: Sequence[str],
    dedup_keys: Sequence[str] | None = None,
) -> list[str]:
    """The normalized texts of these records of the drop, in the order given: a stage reads
    only the texts it scores. With `dedup_keys`, each text must still have the key the stage
    read with it. A record missing (the drop was normalized again while the stage ran) is a
    LookupError, so the stage fails instead of caching a vector or an answer under another
    text's key."""
    if len(record_ids) == 0:
        return []
    want = pd.DataFrame({"record_id": list(record_ids), "ord": range(len(record_ids))})
    same_key = ""
    if dedup_keys is not None:
        want["dedup_key"] = list(dedup_keys)
        same_key = " AND n.dedup_key = w.dedup_key"
    with registered(conn, "_want_texts", want):
        found = conn.execute(
            f"SELECT n.text FROM _want_texts w JOIN {q(task, 'normalized_records')} n"
            f" ON n.record_id = w.record_id{same_key} AND n.drop_id = ? ORDER BY w.ord",
            [drop_id],
        ).fetchall()
    if len(found) != len(record_ids):
        raise LookupError(
            f"drop {drop_id!r}: {len(record_ids) - len(found)} records changed while the stage"
            " ran (normalized again?); run the stage again"
        )
    return [row[0] for row in found]


def drop_seq(conn: duckdb.DuckDBPyConnection, task: str, drop_id: str) -> int:
    """The drop's sequence number (its order of registration); LookupError if not ingested."""
    row = first_row(
        conn.execute(f"SELECT seq FROM {q(task, 'drops')} WHERE drop_id = ?", [drop_id])
    )
    if row is None:
        raise LookupError(f"drop {drop_id!r} of task {task!r} has not been ingested")
    return int(row[0])


def insert_temp(conn: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Appends `frame` to a temporary table, by column name."""
    if frame.empty:
        return
    cols = ", ".join(f'"{c}"' for c in frame.columns)
    with registered(conn, "_chunk", frame):
        conn.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _chunk")
