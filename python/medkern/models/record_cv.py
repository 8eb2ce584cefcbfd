"""Leave-records-out cross-validation of a beat classifier over a folder of WFDB records: the inter-patient
protocol (de Chazal et al. 2004) where no separate test set of other patients is at hand.

Records, not beats, are dealt into folds, so every fold's model is tested on patients it never saw; each
fold's model chooses its epoch on a validation split of its own training records (again by record), never on
the fold's test records. The folds' test predictions are pooled and reported per class as sensitivity (Se)
and positive predictivity (+P), as the arrhythmia literature does."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import metrics
from ..data.groups import cap_per_group, group_folds, group_split
from ..data.mitbih import read_beat_folder
from ..data.wfdb import AAMI_CLASSES
from ..viz.report import write_json
from .sequence import SequenceClassifier

# Training options of every fold's model unless ``options`` says otherwise: class-weighted loss, since the
# classes that matter are the rare ones, and a short schedule, since there are tens of thousands of beats.
OPTIONS = {"class_weight": "balanced", "epochs": 10, "patience": 3, "batch_size": 128}
# Beats of one class one training record contributes at most (``medkern.data.groups.cap_per_group``): normal
# beats, nine in ten, are undersampled within each record, which cuts the training time about fourfold.
CAP = 300
# Reported per fold on its validation records, and averaged: what recipes may be compared on (never ``test``).
VAL_METRICS = ("balanced_accuracy_argmax", "auroc")


def cross_validate_records(data, *, folds: int = 5, seed: int = 0, val_fraction: float = 0.15,
                           layers: str = "medkern", arch: dict | None = None, options: dict | None = None,
                           cap: int | None = CAP, reader: dict | None = None, out=None, log=print) -> dict:
    """``folds``-fold leave-records-out cross-validation of a ``SequenceClassifier`` (``arch``, training
    ``options`` over ``OPTIONS``; training records keep at most ``cap`` beats of each class, None: all) on the
    records of folder ``data`` (``reader``: options of
    ``medkern.data.mitbih.read_beat_folder``). Returns, and with ``out`` writes to ``out/metrics.json``,
    ``test``: ``medkern.metrics.classification_metrics`` of the pooled out-of-fold predictions (``per_class``
    holds each class's ``sensitivity`` = Se and ``ppv`` = +P); ``folds``: each fold's test records and
    validation records, best epoch, seconds and ``VAL_METRICS`` on its validation records; and ``val``: those
    averaged over the folds, the numbers on which recipes may be compared without looking at the test records."""
    t0 = time.perf_counter()
    say = log if log is not None else (lambda s: None)
    beats = read_beat_folder(data, **(reader or {}), log=log)
    y = beats.data.y.numpy()
    probs = np.zeros((y.size, len(AAMI_CLASSES)))
    record_names = np.array(beats.records)
    fold_records = []
    dealt = group_folds(y, beats.record, folds, seed)
    for i, held in enumerate(dealt):
        t_fold = time.perf_counter()
        part = beats.subset(np.setdiff1d(np.arange(y.size), held))
        fit_index, val_index = group_split(part.data.y.numpy(), part.record, val_fraction, seed + 1)
        if cap is not None:
            fit_index = fit_index[cap_per_group(part.data.y.numpy()[fit_index], part.record[fit_index], cap, seed)]
        model = SequenceClassifier(layers=layers, seed=seed, **(arch or {}))
        model.class_names = list(AAMI_CLASSES)
        val = part.data.subset(val_index)
        model.fit(part.data.subset(fit_index), val, log=lambda line: say(f"  fold {i + 1}: {line}"),
                  **{**OPTIONS, "progress": False, **(options or {})})
        probs[held] = model.predict(beats.data.x[held])
        val_m = metrics.classification_metrics(val.y.numpy(), model.predict(val.x), class_names=AAMI_CLASSES)
        fold = {"test_records": record_names[np.unique(beats.record[held])].tolist(),
                "val_records": record_names[np.unique(part.record[val_index])].tolist(),
                "best_epoch": model.result.best_epoch, "seconds": time.perf_counter() - t_fold,
                **{f"val_{k}": val_m[k] for k in VAL_METRICS}}
        fold_records.append(fold)
        say(f"fold {i + 1}/{len(dealt)}: test records {', '.join(fold['test_records'])}; "
            f"validation {', '.join(fold['val_records'])}; best epoch {fold['best_epoch']}, "
            f"{fold['seconds']:.0f} s")
    record = {"protocol": f"leave-records-out cross-validation, {len(dealt)} folds",
              "val": {k: float(np.nanmean([f[f"val_{k}"] for f in fold_records])) for k in VAL_METRICS},
              "data": str(data), "records": list(beats.records), "n": int(y.size), "folds": fold_records,
              "options": {**OPTIONS, **(options or {})}, "cap": cap, "arch": arch or {},
              "seconds": time.perf_counter() - t0,
              "test": metrics.classification_metrics(y, probs, class_names=AAMI_CLASSES)}
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json(record, Path(out) / "metrics.json")
    return record


def se_ppv_table(m: dict) -> str:
    """The field's table from ``classification_metrics`` output ``m``: each class's number of beats,
    sensitivity (Se) and positive predictivity (+P)."""
    lines = [f"  {'class':<6} {'beats':>6} {'Se':>7} {'+P':>7}"]
    for (name, c), n in zip(m["per_class"].items(), np.sum(m["confusion_matrix"], axis=1)):
        lines.append(f"  {name:<6} {int(n):>6} {c['sensitivity']:>7.4f} {c['ppv']:>7.4f}")
    return "\n".join(lines)
