"""Drop-scoped reads and writes every stage shares: qualified table names, replacing one
drop's rows of a table, appending rows, a drop's sequence number."""

from collections.abc import Callable
from contextlib import AbstractContextManager
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
    name = f"_incoming_{table}"
    conn.register(name, incoming)
    try:
        conn.execute(f"INSERT INTO {q(task, table)} ({col_sql}) SELECT {col_sql} FROM {name}")
    finally:
        conn.unregister(name)


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
    conn.register("_chunk", frame)
    try:
        cols = ", ".join(f'"{c}"' for c in frame.columns)
        conn.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _chunk")
    finally:
        conn.unregister("_chunk")
