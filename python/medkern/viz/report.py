"""A run folder's record: ``metrics.json``, ``history.csv`` and the PNG plots."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import torch

from . import explain, plots


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
    if model.INPUT_DIMS == 4:
        cams = explain.grad_cam(model.network, model.cam_layer(), x)
        return explain.gradcam_overlays(ds.x[pick].numpy(), cams, y[pick], probs[pick], model.class_names,
                                        out / "gradcam.png")
    sal = explain.time_saliency(model.network, x)
    return explain.saliency_plots(ds.x[pick].numpy(), sal, y[pick], probs[pick], model.class_names,
                                  out / "saliency.png")


def write_run(out, model, *, test=None, val=None, history=(), n_boot: int = 1000, extra: dict | None = None,
              n_explain: int = 8) -> dict:
    """Writes ``metrics.json`` (``test`` and ``val`` metrics, classifiers with bootstrap 95% intervals in
    ``ci``), ``history.csv``, and the plots: ``curves.png``; for classifiers ``roc.png``, ``pr.png``,
    ``confusion.png``, ``calibration.png`` and ``gradcam.png`` (images) or ``saliency.png`` (signals); for
    forecasters ``forecast.png``. Returns what went into ``metrics.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = dict(extra or {})
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
    return record
