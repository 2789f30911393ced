"""Warehouse tables kept as Parquet files, one file per partition, read through DuckDB.

The embedded default warehouse is one DuckDB file. Runs on several machines cannot share
that file, so this backend keeps every table as Parquet under a root (a local folder or an
``s3://`` prefix) that any worker can read and write:

```
<root>/<task>/_task                              marks a task's tables as created
<root>/<task>/<table>/drop=<drop_id>.parquet     tables keyed by drop: one file per partition
<root>/<task>/<table>/part-<uuid>.parquet        shared append-only tables (embeddings,
                                                 model_versions, human_labels,
                                                 review_files)
```

`connect()` gives the pipeline the same SQL surface as the DuckDB file: an in-memory DuckDB
with the task schemas, filled from the Parquet files (and kept between blocks, so a block
reads only the files that changed since the last one). When the block ends, what changed is
written back: each drop partition whose contents changed is rewritten as a whole (written
to a temporary name, then renamed or uploaded, so a reader never sees half a file), and new
rows of the shared tables go to a new part file. As with the DuckDB file, what a block
committed is kept even if the block then raises. Blocks are serialized by a lock on the
root (a file lock locally, a lease object on S3), which gives each block the same isolation
as the DuckDB file's writer lock; the expensive work (encoding, scoring) runs outside the
blocks, so workers on many machines still run in parallel.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import duckdb

from annotation_assets.core import s3
from annotation_assets.warehouse.sql import literal, q
from annotation_assets.warehouse.tables import PARTITIONED, TABLES, create_statements

DROP_KEYED = frozenset(PARTITIONED | {"drops", "stage_timings"})
# Shared tables and the columns that identify a row. human_labels is a log: every column
# but none of them alone (an annotator may return to an earlier label, untimed, from another
# file). Written back in this order: human_labels before review_files, so a block killed
# between the two leaves votes without their file's note (one more replay), never the reverse.
APPEND_ONLY: dict[str, tuple[str, ...]] = {
    "embeddings": ("encoder", "dedup_key"),
    "model_versions": ("version",),
    "llm_responses": ("key",),
    "human_labels": (
        "record_id",
        "label",
        "annotator",
        "decided_at",
        "source_file",
        "imported_at",
    ),
    "review_files": ("file", "sha256", "labels"),
}
TASK_MARKER = "_task"
COMPACT_AFTER = 16  # part files of a shared table before they are merged into one

assert DROP_KEYED | APPEND_ONLY.keys() == TABLES.keys(), "every table needs a layout"
assert list(APPEND_ONLY).index("human_labels") < list(APPEND_ONLY).index("review_files")


class FileStore(Protocol):
    """Where the Parquet files live: a local folder or an S3 prefix."""

    def describe(self) -> str: ...

    def list(self, prefix: str) -> dict[str, str]:
        """Relative paths under `prefix` mapped to a version tag (changes on rewrite)."""
        ...

    def local_copy(self, rel: str, tag: str) -> Path:
        """A local, readable path holding the file's contents at version `tag`."""
        ...

    def put(self, local: Path, rel: str) -> None:
        """Stores `local` at `rel` atomically (readers see the old or the new file)."""
        ...

    def put_bytes(self, data: bytes, rel: str) -> None: ...

    def delete(self, rel: str) -> None: ...

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive access to the whole root while the context is open."""
        ...


class LocalStore:
    """Parquet files under a local (or network-mounted) folder."""

    def __init__(self, root: Path, *, lock_timeout_s: float = 600.0) -> None:
        self.root = root
        self.lock_timeout_s = lock_timeout_s

    def describe(self) -> str:
        return str(self.root)

    def list(self, prefix: str) -> dict[str, str]:
        base = self.root / prefix
        if not base.is_dir():
            return {}
        found = {}
        for path in base.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                stat = path.stat()
                found[path.relative_to(self.root).as_posix()] = f"{stat.st_mtime_ns}-{stat.st_size}"
        return found

    def local_copy(self, rel: str, tag: str) -> Path:
        return self.root / rel

    def put(self, local: Path, rel: str) -> None:
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(local, target)

    def put_bytes(self, data: bytes, rel: str) -> None:
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}"
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def delete(self, rel: str) -> None:
        (self.root / rel).unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as handle:
            deadline = time.monotonic() + self.lock_timeout_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"warehouse {self.root} stayed locked for {self.lock_timeout_s:.0f} s"
                        ) from None
                    time.sleep(0.02)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class S3Store:
    """Parquet files under an `s3://bucket/prefix/` (credentials and endpoint from the
    standard AWS environment). Files are read through a local cache keyed by ETag; the lock
    is a lease object created with a conditional write (If-None-Match), so two workers never
    hold it at once; a lease older than `lease_s` (its holder died) may be broken."""

    LOCK_KEY = "_lock"

    def __init__(
        self,
        url: s3.S3Url,
        client: Any,
        *,
        cache_dir: Path | None = None,
        lock_timeout_s: float = 600.0,
        lease_s: float = 1800.0,
    ) -> None:
        self.url = url
        self.client = client
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "annotation-warehouse-cache"
        self.lock_timeout_s = lock_timeout_s
        self.lease_s = lease_s

    @classmethod
    def from_url(cls, url: str, **options: Any) -> "S3Store":
        return cls(s3.parse_s3_url(url), s3.client_from_env(), **options)

    def describe(self) -> str:
        return str(self.url)

    def list(self, prefix: str) -> dict[str, str]:
        start = len(self.url.prefix)
        return {
            obj.key[start:]: obj.etag.strip('"')
            for obj in s3.list_keys(self.client, self.url.bucket, self.url.key(prefix))
            if not obj.key[start:].startswith(self.LOCK_KEY)
        }

    def local_copy(self, rel: str, tag: str) -> Path:
        digest = hashlib.sha256(f"{self.url}{rel}".encode()).hexdigest()[:32]
        path = self.cache_dir / f"{digest}-{tag}.parquet"
        if not path.exists():
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.cache_dir.glob(f"{digest}-*.parquet"):
                stale.unlink(missing_ok=True)
            part = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
            s3.download_file(self.client, self.url.bucket, self.url.key(rel), part)
            os.replace(part, path)
        return path

    def put(self, local: Path, rel: str) -> None:
        s3.upload_file(self.client, local, self.url.bucket, self.url.key(rel))
        local.unlink(missing_ok=True)

    def put_bytes(self, data: bytes, rel: str) -> None:
        s3.put_bytes(self.client, self.url.bucket, self.url.key(rel), data)

    def delete(self, rel: str) -> None:
        s3.delete_keys(self.client, self.url.bucket, [self.url.key(rel)])

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        key = self.url.key(self.LOCK_KEY)
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while not self._try_lock(key, owner):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"warehouse {self.url} stayed locked for {self.lock_timeout_s:.0f} s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        try:
            yield
        finally:
            with contextlib.suppress(s3.S3Error):
                holder = json.loads(s3.get_bytes(self.client, self.url.bucket, key))
                if holder.get("owner") == owner:
                    s3.delete_keys(self.client, self.url.bucket, [key])

    def _try_lock(self, key: str, owner: str) -> bool:
        body = json.dumps({"owner": owner, "expires": time.time() + self.lease_s}).encode()
        if s3.put_if_absent(self.client, self.url.bucket, key, body):
            return True
        try:
            holder = json.loads(s3.get_bytes(self.client, self.url.bucket, key))
        except (s3.S3Error, ValueError):
            return False  # released meanwhile, or being written: try again
        if float(holder.get("expires", 0)) < time.time():
            s3.delete_keys(self.client, self.url.bucket, [key])  # a dead holder's lease
        return False


def _partition_file(task: str, table: str, drop_id: str) -> str:
    return f"{task}/{table}/drop={drop_id}.parquet"


class ParquetTables:
    """The warehouse's tables as Parquet files in `store` (see the module docstring)."""

    def __init__(self, store: FileStore) -> None:
        self.store = store
        self._db: duckdb.DuckDBPyConnection | None = None  # the copy kept between sections
        self._tags: dict[str, str] = {}  # file -> version tag of what the copy holds
        self._created: set[str] = set()  # tasks whose schema the copy has
        self._mutex = threading.Lock()  # this process's threads share the copy

    def ensure_task(self, task: str) -> None:
        with self.store.lock():
            if f"{task}/{TASK_MARKER}" not in self.store.list(f"{task}/"):
                self.store.put_bytes(b"", f"{task}/{TASK_MARKER}")

    def tasks(self) -> list[str]:
        return sorted(
            rel.split("/")[0] for rel in self.store.list("") if rel.endswith(f"/{TASK_MARKER}")
        )

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._mutex, self.store.lock():
            db = self._sync()
            conn = db.cursor()  # its own temp tables and registrations, like a new connection
            try:
                snapshots = {task: self._snapshot(conn, task) for task in sorted(self._created)}
                try:
                    yield conn
                finally:
                    with contextlib.suppress(duckdb.Error):
                        conn.execute("ROLLBACK")  # only an unfinished transaction is undone
                    try:
                        for task, snapshot in snapshots.items():
                            self._write_back(conn, task, snapshot)
                        self._tags = self.store.list("")
                    except BaseException:
                        self._forget()  # the copy may now differ from the files
                        raise
            finally:
                conn.close()

    # ------------------------------------------------------------------------------ load

    def _forget(self) -> None:
        if self._db is not None:
            self._db.close()
        self._db, self._tags, self._created = None, {}, set()

    def _sync(self) -> duckdb.DuckDBPyConnection:
        """The in-memory copy, brought up to date with the files: only files added, changed
        or removed since the last section are read."""
        if self._db is None:
            self._db = duckdb.connect()
        db = self._db
        listing = self.store.list("")
        for rel in sorted(listing):
            task, _, name = rel.partition("/")
            if name == TASK_MARKER and task not in self._created:
                for statement in create_statements(task):
                    db.execute(statement)
                self._created.add(task)
        changed: dict[tuple[str, str], list[str]] = {}
        for rel in sorted(listing.keys() | self._tags.keys()):
            parts = rel.split("/")
            if (
                len(parts) == 3
                and parts[0] in self._created
                and parts[1] in TABLES
                and parts[2].endswith(".parquet")
                and listing.get(rel) != self._tags.get(rel)
            ):
                changed.setdefault((parts[0], parts[1]), []).append(rel)
        for (task, table), rels in changed.items():
            if table in APPEND_ONLY:
                self._refresh_shared(db, task, table, rels, listing)
            else:
                for rel in rels:
                    drop_id = rel.rsplit("/", 1)[1].removeprefix("drop=").removesuffix(".parquet")
                    db.execute(f"DELETE FROM {q(task, table)} WHERE drop_id = ?", [drop_id])
                    if rel in listing:
                        local = self.store.local_copy(rel, listing[rel])
                        db.execute(
                            f"INSERT INTO {q(task, table)} BY NAME SELECT * FROM "
                            f"read_parquet({literal(str(local))}, union_by_name = true)"
                        )
        self._tags = listing
        return db

    def _refresh_shared(
        self,
        db: duckdb.DuckDBPyConnection,
        task: str,
        table: str,
        rels: list[str],
        listing: dict[str, str],
    ) -> None:
        if any(rel not in listing for rel in rels):  # compacted: read the table again
            db.execute(f"DELETE FROM {q(task, table)}")
            prefix = f"{task}/{table}/"
            rels = [rel for rel in listing if rel.startswith(prefix) and rel.endswith(".parquet")]
        if not rels:
            return
        files = ", ".join(literal(str(self.store.local_copy(rel, listing[rel]))) for rel in rels)
        keys = APPEND_ONLY[table]
        key_sql = ", ".join(f'"{k}"' for k in keys)
        match = " AND ".join(f't."{k}" IS NOT DISTINCT FROM s."{k}"' for k in keys)
        source = f"read_parquet([{files}], union_by_name = true)"
        db.execute(
            f"INSERT INTO {q(task, table)} BY NAME "
            f"SELECT DISTINCT ON ({key_sql}) * FROM {source} s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {q(task, table)} t WHERE {match}) "
            f"ORDER BY {key_sql}"
        )

    def _snapshot(self, conn: duckdb.DuckDBPyConnection, task: str) -> dict[str, Any]:
        """What the section starts from: per-drop fingerprints and the shared tables' keys."""
        fingerprints = {table: self._fingerprints(conn, task, table) for table in DROP_KEYED}
        for table, keys in APPEND_ONLY.items():
            cols = ", ".join(f'"{k}"' for k in keys)
            conn.execute(
                f'CREATE TEMP TABLE "_loaded_{task}_{table}" AS '
                f"SELECT DISTINCT {cols} FROM {q(task, table)}"
            )
        part_files = {
            table: [rel for rel in self._tags if rel.startswith(f"{task}/{table}/part-")]
            for table in APPEND_ONLY
        }
        return {"fingerprints": fingerprints, "parts": part_files}

    @staticmethod
    def _fingerprints(
        conn: duckdb.DuckDBPyConnection, task: str, table: str
    ) -> dict[str, tuple[int, int]]:
        """Per drop: row count and an order-independent sum of row hashes."""
        rows = conn.execute(
            f"SELECT drop_id, count(*), sum(hash(t)::HUGEINT) FROM {q(task, table)} t "
            "GROUP BY drop_id"
        ).fetchall()
        return {str(drop): (int(n), int(h)) for drop, n, h in rows}

    # ------------------------------------------------------------------------ write back

    def _write_back(
        self, conn: duckdb.DuckDBPyConnection, task: str, snapshot: dict[str, Any]
    ) -> None:
        with tempfile.TemporaryDirectory(prefix="parquet-tables-") as tmp:
            for table in sorted(DROP_KEYED):
                before = snapshot["fingerprints"][table]
                after = self._fingerprints(conn, task, table)
                for drop_id in sorted(before.keys() | after.keys()):
                    if before.get(drop_id) == after.get(drop_id):
                        continue
                    rel = _partition_file(task, table, drop_id)
                    if drop_id not in after:
                        self.store.delete(rel)
                        continue
                    local = Path(tmp) / f"{table}-{uuid.uuid4().hex}.parquet"
                    conn.execute(
                        f"COPY (SELECT * FROM {q(task, table)} WHERE drop_id = "
                        f"{literal(drop_id)}) TO {literal(str(local))} (FORMAT parquet)"
                    )
                    self.store.put(local, rel)
            for table, keys in APPEND_ONLY.items():
                self._append_new_rows(conn, task, table, keys, snapshot["parts"][table], tmp)

    def _append_new_rows(
        self,
        conn: duckdb.DuckDBPyConnection,
        task: str,
        table: str,
        keys: tuple[str, ...],
        parts: list[str],
        tmp: str,
    ) -> None:
        match = " AND ".join(f't."{k}" IS NOT DISTINCT FROM l."{k}"' for k in keys)
        new_rows = (
            f"SELECT * FROM {q(task, table)} t WHERE NOT EXISTS "
            f'(SELECT 1 FROM "_loaded_{task}_{table}" l WHERE {match})'
        )
        n_new = conn.execute(f"SELECT count(*) FROM ({new_rows})").fetchall()[0][0]
        if not n_new:
            return
        compact = len(parts) + 1 > COMPACT_AFTER
        local = Path(tmp) / f"{table}-{uuid.uuid4().hex}.parquet"
        query = f"SELECT * FROM {q(task, table)}" if compact else new_rows
        conn.execute(f"COPY ({query}) TO {literal(str(local))} (FORMAT parquet)")
        self.store.put(local, f"{task}/{table}/part-{uuid.uuid4().hex}.parquet")
        if compact:  # the new part holds every row: the old parts can go
            for rel in parts:
                self.store.delete(rel)
