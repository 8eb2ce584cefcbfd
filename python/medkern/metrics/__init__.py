"""Evaluation metrics for ``medkern.models`` (scikit-learn does the maths): classification metrics with
NaN where undefined, bootstrap confidence intervals, decision thresholds, calibration and forecast errors,
and image-synthesis quality (Frechet and kernel distances, precision/recall, MS-SSIM diversity, memorisation)."""
from .bootstrap import bootstrap_ci, paired_bootstrap_delta
from .calibration import calibration_curve, calibration_metrics, expected_calibration_error
from .classification import METRICS, ORDINAL_METRICS, classification_metrics
from .forecast import forecast_metrics
from .msssim import diversity_ms_ssim, ms_ssim
from .synthesis import frechet_distance, kernel_distance, memorization, precision_recall
from .threshold import choose_threshold

__all__ = ["METRICS", "ORDINAL_METRICS", "bootstrap_ci", "calibration_curve", "calibration_metrics",
           "choose_threshold", "classification_metrics", "expected_calibration_error", "forecast_metrics",
           "diversity_ms_ssim", "frechet_distance", "kernel_distance", "memorization", "ms_ssim",
           "paired_bootstrap_delta", "precision_recall"]
