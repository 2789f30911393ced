from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from annotation_assets.core.calibration import (
    DEFAULT_THRESHOLDS,
    IsotonicCalibrator,
    expected_calibration_error,
    fit_temperature,
    reliability_table,
    softmax,
    threshold_what_if,
)


def _overconfident(
    rng: np.random.Generator, n: int, k: int, *, sharpen: float = 2.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True logits z, labels drawn from softmax(z), reported logits sharpen * z."""
    z = rng.normal(scale=1.5, size=(n, k))
    p = softmax(z)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return z, labels, sharpen * z


def _top_ece(probs: np.ndarray, labels: np.ndarray) -> float:
    return expected_calibration_error(probs.max(axis=1), probs.argmax(axis=1) == labels)


def test_ece_hand_example() -> None:
    # Bin [0.1, 0.2): conf 0.15, acc 0 -> |0 - 0.15| * 2/4; bin [0.8, 0.9): conf 0.85, acc 0.5
    # -> |0.5 - 0.85| * 2/4.  ECE = 0.075 + 0.175 = 0.25.
    conf = np.array([0.15, 0.15, 0.85, 0.85])
    correct = np.array([0, 0, 1, 0])
    assert expected_calibration_error(conf, correct) == pytest.approx(0.25)
    table = reliability_table(conf, correct)
    assert [(r["lo"], r["hi"], r["count"]) for r in table] == [
        (pytest.approx(0.1), pytest.approx(0.2), 2),
        (pytest.approx(0.8), pytest.approx(0.9), 2),
    ]
    assert table[1]["mean_confidence"] == pytest.approx(0.85)
    assert table[1]["accuracy"] == pytest.approx(0.5)


def test_ece_bin_edges_and_empty() -> None:
    table = reliability_table(np.array([0.0, 1.0, 0.5]), np.array([1, 1, 0]), n_bins=2)
    assert [(r["lo"], r["hi"], r["count"]) for r in table] == [(0.0, 0.5, 1), (0.5, 1.0, 2)]
    assert math.isnan(expected_calibration_error(np.array([]), np.array([])))
    assert reliability_table(np.array([]), np.array([])) == []
    conf = np.array([0.9, 0.9, 0.2])
    correct = np.array([1.0, np.nan, 0.0])
    assert expected_calibration_error(conf, correct) == pytest.approx((0.1 + 0.2) / 2)
    with pytest.raises(ValueError, match="same length"):
        expected_calibration_error(np.array([0.5]), np.array([1, 0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error(np.array([1.5]), np.array([1]))
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(np.array([0.5]), np.array([1]), n_bins=0)


def test_ece_calibrated_vs_overconfident() -> None:
    rng = np.random.default_rng(0)
    conf = rng.random(50_000)
    calibrated = rng.random(conf.size) < conf
    assert expected_calibration_error(conf, calibrated) < 0.02
    high = rng.uniform(0.8, 1.0, size=50_000)
    correct = rng.random(high.size) < 0.6
    assert expected_calibration_error(high, correct) == pytest.approx(0.3, abs=0.02)


def test_threshold_what_if() -> None:
    rng = np.random.default_rng(2)
    conf = rng.random(1_000)
    correct = (rng.random(conf.size) < conf).astype(float)
    correct[::3] = np.nan
    rows = threshold_what_if(conf, correct)
    assert [r["threshold"] for r in rows] == list(DEFAULT_THRESHOLDS)
    assert DEFAULT_THRESHOLDS[:3] == (0.5, 0.55, 0.6) and DEFAULT_THRESHOLDS[-2:] == (0.95, 0.99)
    rates = [r["review_rate"] for r in rows]
    assert rates == sorted(rates)
    for r in rows:
        t = r["threshold"]
        assert r["auto_accepted"] == int((conf >= t).sum())
        assert r["review_rate"] + r["auto_accepted"] / conf.size == pytest.approx(1.0)
        mask = (conf >= t) & ~np.isnan(correct)
        assert r["accuracy"] == pytest.approx(correct[mask].mean())


def test_threshold_what_if_hand_and_unknown() -> None:
    conf = np.array([0.4, 0.6, 0.7, 0.9])
    correct = np.array([1.0, 0.0, np.nan, 1.0])
    rows = threshold_what_if(conf, correct, thresholds=[0.6, 0.95])
    assert rows[0] == {"threshold": 0.6, "review_rate": 0.25, "auto_accepted": 3, "accuracy": 0.5}
    assert rows[1] == {"threshold": 0.95, "review_rate": 1.0, "auto_accepted": 0, "accuracy": None}
    unknown = threshold_what_if(conf, None, thresholds=[0.5])
    assert unknown[0]["accuracy"] is None and unknown[0]["auto_accepted"] == 3
    empty = threshold_what_if(np.array([]), None, thresholds=[0.5])
    assert math.isnan(empty[0]["review_rate"]) and empty[0]["auto_accepted"] == 0


def test_softmax() -> None:
    logits = np.array([[1000.0, 1000.0, -1000.0], [1.0, 2.0, 3.0]])
    p = softmax(logits)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(softmax(logits, temperature=2.0), softmax(logits / 2.0))
    np.testing.assert_allclose(softmax(np.array([0.0, 0.0])), [0.5, 0.5])
    with pytest.raises(ValueError, match="temperature"):
        softmax(logits, temperature=0.0)


@pytest.mark.parametrize("true_t", [0.5, 2.0])
def test_fit_temperature_recovers_known_temperature(true_t: float) -> None:
    rng = np.random.default_rng(3)
    z, labels, _ = _overconfident(rng, 20_000, 5)
    fitted = fit_temperature(z * true_t, labels)
    assert fitted == pytest.approx(true_t, rel=0.1)


def test_fit_temperature_validation() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match="integers"):
        fit_temperature(np.zeros((2, 3)), np.array([0, 3]))


def test_isotonic_calibrator_lowers_ece() -> None:
    rng = np.random.default_rng(4)
    _, labels, logits = _overconfident(rng, 20_000, 4)
    probs = softmax(logits)
    fit_p, fit_y, test_p, test_y = probs[:10_000], labels[:10_000], probs[10_000:], labels[10_000:]
    cal = IsotonicCalibrator().fit(fit_p, fit_y)
    calibrated = cal.transform(test_p)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    before, after = _top_ece(test_p, test_y), _top_ece(calibrated, test_y)
    assert before > 0.1
    assert after < before / 2
    restored = pickle.loads(pickle.dumps(cal))
    np.testing.assert_allclose(restored.transform(test_p), calibrated)


def test_isotonic_calibrator_identity_for_small_class() -> None:
    rng = np.random.default_rng(5)
    _, labels, logits = _overconfident(rng, 3_000, 3)
    labels = np.where(labels == 2, 0, labels)
    labels[:5] = 2
    probs = softmax(logits)
    cal = IsotonicCalibrator(min_samples=20).fit(probs, labels)
    assert cal.calibrators_ is not None
    assert cal.calibrators_[2] is None
    assert cal.calibrators_[0] is not None and cal.calibrators_[1] is not None
    raw = cal.transform(probs, renormalize=False)
    np.testing.assert_array_equal(raw[:, 2], probs[:, 2])
    assert not np.allclose(raw[:, 0], probs[:, 0])


def test_isotonic_calibrator_fallbacks() -> None:
    probs = softmax(np.random.default_rng(6).normal(size=(10, 3)))
    labels = np.zeros(10, dtype=int)
    cal = IsotonicCalibrator(min_samples=5).fit(probs, labels)
    assert cal.calibrators_ == [None, None, None]
    np.testing.assert_allclose(cal.transform(probs), probs)
    unreviewed = IsotonicCalibrator().fit(probs, np.full(10, -1))
    assert unreviewed.n_classes_ == 3
    np.testing.assert_allclose(unreviewed.transform(probs), probs)
    with pytest.raises(RuntimeError, match="not fitted"):
        IsotonicCalibrator().transform(probs)
    with pytest.raises(ValueError, match="shape"):
        cal.transform(probs[:, :2])
