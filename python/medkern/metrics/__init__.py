"""Evaluation metrics for ``medkern.models`` (scikit-learn does the maths): classification metrics with
NaN where undefined, bootstrap confidence intervals, decision thresholds, calibration and forecast errors."""
from .bootstrap import bootstrap_ci
from .calibration import calibration_curve, expected_calibration_error
from .classification import METRICS, classification_metrics
from .forecast import forecast_metrics
from .threshold import choose_threshold

__all__ = ["METRICS", "bootstrap_ci", "calibration_curve", "choose_threshold",
           "classification_metrics", "expected_calibration_error", "forecast_metrics"]
