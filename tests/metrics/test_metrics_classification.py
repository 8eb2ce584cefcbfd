"""classification_metrics against hand-computed values on small cases."""
import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from medkern.metrics import classification_metrics

nan = float("nan")


def check(got: dict, want: dict):
    for key, value in want.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, abs=1e-12), key


def test_binary_hand_computed():
    y = [0, 0, 0, 1, 1, 1, 1, 0]
    p = [0.1, 0.4, 0.6, 0.8, 0.35, 0.9, 0.7, 0.2]
    m = classification_metrics(y, p)
    # predictions at 0.5: TP 3 (0.8, 0.9, 0.7), FN 1 (0.35), FP 1 (0.6), TN 3
    assert m["confusion_matrix"] == [[3, 1], [1, 3]] and m["threshold"] == 0.5 and m["n"] == 8
    check(m, dict(accuracy=0.75, balanced_accuracy=0.75, sensitivity=0.75, specificity=0.75, ppv=0.75, npv=0.75,
                  f1=0.75, mcc=(9 - 1) / 16,
                  auroc=14 / 16,  # 14 of the 16 (positive, negative) pairs are ordered right
                  auprc=(1 + 1 + 1 + 4 / 6) / 4))  # precision at each positive's rank: 1/1, 2/2, 3/3, 4/6
    assert m["auroc_per_class"] == [pytest.approx(14 / 16)] * 2
    # a higher threshold moves 0.6 and 0.7 to negative: TP 2, FN 2, FP 0, TN 4
    check(classification_metrics(y, p, threshold=0.75),
          dict(sensitivity=0.5, specificity=1.0, ppv=1.0, npv=4 / 6, accuracy=0.75, auroc=14 / 16))


def test_perfect_inverted_constant():
    y = [0, 1, 0, 1]
    check(classification_metrics(y, [0.1, 0.9, 0.2, 0.8]),
          dict(auroc=1.0, auprc=1.0, accuracy=1.0, sensitivity=1.0, specificity=1.0, f1=1.0, mcc=1.0))
    check(classification_metrics(y, [0.9, 0.1, 0.8, 0.2]),
          dict(auroc=0.0, accuracy=0.0, balanced_accuracy=0.0, sensitivity=0.0, specificity=0.0, ppv=0.0, npv=0.0,
               f1=0.0, mcc=-1.0))
    check(classification_metrics(y, [0.7] * 4),  # everything predicted positive
          dict(auroc=0.5, auprc=0.5, accuracy=0.5, balanced_accuracy=0.5, sensitivity=1.0, specificity=0.0,
               ppv=0.5, npv=nan, f1=2 / 3, mcc=nan))


def test_binary_absent_class_is_nan_not_a_crash():
    m = classification_metrics([0, 0, 0], [0.2, 0.7, 0.1])
    check(m, dict(auroc=nan, auprc=nan, sensitivity=nan, specificity=2 / 3, ppv=0.0, mcc=nan, accuracy=2 / 3))
    assert m["confusion_matrix"] == [[2, 1], [0, 0]]


Y3 = [0, 0, 1, 1, 2, 2]
P3 = [[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.5, 0.1, 0.4]]


def test_multiclass_hand_computed():
    m = classification_metrics(Y3, P3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]] and "threshold" not in m
    # per class (one vs rest): sens .5/1/.5, ppv .5/(2/3)/1, spec .75/.75/1, npv .75/1/.8, f1 .5/.8/(2/3)
    check(m, dict(accuracy=4 / 6, balanced_accuracy=2 / 3, sensitivity=2 / 3, ppv=(0.5 + 2 / 3 + 1) / 3,
                  specificity=(0.75 + 0.75 + 1) / 3, npv=(0.75 + 1 + 0.8) / 3, f1=(0.5 + 0.8 + 2 / 3) / 3,
                  mcc=12 / math.sqrt(22 * 24)))  # (c s - sum t_k p_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2))
    assert m["auroc_per_class"] == pytest.approx([7 / 8, 7 / 8, 1.0])
    assert m["auroc"] == pytest.approx(roc_auc_score(Y3, P3, multi_class="ovr", average="macro"))


def test_multiclass_absent_class():
    y = [0, 0, 1, 1, 1, 0]
    m = classification_metrics(y, P3)
    assert math.isnan(m["auroc_per_class"][2])
    assert m["auroc"] == pytest.approx(np.mean(m["auroc_per_class"][:2]))
    assert m["confusion_matrix"][2] == [0, 0, 0]
    assert m["sensitivity"] == pytest.approx(np.mean([2 / 3, 2 / 3]))  # class 2's recall is undefined


def test_input_forms_and_plain_types():
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.2, 0.6, 0.9, 0.4, 0.3])
    base = classification_metrics(y, p)
    assert classification_metrics(torch.tensor(y), torch.tensor(p)) == base
    assert classification_metrics(y, np.stack([1 - p, p], 1)) == base  # (N, 2) reads as binary
    assert classification_metrics(y.astype(float), p[:, None]) == base
    json.dumps(base)
    assert all(type(v) in (float, int, list, dict) for v in base.values())
    assert all(type(v) is float for c in base["per_class"].values() for v in c.values())


@pytest.mark.parametrize("y, p, kw, match", [
    ([0, 1], [0.5], {}, "prob must be"),
    ([0, 2], [0.1, 0.9], {}, r"labels must lie in \[0, 2\)"),
    ([0, 1], [0.1, 1.2], {}, r"probabilities in \[0, 1\]"),
    ([0, 1], [0.1, float("nan")], {}, "finite"),
    ([0.5, 1], [0.1, 0.2], {}, "integer class labels"),
    ([], [], {}, "non-empty"),
    ([0, 1, 2], P3[:3], {"threshold": 0.3}, "binary problems only"),
    ([0, 1], [0.1, 0.2], {"threshold": 2}, "threshold must be in"),
])
def test_bad_input(y, p, kw, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(y, p, **kw)


def test_argmax_accuracy_ignores_the_decision_threshold():
    """accuracy follows the validation-chosen threshold; accuracy_argmax is what published tables report."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    p = np.array([0.1, 0.3, 0.45, 0.35, 0.6, 0.9, 0.5, 0.45])
    m = classification_metrics(y, p, threshold=0.3)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, p >= 0.3))
    assert m["accuracy_argmax"] == pytest.approx(accuracy_score(y, p > 0.5))  # a tie at 0.5 goes to class 0
    assert m["balanced_accuracy_argmax"] == pytest.approx(balanced_accuracy_score(y, p > 0.5))
    assert m["accuracy"] != m["accuracy_argmax"]
    probs = np.random.default_rng(3).dirichlet(np.ones(4), size=30)
    labels = np.random.default_rng(4).integers(0, 4, 30)
    mc = classification_metrics(labels, probs)
    assert mc["accuracy_argmax"] == mc["accuracy"] == pytest.approx(accuracy_score(labels, probs.argmax(1)))


def test_per_class_sensitivity_ppv_auroc_by_name():
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(3), 12)
    probs = rng.dirichlet(np.ones(3), size=36)
    probs[np.arange(36), labels] += 0.5
    probs /= probs.sum(1, keepdims=True)
    m = classification_metrics(labels, probs, class_names=["N", "SVEB", "VEB"])
    assert list(m["per_class"]) == ["N", "SVEB", "VEB"]
    pred = probs.argmax(1)
    for k, name in enumerate(["N", "SVEB", "VEB"]):
        c = m["per_class"][name]
        assert c["sensitivity"] == pytest.approx(recall_score(labels, pred, labels=[k], average="macro"))
        assert c["ppv"] == pytest.approx(precision_score(labels, pred, labels=[k], average="macro"))
        assert c["auroc"] == pytest.approx(roc_auc_score(labels == k, probs[:, k]))
    assert list(classification_metrics(labels, probs)["per_class"]) == ["0", "1", "2"]
    with pytest.raises(ValueError, match="class_names"):
        classification_metrics(labels, probs, class_names=["a", "b"])
