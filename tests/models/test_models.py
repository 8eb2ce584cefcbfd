"""medkern.models: fit / predict / evaluate / save / load of each model, on tiny data, and bad input."""
import numpy as np
import pytest
import torch

import medkern
from medkern.data import ArrayDataset, synthetic_ecg, synthetic_lesions, synthetic_vitals
from medkern.models import ImageClassifier, SequenceClassifier, SequenceForecaster, load
from medkern.models.base import HEADLINE

QUIET = {"progress": False, "log": lambda s: None}


def _bright_left(n, channels=1, h=12, w=12, seed=0):
    """Label 1 = the left half is bright: learnable in a few steps, and where the evidence lies is known."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.rand(n, channels, h, w, generator=g)
    y = torch.arange(n) % 2
    x[y == 1, :, :, : w // 2] += 0.6
    return ArrayDataset(x, y)


def _medkern_layers(net):
    return sum(type(m).__module__.startswith("medkern.nn") for m in net.modules())


def test_image_classifier_round_trip(tmp_path):
    data = synthetic_lesions(40, size=16, seed=1)
    model = ImageClassifier(width=4, depth=2).fit(data, data, epochs=1, batch_size=8, **QUIET)
    probs = model.predict(data.x)
    assert probs.shape == (40, 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert model.predict(data.x[0]).shape == (1, 2)  # one item
    m = model.evaluate(data, n_boot=20)
    assert set(HEADLINE) <= set(m) and set(HEADLINE) == set(m["ci"])
    assert 0 <= m["threshold"] <= 1 and m["threshold"] == model.threshold
    model.save(tmp_path / "m.pt")
    again = load(tmp_path / "m.pt")
    assert type(again) is ImageClassifier and again.threshold == model.threshold
    np.testing.assert_allclose(again.predict(data.x), probs, atol=1e-6)
    as_torch = ImageClassifier.load(tmp_path / "m.pt", layers="torch")
    assert _medkern_layers(again.network) > 0 and _medkern_layers(as_torch.network) == 0
    np.testing.assert_allclose(as_torch.predict(data.x), probs, atol=1e-4)
    with pytest.raises(ValueError, match="not a SequenceClassifier"):
        SequenceClassifier.load(tmp_path / "m.pt")


@pytest.mark.parametrize("channels,h,w", [(3, 20, 24), (1, 70, 66)])
def test_image_classifier_any_size_and_channels(channels, h, w):
    data = _bright_left(8, channels, h, w)
    model = ImageClassifier(width=4, depth=2, blocks=2).fit(data, epochs=1, batch_size=4, **QUIET)
    assert model.predict(data.x).shape == (8, 2)
    assert model.shape == {"in_channels": channels, "num_classes": 2, "input_size": [h, w]}
    with pytest.raises(ValueError, match="channels"):
        model.predict(torch.rand(2, channels + 1, h, w))


def test_image_classifier_learns_and_grad_cam_points_at_the_evidence():
    data = _bright_left(64)
    model = ImageClassifier(width=8, depth=2, dropout=0.0).fit(data, data, epochs=8, batch_size=16, lr=5e-3,
                                                               augment=False, **QUIET)
    assert model.evaluate(data)["accuracy"] == 1.0
    from medkern.viz import grad_cam
    positives = data.x[data.y == 1][:4]
    cam = grad_cam(model.network, model.cam_layer(), positives, target=1)
    assert cam.shape == (4, 12, 12) and cam.min() >= 0 and cam.max() <= 1 + 1e-6
    assert cam[:, :, :6].mean() > cam[:, :, 6:].mean()


@pytest.mark.parametrize("rnn,bidirectional,conv,channels",
                         [("gru", True, 8, 1), ("lstm", False, 0, 3), ("lstm", True, 4, 2)])
def test_sequence_classifier_variants(rnn, bidirectional, conv, channels, tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, channels, 40, generator=g)
    y = torch.arange(24) % 3  # three classes
    data = ArrayDataset(x, y)
    model = SequenceClassifier(rnn=rnn, bidirectional=bidirectional, conv_channels=conv, hidden=8)
    model.fit(data, data, epochs=1, batch_size=8, **QUIET)
    probs = model.predict(x)
    assert probs.shape == (24, 3) and model.threshold is None  # multiclass: argmax
    assert model.evaluate(data)["confusion_matrix"] is not None
    model.save(tmp_path / "s.pt")
    np.testing.assert_allclose(load(tmp_path / "s.pt", layers="torch").predict(x), probs, atol=1e-4)


def test_sequence_classifier_learns_ecg_and_saliency():
    data = synthetic_ecg(160, length=96, seed=0)
    model = SequenceClassifier(hidden=16, conv_channels=8, dropout=0.0)
    model.fit(data, data, epochs=6, batch_size=16, lr=1e-2, augment=False, **QUIET)
    assert model.evaluate(data)["auroc"] > 0.8
    from medkern.viz import time_saliency
    s = time_saliency(model.network, data.x[:3])
    assert s.shape == (3, 96) and s.max() == pytest.approx(1.0)


def test_saliency_is_zero_where_the_output_does_not_look():
    from medkern.viz import time_saliency

    class Window(torch.nn.Module):
        def forward(self, x):
            s = x[:, :, 10:20].sum(dim=(1, 2))
            return torch.stack([-s, s], dim=1)
    s = time_saliency(Window(), torch.randn(2, 2, 30) + 3)
    assert np.all(s[:, :10] == 0) and np.all(s[:, 20:] == 0) and np.all(s[:, 10:20] > 0)


def test_forecaster_fits_predicts_and_is_shift_equivariant(tmp_path):
    data = synthetic_vitals(48, context=24, horizon=4, seed=0)
    model = SequenceForecaster(hidden=8).fit(data, data, epochs=2, batch_size=16, **QUIET)
    pred = model.predict(data.x)
    assert pred.shape == (48, 4)
    m = model.evaluate(data)
    assert {"mae", "rmse", "mape", "mae_per_step"} <= set(m) and m["rmse"] >= m["mae"] > 0
    # Per-window standardisation, undone on the output: shifting the series shifts the forecast.
    shifted = model.predict(data.x + 0.5)
    np.testing.assert_allclose(shifted, pred + 0.5, atol=1e-4)
    model.save(tmp_path / "f.pt")
    np.testing.assert_allclose(load(tmp_path / "f.pt").predict(data.x), pred, atol=1e-6)


def test_binary_threshold_from_validation():
    data = synthetic_ecg(60, length=48, seed=2)
    model = SequenceClassifier(hidden=4, conv_channels=0)
    model.fit(data, data, epochs=1, batch_size=20, threshold="sensitivity", target_sensitivity=1.0, **QUIET)
    assert model.evaluate(data)["sensitivity"] == 1.0
    p = model.predict(data.x)[:, 1]
    assert model.threshold == pytest.approx(medkern.metrics.choose_threshold(data.y.numpy(), p,
                                                                              target_sensitivity=1.0))
    model.fit(data, None, epochs=1, batch_size=20, **QUIET)  # no validation data: no threshold
    assert model.threshold is None


def test_medkern_and_torch_variants_start_identical():
    data = synthetic_lesions(4, size=12)
    a, b = ImageClassifier(width=4, depth=2, seed=3), ImageClassifier(width=4, depth=2, layers="torch", seed=3)
    for m in (a, b):
        m.shape = m._data_shape(data)
        m.network = m._build()
    assert _medkern_layers(a.network) >= 5 and _medkern_layers(b.network) == 0
    sa, sb = a.network.state_dict(), b.network.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bad_input_is_reported_by_name(tmp_path):
    with pytest.raises(TypeError, match="unknown option"):
        ImageClassifier(widht=4)
    with pytest.raises(ValueError, match="layers"):
        ImageClassifier(layers="cuda")
    with pytest.raises(RuntimeError, match="not trained"):
        ImageClassifier().predict(torch.rand(1, 1, 8, 8))
    data = synthetic_ecg(8, length=32)
    with pytest.raises(ValueError, match=r"train.x must hold \(N, C, H, W\) images"):
        ImageClassifier().fit(data, **QUIET)
    with pytest.raises(ValueError, match="float targets"):
        SequenceForecaster().fit(data, **QUIET)
    with pytest.raises(ValueError, match="class labels"):
        SequenceClassifier().fit(synthetic_vitals(8, context=16, horizon=2), **QUIET)
    with pytest.raises(TypeError, match="unknown training option"):
        SequenceClassifier().fit(data, epoch=1, **QUIET)
    with pytest.raises(ValueError, match="rnn must be"):
        SequenceClassifier(rnn="transformer").fit(data, **QUIET)
    with pytest.raises(TypeError, match="train must be"):
        SequenceClassifier().fit("data.npz", **QUIET)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load(tmp_path / "junk.pt")
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a saved medkern model"):
        load(tmp_path / "other.pt")


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
def test_sequence_models_use_medkern_recurrent_and_conv_layers(rnn):
    model = SequenceClassifier(rnn=rnn, conv_channels=4, hidden=4)
    model.shape = {"in_channels": 2, "num_classes": 2, "length": 32}
    kinds = {type(m) for m in model._build().modules()}
    assert {medkern.nn.Conv1d, medkern.nn.MaxPool1d, getattr(medkern.nn, rnn.upper())} <= kinds
    assert not any(t.__module__.startswith("medkern.nn") for t in map(type, model._build("torch").modules()))


def _member_probs(model, x):
    with torch.no_grad():
        return [m(x).softmax(dim=1).numpy() for m in model.network.members]


def test_image_ensemble_averages_members_and_round_trips(tmp_path):
    data = _bright_left(32)
    model = ImageClassifier(ensemble=3, width=4, depth=2).fit(data, data, epochs=2, batch_size=8,
                                                              out=tmp_path / "run", **QUIET)
    members = _member_probs(model, data.x)
    assert len(members) == 3 and len(model.member_results) == 3 and model.result is model.member_results[0]
    # Different seeds give different members; the ensemble's logits are the log of their mean probability,
    # which the prediction divides by the temperature fitted on validation data.
    assert np.abs(members[0] - members[1]).max() > 1e-3
    logits = model.logits(data.x)
    np.testing.assert_allclose(np.exp(logits), np.mean(members, axis=0), atol=1e-6)
    np.testing.assert_allclose(model.predict(data.x), torch.softmax(torch.from_numpy(logits) / model.temperature, 1),
                               atol=1e-6)
    # The first member is the network a single-model fit with the same seed gives.
    single = ImageClassifier(width=4, depth=2).fit(data, data, epochs=2, batch_size=8, **QUIET)
    np.testing.assert_allclose(members[0], torch.softmax(torch.from_numpy(single.logits(data.x)), 1), atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["member0", "member1", "member2"]
    model.save(tmp_path / "m.pt")
    again = load(tmp_path / "m.pt")
    assert again.ensemble == 3 and again.threshold == model.threshold and again.temperature == model.temperature
    np.testing.assert_allclose(again.predict(data.x), model.predict(data.x), atol=1e-6)
    np.testing.assert_allclose(ImageClassifier.load(tmp_path / "m.pt", layers="torch").predict(data.x),
                               model.predict(data.x), atol=1e-4)
    from medkern.viz import grad_cam
    cam = grad_cam(model.network, model.cam_layer(), data.x[:3])
    assert cam.shape == (3, 12, 12) and cam.min() >= 0 and abs(cam.max() - 1) < 1e-6
    assert model.embed(data.x[:5]).shape == (5, 3 * model.network.members[0].embed(data.x[:1]).shape[1])


def test_forecaster_ensemble_averages_values():
    data = synthetic_vitals(32, context=16, horizon=3, seed=0)
    model = SequenceForecaster(hidden=8, ensemble=2).fit(data, epochs=1, batch_size=16, **QUIET)
    with torch.no_grad():
        each = [m(data.x).numpy() for m in model.network.members]
    np.testing.assert_allclose(model.predict(data.x), np.mean(each, axis=0), atol=1e-5)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_ensemble_size_is_checked(bad):
    with pytest.raises(ValueError, match="ensemble"):
        ImageClassifier(ensemble=bad)


def _graded(kind, n=36, grades=3):
    """Items whose grade is how bright a patch is: ordered classes, signals or images."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % grades
    x = 0.3 * torch.rand(n, 1, 32, generator=g) if kind == "signals" else 0.3 * torch.rand(n, 1, 12, 12, generator=g)
    x[..., 4:8] += 0.3 * y.float().view(-1, *[1] * (x.dim() - 1))
    return ArrayDataset(x, y)


@pytest.mark.parametrize("kind, ordinal", [("signals", False), ("signals", True), ("images", False), ("images", True)],
                         ids=["signals-nominal", "signals-ordinal", "images-nominal", "images-ordinal"])
def test_multiclass_reports_each_class_and_ordinal_grades(kind, ordinal, tmp_path):
    data = _graded(kind)
    model = (SequenceClassifier(hidden=8, conv_channels=0, ordinal=ordinal) if kind == "signals" else
             ImageClassifier(width=4, depth=2, ordinal=ordinal))
    model.class_names = ["none", "mild", "severe"]
    model.fit(data, data, epochs=2, batch_size=12, **QUIET)
    assert model.train_config["loss"] == ("cumulative" if ordinal else "ce") and model.threshold is None
    m = model.evaluate(data, n_boot=10)
    assert list(m["per_class"]) == model.class_names
    assert all(set(c) == {"sensitivity", "ppv", "auroc"} for c in m["per_class"].values())
    assert {"auroc", "accuracy", "balanced_accuracy", "accuracy_argmax"} <= set(m)
    grade_metrics = {"quadratic_weighted_kappa", "mean_absolute_grade_error"}
    expected = grade_metrics if ordinal else set()
    assert grade_metrics & set(m) == expected and grade_metrics & set(m["ci"]) == expected
    model.save(tmp_path / "m.pt")
    again = load(tmp_path / "m.pt")
    assert again.ordinal == ordinal
    np.testing.assert_allclose(again.predict(data.x), model.predict(data.x), atol=1e-6)


def test_cumulative_loss_needs_ordered_grades():
    with pytest.raises(ValueError, match="ordinal=True"):
        SequenceClassifier(hidden=4).fit(_graded("signals"), loss="cumulative", epochs=1, **QUIET)
