"""Volumes: MedMNIST 3-D files and the layout rule, volume augmentation, and the synthetic nodule task."""
import itertools

import numpy as np
import pytest
import torch

from medkern.data import ArrayDataset, DataFileError, VolumeAugment, load, read_medmnist, synthetic_nodules
from medkern.data.medmnist import channels_first


def volume_archive(path, side=8, n=(12, 4, 6), column_labels=True, channels=None):
    """A MedMNIST-3D-shaped file: uint8 volumes (N, D, H, W) (or with a channel axis), binary labels."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n):
        shape = (k, side, side + 1, side + 2) if channels is None else (k, channels, side, side + 1, side + 2)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        labels = (np.arange(k) % 3 == 0).astype(np.uint8)
        arrays[f"{split}_labels"] = labels[:, None] if column_labels else labels
    np.savez(path, **arrays)
    return path, arrays


@pytest.mark.parametrize("column_labels", [True, False], ids=["labels-N1", "labels-N"])
def test_medmnist_3d_file_loads_as_volumes(tmp_path, column_labels):
    path, arrays = volume_archive(tmp_path / "toymnist3d.npz", column_labels=column_labels)
    s = load(path)
    assert (s.kind, s.num_classes, len(s.train), len(s.val), len(s.test)) == ("volume", 2, 12, 4, 6)
    assert s.train.x.shape == (12, 1, 8, 9, 10) and s.train.x.dtype == torch.float32
    np.testing.assert_allclose(s.test.x[2, 0].numpy(), arrays["test_images"][2] / 255.0, rtol=1e-6)
    assert s.train.y.tolist() == [1, 0, 0] * 4
    from medkern.models import VolumeClassifier, model_for
    assert model_for("classify", s.kind) is VolumeClassifier


def test_medmnist_3d_file_with_channels(tmp_path):
    path, _ = volume_archive(tmp_path / "two.npz", channels=2)
    splits, _ = read_medmnist(path)
    assert splits["val"].x.shape == (4, 2, 8, 9, 10)


@pytest.mark.parametrize("stored, expected, order", [
    ((2, 6, 7), (2, 1, 6, 7), None),
    ((2, 6, 7, 3), (2, 3, 6, 7), (0, 3, 1, 2)),
    ((2, 28, 28, 28), (2, 1, 28, 28, 28), None),
    ((2, 6, 7, 8), (2, 1, 6, 7, 8), None),
    ((2, 4, 6, 7, 8), (2, 4, 6, 7, 8), (0, 1, 2, 3, 4)),
    ((2, 6, 7, 8, 2), (2, 2, 6, 7, 8), (0, 4, 1, 2, 3)),
], ids=["grey-images", "rgb-images-NHWC", "medmnist-3d", "grey-volumes", "volumes-NCDHW", "volumes-NDHWC"])
def test_layout_rule(stored, expected, order):
    images = np.arange(np.prod(stored)).reshape(stored)
    out = channels_first(images)
    assert out.shape == expected
    want = images[:, None] if order is None else images.transpose(order)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("stored, problem", [
    ((2, 3, 28, 28), r"ambiguous: channels-first images \(N, C, H, W\) with 3 channels, or volumes \(N, D, H, W\)"),
    ((2, 3, 8, 8, 3), r"ambiguous: volumes with channels first"),
    ((2, 8, 3, 8), r"expected \(N, H, W\) or \(N, H, W, C\) images"),
    ((2, 8, 8, 8, 8, 8), r"expected"),
], ids=["NCHW-or-thin-volume", "channels-both-ends", "short-middle-axis", "six-dims"])
def test_ambiguous_or_unknown_layouts_are_named(tmp_path, stored, problem):
    path = tmp_path / "odd.npz"
    arrays = {f"{s}_images": np.zeros(stored, dtype=np.uint8) for s in ("train", "val", "test")}
    np.savez(path, **arrays, **{f"{s}_labels": np.zeros(2, dtype=np.int64) for s in ("train", "val", "test")})
    with pytest.raises(DataFileError, match=r"odd\.npz: train_images has shape .*" + problem):
        read_medmnist(path)


def test_vesselmnist3d(real_data):
    s = load(real_data("medmnist3d/vesselmnist3d.npz"))
    assert (s.kind, len(s.train), len(s.val), len(s.test)) == ("volume", 1335, 191, 382)
    assert [int(ds.y.sum()) for ds in (s.train, s.val, s.test)] == [150, 22, 43]
    assert s.test.x.shape[1:] == (1, 28, 28, 28) and s.test.x.min() >= 0 and s.test.x.max() <= 1


# -- augmentation -------------------------------------------------------------------------------------
@pytest.fixture
def volume():
    return torch.rand(2, 8, 9, 10, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("options", [{}, {"flip": ()}, {"rotate_deg": 0, "shift": 0}, {"intensity": 0},
                                     {"rotate_deg": 30, "shift": 0.3, "intensity": 0.5}],
                         ids=["defaults", "no-flip", "no-resampling", "no-intensity", "strong"])
def test_volume_augment_shape_dtype_range_and_seed(volume, options):
    out = VolumeAugment(seed=5, **options)(volume)
    assert out.shape == volume.shape and out.dtype == volume.dtype and out.min() >= 0 and out.max() <= 1
    assert torch.equal(VolumeAugment(seed=5, **options)(volume), out)
    assert not torch.equal(VolumeAugment(seed=6, **options)(volume), out)


@pytest.mark.parametrize("flip", [(0, 1, 2), (2,)], ids=["every-axis", "width-only"])
def test_volume_flips_only(volume, flip):
    aug = VolumeAugment(flip=flip, rotate_deg=0, shift=0, intensity=0, seed=0)
    allowed = {tuple(a - 3 for a in axes) for k in range(len(flip) + 1)
               for axes in itertools.combinations(flip, k)}
    seen = set()
    for _ in range(40):
        out = aug(volume)
        match = [axes for axes in allowed if torch.equal(out, volume.flip(axes) if axes else volume)]
        assert match
        seen.add(match[0])
    assert seen == allowed


def test_volume_identity_constant_and_moved_content():
    vol = torch.rand(1, 6, 6, 6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(VolumeAugment(flip=(), rotate_deg=0, shift=0, intensity=0)(vol), vol)
    const = torch.full((1, 7, 7, 7), 0.3)
    torch.testing.assert_close(VolumeAugment(flip=(), intensity=0, seed=1)(const), const)
    dot = torch.zeros(1, 15, 15, 15)
    dot[0, 7, 7, 7] = 1.0
    moved = [VolumeAugment(flip=(), rotate_deg=0, intensity=0, shift=0.2, seed=s)(dot) for s in range(5)]
    centres = [tuple((o[0] == o[0].max()).nonzero()[0].tolist()) for o in moved]
    assert all(max(abs(c - 7) for c in centre) <= 4 for centre in centres)  # within 0.2 * 15 + rounding
    assert len(set(centres)) > 1


def test_augmented_dataset_keeps_labels(volume):
    ds = ArrayDataset(volume[None].repeat(4, 1, 1, 1, 1), torch.tensor([0, 1, 1, 0]), VolumeAugment(seed=2))
    items = [ds[i] for i in range(4)]
    assert [int(y) for _, y in items] == [0, 1, 1, 0] and all(x.shape == volume.shape for x, _ in items)


@pytest.mark.parametrize("call", [lambda: VolumeAugment(flip=(3,)), lambda: VolumeAugment(shift=-0.1),
                                  lambda: VolumeAugment()(torch.zeros(8, 8, 8))],
                         ids=["bad-axis", "negative-shift", "no-channel-axis"])
def test_volume_augment_bad_arguments(call):
    with pytest.raises(ValueError):
        call()


# -- synthetic nodules ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n, size, fraction", [(20, 12, 0.3), (9, 16, 0.5)], ids=["default-fraction", "balanced"])
def test_nodules_shape_range_and_class_balance(n, size, fraction):
    ds = synthetic_nodules(n, size=size, seed=1, malignant_fraction=fraction)
    assert ds.x.shape == (n, 1, size, size, size) and ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
    assert ds.x.min() >= 0 and ds.x.max() <= 1 and ds.x.std() > 0.05
    assert int(ds.y.sum()) == round(n * fraction)


def test_nodules_are_seeded():
    a, b, c = (synthetic_nodules(12, size=12, seed=s) for s in (3, 3, 4))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and not torch.equal(a.x, c.x)


def test_malignant_nodules_are_larger_but_not_separable_by_size():
    from sklearn.metrics import roc_auc_score

    ds = synthetic_nodules(200, size=16, seed=0)
    dense = (ds.x > 0.45).flatten(1).sum(dim=1).numpy()  # nodule (and vessel) voxels
    assert 0.6 < roc_auc_score(ds.y.numpy(), dense) < 0.9


def test_load_synthetic_nodules():
    s = load("synthetic:nodules", n_train=30, n_test=10, size=12, seed=2)
    assert (s.kind, s.class_names, tuple(s.train.x.shape[1:])) == ("volume", ["benign", "malignant"], (1, 12, 12, 12))
    assert (len(s.train) + len(s.val), len(s.test)) == (30, 10)


@pytest.mark.parametrize("call, match", [(lambda: synthetic_nodules(0), "n must be positive"),
                                         (lambda: synthetic_nodules(4, size=6), "size"),
                                         (lambda: synthetic_nodules(4, malignant_fraction=2), "malignant_fraction")],
                         ids=["empty", "too-small", "bad-fraction"])
def test_nodules_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
