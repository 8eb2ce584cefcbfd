"""Run folders, as the ``medkern train|evaluate|predict`` commands use them: train a model on a data
source and record it, evaluate a saved run on other data, predict from files."""
from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
import torch

from .. import data as datasets, viz
from ..data.metadata import declares_ordinal
from ..train import context, recipe as recipes
from . import load, model_for

MODEL_FILE = "model.pt"
TEST_FRACTION = 0.2  # carved from the training data, stratified, when the source has no test split


def train_run(task: str, out, *, data=None, test=None, val_fraction: float = 0.15, seed: int = 0,
              layers: str = "medkern", arch: dict | None = None, options: dict | None = None,
              reader: dict | None = None, n_boot: int = 200, resume: bool = False, labels: str | None = None,
              time_budget: float | str | None = None, recipe: dict | None = None, log=print) -> dict | None:
    """Loads ``data`` (see ``medkern.data.load``), trains the task's model for that kind of data
    (``medkern.models.model_for``: classify trains a ``VolumeClassifier`` on volumes) with ``arch`` and training
    ``options`` and writes ``out``: ``model.pt``, ``checkpoint.pt``, ``metrics.json``, ``summary.txt``,
    ``history.csv`` and the plots. ``labels``: ``"ordinal"`` (ordered grades), ``"nominal"``, or None for what
    the data's metadata says (``medkern.data.metadata.declares_ordinal``). Under ``torchrun`` every process
    trains and the first writes; returns the metrics record there, None elsewhere.

    Classifiers only: ``time_budget`` (seconds, or ``"auto"`` for ``medkern.train.recipe.default_budget``)
    has the recipe chosen on held-out data within that wall time, counted from here (``recipe.search``;
    ``arch`` then fixes what it names); ``recipe``, a recorded ``metrics.json["recipe"]``, trains that recipe
    again without timing anything (``recipe.replay``)."""
    started = time.perf_counter()
    out = Path(out)
    splits = datasets.load(data, test=test, task=task, val_fraction=val_fraction, seed=seed,
                           test_fraction=TEST_FRACTION, **(reader or {}))
    make = functools.partial(model_for(task, splits.kind), layers=layers, **_label_options(task, labels, data))
    model = make(seed=seed, **(arch or {}))
    model.class_names = list(splits.class_names)
    ctx = context((options or {}).get("device", "auto"))  # joins the process group under torchrun
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if log is not None:
            log(f"data {splits.source}: train {len(splits.train)}, val {len(splits.val) if splits.val else 0}, "
                f"test {len(splits.test) if splits.test else 0}")
    chosen, val = None, splits.val
    if (time_budget or recipe) and task != "forecast":
        if ctx.world > 1:
            raise ValueError("a time budget or a recorded recipe is for one process; under torchrun pass the "
                             "recipe's flags (--epochs, --ensemble, ...) instead")
        common = dict(options=options, class_names=splits.class_names, seed=seed, log=log)
        if recipe:
            model, chosen = recipes.replay(make, splits.train, splits.val, recipe, **common)
        else:
            budget = recipes.default_budget(splits.kind) if time_budget == "auto" else float(time_budget)
            model, chosen = recipes.search(make, splits.train, splits.val, budget=budget, arch=arch, started=started,
                                           **common)
        if chosen["validation"]["mode"] == "cv":  # the validation split was trained on: report out-of-fold
            val = None
    else:
        model.fit(splits.train, splits.val, out=out, resume=resume, log=log, **(options or {}))
    if not ctx.is_main:
        return None
    model.save(out / MODEL_FILE)
    shapes = {name: list(ds.x.shape) for name, ds in (("train", splits.train), ("val", splits.val),
                                                       ("test", splits.test)) if ds is not None}
    extra = {"task": task, "data": splits.source, "shapes": shapes}
    if chosen is not None:
        heldout = chosen.pop("heldout")
        extra.update(recipe=chosen, train_seconds=time.perf_counter() - started, **({} if val else {"val": heldout}))
    return viz.write_run(out, model, test=splits.test, val=val, history=model.result.history, n_boot=n_boot,
                         extra=extra)


def _label_options(task: str, labels: str | None, data) -> dict:
    if labels not in (None, "nominal", "ordinal"):
        raise ValueError(f"labels must be 'nominal', 'ordinal' or None (the data's metadata decides), got {labels!r}")
    if task == "forecast":
        if labels is not None:
            raise ValueError("labels applies to classification tasks, not forecasting")
        return {}
    return {"ordinal": labels == "ordinal" or (labels is None and declares_ordinal(data))}


def evaluate_run(run_dir, data, *, test=None, reader: dict | None = None, n_boot: int = 200, out=None) -> dict:
    """The saved model of ``run_dir`` on the test split of ``data`` (all of it when it has none); the
    report goes to ``out`` (default ``run_dir/eval-<data name>``)."""
    run_dir = Path(run_dir)
    model = load(run_dir / MODEL_FILE)
    splits = datasets.load(data, test=test, task=model.TASK, val_fraction=0, **(reader or {}))
    ds = splits.test if splits.test is not None else splits.train
    name = Path(str(data)).stem if data is not None else "synthetic"
    out = Path(out) if out is not None else run_dir / f"eval-{name}"
    record = viz.write_run(out, model, test=ds, n_boot=n_boot, extra={"data": splits.source, "n": len(ds)})
    return {"out": str(out), **record}


def read_inputs(model, paths) -> tuple[list[str], torch.Tensor]:
    """Items to predict from files: images (PNG/JPEG, resized as in training), ``.npy`` arrays of one item
    (with or without its channel axis where there is one channel) or a batch (uint8 ones scaled to [0, 1]),
    or text files with one series per row (a leading label column, as in UCR files, is
    dropped when the row is one longer than the model's input)."""
    from ..data.image_folder import IMAGE_SUFFIXES, _read_image

    names, items = [], []
    for p in map(Path, paths):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file")
        suffix = p.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            if model.INPUT_DIMS != 4:
                raise ValueError(f"{p}: an image, but the model ({type(model).__name__}) does not take images")
            arr = _read_image(p, model.shape["input_size"][0], model.shape["in_channels"])[None]
        elif suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
            if arr.dtype == np.uint8:  # scaled to [0, 1] as the MedMNIST reader scales its images and volumes
                arr = arr / 255.0
            if arr.ndim == model.INPUT_DIMS - 2:  # one item without a channel axis: (L,), (H, W) or (D, H, W)
                arr = arr[None, None]
            elif arr.ndim == model.INPUT_DIMS - 1:
                arr = arr[None]
        elif suffix in (".txt", ".csv", ".tsv"):
            arr = np.loadtxt(p, delimiter="," if suffix == ".csv" else None, ndmin=2)
            if arr.shape[1] == model.shape.get("length", -1) + 1:
                arr = arr[:, 1:]
            arr = arr[:, None]
        else:
            raise ValueError(f"{p}: unsupported input (expected .png/.jpg/.jpeg, .npy, .txt/.csv/.tsv)")
        if arr.ndim != model.INPUT_DIMS:
            raise ValueError(f"{p}: array of shape {arr.shape} is neither one item nor a batch for "
                             f"{type(model).__name__}")
        names += [str(p)] if len(arr) == 1 else [f"{p}[{i}]" for i in range(len(arr))]
        items.append(torch.as_tensor(arr, dtype=torch.float32))
    return names, torch.cat(items)


def predict_files(run_dir, paths) -> list[dict]:
    """One record per item: its name, and the class and probabilities (or the forecast)."""
    model = load(Path(run_dir) / MODEL_FILE)
    names, x = read_inputs(model, paths)
    out = model.predict(x)
    if model.TASK == "forecast":
        return [{"input": n, "forecast": [float(v) for v in row]} for n, row in zip(names, out)]
    labels = model.decide(out)
    classes = model.class_names or [str(k) for k in range(out.shape[1])]
    return [{"input": n, "class": classes[int(k)], "probabilities": {c: float(p) for c, p in zip(classes, row)}}
            for n, k, row in zip(names, labels, out)]
