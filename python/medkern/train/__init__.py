"""The training loop of ``medkern.models``: early stopping on a validation metric, warm-up and cosine
learning rate, gradient clipping, class-imbalance handling, atomic checkpoints with resume, and
DistributedDataParallel under ``torchrun``."""
from .calibration import RawOutputs, fit_temperature
from .checkpoint import load as load_checkpoint, save_atomic
from .config import TrainConfig
from .distributed import Context, context, shutdown
from .loop import FitResult, fit, make_loader, predict_outputs, train_one_epoch, validate
from .objectives import Classification, Regression, balanced_class_weights, cumulative_loss, focal_loss

__all__ = ["Classification", "Context", "FitResult", "RawOutputs", "Regression", "TrainConfig",
           "balanced_class_weights", "context", "cumulative_loss", "fit", "fit_temperature", "focal_loss", "load_checkpoint", "make_loader",
           "predict_outputs", "save_atomic", "shutdown", "train_one_epoch", "validate"]
