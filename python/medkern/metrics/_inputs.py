"""Checked, normalised inputs shared by every classification metric."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def to_numpy(a, name: str) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor, without importing torch here
        a = a.detach().cpu().numpy()
    try:
        return np.asarray(a)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be array-like, got {type(a).__name__}") from e


@dataclass
class Scored:
    """Labels ``y`` (N,), the positive-class probability ``p`` (N,) for binary problems or class
    probabilities (N, K) otherwise, the hard predictions, and K."""
    y: np.ndarray
    p: np.ndarray
    pred: np.ndarray
    num_classes: int
    threshold: float | None

    @property
    def binary(self) -> bool:
        return self.p.ndim == 1

    @property
    def scores(self) -> np.ndarray:
        """(N, K) one score per class, for one-vs-rest curves."""
        return np.stack([1.0 - self.p, self.p], axis=1) if self.binary else self.p

    @property
    def argmax(self) -> np.ndarray:
        """The most probable class (binary: p > 0.5, ties to class 0), whatever the decision threshold: the
        predictions published accuracy tables use."""
        return (self.p > 0.5).astype(np.int64) if self.binary else self.pred

    def take(self, index: np.ndarray) -> "Scored":
        return Scored(self.y[index], self.p[index], self.pred[index], self.num_classes, self.threshold)


def scored(y_true, prob, threshold=None) -> Scored:
    """Validate and normalise (y_true, prob): ``prob`` (N,) or (N, 1) is the positive-class probability of
    a binary problem, (N, 2) is read as binary too, (N, K>2) is multiclass (prediction = argmax)."""
    y = to_numpy(y_true, "y_true")
    p = to_numpy(prob, "prob").astype(np.float64)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"y_true must be a non-empty 1-D array of class labels, got shape {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)
            or (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))):
        raise ValueError(f"y_true must hold integer class labels, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if p.ndim == 2 and p.shape[1] in (1, 2):
        p = p[:, -1]
    if p.ndim not in (1, 2) or p.shape[0] != y.shape[0]:
        raise ValueError(f"prob must be (N,) or (N, K) with N={y.shape[0]} matching y_true, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0:
        raise ValueError("prob must hold finite probabilities in [0, 1]")
    k = 2 if p.ndim == 1 else p.shape[1]
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"y_true labels must lie in [0, {k}) for prob of shape {p.shape}, got "
                         f"[{y.min()}, {y.max()}]")
    if p.ndim == 1:
        threshold = 0.5 if threshold is None else float(threshold)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        pred = (p >= threshold).astype(np.int64)
    else:
        if threshold is not None:
            raise ValueError("threshold applies to binary problems only; multiclass predictions are the argmax")
        pred = p.argmax(axis=1)
    return Scored(y, p, pred, k, threshold)


def nanmean(values) -> float:
    """Mean over the defined (non-NaN) values, NaN when none is defined."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")
