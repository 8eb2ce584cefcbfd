"""VolumeClassifier: fit / predict / evaluate / save / load on tiny volumes, its 3-D network, and Grad-CAM
written as axial slices."""
import itertools

import numpy as np
import pytest
import torch

from medkern.data import ArrayDataset, synthetic_nodules
from medkern.models import ImageClassifier, VolumeClassifier, load
from medkern.models.base import HEADLINE

QUIET = {"progress": False, "log": lambda s: None}


def _bright_corner(n, side=12, seed=0):
    """Label 1 = a bright cube in the first corner: learnable in a few steps, the evidence's place known."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.rand(n, 1, side, side, side, generator=g)
    y = torch.arange(n) % 2
    x[y == 1, :, : side // 3, : side // 3, : side // 3] += 0.6
    return ArrayDataset(x, y)


def test_volume_classifier_round_trip(tmp_path):
    data = synthetic_nodules(24, size=12, seed=1)
    model = VolumeClassifier(width=4, depth=2).fit(data, data, epochs=1, batch_size=8, **QUIET)
    probs = model.predict(data.x)
    assert probs.shape == (24, 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert model.predict(data.x[0]).shape == (1, 2)  # one volume
    m = model.evaluate(data, n_boot=10)
    assert set(HEADLINE) <= set(m) and set(HEADLINE) == set(m["ci"])
    model.save(tmp_path / "v.pt")
    again = load(tmp_path / "v.pt")
    assert type(again) is VolumeClassifier and again.threshold == model.threshold
    np.testing.assert_allclose(again.predict(data.x), probs, atol=1e-6)
    np.testing.assert_allclose(VolumeClassifier.load(tmp_path / "v.pt", layers="torch").predict(data.x), probs,
                               atol=1e-4)
    with pytest.raises(ValueError, match="not a ImageClassifier"):
        ImageClassifier.load(tmp_path / "v.pt")
    with pytest.raises(ValueError, match=r"\(N, C, D, H, W\) volumes"):
        model.predict(torch.rand(1, 12, 12))  # an image, not a volume
    from medkern.serving import InputError, Predictor
    with Predictor(tmp_path / "v.pt", max_batch=4) as served:
        assert served.input_shape == (1, 12, 12, 12)
        np.testing.assert_allclose(served.predict(data.x[:3].numpy()), probs[:3], atol=1e-5)
        with pytest.raises(InputError, match="12x12x12"):
            served.predict(np.zeros((1, 1, 12, 12, 10)))


@pytest.mark.parametrize("channels, shape, arch, downsampled", [
    (1, (12, 12, 12), {"width": 4, "depth": 2}, 4),
    (2, (10, 14, 12), {"width": 4, "depth": 2, "blocks": 2, "stem_stride": 1}, 2),
    (1, (36, 36, 36), {"width": 4, "depth": 1}, 4),
], ids=["default-stride", "two-channels-full-resolution", "large-input-stem"])
def test_volume_network_shapes(channels, shape, arch, downsampled):
    data = ArrayDataset(torch.rand(4, channels, *shape), torch.tensor([0, 1, 0, 1]))
    model = VolumeClassifier(**arch).fit(data, epochs=1, batch_size=4, **QUIET)
    assert model.shape == {"in_channels": channels, "num_classes": 2, "input_size": list(shape)}
    assert any(isinstance(m, torch.nn.Conv3d) for m in model.network.modules())
    with torch.no_grad():
        features = model.network.features(model.network.stem(data.x))
    assert tuple(features.shape[2:]) == tuple(-(-side // downsampled) for side in shape)
    with pytest.raises(ValueError, match="channels"):
        model.predict(torch.rand(1, channels + 1, *shape))


def test_volume_classifier_learns_and_grad_cam_points_at_the_evidence():
    data = _bright_corner(48)
    # Full resolution in the first stage: a 12^3 volume halved twice leaves Grad-CAM too coarse a map.
    model = VolumeClassifier(width=8, depth=2, dropout=0.0, stem_stride=1).fit(
        data, data, epochs=6, batch_size=16, lr=5e-3, augment=False, ema=None, **QUIET)
    assert model.evaluate(data)["accuracy"] == 1.0
    from medkern.viz import grad_cam
    cam = grad_cam(model.network, model.cam_layer(), data.x[data.y == 1][:3], target=1)
    assert cam.shape == (3, 12, 12, 12) and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    assert cam[:, :6, :6, :6].mean() > 1.5 * cam[:, 6:, 6:, 6:].mean()


@pytest.mark.parametrize("items, depth, n_slices", [(3, 12, 8), (2, 5, 8)], ids=["deep", "fewer-slices-than-asked"])
def test_gradcam_slices_png(tmp_path, items, depth, n_slices):
    from PIL import Image

    from medkern.viz import gradcam_slices
    from medkern.viz.explain import SLICE_INCHES

    volumes = np.random.default_rng(0).random((items, 1, depth, 9, 9))
    cams = np.random.default_rng(1).random((items, depth, 9, 9))
    probs = np.tile([[0.3, 0.7]], (items, 1))
    path = gradcam_slices(volumes, cams, np.zeros(items, dtype=int), probs, ["a", "b"], tmp_path / "g.png",
                          n_slices=n_slices)
    columns, dpi = min(n_slices, depth), 110
    assert Image.open(path).size == (round(columns * SLICE_INCHES * dpi), round(items * (SLICE_INCHES + 0.4) * dpi))


def test_run_report_writes_volume_gradcam(tmp_path):
    from PIL import Image

    from medkern import viz

    data = synthetic_nodules(20, size=10, seed=0)
    model = VolumeClassifier(width=4, depth=2).fit(data, data, epochs=1, batch_size=10, **QUIET)
    model.class_names = ["benign", "malignant"]
    record = viz.write_run(tmp_path, model, test=data, val=data, history=model.result.history, n_boot=10,
                           n_explain=3)
    assert set(HEADLINE) <= set(record["test"])
    assert Image.open(tmp_path / "gradcam.png").size[1] == round(3 * (viz.explain.SLICE_INCHES + 0.4) * 110)


def _flip_views(x):
    return [x.flip(axes) if axes else x for k in range(4) for axes in itertools.combinations((2, 3, 4), k)]


@pytest.mark.parametrize("augment", [True, False], ids=["trained-with-flips", "no-augmentation"])
def test_predictions_average_over_mirror_images_when_trained_on_them(tmp_path, augment):
    data = synthetic_nodules(16, size=10, seed=3)
    model = VolumeClassifier(width=4, depth=2).fit(data, data, epochs=1, batch_size=8, augment=augment, **QUIET)
    assert model.arch["flip_average"] is augment and model.network.flip_average is augment
    net = model.network
    with torch.no_grad():  # as predict runs it
        views = [net._logits(v).softmax(dim=1) for v in _flip_views(data.x)]
        predicted = net(data.x).softmax(dim=1)
    torch.testing.assert_close(predicted, torch.stack(views).mean(dim=0) if augment else views[0])
    with torch.enable_grad():  # gradients (Grad-CAM) refer to the volume itself
        torch.testing.assert_close(net(data.x).softmax(dim=1), views[0])
    model.save(tmp_path / "v.pt")
    assert load(tmp_path / "v.pt").network.flip_average is augment
