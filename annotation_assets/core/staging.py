"""Staging a drop into the home: a local folder or an S3 prefix becomes
`<home>/drops/<task>/<drop_id>/`, replacing an earlier copy atomically."""

import fcntl
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotation_assets.core import s3
from annotation_assets.core.ingest import REFUSED_OBJECTS
from annotation_assets.core.spec import check_drop_id

SUCCESS_MARKER = "_SUCCESS"
S3_DROP_TAG = "annotate/s3_drop"  # run tag: the s3:// prefix a sensor-requested run stages


@dataclass
class StagedDrop:
    drop_id: str
    path: Path
    files: int
    bytes: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)


def replace_folder(incoming: Path, target: Path) -> None:
    """Moves folder `incoming` to `target` (same file system), so a reader sees the old tree
    or the new one, never a mix."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        old = target.parent / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
        os.replace(target, old)
        os.replace(incoming, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(incoming, target)


@contextmanager
def staging_folder(task_drops: Path, drop_id: str) -> Iterator[Path]:
    """A hidden folder to fill with a drop's files. When the block ends without an error it
    replaces `task_drops/<drop_id>` in one rename; otherwise it is removed. It is locked
    while in use, and what killed stagings of the same drop left behind is removed first."""
    task_drops.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(task_drops, drop_id)
    incoming = task_drops / f".incoming-{drop_id}-{uuid.uuid4().hex[:8]}"
    incoming.mkdir()
    lock = os.open(incoming, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # tells remove_abandoned_staging we are alive
        yield incoming
        replace_folder(incoming, task_drops / drop_id)
    finally:
        os.close(lock)
        if incoming.exists():
            shutil.rmtree(incoming, ignore_errors=True)


def remove_abandoned_staging(folder: Path, drop_id: str) -> None:
    """Removes what a killed staging of this drop left in `folder`: `.old-` copies (only
    ever deleted) and `.incoming-` copies no live process holds locked."""
    pattern = re.compile(rf"\.(incoming|old)-{re.escape(drop_id)}-[0-9a-f]{{8}}")
    for path in folder.iterdir():
        match = pattern.fullmatch(path.name)
        if match is None or not path.is_dir() or path.is_symlink():
            continue
        if match.group(1) == "incoming":
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            finally:
                os.close(fd)
        shutil.rmtree(path, ignore_errors=True)


def s3_drop_id(url: s3.S3Url) -> str:
    """The drop id of an S3 drop: the last component of its prefix (ValueError when invalid)."""
    if not url.prefix:
        raise ValueError(f"{url}: give the drop's prefix, s3://bucket/prefix/<drop_id>/")
    return check_drop_id(url.name)


def stage_s3_drop(client: Any, url: s3.S3Url, task_drops: Path) -> StagedDrop:
    """Downloads every object under the drop prefix `url` into `task_drops/<drop_id>/`
    (through a hidden staging folder, then one rename). Keys that would land outside the drop
    folder are not written; they are listed in `_refused_objects.jsonl`, which ingestion turns
    into `outside_drop` quarantine rows. Raises S3Error when the prefix holds no object."""
    drop_id = s3_drop_id(url)
    with staging_folder(task_drops, drop_id) as incoming:
        report = s3.download_prefix(client, url.bucket, url.prefix, incoming)
        if not report.files and not report.refused:
            raise s3.S3Error(f"{url}: no objects under this prefix")
        if report.refused:
            with open(incoming / REFUSED_OBJECTS, "w", encoding="utf-8") as fh:
                for key, reason in report.refused:
                    fh.write(json.dumps({"key": key, "reason": reason}) + "\n")
    target = task_drops / drop_id
    return StagedDrop(drop_id, target, len(report.files), report.bytes, report.refused)


def s3_drop_is_complete(client: Any, url: s3.S3Url) -> bool:
    """An S3 drop is complete once `<prefix>_SUCCESS` exists (writers put it last)."""
    return s3.object_exists(client, url.bucket, url.key(SUCCESS_MARKER))
