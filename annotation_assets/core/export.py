"""Dataset exporters from plain data: the balanced selection of final rows, export files
written so no reader sees a partial file (JSONL through a writer the caller gives, COCO from
rows), and, on S3, versioned exports `v<N>/` completed by a manifest.

Reading the final tables out of the warehouse is annotation_assets/exports.py's."""

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from annotation_assets.core import s3
from annotation_assets.core.balance import balance_dataset
from annotation_assets.core.spec import TaskSpec


def select_balanced(
    labels: pd.Series, spec: TaskSpec, mode: str
) -> tuple[pd.Index, dict[str, Any]]:
    """The ids of `labels` (the final dataset's label by id) an export keeps under balance
    `mode` (spec `balance` settings), and what balancing did: class counts before and
    after."""
    kept = balance_dataset(
        labels,
        mode=mode,
        max_ratio=spec.balance.max_ratio,
        target=spec.balance.target,
        seed=spec.balance.seed,
    )
    report = {
        "mode": mode,
        "before": {str(k): int(v) for k, v in labels.value_counts().sort_index().items()},
        "after": {str(k): int(v) for k, v in labels.loc[kept].value_counts().sort_index().items()},
    }
    return kept, report


def write_export_file(
    out_dir: Path,
    name: str,
    write: Callable[[Path], int],
    *,
    errors: tuple[type[BaseException], ...] = (OSError,),
) -> tuple[Path, int]:
    """Writes `<out_dir>/<name>` atomically: `write(tmp)` writes the temporary file
    `.<name>.tmp` and returns its row count, and the file is synced and renamed into place.
    Returns the path and the row count; any of `errors` raised on the way is an
    ExportWriteError naming the file.

    Exports into one folder take turns (a lock on the folder, released by the kernel when a
    writer dies), so the temporary name has one writer at a time, and one left by a killed
    export is overwritten and renamed by the next."""
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / name
    tmp = out_dir / f".{name}.tmp"
    with _folder_lock(out_dir) as locked:
        try:
            rows = write(tmp)
            _fsync(tmp)
            os.replace(tmp, final)
        except errors as err:
            if locked:  # the temporary file is ours alone: remove it
                with suppress(OSError):
                    tmp.unlink(missing_ok=True)
            raise ExportWriteError(final, err) from err
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


def write_coco_export(
    rows: pd.DataFrame,
    spec: TaskSpec,
    out_dir: Path,
    *,
    keep_ids: pd.Index | None = None,
) -> tuple[Path, int]:
    """Writes `<out_dir>/<task>.coco.json` for an image task: one image and one whole-image
    annotation per row of `rows` (final records in drop order, core/coco.py's columns;
    `file_name` is the image's path under the home's drops/<task>/ folder, `<drop_id>/<file>`),
    optionally only the rows in `keep_ids`. Returns the path and the image count."""
    from annotation_assets.core.coco import coco_dataset, write_coco

    task = spec.name
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
