"""MedMNIST .npz reader: crafted archives in tmp_path and the real BreastMNIST."""
import numpy as np
import pytest

from medkern.data import DataFileError, load, read_medmnist


def archive(path, rgb=False, n=(6, 3, 4), drop=(), **override):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, k in zip(("train", "val", "test"), n):
        shape = (k, 8, 8, 3) if rgb else (k, 8, 8)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(k) % 3).reshape(k, 1)
    arrays.update(override)
    for key in drop:
        del arrays[key]
    np.savez(path, **arrays)
    return path, arrays


@pytest.mark.parametrize("rgb", [False, True])
def test_splits_layout_and_scale(tmp_path, rgb):
    path, arrays = archive(tmp_path / "toymnist.npz", rgb=rgb)
    splits, names = read_medmnist(path)
    assert names == ["0", "1", "2"]
    x = splits["val"].x
    assert x.shape == ((3, 3, 8, 8) if rgb else (3, 1, 8, 8))
    img = arrays["val_images"][1]
    want = (img.transpose(2, 0, 1) if rgb else img[None]) / 255.0
    np.testing.assert_allclose(x[1].numpy(), want, rtol=1e-6)
    assert splits["test"].y.tolist() == [0, 1, 2, 0]


def test_load_keeps_own_splits_and_carves_missing_val(tmp_path):
    path, _ = archive(tmp_path / "a.npz")
    s = load(path)
    assert (len(s.train), len(s.val), len(s.test), s.kind, s.num_classes) == (6, 3, 4, "image", 3)
    path, _ = archive(tmp_path / "b.npz", n=(20, 3, 4), drop=("val_images", "val_labels"))
    s = load(path, val_fraction=0.3)
    assert (len(s.train), len(s.val), len(s.test)) == (14, 6, 4)
    with pytest.raises(ValueError, match="own test split"):
        load(path, test=path)


@pytest.mark.parametrize("kwargs, problem", [
    (dict(drop=("train_labels",)), r"missing key\(s\) \['train_labels'\]"),
    (dict(drop=("test_images",)), r"missing key\(s\) \['test_images'\]"),
    (dict(val_labels=np.zeros(2, dtype=np.int64)), r"val has 3 images but 2 labels"),
    (dict(val_labels=np.zeros((3, 4), dtype=np.int64)), r"only one label per image"),
    (dict(val_labels=np.array([0.5, 1, 2])), r"non-negative integers"),
    (dict(val_images=np.zeros((3, 9, 9), dtype=np.uint8)), r"different image shapes"),
    (dict(val_images=np.zeros((3, 8), dtype=np.uint8)), r"val_images has shape"),
    (dict(test_images=np.full((4, 8, 8), 2.0)), r"test_images must be uint8 or floats in \[0, 1\]"),
])
def test_inconsistent_archives(tmp_path, kwargs, problem):
    path, _ = archive(tmp_path / "bad.npz", **kwargs)
    with pytest.raises(DataFileError, match=r"bad\.npz: .*" + problem):
        read_medmnist(path)


def test_not_an_archive(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataFileError, match=r"junk\.npz: not a readable \.npz"):
        read_medmnist(path)


def test_breastmnist(real_data):
    path = real_data("medmnist/breastmnist.npz")
    s = load(path)
    assert (len(s.train), len(s.val), len(s.test)) == (546, 78, 156)
    assert s.class_names == ["malignant", "normal_benign"] and s.num_classes == 2 and s.kind == "image"
    for ds in (s.train, s.val, s.test):
        assert ds.x.shape[1:] == (1, 28, 28) and ds.x.min() >= 0 and ds.x.max() <= 1
        assert 0.2 < (ds.y == 0).float().mean() < 0.35  # about 27% malignant
