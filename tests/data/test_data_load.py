"""The ``load`` dispatcher: synthetic defaults, each file kind, and what it refuses."""
import numpy as np
import pytest

from medkern.data import DataFileError, load

from ._wfdb_files import encode_annotations, write_record


@pytest.mark.parametrize("task, kind, shape, classes", [
    ("classify", "image", (3, 28, 28), 2),
    ("sequence", "sequence", (1, 187), 2),
    ("forecast", "sequence", (3, 96), 0),
])
def test_synthetic_defaults(task, kind, shape, classes):
    s = load(task=task, n_train=100, n_test=40)
    assert (s.kind, s.num_classes, tuple(s.train.x.shape[1:])) == (kind, classes, shape)
    assert (len(s.train), len(s.val), len(s.test)) == (85, 15, 40)
    assert s.source.startswith("synthetic:")
    if classes:
        assert len(s.class_names) == classes and s.test.y.sum() > 0
    else:
        assert s.train.y.shape[1:] == (8,)


def test_synthetic_by_name_and_options():
    s = load("synthetic:ecg", task="sequence", n_train=50, n_test=10, length=64, seed=3)
    assert s.train.x.shape[1:] == (1, 64) and "seed=3" in s.source
    with pytest.raises(ValueError, match="does not fit task"):
        load("synthetic:vitals", task="classify")
    with pytest.raises(ValueError, match="unknown synthetic"):
        load("synthetic:xray")
    with pytest.raises(ValueError, match="task must be one of"):
        load(task="segment")


def test_wfdb_record_paths_and_test_fraction(tmp_path):
    rng = np.random.default_rng(0)
    rec = write_record(tmp_path, "w", rng.integers(-500, 500, (3000, 1)), gains=(200.0,), baselines=(0,))
    beats = [(100 + 120 * i, "V" if i % 5 == 0 else "N") for i in range(24)]
    (tmp_path / "w.atr").write_bytes(encode_annotations(beats))
    for form in (rec, str(rec) + ".hea", str(rec) + ".atr"):
        s = load(form, task="sequence", before=20, after=30, test_fraction=0.25)
        assert s.class_names == ["N", "S", "V", "F", "Q"] and s.num_classes == 5
        assert len(s.train) + len(s.val) + len(s.test) == 24 and s.train.x.shape[1:] == (1, 50)
        assert sorted(set(s.test.y.tolist())) == [0, 2]


def test_ucr_without_suffix(tmp_path):
    (tmp_path / "Toy_TRAIN").write_text("1,0.5,0.25\n2,0.1,0.2\n1,0.3,0.3\n2,0.0,0.1\n")
    (tmp_path / "Toy_TEST").write_text("2,0.5,0.25\n")
    s = load(tmp_path / "Toy_TRAIN", test=tmp_path / "Toy_TEST", task="sequence", val_fraction=0.5)
    assert s.class_names == ["1", "2"] and s.test.y.tolist() == [1] and (len(s.train), len(s.val)) == (2, 2)


def test_refusals(tmp_path):
    with pytest.raises(DataFileError, match=r"missing\.npy: no such file"):
        load(tmp_path / "missing.npy")
    (tmp_path / "x.bin").write_bytes(b"1234")
    with pytest.raises(DataFileError, match=r"x\.bin: unrecognised data"):
        load(tmp_path / "x.bin")
    with pytest.raises(ValueError, match="forecasting reads only"):
        load(tmp_path / "x.bin", task="forecast")
