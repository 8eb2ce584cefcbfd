"""Bootstrap confidence intervals and decision-threshold choice."""
import math

import numpy as np
import pytest

from medkern.metrics import bootstrap_ci, choose_threshold, classification_metrics


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.35 * y + 0.65 * rng.random(300), 0, 1)
    return y, p


@pytest.mark.parametrize("metric", ["auroc", "accuracy", "sensitivity", "mcc"])
def test_bootstrap_deterministic_and_contains_point(scores, metric):
    y, p = scores
    lo, hi = bootstrap_ci(y, p, metric=metric, n_boot=200, seed=3)
    assert (lo, hi) == bootstrap_ci(y, p, metric=metric, n_boot=200, seed=3)
    assert (lo, hi) != bootstrap_ci(y, p, metric=metric, n_boot=200, seed=4)
    point = classification_metrics(y, p)[metric]
    assert lo < point < hi and hi - lo < 0.3


def test_bootstrap_width_shrinks_with_alpha_and_threshold_matters(scores):
    y, p = scores
    wide = bootstrap_ci(y, p, n_boot=300, alpha=0.01)
    narrow = bootstrap_ci(y, p, n_boot=300, alpha=0.5)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]
    assert bootstrap_ci(y, p, "sensitivity", n_boot=100, threshold=0.1)[0] > \
        bootstrap_ci(y, p, "sensitivity", n_boot=100, threshold=0.9)[1]


def test_bootstrap_multiclass_callable_and_undefined():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet([1, 1, 1], 120)
    y = np.where(rng.random(120) < 0.7, probs.argmax(1), rng.integers(0, 3, 120))
    lo, hi = bootstrap_ci(y, probs, "balanced_accuracy", n_boot=100)
    assert lo < classification_metrics(y, probs)["balanced_accuracy"] < hi
    lo, hi = bootstrap_ci(y, probs, lambda yt, pr: float(np.mean(pr.argmax(1) == yt)), n_boot=100)
    assert lo < 0.8 < hi
    assert all(math.isnan(v) for v in bootstrap_ci([0, 0, 0], [0.1, 0.5, 0.9], n_boot=20))  # AUROC needs both


@pytest.mark.parametrize("kw, exc", [(dict(metric="auc"), ValueError), (dict(metric=3), TypeError),
                                     (dict(n_boot=0), ValueError), (dict(alpha=1.0), ValueError)])
def test_bootstrap_bad_arguments(scores, kw, exc):
    with pytest.raises(exc):
        bootstrap_ci(*scores, **kw)


def test_youden_hand_computed():
    y = [0, 0, 0, 1, 1, 1, 1, 0]
    p = [0.1, 0.4, 0.6, 0.8, 0.35, 0.9, 0.7, 0.2]
    # t = 0.7 gives sensitivity 3/4 and specificity 1: J = 0.75, the best; t = 0.35 gives 1 and 1/2 (J = 0.5)
    assert choose_threshold(y, p) == 0.7
    assert choose_threshold(y, p, target_sensitivity=1.0) == 0.35
    assert choose_threshold(y, p, method="sensitivity", target_sensitivity=0.5) == 0.8


def test_youden_separable_and_target_met(scores):
    assert choose_threshold([0, 0, 1, 1], [0.1, 0.3, 0.6, 0.8]) == 0.6
    y, p = scores
    for target in (0.5, 0.8, 0.95):
        t = choose_threshold(y, p, target_sensitivity=target)
        sens = classification_metrics(y, p, threshold=t)["sensitivity"]
        assert sens >= target
        higher = p[p > t].min()  # the next threshold up misses the target
        assert classification_metrics(y, p, threshold=higher)["sensitivity"] < target


@pytest.mark.parametrize("args, kw, match", [
    (([0, 0], [0.1, 0.2]), {}, "both classes"),
    (([0, 1, 2], [[0.2, 0.3, 0.5]] * 3), {}, "binary problems"),
    (([0, 1], [0.1, 0.9]), dict(method="sensitivity"), "target_sensitivity"),
    (([0, 1], [0.1, 0.9]), dict(target_sensitivity=1.5), "target_sensitivity"),
    (([0, 1], [0.1, 0.9]), dict(method="f1"), "method"),
])
def test_threshold_bad_input(args, kw, match):
    with pytest.raises(ValueError, match=match):
        choose_threshold(*args, **kw)
