"""The options of one training run, checked once, as plain values (they go into checkpoints and run folders)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

LOWER_IS_BETTER = frozenset({"loss", "mae", "rmse", "mape", "ece"})


def require_positive(config, *names: str, integer: bool = False) -> None:
    """ValueError naming the first of ``config``'s fields ``names`` that is not a positive number (or,
    with ``integer``, a positive int; bools are not ints here)."""
    for name in names:
        v = getattr(config, name)
        if (integer and (not isinstance(v, int) or isinstance(v, bool))) or not v > 0:
            raise ValueError(f"{name} must be a positive {'integer' if integer else 'number'}, got {v!r}")


@dataclass
class TrainConfig:
    """``batch_size`` is the global batch: under ``torchrun`` each of N processes takes ``batch_size / N``.

    ``monitor`` names the validation metric for early stopping and best-checkpoint selection (``"loss"``,
    or a key of ``medkern.metrics.classification_metrics`` / ``forecast_metrics``); ``patience`` epochs
    without improvement stop the run (None: never). The learning rate rises linearly over ``warmup_epochs``
    and then follows ``schedule`` (``"cosine"`` to zero at the last epoch, or ``"constant"``).
    ``augment`` applies the task's augmentation (``ImageAugment``/``SignalAugment``) to training items.
    ``ema``: validate and keep an exponential moving average of the weights (and batch-norm statistics)
    with this decay per step, which smooths the epoch-to-epoch noise of small data sets.
    ``threshold`` (binary tasks, needs validation data): ``"youden"``, ``"sensitivity"`` (with
    ``target_sensitivity``) or None for 0.5. ``calibrate``: fit a temperature on the validation data so that
    the predicted probabilities are calibrated. ``loss``: ``"ce"``, ``"focal"`` or, for ordered grades,
    ``"cumulative"``."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    schedule: str = "cosine"
    clip_grad: float | None = 1.0
    ema: float | None = None
    patience: int | None = 10
    monitor: str = "auroc"
    class_weight: str | None = None
    sampler: str | None = None
    loss: str = "ce"
    focal_gamma: float = 2.0
    augment: bool = True
    threshold: str | None = "youden"
    target_sensitivity: float | None = None
    calibrate: bool = True
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self):
        require_positive(self, "epochs", "batch_size", integer=True)
        require_positive(self, "lr")
        if self.weight_decay < 0 or self.warmup_epochs < 0 or self.focal_gamma < 0:
            raise ValueError("weight_decay, warmup_epochs and focal_gamma must be >= 0, got "
                             f"{self.weight_decay}, {self.warmup_epochs}, {self.focal_gamma}")
        if self.clip_grad is not None:
            require_positive(self, "clip_grad")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise ValueError(f"ema must be in (0, 1), got {self.ema!r}")
        if self.patience is not None:
            require_positive(self, "patience", integer=True)
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {self.num_workers!r}")
        choices = {"schedule": ("cosine", "constant"), "class_weight": (None, "balanced"),
                   "sampler": (None, "weighted"), "loss": ("ce", "focal", "cumulative"),
                   "threshold": (None, "youden", "sensitivity")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.threshold == "sensitivity" and not (self.target_sensitivity and 0 < self.target_sensitivity <= 1):
            raise ValueError(f"threshold='sensitivity' needs target_sensitivity in (0, 1], "
                             f"got {self.target_sensitivity!r}")

    @property
    def higher_is_better(self) -> bool:
        return self.monitor not in LOWER_IS_BETTER

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def with_defaults(cls, defaults: dict, overrides: dict) -> "TrainConfig":
        """``cls(**{**defaults, **overrides})`` with unknown option names reported by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        return cls(**{**defaults, **overrides})
