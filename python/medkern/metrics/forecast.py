"""Forecasting errors (scikit-learn does the maths)."""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from ._inputs import to_numpy


def forecast_metrics(y_true, y_pred) -> dict:
    """MAE, RMSE and MAPE over all values (MAPE as a fraction, 0.05 = 5%, NaN if any target is 0), and for
    (N, horizon) targets ``mae_per_step``, the MAE at each step ahead."""
    t = to_numpy(y_true, "y_true").astype(np.float64)
    p = to_numpy(y_pred, "y_pred").astype(np.float64)
    if t.shape != p.shape or t.size == 0:
        raise ValueError(f"y_true and y_pred must have the same non-empty shape, got {t.shape} and {p.shape}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        raise ValueError("y_true and y_pred must be finite")
    ft, fp = t.ravel(), p.ravel()
    out = {
        "mae": float(skm.mean_absolute_error(ft, fp)),
        "rmse": float(np.sqrt(skm.mean_squared_error(ft, fp))),
        "mape": float(skm.mean_absolute_percentage_error(ft, fp)) if np.all(ft != 0) else float("nan"),
    }
    if t.ndim == 2:
        out["mae_per_step"] = [float(v) for v in skm.mean_absolute_error(t, p, multioutput="raw_values")]
    return out
