"""A run folder's record: ``metrics.json``, ``history.csv`` and the PNG plots."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import torch

from . import explain, plots
from .summary import write_summary


def _plain(value):
    """JSON-ready: NaN becomes null, numpy scalars and arrays become Python values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(obj, path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(_plain(obj), indent=2) + "\n")
    return path


def write_history(history: list[dict], path) -> Path:
    keys = list(dict.fromkeys(k for row in history for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    return Path(path)


def _explain(model, ds, probs, out: Path, n: int) -> Path:
    """Explanations of ``n`` test items, taken from every true class in turn so that each is shown."""
    y = ds.y.numpy()
    by_class = [np.flatnonzero(y == k) for k in np.unique(y)]
    pick = [idx[i] for i in range(n) for idx in by_class if i < len(idx)][:n]
    x = ds.x[pick].to(next(model.network.parameters()).device)
    if model.INPUT_DIMS in (4, 5):
        cams = explain.grad_cam(model.network, model.cam_layer(), x)
        draw = explain.gradcam_overlays if model.INPUT_DIMS == 4 else explain.gradcam_slices
        return draw(ds.x[pick].numpy(), cams, y[pick], probs[pick], model.class_names, out / "gradcam.png")
    sal = explain.time_saliency(model.network, x)
    return explain.saliency_plots(ds.x[pick].numpy(), sal, y[pick], probs[pick], model.class_names,
                                  out / "saliency.png")


def recipe(model) -> dict:
    """What was trained, as the model knows it; a model loaded for evaluation has no training record."""
    out = {"model": type(model).__name__, "network": model.NETWORK.__name__, "layers": model.layers,
           "arch": model.arch, "ensemble": model.ensemble}
    if model.TASK != "forecast":
        out.update(class_names=list(model.class_names), ordinal=model.ordinal, threshold=model.threshold,
                   temperature=model.temperature)
    if model.result is not None:
        out.update(train=model.train_config, best_epoch=model.result.best_epoch, best_score=model.result.best_score,
                   epochs_run=len(model.result.history))
    return out


def write_run(out, model, *, test=None, val=None, history=(), n_boot: int = 1000, extra: dict | None = None,
              n_explain: int = 8) -> dict:
    """Writes ``metrics.json`` (the model's ``recipe``, ``extra``, and ``test`` and ``val`` metrics, classifiers
    with bootstrap 95% intervals in ``ci``), ``summary.txt`` (the same told in words), ``history.csv``, and the
    plots: ``curves.png``; for classifiers ``roc.png``, ``pr.png``, ``confusion.png``, ``calibration.png`` and
    ``gradcam.png`` (images; volumes as axial slices) or ``saliency.png`` (signals); for forecasters
    ``forecast.png``. Returns what went into ``metrics.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = {**recipe(model), **(extra or {})}
    classifier = model.TASK != "forecast"
    for name, ds in (("val", val), ("test", test)):
        if ds is not None:
            boot = {"n_boot": n_boot if name == "test" else 0} if classifier else {}
            record[name] = model.evaluate(ds, **boot)
    history = list(history)
    if history:
        write_history(history, out / "history.csv")
        plots.training_curves(history, out / "curves.png")
    if test is not None:
        with torch.no_grad():
            probs = model.predict(test.x)
        y = test.y.numpy()
        if classifier:
            scores = model.scores(probs)
            plots.roc_curves(y, scores, model.class_names, out / "roc.png")
            plots.pr_curves(y, scores, model.class_names, out / "pr.png")
            plots.confusion_matrix(record["test"]["confusion_matrix"], model.class_names, out / "confusion.png")
            plots.calibration(y, scores, out / "calibration.png")
            _explain(model, test, probs, out, n_explain)
        else:
            plots.forecasts(test.x.numpy(), y, probs, out / "forecast.png", model.arch["target_channel"])
    write_json(record, out / "metrics.json")
    write_summary(record, out / "summary.txt")
    return record
