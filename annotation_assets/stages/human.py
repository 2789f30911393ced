"""The human stage over the warehouse: the review queue read from a task's tables, decision
files imported into human_labels, and the ledger of decision files already replayed.

Reading and checking the files themselves, and writing the queue out, is core/reviews.py's."""

from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import pandas as pd

from annotation_assets.core.reviews import (
    DECISION_COLUMNS,
    ParsedDecisions,
    check_decisions,
    labels_digest,
    sorted_errors,
)
from annotation_assets.core.spec import TaskSpec
from annotation_assets.warehouse.tables import scalar, transaction

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


# ---------------------------------------------------------------------------- decisions in


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
    frame, errors = check_decisions(spec, parsed)
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
        errors=sorted_errors(errors),
    )


def _count(conn: duckdb.DuckDBPyConnection, task: str) -> int:
    return int(scalar(conn, f'SELECT count(*) FROM "{task}".human_labels'))


def decisions_frame(conn: duckdb.DuckDBPyConnection, task: str) -> pd.DataFrame:
    """Every vote in human_labels (record, label, annotator and its times)."""
    return conn.execute(
        f'SELECT record_id, label, annotator, decided_at, imported_at FROM "{task}".human_labels'
    ).fetchdf()


# --------------------------------------------------------------------- replayed-file ledger


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
