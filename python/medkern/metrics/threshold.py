"""Decision-threshold choice for binary classifiers, on validation data."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

from ._inputs import scored


def choose_threshold(y_true, prob, method="youden", target_sensitivity=None) -> float:
    """The threshold t (predict positive when p >= t) that maximises Youden's J = sensitivity + specificity
    - 1, or, with ``target_sensitivity`` (which implies ``method="sensitivity"``), the highest t whose
    sensitivity reaches the target (so the best specificity that meets it)."""
    if target_sensitivity is not None:
        method = "sensitivity"
    if method not in ("youden", "sensitivity"):
        raise ValueError(f"method must be 'youden' or 'sensitivity', got {method!r}")
    s = scored(y_true, prob)
    if not s.binary:
        raise ValueError("choose_threshold applies to binary problems: prob must be the positive-class "
                         f"probability (N,), got shape {s.p.shape}")
    if np.unique(s.y).size < 2:
        raise ValueError("choose_threshold needs both classes in y_true")
    fpr, tpr, thresholds = roc_curve(s.y, s.p, drop_intermediate=False)
    finite = np.isfinite(thresholds)  # the first point (nothing positive) has threshold +inf
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    if method == "youden":
        return float(thresholds[np.argmax(tpr - fpr)])
    if target_sensitivity is None or not 0.0 < float(target_sensitivity) <= 1.0:
        raise ValueError(f"target_sensitivity must be in (0, 1], got {target_sensitivity}")
    # roc_curve lists thresholds from high to low, so the first one that reaches the target is the highest.
    return float(thresholds[np.argmax(tpr >= float(target_sensitivity) - 1e-12)])
