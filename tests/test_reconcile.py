"""Reconciling human votes: single annotators, consensus, contested records, adjudication."""

from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotation_assets.core.reconcile import (
    AWAITING,
    CONTESTED,
    DECIDED,
    DECISION_COLUMNS,
    reconcile_votes,
)

IMPORTED = pd.Timestamp("2026-01-02 00:00:00")


def _votes(*votes: tuple[str, str, str, str | None]) -> pd.DataFrame:
    """Votes as (record_id, annotator, label, decided_at) rows, all imported at IMPORTED."""
    return pd.DataFrame(
        {
            "record_id": [v[0] for v in votes],
            "annotator": [v[1] for v in votes],
            "label": [v[2] for v in votes],
            "decided_at": pd.to_datetime(pd.Series([v[3] for v in votes], dtype=object)),
            "imported_at": [IMPORTED] * len(votes),
        }
    )


def _decision(votes: pd.DataFrame, **options: Any) -> dict[str, Any]:
    decisions = reconcile_votes(votes, **options)
    assert len(decisions) == 1, decisions
    return {str(k): v for k, v in decisions.iloc[0].items()}


def test_one_annotator_decides_by_default() -> None:
    decision = _decision(_votes(("r1", "ann", "positive", "2026-01-01 10:00")))

    assert (decision["label"], decision["status"], decision["share"]) == ("positive", DECIDED, 1.0)


def test_decisions_have_the_decision_columns() -> None:
    decisions = reconcile_votes(_votes(("r1", "ann", "positive", None)))

    assert list(decisions.columns) == DECISION_COLUMNS


def test_one_vote_of_two_needed_awaits_votes() -> None:
    decision = _decision(
        _votes(("r1", "ann", "positive", "2026-01-01 10:00")), annotators_per_record=2
    )

    assert (decision["label"], decision["status"], decision["n_votes"]) == (None, AWAITING, 1)


def test_two_agreeing_votes_decide_with_full_share() -> None:
    votes = _votes(
        ("r1", "ann", "positive", "2026-01-01 10:00"),
        ("r1", "bob", "positive", "2026-01-01 11:00"),
    )

    decision = _decision(votes, annotators_per_record=2)

    assert (decision["label"], decision["status"], decision["share"]) == ("positive", DECIDED, 1.0)
    assert decision["annotators"] == ["ann", "bob"]


def test_one_to_one_split_is_contested() -> None:
    votes = _votes(
        ("r1", "ann", "positive", "2026-01-01 10:00"),
        ("r1", "bob", "negative", "2026-01-01 11:00"),
    )

    decision = _decision(votes, annotators_per_record=2)

    assert (decision["label"], decision["status"], decision["share"]) == (None, CONTESTED, 0.5)


def test_two_to_one_majority_decides_with_its_share() -> None:
    votes = _votes(
        ("r1", "ann", "positive", "2026-01-01 10:00"),
        ("r1", "bob", "positive", "2026-01-01 11:00"),
        ("r1", "cy", "negative", "2026-01-01 12:00"),
    )

    decision = _decision(votes, annotators_per_record=2, min_agreement=0.5)

    assert (decision["label"], decision["status"]) == ("positive", DECIDED)
    assert decision["share"] == pytest.approx(2 / 3, abs=1e-3)


def test_two_to_one_majority_below_min_agreement_is_contested() -> None:
    votes = _votes(
        ("r1", "ann", "positive", "2026-01-01 10:00"),
        ("r1", "bob", "positive", "2026-01-01 11:00"),
        ("r1", "cy", "negative", "2026-01-01 12:00"),
    )

    decision = _decision(votes, annotators_per_record=2, min_agreement=0.75)

    assert (decision["label"], decision["status"]) == (None, CONTESTED)


def test_adjudicator_vote_decides_a_contested_record() -> None:
    votes = _votes(
        ("r1", "ann", "positive", "2026-01-01 10:00"),
        ("r1", "bob", "negative", "2026-01-01 11:00"),
        ("r1", "lead", "negative", "2026-01-01 12:00"),
    )

    decision = _decision(votes, annotators_per_record=2, adjudicators={"lead"})

    assert (decision["label"], decision["status"], decision["share"]) == ("negative", DECIDED, 1.0)
    assert decision["n_votes"] == 3


def test_adjudicator_vote_overrides_a_majority() -> None:
    votes = _votes(
        ("r1", "ann", "positive", "2026-01-01 10:00"),
        ("r1", "bob", "positive", "2026-01-01 11:00"),
        ("r1", "lead", "neutral", "2026-01-01 12:00"),
    )

    decision = _decision(votes, annotators_per_record=2, adjudicators={"lead"})

    assert (decision["label"], decision["status"]) == ("neutral", DECIDED)


def test_revote_by_the_same_annotator_replaces_the_earlier_vote() -> None:
    votes = _votes(
        ("r1", "ann", "positive", "2026-01-01 12:00"),
        ("r1", "ann", "negative", "2026-01-01 10:00"),
        ("r1", "bob", "positive", "2026-01-01 11:00"),
    )

    decision = _decision(votes, annotators_per_record=2)

    assert (decision["label"], decision["status"], decision["n_votes"]) == ("positive", DECIDED, 2)
    assert decision["share"] == 1.0


def test_revote_without_decided_at_is_ordered_by_import_time() -> None:
    votes = pd.DataFrame(
        {
            "record_id": ["r1", "r1"],
            "annotator": ["ann", "ann"],
            "label": ["negative", "positive"],
            "decided_at": pd.Series([pd.NaT, pd.NaT], dtype="datetime64[ns]"),
            "imported_at": pd.to_datetime(["2026-01-01 09:00", "2026-01-01 08:00"]),
        }
    )

    assert _decision(votes)["label"] == "negative"


def test_each_record_is_reconciled_separately() -> None:
    votes = _votes(
        ("r2", "ann", "negative", "2026-01-01 10:00"),
        ("r1", "ann", "positive", "2026-01-01 10:00"),
        ("r1", "bob", "positive", "2026-01-01 11:00"),
    )

    decisions = reconcile_votes(votes, annotators_per_record=2)

    assert decisions[["record_id", "status"]].values.tolist() == [
        ["r1", DECIDED],
        ["r2", AWAITING],
    ]


def test_no_votes_give_no_decisions() -> None:
    decisions = reconcile_votes(_votes())

    assert decisions.empty and list(decisions.columns) == DECISION_COLUMNS


def _reconcile_one_by_one(
    votes: pd.DataFrame,
    annotators_per_record: int,
    min_agreement: float,
    adjudicators: frozenset[str],
) -> list[tuple[Any, ...]]:
    """The reconciliation rules applied record by record: the latest vote per annotator,
    an adjudicator's alone, else `agreement.majority_vote` of the record's labels."""
    from annotation_assets.core.agreement import majority_vote
    from annotation_assets.core.reconcile import latest_votes

    out = []
    for record_id, group in latest_votes(votes).groupby("record_id", sort=True):
        annotators = sorted(group["annotator"].tolist())
        judged = group[group["annotator"].isin(adjudicators)]
        if not judged.empty:
            label = judged.sort_values("when", kind="stable")["label"].iloc[-1]
            out.append((record_id, label, 1.0, len(group), annotators, DECIDED))
            continue
        labels = group["label"].tolist()
        if len(labels) < annotators_per_record:
            out.append((record_id, None, 0.0, len(labels), annotators, AWAITING))
            continue
        label, share = majority_vote(labels, min_agreement=min_agreement, min_votes=1)
        out.append(
            (
                record_id,
                label,
                share,
                len(labels),
                annotators,
                CONTESTED if label is None else DECIDED,
            )
        )
    return out


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["r1", "r2", "r3", "r4"]),
            st.sampled_from(["ann", "bob", "cat", "boss"]),
            st.sampled_from(["pos", "neg", "neu"]),
            st.one_of(st.none(), st.sampled_from(["2026-01-01 10:00", "2026-01-01 11:00"])),
        ),
        max_size=25,
    ),
    st.integers(1, 4),
    st.sampled_from([0.5, 0.6, 0.75, 1.0]),
    st.sampled_from([frozenset(), frozenset({"boss"}), frozenset({"boss", "cat"})]),
)
@settings(max_examples=300, deadline=None)
def test_reconcile_votes_follows_the_rules_record_by_record(
    rows: list[tuple[str, str, str, str | None]],
    per_record: int,
    min_agreement: float,
    adjudicators: frozenset[str],
) -> None:
    votes = _votes(*rows)
    got = reconcile_votes(
        votes,
        annotators_per_record=per_record,
        min_agreement=min_agreement,
        adjudicators=adjudicators,
    )
    assert list(got.columns) == DECISION_COLUMNS
    expected = _reconcile_one_by_one(votes, per_record, min_agreement, adjudicators)
    assert [tuple(r) for r in got.itertuples(index=False)] == expected
