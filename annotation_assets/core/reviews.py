"""Human review files: the queue going out (Label Studio tasks or CSV) and decisions coming back
(Label Studio JSON / JSON-MIN exports or CSV `record_id,label,annotator`), from plain data.

Reading the queue from the warehouse and importing decisions into it is the human stage's
(stages/human.py)."""

import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import pandas as pd

from annotation_assets.core.files import write_atomically
from annotation_assets.core.ingest import csv_field_rows, id_text, unique_columns
from annotation_assets.core.spec import TaskSpec

FROM_NAME = "label"
TO_NAME = "text"
IMAGE_NAME = "image"
DEFAULT_IMAGE_URL_PREFIX = "/data/local-files/?d="
QUEUE_CSV_COLUMNS = ["record_id", "text", "suggested_label", "confidence", "drop_id", "reason"]
DECISION_COLUMNS = ["record_id", "label", "annotator", "decided_at"]
MAX_DECISION_LINE_BYTES = 1_000_000  # a longer decision record is an error (as is a field
# over the csv module's limit, 131072 characters)


class ReviewFileError(ValueError):
    """A decisions file that cannot be read at all; the message is one line."""


# ------------------------------------------------------------------------------ queue out


def _target(spec: TaskSpec) -> str:
    return IMAGE_NAME if spec.is_image else TO_NAME


def image_url(task: str, drop_id: str, file: str, prefix: str) -> str:
    """Where Label Studio loads an image from: `prefix` + the image's path under the home
    (`drops/<task>/<drop>/<file>`). The default prefix is Label Studio's local-files route,
    served when LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT is the home."""
    return f"{prefix}drops/{task}/{drop_id}/{file}"


def label_studio_config(spec: TaskSpec) -> str:
    """The labeling config XML whose names match the exported predictions."""
    choices = "\n".join(
        f"    <Choice value={quoteattr(label)}"
        + (f" hint={quoteattr(desc)}" if desc else "")
        + "/>"
        for label, desc in spec.labels.items()
    )
    return (
        "<View>\n"
        f"  <Header value={quoteattr(spec.description or spec.name)}/>\n"
        + (
            f'  <Image name="{IMAGE_NAME}" value="$image"/>\n'
            if _target(spec) == IMAGE_NAME
            else ""
        )
        + f'  <Text name="{TO_NAME}" value="$text"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{_target(spec)}" choice="single"'
        ' showInline="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def label_studio_tasks(
    queue: pd.DataFrame,
    votes: dict[str, str],
    *,
    spec: TaskSpec | None = None,
    image_prefix: str = DEFAULT_IMAGE_URL_PREFIX,
) -> list[dict[str, Any]]:
    """Label Studio import tasks: `data` for the labeler (with `image`, a URL, for image
    tasks), `predictions` pre-filling the choice."""
    images = spec is not None and _target(spec) == IMAGE_NAME
    to_name = IMAGE_NAME if images else TO_NAME
    tasks = []
    for row in queue.to_dict("records"):
        record_id = str(row["record_id"])
        data: dict[str, Any] = {
            "record_id": record_id,
            "text": row["text"],
            "drop_id": row["drop_id"],
            "reason": row["reason"],
        }
        if images and spec is not None:
            data["image"] = image_url(spec.name, row["drop_id"], row["file"], image_prefix)
        if row["reason"] == "contested":
            data["adjudicate"] = True
            data["votes"] = votes.get(record_id, "")
        task: dict[str, Any] = {"data": data, "predictions": []}
        suggestion = row["suggested_label"]
        if isinstance(suggestion, str):
            task["predictions"].append(
                {
                    "model_version": row["model_version"]
                    if isinstance(row["model_version"], str)
                    else str(row["suggested_by"]),
                    "score": round(float(row["confidence"]), 6),
                    "result": [
                        {
                            "from_name": FROM_NAME,
                            "to_name": to_name,
                            "type": "choices",
                            "value": {"choices": [suggestion]},
                        }
                    ],
                }
            )
        tasks.append(task)
    return tasks


def write_queue(
    queue: pd.DataFrame,
    spec: TaskSpec,
    votes: dict[str, str],
    out: Path,
    fmt: str,
    *,
    image_prefix: str = DEFAULT_IMAGE_URL_PREFIX,
) -> list[Path]:
    """Writes the queue as Label Studio JSON (plus `<stem>.label_config.xml`) or CSV (with an
    `image` URL column for image tasks)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        frame = queue[QUEUE_CSV_COLUMNS].copy()
        frame["confidence"] = frame["confidence"].round(6)
        if _target(spec) == IMAGE_NAME:
            frame["image"] = [
                image_url(spec.name, d, f, image_prefix)
                for d, f in zip(queue["drop_id"], queue["file"], strict=True)
            ]
        write_atomically(out, frame.to_csv(index=False))
        return [out]
    tasks = label_studio_tasks(queue, votes, spec=spec, image_prefix=image_prefix)
    write_atomically(out, json.dumps(tasks, ensure_ascii=False, indent=1))
    config = out.with_name(f"{out.stem}.label_config.xml")
    write_atomically(config, label_studio_config(spec))
    return [out, config]


def keep_copy(source: Path, kept: Path) -> None:
    """Copies a decisions file to `kept` (in a reviews folder) unless it is there already,
    through a dot-named temporary file renamed into place: everything in a reviews folder is
    imported, so an interrupted copy must not leave half a file there under a real name."""
    if kept.exists():
        return
    kept.parent.mkdir(parents=True, exist_ok=True)
    tmp = kept.with_name(f".{kept.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, kept)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- decisions in


@dataclass
class ParsedDecisions:
    rows: pd.DataFrame
    errors: list[str] = field(default_factory=list)
    skipped: int = 0


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _annotator(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("email") or value.get("id")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return str(value).strip()


def _label_studio_rows(tasks: list[Any]) -> tuple[list[dict[str, Any]], list[str], int]:
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    skipped = 0
    for n, task in enumerate(tasks, start=1):
        if not isinstance(task, dict):
            errors.append(f"task {n}: not a JSON object")
            continue
        data = task.get("data") if isinstance(task.get("data"), dict) else task
        record_id = data.get("record_id") if isinstance(data, dict) else None
        if "annotations" not in task:
            label = task.get(FROM_NAME)
            annotator = _annotator(task.get("annotator")) or "label-studio"
            when = _when(task.get("updated_at") or task.get("created_at"))
            rows.append(_row(n, record_id, label, annotator, when, errors, where="task"))
            continue
        annotations = task.get("annotations") or []
        if not isinstance(annotations, list):
            errors.append(f"task {n}: annotations is not a list")
            continue
        for ann in annotations:
            if not isinstance(ann, dict) or ann.get("was_cancelled"):
                skipped += 1
                continue
            choices, problem = _choices(ann.get("result"))
            if problem:
                errors.append(f"task {n}: {problem}")
                continue
            if not choices:
                skipped += 1
                continue
            if len(set(choices)) > 1:
                errors.append(f"task {n}: more than one choice {sorted(set(choices))}")
                continue
            annotator = _annotator(ann.get("completed_by")) or "label-studio"
            when = _when(ann.get("updated_at") or ann.get("created_at"))
            rows.append(_row(n, record_id, choices[0], annotator, when, errors, where="task"))
    return [r for r in rows if r], errors, skipped


def _choices(result: Any) -> tuple[list[str], str | None]:
    """The labels an annotation's results choose, or what is wrong with them."""
    if result is None:
        return [], None
    if not isinstance(result, list):
        return [], f"result is a {type(result).__name__}, not a list"
    choices: list[str] = []
    for item in result:
        if not isinstance(item, dict) or item.get("type", "choices") != "choices":
            continue
        value = item.get("value")
        chosen = value.get("choices") if isinstance(value, dict) else None
        if chosen is None:
            continue
        if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
            return [], f"choices must be a list of label strings, got {json.dumps(chosen)[:80]}"
        choices.extend(chosen)
    return choices, None


def _row(
    n: int,
    record_id: Any,
    label: Any,
    annotator: str,
    when: datetime | None,
    errors: list[str],
    *,
    where: str,
) -> dict[str, Any]:
    if not isinstance(record_id, str):  # as drops take ids: 10 and 10.0 are "10"
        record_id, problem = id_text(record_id)
        if problem:
            errors.append(f"{where} {n}: record_id: {problem}")
            return {}
    if record_id is None or record_id.strip() == "":
        errors.append(f"{where} {n}: missing record_id")
        return {}
    if not isinstance(label, str) or not label.strip():
        errors.append(f"{where} {n}: missing label for record {record_id}")
        return {}
    return {
        "n": n,
        "where": f"{where} {n}",
        "record_id": str(record_id).strip(),
        "label": label.strip(),
        "annotator": annotator,
        "decided_at": when,
    }


def _csv_rows(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Decision rows of a CSV file, read as drops are (core/ingest/): a quoted field may
    span lines, and an unclosed quote or a row whose field count differs from the header's
    costs that row alone, reported as an error."""
    lines = enumerate(io.BytesIO(text.encode("utf-8", "surrogatepass")), start=1)
    header: list[str] | None = None
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    for n, _, fields, problem in csv_field_rows(lines, MAX_DECISION_LINE_BYTES):
        if problem is not None or fields is None:
            why = problem[1] if problem else "no fields"
            if header is None:
                raise ReviewFileError(f"line {n}: the header line is unreadable ({why})")
            errors.append(f"line {n}: {why}")
            continue
        if header is None:
            header = unique_columns([h.strip() for h in fields])
            missing = {"record_id", "label"} - set(header)
            if missing:
                raise ReviewFileError(
                    "CSV header must have record_id,label (and annotator, decided_at if"
                    f" known; missing {', '.join(sorted(missing))})"
                )
            continue
        if len(fields) != len(header):
            errors.append(f"line {n}: {len(fields)} fields, header has {len(header)}")
            continue
        rec = dict(zip(header, fields, strict=True))
        stated = (rec.get("decided_at") or "").strip()
        when = _when(stated)
        if stated and when is None:
            errors.append(f"line {n}: decided_at {stated!r} is not an ISO 8601 date and time")
            continue
        row = _row(
            n,
            rec.get("record_id"),
            rec.get("label"),
            _annotator(rec.get("annotator")) or "csv",
            when,
            errors,
            where="line",
        )
        if row:
            rows.append(row)
    if header is None:
        raise ReviewFileError("CSV has no header line")
    return rows, errors


def read_decisions(path: Path) -> bytes:
    """A decisions file's bytes; an unreadable file is a ReviewFileError."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise ReviewFileError(f"cannot read {path}: {err.strerror or err}") from None


def parse_decisions(path: Path, raw: bytes | None = None) -> ParsedDecisions:
    """Reads a decisions file (format by content: a JSON list is a Label Studio export,
    anything else must be CSV); `raw`, when given, is its bytes, already read. Row-level
    problems are collected, not raised."""
    if raw is None:
        raw = read_decisions(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ReviewFileError(f"{path.name} is not UTF-8 text") from None
    if not text.strip():
        raise ReviewFileError(f"{path.name} is empty")
    skipped = 0
    if text.lstrip().startswith(("[", "{")):
        try:
            tasks = json.loads(text)
        except ValueError as err:
            raise ReviewFileError(f"{path.name} is not valid JSON ({err})") from None
        if not isinstance(tasks, list):
            raise ReviewFileError(f"{path.name}: a Label Studio export is a JSON list of tasks")
        rows, errors, skipped = _label_studio_rows(tasks)
    else:
        rows, errors = _csv_rows(text)
    frame = pd.DataFrame(rows, columns=["n", "where", *DECISION_COLUMNS])
    return ParsedDecisions(rows=frame, errors=errors, skipped=skipped)


def check_decisions(spec: TaskSpec, parsed: ParsedDecisions) -> tuple[pd.DataFrame, list[str]]:
    """The rows of `parsed` that are valid as far as the task's labels tell (a label typed in
    another case is the task's label when only one matches; one decision per record and
    annotator per file, the first kept), with the file's errors followed by one per row
    left out. Whether each record id is known is the warehouse's to say
    (stages/human.py, `import_decisions`)."""
    errors = list(parsed.errors)
    frame = parsed.rows
    labels = set(spec.label_names)
    by_case: dict[str, list[str]] = {}
    for name in spec.label_names:
        by_case.setdefault(name.casefold(), []).append(name)
    # a label typed in another case ("Urgent") is the task's label when only one matches
    frame = frame.assign(
        label=[
            given
            if given in labels or len(by_case.get(given.casefold(), [])) != 1
            else by_case[given.casefold()][0]
            for given in frame["label"].tolist()
        ]
    )
    bad_label = ~frame["label"].isin(labels)
    for at, rid, label in frame.loc[bad_label, ["where", "record_id", "label"]].itertuples(
        index=False
    ):
        errors.append(f"{at}: unknown label {label!r} for record {rid}")
    frame = frame.loc[~bad_label]
    repeated = frame.duplicated(["record_id", "annotator"], keep="first")
    for at, rid, who in frame.loc[repeated, ["where", "record_id", "annotator"]].itertuples(
        index=False
    ):
        errors.append(f"{at}: duplicate decision for record {rid} by {who}; first one kept")
    return frame.loc[~repeated], errors


def sorted_errors(errors: list[str]) -> list[str]:
    """Row errors in file order: by kind (`line`, `task`) and then number (stable)."""
    return sorted(errors, key=_position)


def _position(message: str) -> tuple[str, int]:
    where, _, _ = message.partition(":")
    kind, _, number = where.partition(" ")
    return (kind, int(number) if number.isdigit() else 0)


def labels_digest(spec: TaskSpec) -> str:
    """A digest of the spec's label names: whether a decision row is valid, and which label
    it names, depends on them."""
    return hashlib.sha256(json.dumps(spec.label_names).encode()).hexdigest()[:16]


def annotator_ratings(votes: pd.DataFrame) -> dict[str, dict[str, str]]:
    """ratings[annotator][record] = latest label, for agreement metrics."""
    from annotation_assets.core.reconcile import latest_votes

    out: dict[str, dict[str, str]] = {}
    for row in latest_votes(votes).itertuples(index=False):
        out.setdefault(str(row.annotator), {})[str(row.record_id)] = str(row.label)
    return out


def labels_by_record(ratings: Mapping[str, Mapping[str, str]]) -> list[list[str]]:
    """Reliability data for Krippendorff's alpha, sparse: per record that has votes, the
    label of each annotator who labeled it (`annotator_ratings`; the metrics ignore who was
    missing), annotators in name order."""
    by_record: dict[str, list[str]] = {}
    for annotator in sorted(ratings):
        for record, label in ratings[annotator].items():
            by_record.setdefault(record, []).append(label)
    return [by_record[r] for r in sorted(by_record)]
