import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import dagster as dg
import duckdb

from annotation_assets.home import DEFAULT_MEMORY_LIMIT, valid_memory_limit
from annotation_assets.warehouse.parquet import LocalStore, ParquetTables
from annotation_assets.warehouse.tables import create_statements

if TYPE_CHECKING:
    from annotation_assets.home import Home

_LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")


class Warehouse(dg.ConfigurableResource):
    """Where every task's tables live (one schema per task).

    `backend: duckdb` (the embedded default) keeps them in one DuckDB file at `path`;
    `backend: parquet` keeps one Parquet file per table and drop under `path`, a local
    folder or an `s3://bucket/prefix/`, so workers on several machines can share it
    (see annotation_assets/warehouse/parquet.py). Both give the same SQL surface.
    `memory_limit` bounds DuckDB's buffer pool on the DuckDB file: beyond it, large sorts,
    joins and temporary tables spill to disk (`<path>.tmp/`) instead of growing the process;
    the files a killed process left there are removed by DuckDB the next time it spills."""

    path: str
    backend: Literal["duckdb", "parquet"] = "duckdb"
    lock_timeout_s: float = 600.0
    memory_limit: str = DEFAULT_MEMORY_LIMIT

    @classmethod
    def for_home(cls, home: "Home") -> "Warehouse":
        """The warehouse a home is configured to use (Home.warehouse_settings)."""
        settings = home.warehouse_settings()
        return cls(
            path=settings.path,
            backend=settings.backend,  # type: ignore[arg-type]
            memory_limit=settings.memory_limit,
        )

    def exists(self) -> bool:
        """Whether any task's tables were created here yet."""
        if self.backend == "parquet":
            return bool(self._parquet.tasks())
        return Path(self.path).exists()

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection; waits (with jittered backoff) while another process holds
        the warehouse, so concurrent runs serialize their writes instead of failing."""
        if self.backend == "parquet":
            with self._parquet.connect() as conn:
                yield conn
            return
        if not valid_memory_limit(self.memory_limit):
            raise ValueError(
                f"memory_limit must be a size of at least 64MiB such as 512MB,"
                f" got {self.memory_limit!r}"
            )
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
            conn.execute(f"SET memory_limit = '{self.memory_limit}'")
            yield conn
        finally:
            conn.close()

    def ensure_task(self, task: str) -> None:
        if self.backend == "parquet":
            self._parquet.ensure_task(task)
            return
        with self.connect() as conn:
            for statement in create_statements(task):
                conn.execute(statement)

    @cached_property
    def _parquet(self) -> ParquetTables:
        if self.path.startswith("s3://"):
            from annotation_assets.warehouse.parquet import S3Store

            return ParquetTables(S3Store.from_url(self.path, lock_timeout_s=self.lock_timeout_s))
        return ParquetTables(LocalStore(Path(self.path), lock_timeout_s=self.lock_timeout_s))
