"""Grade-agreement metrics of ordered classes against scikit-learn and hand-computed values."""
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from medkern.metrics import bootstrap_ci, classification_metrics

GRADES = [0, 0, 1, 2, 2, 3, 4, 4]


def _one_hot(pred, k=5):
    """Probabilities whose most probable grade is ``pred``."""
    p = np.full((len(pred), k), 0.1 / (k - 1))
    p[np.arange(len(pred)), pred] = 0.9
    return p


@pytest.mark.parametrize("pred, mae", [
    (GRADES, 0.0),
    ([0, 1, 1, 2, 3, 3, 4, 3], 3 / 8),           # three grades one off
    ([4, 4, 3, 0, 0, 1, 0, 0], 24 / 8),          # far off: reversed scale
    ([2] * 8, 10 / 8),                           # one grade for everyone
], ids=["perfect", "near-misses", "reversed", "constant"])
def test_ordinal_metrics_match_scikit_learn(pred, mae):
    m = classification_metrics(GRADES, _one_hot(pred), ordinal=True)
    expected = cohen_kappa_score(GRADES, pred, weights="quadratic", labels=np.arange(5))
    assert m["quadratic_weighted_kappa"] == pytest.approx(expected, abs=1e-12)
    assert m["mean_absolute_grade_error"] == pytest.approx(mae, abs=1e-12)


def test_near_misses_cost_less_than_far_ones():
    near = classification_metrics(GRADES, _one_hot([1, 0, 2, 2, 3, 3, 4, 3]), ordinal=True)
    far = classification_metrics(GRADES, _one_hot([4, 0, 3, 2, 0, 3, 4, 0]), ordinal=True)
    assert near["accuracy"] == far["accuracy"]  # the same number of grades wrong...
    assert near["quadratic_weighted_kappa"] > far["quadratic_weighted_kappa"]  # ...but by less
    assert near["mean_absolute_grade_error"] < far["mean_absolute_grade_error"]


def test_nominal_classes_get_no_grade_metrics_and_bootstrap_knows_them():
    assert "quadratic_weighted_kappa" not in classification_metrics(GRADES, _one_hot(GRADES))
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 200)
    pred = np.clip(y + rng.integers(-1, 2, 200), 0, 4)
    lo, hi = bootstrap_ci(y, _one_hot(pred), "quadratic_weighted_kappa", n_boot=50)
    point = classification_metrics(y, _one_hot(pred), ordinal=True)["quadratic_weighted_kappa"]
    assert lo <= point <= hi
