"""Human review files: the queue going out (Label Studio tasks or CSV) and decisions coming back
(Label Studio JSON / JSON-MIN exports or CSV `record_id,label,annotator`)."""

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

import duckdb
import pandas as pd

from annotation_assets.core.files import write_atomically
from annotation_assets.core.ingest import csv_field_rows, id_text, unique_columns
from annotation_assets.core.spec import TaskSpec
from annotation_assets.core.tables import scalar, transaction

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


def review_queue(
    conn: duckdb.DuckDBPyConnection,
    spec: TaskSpec,
    *,
    stratify: bool = False,
    limit: int | None = None,
    audit: int = 0,
) -> pd.DataFrame:
    """Records waiting for a decision across every drop: contested ones (for adjudication)
    first, then the least confident. With `stratify`, suggested classes take turns so every
    class gets reviewed even when one dominates. `file` is the image's path inside its drop
    (image tasks; None for text)."""
    task = spec.name
    queue = conn.execute(
        f"""
        SELECT p.record_id, p.text, p.suggested_label, p.confidence, p.drop_id, p.reason,
               p.suggested_by, p.model_version, json_extract_string(n.meta, '$.file') AS file
        FROM "{task}".hitl_pending p JOIN "{task}".drops d USING (drop_id)
        LEFT JOIN "{task}".normalized_records n USING (drop_id, record_id)
        ORDER BY (p.reason = 'contested') DESC, p.confidence NULLS FIRST, d.seq, p.record_id
        """
    ).fetchdf()
    if stratify and not queue.empty:
        group = queue["suggested_label"].fillna("")
        contested = queue["reason"] == "contested"
        # turns are counted within the contested block and within the rest separately, so a
        # contested record does not use up its class's first turn among the others
        queue = queue.assign(
            _turn=group.groupby([contested, group]).cumcount(), _contested=contested
        )
        queue = queue.sort_values(
            ["_contested", "_turn", "confidence"],
            ascending=[False, True, True],
            kind="stable",
            na_position="first",
        )
        queue = queue.drop(columns=["_turn", "_contested"])
    if limit is not None:
        queue = queue.head(limit)
    if audit > 0:
        queue = pd.concat([queue, audit_sample(conn, spec, audit)], ignore_index=True)
    return queue.reset_index(drop=True)


def audit_sample(conn: duckdb.DuckDBPyConnection, spec: TaskSpec, n: int) -> pd.DataFrame:
    """`n` automatically accepted records (reason `audit`), spread over the sources and rules
    that accepted them and picked by a hash of the record id (stable from one export to the
    next). People's answers measure the automatic stages' real precision: rules that get
    overruled lose confidence (review.calibrate_rules) and reviewed rows feed calibration."""
    task = spec.name
    return conn.execute(
        f"""
        SELECT record_id, text, suggested_label, confidence, drop_id, 'audit' AS reason,
               suggested_by, model_version, file
        FROM (
            SELECT f.id AS record_id, f.text, f.label AS suggested_label, f.confidence,
                   f.drop_id, f.source AS suggested_by, f.model_version,
                   json_extract_string(n.meta, '$.file') AS file,
                   row_number() OVER (
                       PARTITION BY f.source, coalesce(f.rule_names[1], '')
                       ORDER BY hash(f.id)) AS turn
            FROM "{task}".final_dataset f
            JOIN "{task}".normalized_records n ON n.drop_id = f.drop_id AND n.record_id = f.id
            WHERE f.source <> 'human'
        )
        ORDER BY turn, hash(record_id)
        LIMIT ?
        """,
        [n],
    ).fetchdf()


def votes_by_record(conn: duckdb.DuckDBPyConnection, task: str) -> dict[str, str]:
    """'label:count, ...' per record that has human votes, for adjudicators to see."""
    rows = conn.execute(
        f"""SELECT record_id, string_agg(label || ':' || n, ', ' ORDER BY n DESC, label)
            FROM (SELECT record_id, label, count(*) AS n FROM "{task}".human_labels GROUP BY ALL)
            GROUP BY record_id"""
    ).fetchall()
    return dict(rows)


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
    """Decision rows of a CSV file, read as drops are (core/ingest.py): a quoted field may
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


@dataclass
class ImportReport:
    rows: int
    imported: int
    already_imported: int
    errors: list[str]


def import_decisions(
    conn: duckdb.DuckDBPyConnection,
    spec: TaskSpec,
    parsed: ParsedDecisions,
    *,
    source_file: str,
    new_file: bool = False,
) -> ImportReport:
    """Validates rows against the task (known record ids and labels, one decision per record
    and annotator per file) and inserts the new ones in one transaction.

    A row with a time (`decided_at`) is skipped when the same decision at the same time is
    there already, from any file. A row without one is skipped when the same decision without
    a time is there, from any file: replaying kept files is a no-op.

    `new_file` is for a file arriving under a name of its own (`annotate review import`): when
    every valid row only repeats what is there (a timed row already present, an untimed one
    equal to the annotator's current vote for the record), nothing is inserted; otherwise
    every row is, untimed ones matched within this file only, so an annotator who goes back
    to an earlier label (A, then B, then A) is heard."""
    task = spec.name
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
    frame = frame.loc[~repeated]
    conn.register("_incoming_ids", frame[["record_id"]].drop_duplicates())
    known = {
        r[0]
        for r in conn.execute(
            f'SELECT i.record_id FROM _incoming_ids i SEMI JOIN "{task}".normalized_records n'
            " USING (record_id)"
        ).fetchall()
    }
    conn.unregister("_incoming_ids")
    unknown = ~frame["record_id"].isin(known)
    for at, rid in frame.loc[unknown, ["where", "record_id"]].itertuples(index=False):
        errors.append(f"{at}: unknown record id {rid!r}")
    frame = frame.loc[~unknown, DECISION_COLUMNS].copy()
    frame["source_file"] = source_file
    frame["imported_at"] = datetime.now(UTC).replace(tzinfo=None)
    frame["decided_at"] = pd.to_datetime(frame["decided_at"])
    # An untimed row of an arriving file is matched within that file only (its name is new,
    # so none is); a replayed file's untimed rows are matched in any file, as they always
    # were, so replaying what a warehouse holds never changes a vote.
    same_file = "AND h.source_file = d.source_file" if new_file else ""
    exact = f"""EXISTS (
        SELECT 1 FROM "{task}".human_labels h
        WHERE h.record_id = d.record_id AND h.label = d.label AND h.annotator = d.annotator
          AND (CASE WHEN d.decided_at IS NULL THEN h.decided_at IS NULL {same_file}
                    ELSE h.decided_at = d.decided_at END))"""
    with transaction(conn):
        conn.register("_decisions", frame)
        before = _count(conn, task)
        news = 1
        if new_file:
            news = int(
                scalar(
                    conn,
                    f"""SELECT count(*) FROM _decisions d
                    LEFT JOIN (
                        SELECT record_id, annotator,
                               arg_max(label, coalesce(decided_at, imported_at)) AS label
                        FROM "{task}".human_labels GROUP BY record_id, annotator) c
                      USING (record_id, annotator)
                    WHERE CASE WHEN d.decided_at IS NULL
                               THEN c.label IS DISTINCT FROM d.label
                               ELSE NOT {exact} END""",
                )
            )
        if news:
            conn.execute(
                f"""INSERT INTO "{task}".human_labels
                    SELECT d.record_id, d.label, d.annotator, d.decided_at, d.source_file,
                           d.imported_at
                    FROM _decisions d WHERE NOT {exact}"""
            )
        imported = _count(conn, task) - before
        conn.unregister("_decisions")
    return ImportReport(
        rows=len(parsed.rows) + len(parsed.errors),
        imported=imported,
        already_imported=len(frame) - imported,
        errors=sorted(errors, key=_position),
    )


def labels_digest(spec: TaskSpec) -> str:
    """A digest of the spec's label names: whether a decision row is valid, and which label
    it names, depends on them."""
    return hashlib.sha256(json.dumps(spec.label_names).encode()).hexdigest()[:16]


def replayed_files(conn: duckdb.DuckDBPyConnection, spec: TaskSpec) -> dict[tuple[str, str], int]:
    """(name, sha256) of each decision file already replayed with every row valid under the
    spec's current labels, mapped to its number of rows."""
    rows = conn.execute(
        f'SELECT file, sha256, max(rows) FROM "{spec.name}".review_files'
        " WHERE labels = $labels GROUP BY ALL",
        {"labels": labels_digest(spec)},
    )
    return {(name, digest): int(n) for name, digest, n in rows.fetchall()}


def record_replayed(
    conn: duckdb.DuckDBPyConnection, spec: TaskSpec, name: str, digest: str, rows: int
) -> None:
    """Notes that the file `name` with content hash `digest` was replayed and every row was
    valid (imported or there already) under the spec's labels, so replaying those bytes
    again would change nothing. Written after the import committed: a crash in between only
    costs one more replay."""
    conn.execute(
        f'INSERT INTO "{spec.name}".review_files SELECT $name, $digest, $labels, $rows, $at '
        f'WHERE NOT EXISTS (SELECT 1 FROM "{spec.name}".review_files'
        " WHERE file = $name AND sha256 = $digest AND labels = $labels)",
        {
            "name": name,
            "digest": digest,
            "labels": labels_digest(spec),
            "rows": rows,
            "at": datetime.now(UTC).replace(tzinfo=None),
        },
    )


def _position(message: str) -> tuple[str, int]:
    where, _, _ = message.partition(":")
    kind, _, number = where.partition(" ")
    return (kind, int(number) if number.isdigit() else 0)


def _count(conn: duckdb.DuckDBPyConnection, task: str) -> int:
    return int(scalar(conn, f'SELECT count(*) FROM "{task}".human_labels'))


def decisions_frame(conn: duckdb.DuckDBPyConnection, task: str) -> pd.DataFrame:
    return conn.execute(
        f'SELECT record_id, label, annotator, decided_at, imported_at FROM "{task}".human_labels'
    ).fetchdf()


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
