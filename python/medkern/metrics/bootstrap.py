"""Percentile bootstrap confidence intervals of any classification metric."""
from __future__ import annotations

import numpy as np

from ._inputs import scored
from .classification import METRICS


def bootstrap_ci(y_true, prob, metric="auroc", n_boot=1000, alpha=0.05, seed=0, threshold=None) -> tuple[float, float]:
    """The (alpha/2, 1 - alpha/2) percentiles of ``metric`` over ``n_boot`` resamples with replacement,
    seeded. ``metric`` names an entry of ``classification_metrics`` (a scalar one) or is a callable
    ``f(y_true, prob) -> float``. Resamples where the metric is undefined (e.g. one class only) are left out;
    (NaN, NaN) if all are."""
    if isinstance(metric, str):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {sorted(METRICS)} or a callable, got {metric!r}")
        fn = METRICS[metric]
    elif callable(metric):
        def fn(s):
            return float(metric(s.y, s.p))
    else:
        raise TypeError(f"metric must be a name or a callable, got {type(metric).__name__}")
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
