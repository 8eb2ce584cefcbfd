"""UCR archive reader: crafted files in tmp_path and the real ECG200/ECG5000."""
import numpy as np
import pytest

from medkern.data import DataFileError, load, read_ucr


def write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("sep", ["  ", "\t", ","])
def test_labels_mapped_in_numeric_order(tmp_path, sep):
    rows = [(1, [0.5, 1.0, -2.0]), (-1, [3.0, 4.0, 5.5]), (1, [1e-3, 2.0, 3.0]), (2, [0.0, 0.0, 1.0])]
    text = "\n".join(sep.join(f"{v:.7e}" for v in [lab, *vals]) for lab, vals in rows) + "\n\n"
    train, test, names = read_ucr(write(tmp_path / "X_TRAIN.tsv", text))
    assert names == ["-1", "1", "2"] and test is None
    assert train.y.tolist() == [1, 0, 1, 2] and train.y.dtype.is_floating_point is False
    assert train.x.shape == (4, 1, 3)
    np.testing.assert_allclose(train.x[:, 0].numpy(), [r[1] for r in rows], rtol=1e-6)


def test_test_file_uses_training_mapping(tmp_path):
    tr = write(tmp_path / "A_TRAIN.txt", "3 1 2\n5 3 4\n")
    te = write(tmp_path / "A_TEST.txt", "5 0 0\n3 1 1\n5 2 2\n")
    _, test, names = read_ucr(tr, te)
    assert names == ["3", "5"] and test.y.tolist() == [1, 0, 1]
    write(te, "7 0 0\n")
    with pytest.raises(DataFileError, match=r"A_TEST\.txt: labels \[7\] do not occur"):
        read_ucr(tr, te)
    write(te, "3 0 0 0\n")
    with pytest.raises(DataFileError, match=r"A_TEST\.txt: series have length 3"):
        read_ucr(tr, te)


@pytest.mark.parametrize("text, problem", [
    ("1 2 3\n1 2\n", r"line 2: ragged rows"),
    ("1 2 3\n1 2 x\n", r"line 2: not a number"),
    ("1 2 NaN\n", r"line 1: missing or non-finite"),
    ("1.5 2 3\n", r"class labels .* integer-valued"),
    ("\n\n", r"no data rows"),
    ("1\n", r"line 1: a label and at least one value"),
])
def test_bad_files_name_file_and_problem(tmp_path, text, problem):
    path = write(tmp_path / "B_TRAIN.txt", text)
    with pytest.raises(DataFileError, match=r"B_TRAIN\.txt: " + problem):
        read_ucr(path)


def test_unreadable(tmp_path):
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataFileError, match=r"bin\.txt: cannot read"):
        read_ucr(tmp_path / "bin.txt")


def test_ecg200(real_data):
    tr, te = real_data("ucr/ECG200_TRAIN.txt"), real_data("ucr/ECG200_TEST.txt")
    train, test, names = read_ucr(tr, te)
    assert names == ["-1", "1"]
    assert train.x.shape == (100, 1, 96) and test.x.shape == (100, 1, 96)
    assert np.bincount(train.y).tolist() == [31, 69] and np.bincount(test.y).tolist() == [36, 64]
    splits = load(tr, test=te, task="sequence")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (85, 15, 100)
    assert splits.num_classes == 2 and splits.kind == "sequence"


def test_ecg5000(real_data):
    train, _, names = read_ucr(real_data("ucr/ECG5000_TRAIN.txt"))
    assert names == ["1", "2", "3", "4", "5"]
    assert train.x.shape == (500, 1, 140)
    assert np.bincount(train.y).tolist() == [292, 177, 10, 19, 2]
