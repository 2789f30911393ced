"""The human decisions on a task's records, reconciled from the votes in human_labels."""

import duckdb
import pandas as pd

from annotation_assets.core import reconcile
from annotation_assets.core.spec import TaskSpec
from annotation_assets.warehouse.sql import q


def human_decisions(conn: duckdb.DuckDBPyConnection, spec: TaskSpec) -> pd.DataFrame:
    """The reconciled human decision (or contested/awaiting status) of every voted record."""
    votes = conn.execute(
        "SELECT record_id, label, annotator, decided_at, imported_at"
        f" FROM {q(spec.name, 'human_labels')}"
    ).fetchdf()
    return reconcile.reconcile_votes(
        votes,
        annotators_per_record=spec.review.annotators_per_record,
        min_agreement=spec.review.min_agreement,
        adjudicators=set(spec.review.adjudicators),
    )


def decided_records(conn: duckdb.DuckDBPyConnection, spec: TaskSpec) -> pd.DataFrame:
    """The records people have decided (neither contested nor awaiting votes)."""
    decisions = human_decisions(conn, spec)
    return decisions[decisions["status"] == reconcile.DECIDED]
