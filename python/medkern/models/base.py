"""The shared model API: ``fit``, ``predict``, ``evaluate``, ``save`` and ``load`` around a network from
``networks`` and the loop in ``medkern.train``."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from .. import metrics, train as training
from ..data import ArrayDataset
from . import networks

FORMAT = "medkern-model/1"


def as_dataset(data, name: str) -> ArrayDataset:
    """An ``ArrayDataset``, or an ``(x, y)`` pair of arrays made into one."""
    if isinstance(data, ArrayDataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return ArrayDataset(*data)
    raise TypeError(f"{name} must be a medkern.data.ArrayDataset or an (x, y) pair, got {type(data).__name__}")


class BaseModel:
    """What every model shares: options checked against ``ARCH`` (architecture options and defaults), the
    layers it is built from, its seed, what the data fixed (``shape``, ``class_names``), and ``save`` /
    ``load`` through the subclass's ``state()`` (plain values and tensors) and ``from_state``."""

    ARCH: dict

    def __init__(self, *, layers: str = "medkern", seed: int = 0, **arch):
        unknown = sorted(set(arch) - set(self.ARCH))
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown option(s) {unknown}; known: {sorted(self.ARCH)}")
        if layers not in networks.LAYERS:
            raise ValueError(f"layers must be one of {networks.LAYERS}, got {layers!r}")
        self.arch = {**self.ARCH, **arch}
        self.layers, self.seed = layers, int(seed)
        self.shape: dict = {}          # what the data fixed: channels, size, classes or horizon
        self.class_names: list = []
        self.train_config: dict | None = None

    def save(self, path) -> Path:
        path = Path(path)
        training.save_atomic(self.state(), path)
        return path

    @classmethod
    def load(cls, path, layers: str | None = None):
        """A saved model; ``layers`` overrides the layers it was built with (same weights either way)."""
        from . import load as load_any
        model = load_any(path, layers=layers)
        if not isinstance(model, cls):
            raise ValueError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


class Model(BaseModel):
    """Subclasses set ``TASK`` (``"classify"``, ``"sequence"`` or ``"forecast"``), ``INPUT_DIMS`` (3 for
    (C, L) signals, 4 for (C, H, W) images, 5 for (C, D, H, W) volumes), ``ARCH``, ``TRAIN``
    (their training defaults, over ``TrainConfig``'s) and ``NETWORK`` (a class of ``networks``), and implement
    ``_data_shape``, ``_network_args``, ``_objective`` and ``evaluate``.

    ``ensemble`` > 1 trains that many networks, from seeds ``seed``, ``seed + 1``, ..., one after another
    on the same data, and predicts with their average (``networks.Ensemble``); ``result`` is then the
    first member's fit and ``member_results`` holds every member's."""

    TASK: str
    INPUT_DIMS: int
    TRAIN: dict = {}
    NETWORK: type

    def __init__(self, *, layers: str = "medkern", seed: int = 0, ensemble: int = 1, **arch):
        super().__init__(layers=layers, seed=seed, **arch)
        if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1:
            raise ValueError(f"ensemble must be a positive integer (networks averaged), got {ensemble!r}")
        self.ensemble = ensemble
        self.threshold: float | None = None
        self.result: training.FitResult | None = None
        self.member_results: list[training.FitResult] = []
        self.network: torch.nn.Module | None = None

    # -- building -------------------------------------------------------------------------------------
    def _data_shape(self, ds: ArrayDataset) -> dict:
        raise NotImplementedError

    def _network_args(self) -> dict:
        raise NotImplementedError

    def _objective(self, train: ArrayDataset | None, config: training.TrainConfig):
        raise NotImplementedError

    def _augment(self):
        return None

    def _prepare(self, train: ArrayDataset) -> None:
        """Hook for statistics of the training data the network keeps (e.g. input standardisation)."""

    def _build(self, layers: str | None = None) -> torch.nn.Module:
        built = []
        for i in range(self.ensemble):
            torch.manual_seed(self.seed + i)
            built.append(networks.build(self.NETWORK, layers or self.layers, **self._network_args()))
        if self.ensemble == 1:
            return built[0]
        return networks.Ensemble(built, "values" if self.TASK == "forecast" else "probabilities")

    def _check_input(self, x: torch.Tensor, name: str, batch_only: bool = False) -> torch.Tensor:
        """``x`` as a float32 batch; one item (a dimension less) is made a batch of one unless ``batch_only``."""
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.dim() == self.INPUT_DIMS - 1 and not batch_only:
            x = x[None]
        if x.dim() != self.INPUT_DIMS:
            what = {3: "(N, C, L) signals", 4: "(N, C, H, W) images", 5: "(N, C, D, H, W) volumes"}[self.INPUT_DIMS]
            raise ValueError(f"{name} must hold {what}, got shape {tuple(x.shape)}")
        if self.shape and x.shape[1] != self.shape["in_channels"]:
            raise ValueError(f"{name} has {x.shape[1]} channels; the model was trained on {self.shape['in_channels']}")
        return x

    # -- the API --------------------------------------------------------------------------------------
    def fit(self, train, val=None, *, out=None, resume: bool = False, log=print, **options) -> "Model":
        """Trains on ``train`` (an ``ArrayDataset`` or ``(x, y)``), choosing the best epoch, and for binary
        classifiers the decision threshold, on ``val``. ``options`` are ``medkern.train.TrainConfig``
        fields (``epochs``, ``batch_size``, ``lr``, ``class_weight``, ``loss``, ...); ``out`` is a folder
        for the resumable checkpoint. Returns the model."""
        train = as_dataset(train, "train")
        val = None if val is None else as_dataset(val, "val")
        config = training.TrainConfig.with_defaults({**self.TRAIN, "seed": self.seed}, options)
        self._check_input(train.x[:1], "train.x", batch_only=True)
        shape = self._data_shape(train)
        if val is not None:
            self._check_input(val.x[:1], "val.x", batch_only=True)
        # A fresh network every time: a fit depends on its data, options and seed only.
        self.shape = shape
        self.network = self._build()
        self._prepare(train)
        objective = self._objective(train, config)
        self.member_results = []
        for i, member in enumerate(networks.members(self.network)):
            member_out = out
            if self.ensemble > 1:
                member_out = None if out is None else Path(out) / f"member{i}"
                if log is not None:
                    log(f"ensemble member {i + 1} of {self.ensemble} (seed {config.seed + i})")
            self.member_results.append(training.fit(
                member, train, val, objective, dataclasses.replace(config, seed=config.seed + i),
                augment=self._augment(), out_dir=member_out, resume=resume, log=log))
        self.result = self.member_results[0]
        self.train_config = config.to_dict()
        self._after_fit(val, config)
        return self

    def _after_fit(self, val, config) -> None:
        pass

    def _require_network(self):
        if self.network is None:
            raise RuntimeError(f"{type(self).__name__} is not trained: call fit() or load() first")
        return self.network

    def predict(self, x, batch_size: int = 256) -> np.ndarray:
        """Class probabilities ``(N, K)`` (forecasters: the predicted values ``(N, horizon)``) for inputs
        ``x`` of one item or a batch."""
        return self._outputs(x, batch_size)

    def _outputs(self, x, batch_size: int, objective=None) -> np.ndarray:
        """``objective``'s outputs (by default the prediction objective's) for inputs ``x``."""
        net = self._require_network()
        x = self._check_input(x, "x")
        device = next(net.parameters()).device
        objective = self._objective(None, None) if objective is None else objective
        return training.predict_outputs(net, x, objective, batch_size=batch_size, device=device)

    def state(self) -> dict:
        """Everything ``load`` needs, as plain values and tensors (loadable with ``weights_only=True``)."""
        net = self._require_network()
        return {"format": FORMAT, "class": type(self).__name__, "arch": self.arch, "layers": self.layers,
                "seed": self.seed, "ensemble": self.ensemble, "shape": self.shape,
                "class_names": list(self.class_names), "threshold": self.threshold,
                "state_dict": {k: v.cpu() for k, v in net.state_dict().items()}}

    @classmethod
    def from_state(cls, state: dict, layers: str | None = None) -> "Model":
        model = cls(layers=layers or state["layers"], seed=state["seed"], ensemble=state.get("ensemble", 1),
                    **state["arch"])
        model.shape, model.class_names, model.threshold = state["shape"], state["class_names"], state["threshold"]
        model.network = model._build()
        model.network.load_state_dict(state["state_dict"])
        model.network.eval()
        return model


class Classifier(Model):
    """Image and sequence classifiers: softmax over ``num_classes``, divided by a temperature fitted on the
    validation data (``calibrate``, on by default) so that the probabilities are calibrated; binary ones also
    carry a decision threshold on the positive-class probability, chosen on validation data.

    ``ordinal=True``: the classes are ordered grades (class 0 the lowest), trained by default on the
    cumulative loss (``medkern.train.cumulative_loss``) and reported with the grade-agreement metrics too
    (quadratic-weighted kappa, mean absolute grade error)."""

    TRAIN = {"monitor": "auroc"}

    def __init__(self, *, ordinal: bool = False, **options):
        super().__init__(**options)
        self.ordinal = bool(ordinal)
        self.temperature = 1.0

    def fit(self, train, val=None, **options) -> "Classifier":
        if self.ordinal:
            options = {"loss": "cumulative", **options}
        return super().fit(train, val, **options)

    def _data_shape(self, ds):
        if not ds.is_classification:
            raise ValueError(f"{type(self).__name__} needs int64 class labels y (N,), got {ds.y.dtype} "
                             f"of shape {tuple(ds.y.shape)}")
        # Class names (set by whoever loaded the data) may name classes absent from this training set.
        num_classes = max(int(ds.y.max()) + 1, len(self.class_names), 2)
        return {"in_channels": int(ds.x.shape[1]), "num_classes": num_classes, **self._extra_shape(ds)}

    def _extra_shape(self, ds) -> dict:
        return {}

    def _objective(self, train, config):
        if config is None:  # predicting
            return training.Classification(self.shape["num_classes"], temperature=self.temperature,
                                           ordinal=self.ordinal)
        if config.loss == "cumulative" and not self.ordinal:
            raise ValueError("loss='cumulative' is for ordered grades: make the model with ordinal=True")
        weight = None
        if config.class_weight == "balanced":
            weight = training.balanced_class_weights(train.y, self.shape["num_classes"])
        return training.Classification(self.shape["num_classes"], config.loss, weight, config.focal_gamma,
                                       ordinal=self.ordinal)

    @property
    def binary(self) -> bool:
        return self.shape.get("num_classes") == 2

    def _after_fit(self, val, config):
        self.temperature, self.threshold = 1.0, None
        if config.calibrate and val is not None:
            self.calibrate(val)
        if self.binary and val is not None and config.threshold is not None and len(torch.unique(val.y)) == 2:
            self.threshold = metrics.choose_threshold(val.y.numpy(), self.predict(val.x)[:, 1],
                                                      config.threshold, config.target_sensitivity)

    def calibrate(self, data) -> float:
        """Fits the temperature on held-out ``data`` (``medkern.train.fit_temperature``) and returns it. A
        binary model's threshold moves with it, so that every decision stays as it was: the temperature
        changes only how sure the model says it is."""
        ds = as_dataset(data, "data")
        before, self.temperature = self.temperature, training.fit_temperature(self.logits(ds.x), ds.y.numpy())
        if self.threshold is not None:
            margin = before * torch.logit(torch.tensor(self.threshold, dtype=torch.float64))
            self.threshold = float(torch.sigmoid(margin / self.temperature))
        return self.temperature

    def logits(self, x, batch_size: int = 256) -> np.ndarray:
        """The network's outputs ``(N, K)`` before the temperature and the softmax (an ensemble's: the log
        of its members' mean probabilities)."""
        return self._outputs(x, batch_size, training.RawOutputs)

    def _probabilities(self, logits: np.ndarray, temperature: float) -> np.ndarray:
        objective = training.Classification(self.shape["num_classes"], temperature=temperature)
        return objective.outputs(torch.from_numpy(logits)).numpy()

    def scores(self, probs: np.ndarray) -> np.ndarray:
        """What ``medkern.metrics`` takes: the positive-class probability for binary models."""
        return probs[:, 1] if self.binary else probs

    def predict_labels(self, x) -> np.ndarray:
        return self.decide(self.predict(x))

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Class labels from ``predict``'s probabilities: the threshold for binary models, else the argmax."""
        if self.binary:
            return (probs[:, 1] >= (0.5 if self.threshold is None else self.threshold)).astype(np.int64)
        return probs.argmax(axis=1)

    def evaluate(self, data, n_boot: int = 0, seed: int = 0) -> dict:
        """``medkern.metrics.classification_metrics`` at the model's threshold (ordinal models: with the
        grade-agreement metrics), plus ``ci``: bootstrap 95% intervals of the headline metrics when ``n_boot``
        > 0, and ``calibration``: the temperature and ``medkern.metrics.calibration_metrics`` of the
        probabilities ``before`` (temperature 1) and ``after`` scaling."""
        ds = as_dataset(data, "data")
        return self.metrics_of(self.logits(ds.x), ds.y.numpy(), n_boot, seed)

    def metrics_of(self, logits: np.ndarray, y: np.ndarray, n_boot: int = 0, seed: int = 0) -> dict:
        """``evaluate``'s report from logits ``(N, K)`` already computed, e.g. out-of-fold ones from networks that
        never saw their items (``medkern.train.recipe``)."""
        probs = self.scores(self._probabilities(logits, self.temperature))
        threshold = self.threshold if self.binary else None
        out = metrics.classification_metrics(y, probs, threshold=threshold, class_names=self.class_names or None,
                                             ordinal=self.ordinal)
        if n_boot:
            headline = HEADLINE + (tuple(metrics.ORDINAL_METRICS) if self.ordinal else ())
            out["ci"] = {name: list(metrics.bootstrap_ci(y, probs, name, n_boot=n_boot, seed=seed, threshold=threshold))
                         for name in headline}
        out["calibration"] = {"temperature": self.temperature, **{
            when: metrics.calibration_metrics(y, self._probabilities(logits, t))
            for when, t in (("before", 1.0), ("after", self.temperature))}}
        return out

    def state(self) -> dict:
        return {**super().state(), "temperature": self.temperature, "ordinal": self.ordinal}

    @classmethod
    def from_state(cls, state: dict, layers: str | None = None) -> "Classifier":
        model = super().from_state(state, layers)
        # models saved before calibration and ordinal grades existed have neither
        model.temperature, model.ordinal = state.get("temperature", 1.0), state.get("ordinal", False)
        return model


HEADLINE = ("auroc", "accuracy", "balanced_accuracy", "accuracy_argmax", "sensitivity", "specificity", "f1")
