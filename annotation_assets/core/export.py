"""Dataset exporters: the final dataset as JSONL or COCO, written so no reader sees a partial
file; on S3, as versioned exports `v<N>/` completed by a manifest."""

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from annotation_assets.core import s3
from annotation_assets.core.balance import balance_dataset
from annotation_assets.core.spec import TaskSpec
from annotation_assets.core.tables import scalar

JSONL_COLUMNS = (
    "id, text, label, source, confidence, drop_id, rule_names, model_version, annotators,"
    " source_file, line_no, ingested_at"
)


def balanced_selection(
    conn: duckdb.DuckDBPyConnection, spec: TaskSpec, mode: str
) -> tuple[pd.Index, dict[str, Any]]:
    """The final-dataset ids an export keeps under balance `mode` (spec `balance` settings),
    and what balancing did: class counts before and after."""
    labels = conn.execute(f'SELECT id, label FROM "{spec.name}".final_dataset').fetchdf()
    series = labels.set_index("id")["label"]
    kept = balance_dataset(
        series,
        mode=mode,
        max_ratio=spec.balance.max_ratio,
        target=spec.balance.target,
        seed=spec.balance.seed,
    )
    report = {
        "mode": mode,
        "before": {str(k): int(v) for k, v in series.value_counts().sort_index().items()},
        "after": {str(k): int(v) for k, v in series.loc[kept].value_counts().sort_index().items()},
    }
    return kept, report


def export_jsonl(
    conn: duckdb.DuckDBPyConnection,
    task: str,
    out_dir: Path,
    *,
    keep_ids: pd.Index | None = None,
) -> tuple[Path, int]:
    """Writes `<out_dir>/<task>.jsonl`, one final record per line in drop order (atomically:
    a temporary file renamed into place), optionally only the rows in `keep_ids`. Returns the
    path and the row count.

    Exports into one folder take turns (a lock on the folder, released by the kernel when a
    writer dies), so the temporary name `.<task>.jsonl.tmp` has one writer at a time, and one
    left by a killed export is overwritten and renamed by the next."""
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{task}.jsonl"
    tmp = out_dir / f".{task}.jsonl.tmp"
    where = ""
    if keep_ids is not None:
        conn.register("_keep", pd.DataFrame({"id": keep_ids.astype(str)}))
        where = " WHERE f.id IN (SELECT id FROM _keep)"
    query = (
        f'SELECT {JSONL_COLUMNS} FROM "{task}".final_dataset f'
        f' JOIN "{task}".drops d USING (drop_id){where}'
        " ORDER BY d.seq, f.source_file, f.line_no NULLS LAST, f.id"
    )
    try:
        with _folder_lock(out_dir) as locked:
            try:
                # DuckDB's own temporary file (tmp_<name>) would be visible and shared: we
                # have one.
                conn.execute(
                    f"COPY ({query}) TO '{_sql_path(tmp)}' (FORMAT json, USE_TMP_FILE false)"
                )
                rows = int(scalar(conn, f"SELECT count(*) FROM ({query})"))
                _fsync(tmp)
                os.replace(tmp, final)
            except (OSError, duckdb.Error) as err:
                if locked:  # the temporary file is ours alone: remove it
                    with suppress(OSError):
                        tmp.unlink(missing_ok=True)
                raise ExportWriteError(final, err) from err
    finally:
        if keep_ids is not None:
            conn.unregister("_keep")
    return final, rows


class ExportWriteError(Exception):
    """An export file that could not be written (a folder where it goes, no permission, a
    full disk); the message is one line naming the file."""

    def __init__(self, path: Path, err: BaseException) -> None:
        if isinstance(err, OSError):
            reason = err.strerror or str(err)
        else:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        super().__init__(f"cannot write {path}: {reason}")


@contextmanager
def _folder_lock(folder: Path) -> Iterator[bool]:
    """An exclusive lock on a folder for writers that share names in it (flock on the folder
    itself, so nothing is added to it); yields whether it is held (some file systems, NFS
    among them, cannot lock folders)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            locked = True
        except OSError:
            locked = False
        yield locked
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def export_coco(
    conn: duckdb.DuckDBPyConnection,
    spec: TaskSpec,
    out_dir: Path,
    *,
    keep_ids: pd.Index | None = None,
) -> tuple[Path, int]:
    """Writes `<out_dir>/<task>.coco.json` for an image task: one image and one
    whole-image annotation per final record. `file_name` is the image's path under the
    home's drops/<task>/ folder (`<drop_id>/<file>`). Returns the path and the image count."""
    from annotation_assets.core.coco import coco_dataset, write_coco

    task = spec.name
    rows = conn.execute(
        f"""
        SELECT f.id, f.label, f.source, f.confidence, f.drop_id,
               f.drop_id || '/' || json_extract_string(n.meta, '$.file') AS file,
               CAST(json_extract(n.meta, '$.width') AS INTEGER) AS width,
               CAST(json_extract(n.meta, '$.height') AS INTEGER) AS height
        FROM "{task}".final_dataset f
        JOIN "{task}".normalized_records n ON n.drop_id = f.drop_id AND n.record_id = f.id
        JOIN "{task}".drops d ON d.drop_id = f.drop_id
        ORDER BY d.seq, n.row_num
        """
    ).fetchdf()
    if keep_ids is not None:
        rows = rows[rows["id"].isin(set(keep_ids.astype(str)))]
    dataset = coco_dataset(rows, labels=spec.label_names, task=task, description=spec.description)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{task}.coco.json"
    try:
        write_coco(path, dataset)
    except OSError as err:
        raise ExportWriteError(path, err) from err
    return path, len(rows)


MANIFEST = "manifest.json"
VERSION_PREFIX = re.compile(r"^v([1-9][0-9]{0,8})/\Z")


def spec_hash(spec: TaskSpec) -> str:
    """sha256 of the validated spec as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def dataset_lineage(conn: duckdb.DuckDBPyConnection, task: str) -> dict[str, list[str]]:
    """The model versions and drops (in drop order) that the final dataset's rows come from."""
    models = conn.execute(
        f'SELECT DISTINCT model_version FROM "{task}".final_dataset'
        " WHERE model_version IS NOT NULL ORDER BY 1"
    ).fetchall()
    drops = conn.execute(
        f'SELECT d.drop_id FROM "{task}".drops d WHERE d.drop_id IN'
        f' (SELECT drop_id FROM "{task}".final_dataset) ORDER BY d.seq'
    ).fetchall()
    return {"model_versions": [str(m) for (m,) in models], "drops": [str(d) for (d,) in drops]}


def file_digest(path: Path) -> tuple[str, int]:
    """sha256 (hex) and size of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def next_export_version(client: Any, url: s3.S3Url) -> int:
    """One more than the highest `v<N>/` under the prefix, complete or not, so a new export
    never writes into the objects of an earlier (even abandoned) one."""
    versions = [0]
    for child in s3.list_child_prefixes(client, url.bucket, url.prefix):
        match = VERSION_PREFIX.match(child.removeprefix(url.prefix))
        if match:
            versions.append(int(match.group(1)))
    return max(versions) + 1


CLAIM = "_claimed"
CLAIM_ATTEMPTS = 20


def claim_export_version(client: Any, url: s3.S3Url) -> int:
    """Reserves the next version for this export: creates `<prefix>v<N>/_claimed` with a
    conditional write (If-None-Match), so two exports running at once never share a
    version folder; the loser takes the next number."""
    for _ in range(CLAIM_ATTEMPTS):
        version = next_export_version(client, url)
        if s3.put_if_absent(client, url.bucket, url.child(f"v{version}").key(CLAIM), b""):
            return version
    raise s3.S3Error(f"{url}: could not claim an export version in {CLAIM_ATTEMPTS} attempts")


def complete_export_versions(client: Any, url: s3.S3Url) -> list[int]:
    """The versions under the prefix that have a manifest (what readers may use), ascending."""
    found = []
    for child in s3.list_child_prefixes(client, url.bucket, url.prefix):
        match = VERSION_PREFIX.match(child.removeprefix(url.prefix))
        if match and s3.object_exists(client, url.bucket, f"{child}{MANIFEST}"):
            found.append(int(match.group(1)))
    return sorted(found)


def publish_to_s3(
    client: Any,
    url: s3.S3Url,
    files: Sequence[tuple[Path, int]],
    *,
    fields: dict[str, Any],
) -> dict[str, Any]:
    """Uploads exported files (path, rows) to `<prefix>v<N>/` and then, last,
    `<prefix>v<N>/manifest.json` listing every object's key, rows, sha256 and bytes plus
    `fields` (task, spec hash, model versions, drops...). A reader that only trusts versions
    with a manifest never sees a partial dataset. Returns the manifest."""
    version = claim_export_version(client, url)
    base = url.child(f"v{version}")
    listed = []
    for path, rows in files:
        sha256, size = file_digest(path)
        key = base.key(path.name)
        s3.upload_file(client, path, url.bucket, key, content_type=_content_type(path))
        listed.append({"key": key, "rows": rows, "sha256": sha256, "bytes": size})
    manifest = {
        **fields,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": listed,
    }
    body = json.dumps(manifest, indent=2).encode()
    s3.put_bytes(client, url.bucket, base.key(MANIFEST), body, content_type="application/json")
    return manifest


def _content_type(path: Path) -> str:
    return "application/x-ndjson" if path.suffix == ".jsonl" else "application/json"
