"""``SequenceClassifier`` and ``SequenceForecaster``: recurrent models of physiological signals."""
from __future__ import annotations

import torch

from .. import metrics, train as training
from ..data import SignalAugment
from .base import Classifier, Model, as_dataset
from . import networks
from .networks import RecurrentNet

RECURRENT = {"rnn": "gru", "hidden": 64, "num_layers": 1, "bidirectional": True, "conv_channels": 32,
             "conv_kernel": 7, "conv_layers": 2, "dropout": 0.1}


def _check_rnn(arch):
    if arch["rnn"] not in ("gru", "lstm"):
        raise ValueError(f"rnn must be 'gru' or 'lstm', got {arch['rnn']!r}")
    if arch["normalize"] not in ("dataset", "sample", "none"):
        raise ValueError(f"normalize must be 'dataset', 'sample' or 'none', got {arch['normalize']!r}")


class _Recurrent:
    NETWORK = RecurrentNet
    INPUT_DIMS = 3

    def _network_args(self):
        _check_rnn(self.arch)
        # models saved before side features existed have none
        return {"in_channels": self.shape["in_channels"], "out_features": self._out_features(),
                "side_features": self.shape.get("side_features", 0), **self.arch}

    def _prepare(self, train):
        # Per-channel statistics of the training signals, for normalize="dataset", and of the side features.
        side = self.shape.get("side_features", 0)
        signal = train.x[..., :train.x.shape[-1] - side]
        x = signal.transpose(0, 1).reshape(signal.shape[1], -1)
        for net in networks.members(self.network):
            net.mean.copy_(x.mean(dim=1, keepdim=True))
            net.std.copy_(x.std(dim=1, keepdim=True).clamp(min=1e-6))
            if side:
                net.side_mean.copy_(train.x[:, 0, -side:].mean(dim=0))
                net.side_std.copy_(train.x[:, 0, -side:].std(dim=0).clamp(min=1e-6))


class SequenceClassifier(_Recurrent, Classifier):
    """An LSTM or GRU (``rnn``), optionally bidirectional and behind a 1-D conv front end
    (``conv_channels``, 0 for none), for univariate or multivariate signals ``(N, C, L)``. Training
    augments with noise, amplitude scaling and time shifts. Training data with ``side_features`` (per-item
    features packed at the end of each signal, e.g. a beat's RR intervals) make a network that takes them
    beside the waveform; their number is kept in ``shape``, so a saved model reloads with them."""

    ARCH = {**RECURRENT, "normalize": "dataset"}
    # Validation sets of signals are often tiny (UCR files): their loss separates epochs where AUROC saturates.
    TRAIN = {**Classifier.TRAIN, "epochs": 80, "batch_size": 32, "lr": 3e-3, "patience": 25, "monitor": "loss"}
    TASK = "sequence"

    def _out_features(self):
        return self.shape["num_classes"]

    def _extra_shape(self, ds):
        return {"length": int(ds.x.shape[2]), "side_features": ds.side_features}

    def _augment(self):
        side = self.shape.get("side_features", 0)
        return WaveformAugment(SignalAugment(), side) if side else SignalAugment()


class WaveformAugment:
    """Applies ``augment`` to the signal part of a ``(C, L + side)`` item and leaves the ``side`` features
    packed at its end as they are: a beat's RR intervals are not noised, scaled or shifted with it."""

    def __init__(self, augment, side: int):
        self.augment, self.side = augment, int(side)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.augment(x[:, :-self.side]), x[:, -self.side:]], dim=1)


class SequenceForecaster(_Recurrent, Model):
    """Predicts the next ``horizon`` values of channel ``target_channel`` from a context window
    ``(N, C, L)``; the horizon comes from the training targets ``y (N, horizon)``. Each window is
    standardised by its own statistics (``normalize="sample"``) and the forecast mapped back."""

    ARCH = {**RECURRENT, "normalize": "sample", "target_channel": 0, "conv_channels": 0}
    TRAIN = {"epochs": 30, "batch_size": 64, "lr": 3e-3, "monitor": "mae", "patience": 8, "augment": False,
             "threshold": None}
    TASK = "forecast"

    def _out_features(self):
        return self.shape["horizon"]

    def _data_shape(self, ds):
        if ds.y.dim() != 2 or not ds.y.is_floating_point():
            raise ValueError(f"SequenceForecaster needs float targets y (N, horizon), got {ds.y.dtype} "
                             f"of shape {tuple(ds.y.shape)}")
        if not 0 <= self.arch["target_channel"] < ds.x.shape[1]:
            raise ValueError(f"target_channel {self.arch['target_channel']} is not a channel of x "
                             f"({ds.x.shape[1]} channels)")
        return {"in_channels": int(ds.x.shape[1]), "horizon": int(ds.y.shape[1]), "length": int(ds.x.shape[2])}

    def _prepare(self, train):
        super()._prepare(train)
        self.shape["scale"] = float(train.y.std().clamp(min=1e-6))

    def _objective(self, train, config):
        return training.Regression(self.shape["scale"])

    def evaluate(self, data) -> dict:
        """``medkern.metrics.forecast_metrics`` (MAE, RMSE, MAPE, MAE per step ahead)."""
        ds = as_dataset(data, "data")
        return metrics.forecast_metrics(ds.y.numpy(), self.predict(ds.x))
