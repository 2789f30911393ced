"""The confidence cascade: each record takes the label of the first stage that is sure enough."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from annotation_assets.core.spec import TaskSpec

NO_LABEL = -1


@dataclass(frozen=True)
class StageVotes:
    """One stage's suggestion per record: label index (-1 = none) and confidence. A stage
    whose confidences are not trusted (`may_accept=False`) can suggest but never accept;
    `may_accept` may also be given per record (a stage filled by several tiers)."""

    source: str
    label_index: np.ndarray
    confidence: np.ndarray
    may_accept: bool | np.ndarray = True


@dataclass(frozen=True)
class Routed:
    label_index: np.ndarray
    confidence: np.ndarray
    source: np.ndarray
    accepted: np.ndarray


def route_by_confidence(stages: Sequence[StageVotes], *, threshold: float) -> Routed:
    """Accepts, per record, the first stage (in cascade order) with a label at or above
    `threshold`; other records keep the most confident suggestion of any stage and are not
    accepted. Records with no suggestion at all get label -1, confidence 0, source ''."""
    n = len(stages[0].label_index) if stages else 0
    label = np.full(n, NO_LABEL, dtype=np.int64)
    conf = np.zeros(n, dtype=np.float64)
    source = np.full(n, "", dtype=object)
    accepted = np.zeros(n, dtype=bool)
    best = np.full(n, -np.inf)
    for stage in stages:
        has = (stage.label_index != NO_LABEL) & ~np.isnan(stage.confidence)
        sure = has & ~accepted & (stage.confidence >= threshold) & stage.may_accept
        better = has & ~accepted & ~sure & (stage.confidence > best)
        for mask in (sure, better):
            label[mask] = stage.label_index[mask]
            conf[mask] = stage.confidence[mask]
            source[mask] = stage.source
        best = np.where(better, stage.confidence, best)
        accepted |= sure
    return Routed(label_index=label, confidence=conf, source=source, accepted=accepted)


def route_unknown(
    routed: Routed, stages: Sequence[StageVotes], spec: TaskSpec, unknown: int
) -> Routed:
    """Records no stage accepted whose best score of any stage is below
    `images.unknown_below` get the unknown label: accepted (`unknown_route: label`, at
    confidence 1 - best score) or as the suggestion for review (`unknown_route: review`)."""
    best = np.zeros(len(routed.label_index))
    for stage in stages:
        best = np.fmax(best, np.nan_to_num(stage.confidence))
    low = ~routed.accepted & (best < spec.images.unknown_below)
    label = routed.label_index.copy()
    label[low] = unknown
    if spec.images.unknown_route == "review":
        return Routed(label, routed.confidence, routed.source, routed.accepted)
    confidence = routed.confidence.copy()
    confidence[low] = 1.0 - best[low]
    source = routed.source.copy()
    source[low] = stages[-1].source
    accepted = routed.accepted | low
    return Routed(label, confidence, source, accepted)


def keep_earlier_acceptances(
    out: pd.DataFrame, previous: pd.DataFrame, threshold: float, sources: Sequence[str]
) -> tuple[pd.DataFrame, int]:
    """Re-scoring after new human decisions re-scores the records still waiting; a record a
    stage already auto-accepted from one of `sources` keeps that label (and its model
    version) as long as its text is unchanged, its confidence still clears the threshold and
    no rule now settles it, so a dataset does not churn and the review queue does not refill
    with records that had left it. Returns the rows and how many kept their earlier label."""
    if previous.empty:
        return out, 0
    earlier = previous[
        previous["accepted"]
        & previous["source"].isin(list(sources))
        & (previous["confidence"] >= threshold)
    ].set_index("record_id")
    current = out.set_index("record_id")
    same = current.index.intersection(earlier.index)
    same = same[
        (current.loc[same, "dedup_key"].to_numpy() == earlier.loc[same, "dedup_key"].to_numpy())
        & (current.loc[same, "source"].to_numpy() != "rule")
    ]
    if len(same) == 0:
        return out, 0
    columns = [c for c in current.columns if c in earlier.columns and c != "drop_id"]
    current.loc[same, columns] = earlier.loc[same, columns]
    return current.reset_index()[out.columns], len(same)
