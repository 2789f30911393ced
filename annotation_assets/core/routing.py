"""The confidence cascade: each record takes the label of the first stage that is sure enough."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NO_LABEL = -1


@dataclass(frozen=True)
class StageVotes:
    """One stage's suggestion per record: label index (-1 = none) and confidence. A stage
    whose confidences are not trusted (`may_accept=False`) can suggest but never accept."""

    source: str
    label_index: np.ndarray
    confidence: np.ndarray
    may_accept: bool = True


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
