"""Percentile bootstrap confidence intervals of any classification metric."""
from __future__ import annotations

import numpy as np

from ._inputs import scored
from .classification import METRICS, ORDINAL_METRICS

NAMED = {**METRICS, **ORDINAL_METRICS}


def bootstrap_ci(y_true, prob, metric="auroc", n_boot=1000, alpha=0.05, seed=0, threshold=None) -> tuple[float, float]:
    """The (alpha/2, 1 - alpha/2) percentiles of ``metric`` over ``n_boot`` resamples with replacement,
    seeded. ``metric`` names a scalar entry of ``classification_metrics`` (the ordinal ones included) or is a
    callable ``f(y_true, prob) -> float``. Resamples where the metric is undefined (e.g. one class only) are left out;
    (NaN, NaN) if all are."""
    fn = _metric_fn(metric)
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    s = scored(y_true, prob, threshold)
    rng = np.random.default_rng(seed)
    n = s.y.size
    values = np.array([fn(s.take(rng.integers(0, n, n))) for _ in range(int(n_boot))])
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _metric_fn(metric):
    """``metric`` (a name of ``METRICS`` or a callable ``f(y_true, prob)``) as a function of a ``Scored``."""
    if isinstance(metric, str):
        if metric not in NAMED:
            raise ValueError(f"metric must be one of {sorted(NAMED)} or a callable, got {metric!r}")
        return NAMED[metric]
    if callable(metric):
        return lambda s: float(metric(s.y, s.p))
    raise TypeError(f"metric must be a name or a callable, got {type(metric).__name__}")


def paired_bootstrap_delta(y_true, prob_a, prob_b, metric="auroc", n_boot=1000, alpha=0.05, seed=0,
                           threshold_a=None, threshold_b=None) -> dict:
    """metric(b) - metric(a) of two models scored on the same samples, with a percentile bootstrap interval
    of the difference: both models are evaluated on the SAME resampled indices, so the shared sampling noise
    of the test set cancels (an interval far narrower than comparing two separate intervals). ``threshold_a``
    and ``threshold_b`` are each model's decision threshold (binary). Returns ``delta`` (on the full data),
    ``lo``, ``hi`` and ``n_valid`` (resamples where both metrics are defined; lo = hi = NaN if none)."""
    fn = _metric_fn(metric)
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    a, b = scored(y_true, prob_a, threshold_a), scored(y_true, prob_b, threshold_b)
    if a.p.shape != b.p.shape:
        raise ValueError(f"prob_a and prob_b must have the same shape, got {a.p.shape} and {b.p.shape}")
    rng = np.random.default_rng(seed)
    n = a.y.size
    deltas = []
    for _ in range(int(n_boot)):
        index = rng.integers(0, n, n)
        deltas.append(fn(b.take(index)) - fn(a.take(index)))
    deltas = np.array(deltas)
    deltas = deltas[~np.isnan(deltas)]
    lo, hi = np.quantile(deltas, [alpha / 2, 1 - alpha / 2]) if deltas.size else (float("nan"),) * 2
    return {"delta": fn(b) - fn(a), "lo": float(lo), "hi": float(hi), "n_valid": int(deltas.size)}
