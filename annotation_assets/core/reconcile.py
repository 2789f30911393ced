"""Reconciling human votes into one decision per record."""

import pandas as pd

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
    but no clear majority: the top label's share of the votes is below min_agreement, or two
    labels tie for the top) or awaiting_votes (fewer than annotators_per_record). A vote by
    an adjudicator decides the record on its own (the adjudicators' latest vote).

    The majority is `agreement.majority_vote` of each record's labels (tests hold it to
    that), computed as grouped operations over all records at once: every stage of every drop
    reconciles all of a task's votes, so a Python step per record would make a re-score after
    a review import cost the drops times the votes in interpreter time."""
    latest = latest_votes(votes)  # sorted by record, annotator, time
    if latest.empty:
        return pd.DataFrame(columns=DECISION_COLUMNS)
    by_record = latest.groupby("record_id", sort=True)
    out = pd.DataFrame(
        {
            "n_votes": by_record.size().astype("int64"),
            "annotators": by_record["annotator"].agg(list),
        }
    )
    # Majority: each label's count per record, most votes first.
    counts = (
        latest.dropna(subset=["label"])
        .groupby(["record_id", "label"], sort=True)
        .size()
        .rename("n")
        .reset_index()
        .sort_values(["record_id", "n"], ascending=[True, False], kind="stable")
    )
    ranked = counts.groupby("record_id", sort=True)
    top = ranked.nth(0).set_index("record_id")
    runner_up = ranked.nth(1).set_index("record_id")["n"]
    total = ranked["n"].sum()
    share = (top["n"] / total).reindex(out.index).fillna(0.0)
    tied = runner_up.reindex(out.index).eq(top["n"].reindex(out.index))
    clear = (share >= min_agreement) & ~tied & share.gt(0)
    label = top["label"].reindex(out.index).astype(object).where(clear, None)
    status = pd.Series(CONTESTED, index=out.index, dtype=object).where(~clear, DECIDED)
    awaiting = out["n_votes"] < annotators_per_record
    label = label.where(~awaiting, None)
    share = share.where(~awaiting, 0.0)
    status = status.where(~awaiting, AWAITING)
    if adjudicators:
        judged = latest[latest["annotator"].isin(adjudicators)]
        if not judged.empty:
            final = (
                judged.sort_values(["record_id", "when"], kind="stable")
                .groupby("record_id", sort=True)
                .tail(1)
                .set_index("record_id")["label"]
            )
            ruled = out.index.isin(final.index)
            label = label.where(~ruled, final.reindex(out.index).astype(object))
            share = share.where(~ruled, 1.0)
            status = status.where(~ruled, DECIDED)
    out["label"] = label.astype(object).where(label.notna(), None)
    out["share"] = share.astype(float)
    out["status"] = status
    return out.rename_axis("record_id").reset_index()[DECISION_COLUMNS]
