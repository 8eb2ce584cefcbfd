"""What a model is trained to do: its loss, and the validation metrics the loop monitors."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics


def balanced_class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """scikit-learn's ``class_weight="balanced"``: n / (K * count_k) over the K classes present; a class
    absent from ``labels`` gets 0."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    present = int((counts > 0).sum())
    w = torch.where(counts > 0, labels.numel() / (present * counts.clamp(min=1)), torch.zeros_like(counts))
    return w.float()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Lin et al. 2017: cross-entropy scaled by (1 - p_t)^gamma, so confident, easy items count less;
    ``weight`` (per class) plays the role of alpha. Mean over the batch."""
    logp = F.log_softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
    loss = -((1.0 - logp.exp()) ** gamma) * logp
    if weight is not None:
        loss = loss * weight.to(loss.dtype)[target]
    return loss.mean()


def cumulative_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Ordered grades 0..K-1: the binary cross-entropy of each of the K-1 events "grade >= k" under the
    softmax's cumulative probabilities, averaged over the events and the batch. A prediction two grades off
    is wrong about two events, so distant errors cost more than near ones (a cumulative-link loss that keeps
    the K class probabilities, rank-consistent by construction); ``weight`` (per class) weights the items."""
    logp = F.log_softmax(logits, dim=1)
    log_at_least = torch.logcumsumexp(logp.flip(1), dim=1).flip(1)[:, 1:]  # log P(grade >= k), k = 1..K-1
    log_below = torch.logcumsumexp(logp, dim=1)[:, :-1]                    # log P(grade < k)
    events = target[:, None] >= torch.arange(1, logits.shape[1], device=logits.device)
    loss = -torch.where(events, log_at_least, log_below).mean(dim=1)
    if weight is not None:
        loss = loss * weight.to(loss.dtype)[target]
    return loss.mean()


class Classification:
    """Cross-entropy (optionally class-weighted), focal or, for ordered grades, cumulative loss on logits;
    outputs are softmax(logits / ``temperature``) (1 while training; a fitted one calibrates predictions);
    validation metrics from ``medkern.metrics.classification_metrics`` on those probabilities (``ordinal``:
    with the grade-agreement ones)."""

    def __init__(self, num_classes: int, loss: str = "ce", class_weight: torch.Tensor | None = None,
                 focal_gamma: float = 2.0, temperature: float = 1.0, ordinal: bool = False):
        self.num_classes = num_classes
        self.kind = loss
        self.weight = class_weight
        self.gamma = focal_gamma
        self.temperature = float(temperature)
        self.ordinal = ordinal

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(logits.device)
        if self.kind == "focal":
            return focal_loss(logits, y, self.gamma, weight)
        if self.kind == "cumulative":
            return cumulative_loss(logits, y, weight)
        return F.cross_entropy(logits, y, weight=weight)

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float() / self.temperature, dim=1)

    def metrics(self, y: np.ndarray, probs: np.ndarray) -> dict:
        m = metrics.classification_metrics(y, probs, ordinal=self.ordinal)
        return {k: v for k, v in m.items() if isinstance(v, float)}


class Regression:
    """Mean squared error in units of the training targets' standard deviation, so the loss (and the
    learning rate that suits it) does not depend on the physical unit; metrics from ``forecast_metrics``."""

    def __init__(self, scale: float):
        self.scale = float(scale)

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(pred / self.scale, y / self.scale)

    @staticmethod
    def outputs(pred: torch.Tensor) -> torch.Tensor:
        return pred.float()

    def metrics(self, y: np.ndarray, pred: np.ndarray) -> dict:
        m = metrics.forecast_metrics(y, pred)
        return {k: v for k, v in m.items() if isinstance(v, float)}
