"""Temperature scaling (Guo et al. 2017): one scalar T that divides a classifier's logits, fitted on held-out
data so that softmax(logits / T) says how often it is right. The ranking of the items, and so every argmax
decision, is unchanged."""
from __future__ import annotations

import math

import numpy as np
import torch

T_RANGE = (0.05, 20.0)


class RawOutputs:
    """``predict_outputs``' objective for the network's own outputs (a classifier's logits)."""

    @staticmethod
    def outputs(raw: torch.Tensor) -> torch.Tensor:
        return raw.float()


def _penalised_nll(logits: np.ndarray, y: np.ndarray, log_t: float) -> float:
    z = logits / math.exp(log_t)
    top = z.max(axis=1)
    nll = np.sum(top + np.log(np.exp(z - top[:, None]).sum(axis=1)) - z[np.arange(len(y)), y])
    # A standard normal prior on log T: a small validation set that the model separates perfectly, whose NLL
    # falls forever as T -> 0, must not make it arbitrarily sharp. Against a few hundred items it is negligible.
    return float(nll) + 0.5 * log_t ** 2


def fit_temperature(logits, labels) -> float:
    """The T in ``T_RANGE`` minimising the negative log-likelihood of ``labels`` (N,) under softmax(``logits``
    (N, K) / T), with a standard normal prior on log T: SciPy's bounded scalar minimiser on log T, in float64
    numpy (the NLL is unimodal there), so the result is deterministic."""
    from scipy.optimize import minimize_scalar  # with scikit-learn, in the train extra

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or y.shape != (z.shape[0],) or z.shape[0] == 0:
        raise ValueError(f"logits must be (N, K) and labels (N,) with N > 0, got {z.shape} and {y.shape}")
    bounds = (math.log(T_RANGE[0]), math.log(T_RANGE[1]))
    best = minimize_scalar(lambda log_t: _penalised_nll(z, y, log_t), bounds=bounds, method="bounded",
                           options={"xatol": 1e-6})
    return math.exp(best.x)
