"""The confidence cascade: first sure stage wins, otherwise the best suggestion waits."""

import math

import numpy as np

from annotation_assets.core.routing import NO_LABEL, StageVotes, route_by_confidence


def _stage(
    source: str, labels: list[int], confidences: list[float], *, may_accept: bool = True
) -> StageVotes:
    return StageVotes(
        source,
        np.array(labels, dtype=np.int64),
        np.array(confidences, dtype=np.float64),
        may_accept=may_accept,
    )


def test_first_stage_at_threshold_wins_over_a_more_confident_later_stage() -> None:
    routed = route_by_confidence(
        [_stage("rule", [1], [0.9]), _stage("model", [2], [0.99])], threshold=0.85
    )

    assert (routed.label_index[0], routed.confidence[0]) == (1, 0.9)
    assert (routed.source[0], routed.accepted[0]) == ("rule", True)


def test_later_stage_accepts_when_earlier_stages_are_unsure() -> None:
    routed = route_by_confidence(
        [_stage("rule", [1], [0.6]), _stage("model", [2], [0.9])], threshold=0.85
    )

    assert (routed.label_index[0], routed.source[0], routed.accepted[0]) == (2, "model", True)


def test_confidence_exactly_at_threshold_is_accepted() -> None:
    routed = route_by_confidence([_stage("model", [0], [0.85])], threshold=0.85)

    assert routed.accepted[0]


def test_below_threshold_everywhere_keeps_the_best_suggestion_unaccepted() -> None:
    routed = route_by_confidence(
        [
            _stage("rule", [0], [0.5]),
            _stage("model", [2], [0.8]),
            _stage("heavy", [1], [0.7]),
        ],
        threshold=0.85,
    )

    assert (routed.label_index[0], routed.confidence[0]) == (2, 0.8)
    assert (routed.source[0], routed.accepted[0]) == ("model", False)


def test_stage_that_may_not_accept_only_suggests() -> None:
    routed = route_by_confidence(
        [_stage("model", [2], [0.99], may_accept=False), _stage("heavy", [1], [0.6])],
        threshold=0.85,
    )

    assert (routed.label_index[0], routed.confidence[0]) == (2, 0.99)
    assert (routed.source[0], routed.accepted[0]) == ("model", False)


def test_stage_that_may_not_accept_is_overruled_by_a_later_sure_stage() -> None:
    routed = route_by_confidence(
        [_stage("model", [2], [0.99], may_accept=False), _stage("heavy", [1], [0.9])],
        threshold=0.85,
    )

    assert (routed.label_index[0], routed.source[0], routed.accepted[0]) == (1, "heavy", True)


def test_nan_confidence_is_ignored() -> None:
    routed = route_by_confidence(
        [_stage("rule", [0], [math.nan]), _stage("model", [2], [0.4])], threshold=0.85
    )

    assert (routed.label_index[0], routed.confidence[0], routed.source[0]) == (2, 0.4, "model")


def test_no_suggestion_anywhere_gives_no_label_and_empty_source() -> None:
    routed = route_by_confidence(
        [_stage("rule", [NO_LABEL], [0.0]), _stage("model", [NO_LABEL], [math.nan])],
        threshold=0.85,
    )

    assert (routed.label_index[0], routed.confidence[0]) == (NO_LABEL, 0.0)
    assert (routed.source[0], routed.accepted[0]) == ("", False)


def test_records_are_routed_independently() -> None:
    routed = route_by_confidence(
        [
            _stage("rule", [0, NO_LABEL, 1], [0.95, 0.0, 0.3]),
            _stage("model", [2, 2, 0], [1, 0.9, 0.5]),
        ],
        threshold=0.85,
    )

    assert routed.label_index.tolist() == [0, 2, 0]
    assert routed.source.tolist() == ["rule", "model", "model"]
    assert routed.accepted.tolist() == [True, True, False]


def test_no_stages_give_no_records() -> None:
    routed = route_by_confidence([], threshold=0.85)

    assert len(routed.label_index) == 0
