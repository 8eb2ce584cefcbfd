"""Calibration: expected calibration error, the reliability curve, and the proper scores (NLL, Brier)."""
from __future__ import annotations

import numpy as np
from sklearn.calibration import calibration_curve as _sk_calibration_curve
from sklearn.metrics import brier_score_loss, log_loss

from ._inputs import scored


def _confidence(y_true, prob):
    """Top-label confidence and whether the top label is right (Guo et al. 2017): for a binary problem the
    confidence is max(p, 1 - p) and the top label is the 0.5-threshold prediction."""
    s = scored(y_true, prob)
    conf = np.maximum(s.p, 1.0 - s.p) if s.binary else s.p.max(axis=1)
    top = (s.p >= 0.5).astype(np.int64) if s.binary else s.p.argmax(axis=1)
    return s, conf, (top == s.y).astype(np.float64)


def _check_bins(n_bins):
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    return int(n_bins)


def expected_calibration_error(y_true, prob, n_bins=15) -> float:
    """Sum over equal-width confidence bins of (bin share) * |accuracy - mean confidence| (top-label ECE)."""
    n_bins = _check_bins(n_bins)
    _, conf, correct = _confidence(y_true, prob)
    bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, correct, n_bins) - np.bincount(bins, conf, n_bins))
    return float(gap.sum() / count.sum())


def calibration_curve(y_true, prob, n_bins=10) -> tuple[np.ndarray, np.ndarray]:
    """(observed frequency, mean predicted probability) per non-empty equal-width bin, scikit-learn's order:
    for binary problems the positive rate against the positive-class probability, for multiclass the top-label
    accuracy against its confidence."""
    n_bins = _check_bins(n_bins)
    s, conf, correct = _confidence(y_true, prob)
    if s.binary:
        return _sk_calibration_curve(s.y, s.p, n_bins=n_bins, strategy="uniform")
    return _sk_calibration_curve(correct, conf, n_bins=n_bins, strategy="uniform")


def calibration_metrics(y_true, prob, n_bins=15) -> dict:
    """``nll`` (mean negative log-likelihood of the true class), ``brier`` (scikit-learn's: the squared error of
    the positive-class probability for binary problems, of the whole probability vector for multiclass) and
    top-label ``ece``: how far the probabilities are from the frequencies they claim."""
    s = scored(y_true, prob)
    labels = list(range(s.num_classes))
    # float32 softmax outputs sum to 1 only up to rounding, which scikit-learn warns about
    probs = s.scores / s.scores.sum(axis=1, keepdims=True)
    return {"nll": float(log_loss(s.y, probs, labels=labels)),
            "brier": float(brier_score_loss(s.y, probs, labels=labels)),
            "ece": expected_calibration_error(s.y, s.p, n_bins)}
