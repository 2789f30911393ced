"""COCO-JSON export of an image classification dataset (loadable by pycocotools.coco.COCO).

One image and one annotation per final record: the annotation's category is the record's
label, its bbox covers the whole image (``[0, 0, width, height]``) unless the row gives one,
and its ``segmentation`` is that box as a polygon, so mask-based tools work too.

**Stable ids.** An image's id is the first 8 bytes of ``blake2b(b"image:" + record_id)`` as a
big-endian integer masked to 53 bits (exact in JSON and JavaScript numbers); an annotation's
id the same over ``b"annotation:" + record_id``. Re-exports, in any row order and with other
records added or removed, give every record the same ids. A collision (about 1 in 10**5 for a
million records) raises ValueError rather than silently merging two images. Category ids are
the 1-based positions of the labels in the task spec.
"""

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pandas as pd

__all__ = ["DEFAULT_LICENSE", "coco_dataset", "stable_id", "write_coco"]

DEFAULT_LICENSE = {"id": 1, "name": "Unknown (see the source URL of each image)", "url": ""}
_ID_BITS = 53
_REQUIRED = ("id", "label", "file", "width", "height")


def stable_id(kind: str, record_id: str) -> int:
    """A positive 53-bit integer id derived from a record id (see the module doc)."""
    digest = hashlib.blake2b(f"{kind}:{record_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << _ID_BITS) - 1) or 1


def _optional(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value.item() if hasattr(value, "item") else value


def _bbox(value: Any, width: int, height: int) -> list[float]:
    if value is None or (not isinstance(value, list | tuple) and pd.isna(value)):
        return [0.0, 0.0, float(width), float(height)]
    box = [float(v) for v in value]
    if len(box) != 4 or any(math.isnan(v) for v in box) or box[2] < 0 or box[3] < 0:
        raise ValueError(f"bbox must be [x, y, width, height] with width, height >= 0: {value}")
    return box


def _unique_ids(ids: pd.Series, record_ids: pd.Series, what: str) -> None:
    clash = ids.duplicated(keep=False)
    if clash.any():
        names = sorted(record_ids[clash].astype(str))[:4]
        raise ValueError(f"{what} id collision between records {names}; rename one of them")


def coco_dataset(
    rows: pd.DataFrame,
    *,
    labels: Sequence[str],
    task: str,
    description: str = "",
    created: datetime | None = None,
) -> dict[str, Any]:
    """The COCO dict of final image records.

    `rows` has columns id (record id), label, file (the image path as the dataset's users
    resolve it, e.g. ``<drop_id>/<file>``), width, height, and optionally source, confidence,
    drop_id and bbox (``[x, y, w, h]``). Images are ordered by drop, file and record id."""
    missing = [c for c in _REQUIRED if c not in rows.columns]
    if missing:
        raise ValueError(f"rows lack columns {missing}")
    if rows["id"].duplicated().any():
        dup = rows.loc[rows["id"].duplicated(), "id"].astype(str).iloc[0]
        raise ValueError(f"record {dup!r} appears more than once")
    categories = {label: i for i, label in enumerate(labels, start=1)}
    unknown = sorted(set(rows["label"].astype(str)) - set(categories))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the task's labels {list(labels)}")

    frame = rows.copy()
    frame["id"] = frame["id"].astype(str)
    for column in ("source", "confidence", "drop_id", "bbox"):
        if column not in frame.columns:
            frame[column] = None
    frame["_drop"] = frame["drop_id"].fillna("").astype(str)
    frame = frame.sort_values(["_drop", "file", "id"], kind="stable")
    image_ids = frame["id"].map(lambda r: stable_id("image", r))
    annotation_ids = frame["id"].map(lambda r: stable_id("annotation", r))
    _unique_ids(image_ids, frame["id"], "image")
    _unique_ids(annotation_ids, frame["id"], "annotation")

    images, annotations = [], []
    columns = ["id", "label", "file", "width", "height", "source", "confidence", "drop_id", "bbox"]
    records = cast(list[dict[str, Any]], frame[columns].to_dict("records"))
    for row, image_id, annotation_id in zip(records, image_ids, annotation_ids, strict=True):
        width, height = int(row["width"]), int(row["height"])
        images.append(
            {
                "id": int(image_id),
                "file_name": str(row["file"]),
                "width": width,
                "height": height,
                "license": DEFAULT_LICENSE["id"],
                "record_id": row["id"],
                "drop_id": _optional(row["drop_id"]),
            }
        )
        x, y, w, h = _bbox(row["bbox"], width, height)
        confidence = _optional(row["confidence"])
        annotations.append(
            {
                "id": int(annotation_id),
                "image_id": int(image_id),
                "category_id": categories[str(row["label"])],
                "bbox": [x, y, w, h],
                "area": w * h,
                "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
                "iscrowd": 0,
                "source": _optional(row["source"]),
                "confidence": None if confidence is None else float(confidence),
            }
        )
    now = created or datetime.now(UTC)
    return {
        "info": {
            "description": description or f"{task} (image classification)",
            "version": "1.0",
            "year": now.year,
            "contributor": task,
            "url": "",
            "date_created": now.isoformat(timespec="seconds"),
        },
        "licenses": [dict(DEFAULT_LICENSE)],
        "images": images,
        "categories": [
            {"id": i, "name": label, "supercategory": task} for label, i in categories.items()
        ],
        "annotations": annotations,
    }


def write_coco(path: Path, dataset: dict[str, Any]) -> Path:
    """Writes the dataset as JSON atomically (a temporary file in the same folder, renamed
    into place), so a reader never sees half of it. Returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would make the export private to its writer
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(dataset, fh, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
