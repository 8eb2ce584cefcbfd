"""Expected calibration error and the calibration curve."""
import numpy as np
import pytest

from sklearn.metrics import brier_score_loss, log_loss

from medkern.metrics import calibration_curve, calibration_metrics, classification_metrics, expected_calibration_error


def test_ece_hand_computed():
    # confidences .9 .7 .55 .75 -> bins (width .2) 4, 3, 2, 3; top label right, right, right, wrong
    ece = expected_calibration_error([1, 0, 1, 1], [0.9, 0.3, 0.55, 0.25], n_bins=5)
    assert ece == pytest.approx((0.1 * 1 + abs(0.5 - 0.725) * 2 + 0.45 * 1) / 4)


def test_ece_calibrated_near_zero_overconfident_large():
    rng = np.random.default_rng(0)
    p = rng.random(100_000)
    y = (rng.random(p.size) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.01
    sharp = np.clip((p - 0.5) * 3 + 0.5, 0, 1)  # same ranking, far too confident
    assert expected_calibration_error(y, sharp) > 0.1
    assert classification_metrics(y[:1000], p[:1000])["ece"] == expected_calibration_error(y[:1000], p[:1000])


def test_ece_multiclass_calibrated():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet([0.5, 0.5, 0.5], 50_000)
    y = np.array([rng.choice(3, p=row) for row in probs[:20_000]])
    assert expected_calibration_error(y, probs[:20_000]) < 0.02


def test_calibration_curve_binary_and_multiclass():
    rng = np.random.default_rng(2)
    p = rng.random(50_000)
    y = (rng.random(p.size) < p).astype(int)
    observed, predicted = calibration_curve(y, p, n_bins=10)
    assert len(observed) == 10 and np.abs(observed - predicted).max() < 0.03
    probs = rng.dirichlet([1, 1, 1, 1], 2000)
    y4 = probs.argmax(1)  # always right: observed accuracy 1 in every bin
    observed, predicted = calibration_curve(y4, probs, n_bins=5)
    assert np.all(observed == 1.0) and np.all(predicted >= 0.25)


def test_bad_bins():
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0, 1], [0.2, 0.8], n_bins=0)


@pytest.mark.parametrize("y, prob", [
    ([0, 1, 1, 0], [0.2, 0.7, 0.4, 0.1]),
    ([0, 1, 2, 2], [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.5, 0.3, 0.2]]),
], ids=["binary", "three-class"])
def test_calibration_metrics_are_scikit_learns_scores(y, prob):
    m = calibration_metrics(y, prob)
    probs = np.asarray(prob) if np.ndim(prob) == 2 else np.stack([1 - np.asarray(prob), prob], axis=1)
    assert m["nll"] == pytest.approx(log_loss(y, probs))
    assert m["brier"] == pytest.approx(brier_score_loss(y, probs, labels=list(range(probs.shape[1]))))
    assert m["ece"] == expected_calibration_error(y, prob)
