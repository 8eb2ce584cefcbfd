"""Classification metrics (scikit-learn does the maths), NaN wherever a metric is undefined."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn import metrics as skm

from ._inputs import Scored, nanmean, scored
from .calibration import expected_calibration_error


def _quiet(fn, *args, **kwargs):
    """scikit-learn warns on undefined values (absent classes); here they become NaN instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def auroc_per_class(s: Scored) -> list[float]:
    """One-vs-rest AUROC of each class, NaN for a class absent from (or the only class in) y_true."""
    def one(k):
        positive = s.y == k
        if positive.all() or not positive.any():
            return float("nan")
        return float(skm.roc_auc_score(positive, s.scores[:, k]))
    if s.binary:
        return [one(1)] * 2  # swapping the classes and the score leaves AUROC unchanged
    return [one(k) for k in range(s.num_classes)]


def _auprc(s: Scored) -> float:
    def one(k):
        positive = s.y == k
        return float(skm.average_precision_score(positive, s.scores[:, k])) if positive.any() else float("nan")
    return one(1) if s.binary else nanmean([one(k) for k in range(s.num_classes)])


def _confusion(s: Scored) -> np.ndarray:
    return skm.confusion_matrix(s.y, s.pred, labels=np.arange(s.num_classes))


def _one_vs_rest(s: Scored, name: str) -> float:
    """Sensitivity, PPV, F1, specificity or NPV: of the positive class (binary) or the macro average over
    the classes where it is defined (multiclass)."""
    labels = np.arange(s.num_classes)
    if name in ("sensitivity", "ppv", "f1"):
        ppv, sens, f1, _ = _quiet(skm.precision_recall_fscore_support, s.y, s.pred, labels=labels,
                                  zero_division=np.nan)
        per_class = {"sensitivity": sens, "ppv": ppv, "f1": f1}[name]
    else:
        cm = _confusion(s)
        tp = np.diag(cm)
        fp, fn = cm.sum(axis=0) - tp, cm.sum(axis=1) - tp
        tn = cm.sum() - tp - fp - fn
        num, den = (tn, tn + fp) if name == "specificity" else (tn, tn + fn)
        per_class = np.where(den > 0, num / np.maximum(den, 1), np.nan)
    return float(per_class[1]) if s.binary else nanmean(per_class)


def _mcc(s: Scored) -> float:
    # Matthews' correlation is 0/0 when either the truth or the prediction is constant.
    if np.unique(s.y).size < 2 or np.unique(s.pred).size < 2:
        return float("nan")
    return float(skm.matthews_corrcoef(s.y, s.pred))


def _balanced_accuracy(s: Scored, pred=None) -> float:
    return float(_quiet(skm.balanced_accuracy_score, s.y, s.pred if pred is None else pred))


def per_class(s: Scored) -> list[dict]:
    """Each class's sensitivity (recall), PPV (precision) and one-vs-rest AUROC, NaN where undefined."""
    labels = np.arange(s.num_classes)
    ppv, sens, _, _ = _quiet(skm.precision_recall_fscore_support, s.y, s.pred, labels=labels, zero_division=np.nan)
    auroc = auroc_per_class(s)
    return [{"sensitivity": float(sens[k]), "ppv": float(ppv[k]), "auroc": auroc[k]} for k in labels]


METRICS = {
    "auroc": lambda s: nanmean(auroc_per_class(s)),
    "auprc": _auprc,
    "accuracy": lambda s: float(skm.accuracy_score(s.y, s.pred)),
    "balanced_accuracy": _balanced_accuracy,
    # at the most probable class rather than the decision threshold: comparable with published tables
    "accuracy_argmax": lambda s: float(skm.accuracy_score(s.y, s.argmax)),
    "balanced_accuracy_argmax": lambda s: _balanced_accuracy(s, s.argmax),
    "sensitivity": lambda s: _one_vs_rest(s, "sensitivity"),
    "specificity": lambda s: _one_vs_rest(s, "specificity"),
    "ppv": lambda s: _one_vs_rest(s, "ppv"),
    "npv": lambda s: _one_vs_rest(s, "npv"),
    "f1": lambda s: _one_vs_rest(s, "f1"),
    "mcc": _mcc,
    "ece": lambda s: expected_calibration_error(s.y, s.p),
}

# Ordered grades (retinopathy scales, severity scores), at the most probable grade.
ORDINAL_METRICS = {
    # Cohen's kappa with disagreements weighted by the squared grade distance; NaN where it is 0/0.
    "quadratic_weighted_kappa": lambda s: float(_quiet(skm.cohen_kappa_score, s.y, s.argmax,
                                                       labels=np.arange(s.num_classes), weights="quadratic")),
    "mean_absolute_grade_error": lambda s: float(np.mean(np.abs(s.y - s.argmax))),
}


def classification_metrics(y_true, prob, threshold=None, class_names=None, ordinal=False) -> dict:
    """Every metric of ``METRICS`` plus ``auroc_per_class``, ``per_class`` (class name, or index as text ->
    its ``sensitivity``, ``ppv`` and ``auroc``), ``confusion_matrix`` (rows = truth), ``n`` and, for binary
    problems, the decision ``threshold`` (default 0.5) that makes the hard predictions. ``accuracy`` and
    ``balanced_accuracy`` are taken at that threshold, ``accuracy_argmax`` and ``balanced_accuracy_argmax``
    at the most probable class, as published tables report them.

    ``prob`` is the positive-class probability (N,) for binary problems or (N, K) class probabilities;
    multiclass predictions are the argmax and sensitivity/specificity/PPV/NPV/F1 are macro averages over
    the classes where they are defined; AUROC/AUPRC are one-vs-rest macro averages over the classes present
    in ``y_true``. Undefined values are NaN (a class absent, no predicted positives, constant predictions
    for MCC). All values are plain Python types. With ``ordinal`` (classes are ordered grades), also
    ``ORDINAL_METRICS``: the quadratic-weighted kappa and the mean absolute grade error.
    """
    s = scored(y_true, prob, threshold)
    out = {name: fn(s) for name, fn in {**METRICS, **(ORDINAL_METRICS if ordinal else {})}.items()}
    out["auroc_per_class"] = auroc_per_class(s)
    names = list(class_names) if class_names else [str(k) for k in range(s.num_classes)]
    if len(names) != s.num_classes:
        raise ValueError(f"class_names: expected {s.num_classes} names, got {len(names)}")
    out["per_class"] = dict(zip(names, per_class(s)))
    out["confusion_matrix"] = _confusion(s).tolist()
    out["n"] = int(s.y.size)
    if s.binary:
        out["threshold"] = s.threshold
    return out
