"""Temperature scaling: the fitted temperature, an over-confident model mended on validation data, and the
temperature saved with the model and used by predict."""
import numpy as np
import pytest
import torch

from medkern import train as training
from medkern.data import ArrayDataset
from medkern.metrics import calibration_metrics
from medkern.models import SequenceClassifier, load

QUIET = {"progress": False, "log": lambda s: None}


def _softmax(z, t=1.0):
    return torch.softmax(torch.as_tensor(z, dtype=torch.float64) / t, dim=1).numpy()


@pytest.mark.parametrize("true_t", [0.5, 1.0, 3.0], ids=["too-timid", "calibrated", "overconfident"])
def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_at(true_t):
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 3.0, (10_000, 4))
    cumulative = _softmax(logits, true_t).cumsum(axis=1)
    labels = (cumulative > rng.random((len(logits), 1))).argmax(axis=1)
    assert training.fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)


def test_a_perfectly_separated_validation_set_sharpens_only_so_far():
    # Its NLL falls forever as T -> 0; the prior on log T stops it well inside the range.
    logits, labels = np.array([[3.0, -3.0]] * 5 + [[-3.0, 3.0]] * 5), np.array([0] * 5 + [1] * 5)
    t = training.fit_temperature(logits, labels)
    assert 0.2 < t < 1.0


def _signals(n, classes, seed):
    """Class = which third of the series carries a bump, with noise that keeps it from being certain."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, 1, 24, generator=g)
    for k in range(classes):
        x[y == k, 0, 8 * k:8 * k + 8] += 1.0
    return ArrayDataset(x, y)


@pytest.mark.parametrize("classes", [2, 3], ids=["binary", "three-class"])
def test_temperature_scaling_mends_an_overconfident_model_and_is_saved(classes, tmp_path):
    train, val = _signals(48, classes, seed=0), _signals(60, classes, seed=1)
    model = SequenceClassifier(hidden=8, conv_channels=0, dropout=0.0)
    model.fit(train, val, epochs=3, batch_size=16, calibrate=False, **QUIET)
    assert model.temperature == 1.0
    calibrating = training.fit_temperature(model.logits(val.x), val.y.numpy())
    with torch.no_grad():  # deliberately over-confident: logits 6 times larger than calibrated ones
        for p in model.network.head[-1].parameters():
            p.mul_(6.0 / calibrating)
    before = calibration_metrics(val.y.numpy(), model.predict(val.x))
    decisions = model.decide(model.predict(train.x))
    t = model.calibrate(val)
    after = calibration_metrics(val.y.numpy(), model.predict(val.x))
    assert t > 4.0 and after["nll"] < before["nll"] and after["ece"] < before["ece"]
    # Only the confidence changed: a binary model's threshold moved with the temperature.
    np.testing.assert_array_equal(model.decide(model.predict(train.x)), decisions)
    np.testing.assert_allclose(model.predict(val.x), _softmax(model.logits(val.x), t), atol=1e-6)
    report = model.evaluate(val)["calibration"]
    assert report["temperature"] == t and report["after"] == pytest.approx(after)
    model.save(tmp_path / "m.pt")
    again = load(tmp_path / "m.pt")
    assert again.temperature == t and again.threshold == model.threshold
    np.testing.assert_allclose(again.predict(val.x), model.predict(val.x), atol=1e-6)


def test_fit_calibrates_on_validation_data_only_when_asked():
    train, val = _signals(32, 3, seed=0), _signals(30, 3, seed=1)
    options = dict(epochs=1, batch_size=16, **QUIET)
    assert SequenceClassifier(hidden=4, conv_channels=0).fit(train, val, **options).temperature != 1.0
    assert SequenceClassifier(hidden=4, conv_channels=0).fit(train, None, **options).temperature == 1.0
    assert SequenceClassifier(hidden=4, conv_channels=0).fit(train, val, calibrate=False,
                                                             **options).temperature == 1.0
