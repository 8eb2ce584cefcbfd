"""The PNG plots of a run folder, drawn with matplotlib's Agg backend (no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
from sklearn.metrics import auc, precision_recall_curve, roc_curve  # noqa: E402

from .. import metrics  # noqa: E402


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curves(history: list[dict], path) -> Path:
    """Training and validation loss, and every other validation metric the run monitored, per epoch."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    if "val_loss" in history[0]:
        ax_loss.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    keys = ("val_auroc", "val_balanced_accuracy", "val_accuracy", "val_mae", "val_rmse")
    shown = [k for k in keys if k in history[0]]
    for key in shown:
        ax_metric.plot(epochs, [h[key] for h in history], label=key[4:])
    ax_metric.set(xlabel="epoch", title="validation metrics")
    if shown:
        ax_metric.legend()
    return _save(fig, path)


def _one_vs_rest(y, probs, class_names):
    """(name, is-this-class, score) per class; for binary problems only the positive class."""
    probs = np.asarray(probs)
    if probs.ndim == 1:
        return [(class_names[1] if len(class_names) > 1 else "positive", y == 1, probs)]
    return [(class_names[k] if k < len(class_names) else str(k), y == k, probs[:, k])
            for k in range(probs.shape[1]) if 0 < (y == k).sum() < len(y)]


def roc_curves(y, probs, class_names, path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, positive, score in _one_vs_rest(y, probs, class_names):
        fpr, tpr, _ = roc_curve(positive, score)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC curve", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def pr_curves(y, probs, class_names, path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, positive, score in _one_vs_rest(y, probs, class_names):
        precision, recall, _ = precision_recall_curve(positive, score)
        ax.plot(recall, precision, label=f"{name} (prevalence {positive.mean():.2f})")
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="precision-recall curve", xlim=(0, 1),
           ylim=(0, 1.01))
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def confusion_matrix(cm, class_names, path) -> Path:
    cm = np.asarray(cm)
    k = cm.shape[0]
    names = [class_names[i] if i < len(class_names) else str(i) for i in range(k)]
    fig, ax = plt.subplots(figsize=(1.2 * k + 2.5, 1.2 * k + 2))
    ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set(xticks=range(k), yticks=range(k), xticklabels=names, yticklabels=names, xlabel="predicted",
           ylabel="true", title="confusion matrix")
    return _save(fig, path)


def calibration(y, probs, path) -> Path:
    observed, predicted = metrics.calibration_curve(y, probs)
    ece = metrics.expected_calibration_error(y, probs)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfect")
    ax.plot(predicted, observed, "o-", label=f"model (ECE {ece:.3f})")
    binary = np.asarray(probs).ndim == 1 or np.asarray(probs).shape[1] == 2
    ax.set(xlabel="predicted probability" if binary else "top-class confidence",
           ylabel="observed frequency" if binary else "accuracy", title="calibration", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    return _save(fig, path)


def forecasts(x, y, pred, path, target_channel: int = 0, n: int = 4) -> Path:
    """Context, truth and forecast of the first ``n`` series."""
    n = min(n, len(x))
    fig, axes = plt.subplots(n, 1, figsize=(8, 2 * n), squeeze=False)
    for ax, xi, yi, pi in zip(axes[:, 0], x[:n], y[:n], pred[:n]):
        context = xi[target_channel]
        t = np.arange(len(context))
        future = np.arange(len(context), len(context) + len(yi))
        ax.plot(t, context, color="0.4", label="context")
        ax.plot(future, yi, color="k", label="truth")
        ax.plot(future, pi, color="C3", label="forecast")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("time step")
    return _save(fig, path)
