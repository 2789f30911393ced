import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from annotation_assets.core.tables import create_statements

_LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")


class Warehouse(dg.ConfigurableResource):
    """The DuckDB file that holds every task's tables (one schema per task)."""

    path: str
    lock_timeout_s: float = 600.0

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection; waits (with jittered backoff) while another process holds
        the file, so concurrent runs serialize their writes instead of failing."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                conn = duckdb.connect(self.path)
                break
            except duckdb.IOException as err:
                if not any(m in str(err) for m in _LOCK_MARKERS) or time.monotonic() > deadline:
                    raise
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)
        try:
            yield conn
        finally:
            conn.close()

    def ensure_task(self, task: str) -> None:
        with self.connect() as conn:
            for statement in create_statements(task):
                conn.execute(statement)
