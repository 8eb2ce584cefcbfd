"""Reports of a run: training curves, ROC/PR curves, confusion matrix, calibration, Grad-CAM overlays for
image models (on axial slices for volume models) and per-time-step saliency for sequence models
(matplotlib, Agg backend), and the run folder's ``metrics.json`` and ``history.csv``."""
from .explain import grad_cam, gradcam_overlays, gradcam_slices, saliency_plots, time_saliency
from .plots import calibration, confusion_matrix, forecasts, pr_curves, roc_curves, training_curves
from .report import write_history, write_json, write_run

__all__ = ["calibration", "confusion_matrix", "forecasts", "grad_cam", "gradcam_overlays", "gradcam_slices",
           "pr_curves", "roc_curves", "saliency_plots", "time_saliency", "training_curves", "write_history",
           "write_json", "write_run"]
