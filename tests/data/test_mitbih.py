"""A folder of WFDB records read as beats with RR features, split by record: crafted records in tmp_path, and
MIT-BIH records 100 and 114 (MLII is 114's second lead) where the shared data are present."""
import numpy as np
import pytest

from medkern.data import DataFileError, load
from medkern.data.groups import group_folds, group_split
from medkern.data.mitbih import RR_FEATURES, read_beat_folder, record_beats, rr_features

from ._wfdb_files import write_beat_folder

@pytest.fixture
def folder(tmp_path):
    return write_beat_folder(tmp_path)


@pytest.mark.parametrize("rr", [360, 250])
def test_rr_features_of_a_premature_beat(rr):
    peaks = np.cumsum([rr] * 12 + [0.6 * rr, 1.4 * rr] + [rr] * 12)  # beat 12 comes early, then a pause
    f = dict(zip(RR_FEATURES, rr_features(peaks).T))
    regular, early = 3, 12
    assert all(f[name][regular] == pytest.approx(1.0) for name in RR_FEATURES)  # the heart rate cancels out
    assert f["pre/local"][early] < 0.7 < 1.3 < f["post/pre"][early]
    assert f["pre/record"][early] == pytest.approx(0.6 * rr / np.diff(peaks).mean())
    # the ends take their one neighbouring interval for both
    assert f["post/pre"][0] == f["post/pre"][-1] == 1.0


def test_folder_leaves_out_paced_records_and_packs_rr(folder):
    said = []
    beats = read_beat_folder(folder, log=said.append)
    assert beats.records == ["r0", "r1", "r2", "r3", "r4"]
    assert len(said) == 1 and "paced" in said[0] and "p0" in said[0]
    window = round(0.25 * 360) + round(0.45 * 360)
    assert beats.data.x.shape == (5 * 40, 1, window + len(RR_FEATURES))
    assert beats.data.side_features == len(RR_FEATURES)
    assert np.bincount(beats.data.y.numpy()).tolist() == [5 * 31, 5 * 1, 5 * 8]  # N, S (the A beat), V
    # each window is baseline-free, in units of its record's typical beat amplitude
    signal = beats.data.x[:, 0, :window].numpy()
    assert np.abs(np.median(signal, axis=1)).max() < 1e-6 and 0.5 < np.ptp(signal, axis=1).mean() < 2
    assert beats.subset(np.arange(40, 80)).records == beats.records
    assert (beats.subset(np.arange(40, 80)).record == 1).all()


@pytest.mark.parametrize("record, lead", [("r0", 0), ("r1", 1)])
def test_lead_mlii_by_name_else_the_first(folder, record, lead):
    # r1 describes its leads as V5 and MLII; the other records have neither name
    beats = read_beat_folder(folder, records=[record], log=None)
    want, _ = record_beats(folder / record, lead=lead)
    np.testing.assert_array_equal(beats.data.x[:, 0].numpy(), want)
    other, _ = record_beats(folder / record, lead=1 - lead)
    assert not np.allclose(other, want)


@pytest.mark.parametrize("records, match", [(["r9"], "no annotated record"), (["p0"], "every record was left out")])
def test_folder_errors(folder, records, match):
    with pytest.raises(DataFileError, match=match):
        read_beat_folder(folder, records=records, log=None)


def test_empty_folder(tmp_path):
    with pytest.raises(DataFileError, match="no WFDB record"):
        read_beat_folder(tmp_path)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_group_folds_keep_groups_whole(k):
    rng = np.random.default_rng(k)
    groups = rng.integers(0, 7, 300)
    labels = rng.integers(0, 3, 300)
    folds = group_folds(labels, groups, k, seed=1)
    assert len(folds) == k
    np.testing.assert_array_equal(np.sort(np.concatenate(folds)), np.arange(300))
    assert sum(len(set(groups[f])) for f in folds) == 7  # no group in two folds
    rest, held = group_split(labels, groups, 1 / k, seed=1)
    assert not set(groups[rest]) & set(groups[held]) and rest.size + held.size == 300


@pytest.mark.parametrize("val_fraction, test_fraction, separate_test", [(0.3, None, True), (0.25, 0.25, False)])
def test_load_splits_folders_by_record(folder, tmp_path_factory, val_fraction, test_fraction, separate_test):
    test = write_beat_folder(tmp_path_factory.mktemp("other"), n_records=2) if separate_test else None
    splits = load(folder, test=test, task="sequence", val_fraction=val_fraction, test_fraction=test_fraction)
    assert splits.kind == "sequence" and splits.class_names == ["N", "S", "V", "F", "Q"]
    # each item's record, found by its window (the records' noise makes every window unique)
    beats = read_beat_folder(folder, log=None)
    record_of = {x.tobytes(): r for x, r in zip(beats.data.x.numpy(), beats.record)}
    records = {name: {record_of.get(x.tobytes(), "other") for x in ds.x.numpy()} for name, ds in
               (("train", splits.train), ("val", splits.val), ("test", splits.test))}
    assert records["train"] and records["val"] and records["test"]
    assert not records["train"] & records["val"]
    if not separate_test:
        assert not (records["train"] | records["val"]) & records["test"]
    assert splits.train.side_features == splits.val.side_features == len(RR_FEATURES)


def test_mitbih_records_100_and_114(real_data):
    root = real_data("mitbih/114.hea").parent
    beats = read_beat_folder(root, records=["100", "114"], log=None)
    y = beats.data.y.numpy()
    assert np.bincount(y[beats.record == 0], minlength=5).tolist() == [2239, 33, 1, 0, 0]
    # 114's header lists V5 first: the MLII windows come from its second lead
    mlii, classes = record_beats(root / "114", lead=1)
    np.testing.assert_array_equal(beats.data.x[beats.record == 1, 0].numpy(), mlii)
    np.testing.assert_array_equal(y[beats.record == 1], classes)
    rr = beats.data.x[beats.record == 0, 0, -len(RR_FEATURES):].numpy()
    assert rr[:, RR_FEATURES.index("pre/record")].mean() == pytest.approx(1.0, abs=1e-3)
