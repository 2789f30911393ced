"""Reconciling human votes into one decision per record."""

import pandas as pd

from annotation_assets.core.agreement import majority_vote

DECIDED = "decided"
CONTESTED = "contested"
AWAITING = "awaiting_votes"
DECISION_COLUMNS = ["record_id", "label", "share", "n_votes", "annotators", "status"]


def latest_votes(votes: pd.DataFrame) -> pd.DataFrame:
    """One vote per (record, annotator): the most recently decided (or imported) one."""
    if votes.empty:
        return votes.assign(when=pd.Series(dtype="datetime64[ns]"))
    when = votes["decided_at"].fillna(votes["imported_at"])
    ordered = votes.assign(when=when).sort_values(["record_id", "annotator", "when"])
    return ordered.drop_duplicates(["record_id", "annotator"], keep="last")


def reconcile_votes(
    votes: pd.DataFrame,
    *,
    annotators_per_record: int = 1,
    min_agreement: float = 0.5,
    adjudicators: frozenset[str] | set[str] = frozenset(),
) -> pd.DataFrame:
    """Per record with votes: the decided label, or None with status contested (enough votes
    but no clear majority) or awaiting_votes (fewer than annotators_per_record). A vote by an
    adjudicator decides the record on its own."""
    rows = []
    for record_id, group in latest_votes(votes).groupby("record_id", sort=True):
        annotators = sorted(group["annotator"].tolist())
        judged = group[group["annotator"].isin(adjudicators)]
        if not judged.empty:
            label = judged.sort_values("when")["label"].iloc[-1]
            rows.append((record_id, label, 1.0, len(group), annotators, DECIDED))
            continue
        labels = group["label"].tolist()
        if len(labels) < annotators_per_record:
            rows.append((record_id, None, 0.0, len(labels), annotators, AWAITING))
            continue
        label, share = majority_vote(labels, min_agreement=min_agreement, min_votes=1)
        status = DECIDED if label is not None else CONTESTED
        rows.append((record_id, label, float(share), len(labels), annotators, status))
    return pd.DataFrame(rows, columns=DECISION_COLUMNS)
