"""Side features (a beat's RR intervals) packed at the end of each signal: the network takes them beside the
waveform, they survive save/load, augmentation leaves them alone, and models without them are unchanged."""
import numpy as np
import pytest
import torch

from medkern.data import ArrayDataset, SignalAugment
from medkern.models import SequenceClassifier, load
from medkern.models.sequence import WaveformAugment

ARCH = {"hidden": 8, "conv_channels": 4}


def _beats(n=64, length=24, side=3, seed=0):
    """Noise waveforms, and class 1 iff the first side feature is large: learnable only through the side input
    (or not at all without one)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(1, 0.3, (n, 1, side))
    y = (features[:, 0, 0] > 1) if side else rng.integers(0, 2, n)
    x = np.concatenate([rng.normal(0, 1, (n, 1, length)), features], axis=2)
    return ArrayDataset(x.astype(np.float32), y.astype(np.int64), side_features=side)


@pytest.fixture(scope="module")
def trained():
    ds = _beats()
    return SequenceClassifier(**ARCH).fit(ds, ds, epochs=15, patience=None, progress=False, log=None), ds


def test_side_features_reach_the_head(trained):
    model, ds = trained
    assert model.shape["side_features"] == 3 and model.shape["length"] == 27
    net = model.network
    torch.testing.assert_close(net.side_mean, ds.x[:, 0, -3:].mean(dim=0))
    # the waveform statistics leave the side features out
    torch.testing.assert_close(net.mean[0, 0], ds.x[:, 0, :-3].mean())
    assert model.evaluate(ds)["auroc"] > 0.9  # learnable only from the side input
    flipped = ds.x.clone()
    flipped[:, 0, -3] = 2.0 - flipped[:, 0, -3]
    assert np.abs(model.predict(flipped) - model.predict(ds.x)).max() > 0.1


def test_save_load_keeps_the_side_input(trained, tmp_path):
    model, ds = trained
    again = load(model.save(tmp_path / "m.pt"))
    assert again.shape["side_features"] == 3
    np.testing.assert_allclose(again.predict(ds.x), model.predict(ds.x), atol=1e-6)


@pytest.mark.parametrize("side", [0, 2])
def test_state_without_side_features_loads_as_before(side):
    """Models saved before side features existed have no ``side_features`` in their shape."""
    ds = _beats(n=16, side=side)
    model = SequenceClassifier(**ARCH).fit(ds, epochs=1, progress=False, log=None)
    state = model.state()
    has_side = any(k.startswith("side_") for k in state["state_dict"])
    assert has_side == bool(side)
    if not side:
        del state["shape"]["side_features"]
        again = SequenceClassifier.from_state(state)
        np.testing.assert_allclose(again.predict(ds.x), model.predict(ds.x), atol=1e-6)


@pytest.mark.parametrize("side", [1, 4])
def test_waveform_augment_leaves_the_features(side):
    x = torch.randn(2, 30 + side)
    out = WaveformAugment(SignalAugment(noise=0.5, scale=0.5, shift=0.3, seed=0), side)(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out[:, -side:], x[:, -side:])
    assert not torch.allclose(out[:, :-side], x[:, :-side])


@pytest.mark.parametrize("side", [-1, 40])
def test_side_features_must_fit_the_signal(side):
    with pytest.raises(ValueError, match="side_features"):
        ArrayDataset(np.zeros((2, 1, 40), np.float32), np.zeros(2, np.int64), side_features=side)
