"""WFDB reader: crafted records in tmp_path (round trip, every error) and MIT-BIH record 100."""
import collections

import numpy as np
import pytest

from medkern.data import AAMI_CLASSES, DataFileError, read_annotations, read_header, read_record, wfdb_beats

from ._wfdb_files import checksum, encode_annotations, write_record


@pytest.fixture
def digital():
    rng = np.random.default_rng(7)
    x = rng.integers(-2048, 2048, (501, 2))  # odd sample count: the last 212 triple holds one sample
    x[:4] = [[-2048, 2047], [-1, 0], [1, -1], [2047, -2047]]
    return x


@pytest.mark.parametrize("fmt", [212, 16])
def test_round_trip_and_scaling(tmp_path, digital, fmt):
    rec = write_record(tmp_path, "r1", digital, fmt=fmt, extra_lines=["", "# a comment between lines"])
    record = read_record(rec)
    assert record.header.fs == 360 and record.header.n_samples == 501
    np.testing.assert_array_equal(record.digital, digital)
    want = (digital - np.array([1024, 0])) / np.array([200.0, 100.0])
    if fmt == 212:
        want[digital == -2048] = np.nan  # WFDB's invalid-sample code for format 212
    np.testing.assert_allclose(record.physical, want, rtol=1e-6)
    assert [s.description for s in record.header.signals] == ["lead0", "lead1"]


def test_record_path_forms(tmp_path, digital):
    rec = write_record(tmp_path, "r2", digital[:10, :1], gains=(200.0,), baselines=(0,))
    for form in (rec, str(rec) + ".hea", str(rec) + ".dat", str(rec) + ".atr"):
        assert read_header(form).record == "r2"


def test_checksum_mismatch_names_file(tmp_path, digital):
    rec = write_record(tmp_path, "bad", digital, checksums=[checksum(digital[:, 0]) + 1, checksum(digital[:, 1])])
    with pytest.raises(DataFileError, match=r"bad\.dat: signal 0 \(lead0\): checksum mismatch"):
        read_record(rec)
    assert read_record(rec, verify=False).digital.shape == (501, 2)


def test_initial_value_mismatch(tmp_path, digital):
    rec = write_record(tmp_path, "iv", digital, initial=[int(digital[0, 0]), int(digital[0, 1]) + 3])
    with pytest.raises(DataFileError, match=r"iv\.dat: signal 1 .*initial value"):
        read_record(rec)


def test_truncated_dat(tmp_path, digital):
    rec = write_record(tmp_path, "cut", digital)
    dat = tmp_path / "cut.dat"
    dat.write_bytes(dat.read_bytes()[:-30])
    with pytest.raises(DataFileError, match=r"cut\.dat: truncated"):
        read_record(rec)


def test_bad_headers(tmp_path, digital):
    rec = write_record(tmp_path, "h", digital)
    hea = tmp_path / "h.hea"
    text = hea.read_text()
    hea.write_text(text.replace(" 212 ", " 80 "))
    with pytest.raises(DataFileError, match=r"h\.hea: signal format '80' is not supported"):
        read_header(rec)
    hea.write_text(text.replace("h 2 360", "h 3 360"))
    with pytest.raises(DataFileError, match=r"h\.hea: .*3 signals but 2"):
        read_header(rec)
    hea.write_text("# only a comment\n")
    with pytest.raises(DataFileError, match=r"h\.hea: no record line"):
        read_header(rec)
    with pytest.raises(DataFileError, match=r"nothere\.hea: cannot read"):
        read_header(tmp_path / "nothere")
    hea.write_text(text)
    (tmp_path / "h.dat").unlink()
    with pytest.raises(DataFileError, match=r"h\.dat: cannot read"):
        read_record(rec)


def test_annotations_skip_aux_num(tmp_path):
    events = [(18, "+", "(N"), (77, "N"), (370, "A"), (5000, "V"), (5001, "~"), (70000, "N", "note")]
    (tmp_path / "a.atr").write_bytes(encode_annotations(events))
    ann = read_annotations(tmp_path / "a")
    assert ann.sample.tolist() == [e[0] for e in events]
    assert ann.symbol == [e[1] for e in events]
    assert ann.aux == ["(N", "", "", "", "", "note"]


def test_annotations_truncated(tmp_path):
    (tmp_path / "t.atr").write_bytes(encode_annotations([(5, "N"), (9, "N")], end=False))
    with pytest.raises(DataFileError, match=r"t\.atr: truncated: no end-of-annotations marker after 2"):
        read_annotations(tmp_path / "t")
    (tmp_path / "t.atr").write_bytes(encode_annotations([(5000, "N")])[:3])  # cut inside the SKIP interval
    with pytest.raises(DataFileError, match=r"t\.atr: truncated"):
        read_annotations(tmp_path / "t")


def test_beats_windows_and_aami(tmp_path):
    n = 400
    ramp = np.arange(n).reshape(n, 1) - 200  # digital value = position - 200, so windows reveal their origin
    rec = write_record(tmp_path, "b", ramp, gains=(1.0,), baselines=(0,))
    events = [(3, "N"), (50, "+"), (100, "V"), (150, "A"), (200, "L"), (250, "F"), (300, "/"), (398, "N")]
    (tmp_path / "b.atr").write_bytes(encode_annotations(events))
    windows, symbols, classes = wfdb_beats(rec, before=5, after=7)
    assert symbols == ["N", "V", "A", "L", "F", "/", "N"]  # the rhythm change '+' is not a beat
    assert [AAMI_CLASSES[c] for c in classes] == ["N", "V", "S", "N", "F", "Q", "N"]
    assert windows.shape == (7, 12) and windows.dtype == np.float32
    np.testing.assert_array_equal(windows[1], np.arange(95, 107) - 200)  # R peak at index `before`
    np.testing.assert_array_equal(windows[0], np.maximum(np.arange(-2, 10), 0) - 200)  # padded with the edge
    np.testing.assert_array_equal(windows[-1], np.minimum(np.arange(393, 405), n - 1) - 200)
    _, kept, _ = wfdb_beats(rec, before=5, after=7, edge="drop")
    assert kept == symbols[1:-1]
    with pytest.raises(ValueError, match="lead"):
        wfdb_beats(rec, lead=1)
    assert wfdb_beats(rec, before=5, after=7, lead="lead0")[0].shape == (7, 12)


def test_annotation_beyond_record(tmp_path):
    rec = write_record(tmp_path, "o", np.zeros((50, 1), dtype=int), gains=(1.0,), baselines=(0,))
    (tmp_path / "o.atr").write_bytes(encode_annotations([(10, "N"), (60, "N")]))
    with pytest.raises(DataFileError, match=r"o\.atr: annotation at sample 60 lies beyond"):
        wfdb_beats(rec)


def test_mitbih_100(real_data):
    hea = real_data("mitbih/100.hea")
    real_data("mitbih/100.atr")
    header = read_header(hea)
    record = read_record(hea)  # raises unless both leads match the header's initial values and checksums
    assert record.digital.shape == (650000, 2) and header.fs == 360
    for j, spec in enumerate(header.signals):
        assert checksum(record.digital[:, j]) == spec.checksum
        assert record.digital[0, j] == spec.initial_value
    windows, symbols, classes = wfdb_beats(hea, before=90, after=110)
    assert len(symbols) == 2273
    assert collections.Counter(symbols) == {"N": 2239, "A": 33, "V": 1}
    assert np.bincount(classes, minlength=5).tolist() == [2239, 33, 1, 0, 0]
    assert windows.shape == (2273, 200) and np.isfinite(windows).all()
    # The annotations mark R peaks: in most normal beats the window's maximum sits within 10 samples of them.
    peak = np.argmax(windows[classes == 0], axis=1)
    assert np.mean(np.abs(peak - 90) <= 10) > 0.95
    assert 0.5 < np.median(windows[:, 90]) < 3.0  # mV
