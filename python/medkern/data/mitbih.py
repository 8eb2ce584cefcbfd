"""A folder of WFDB records (MIT-BIH and the like) read as a whole into beats for inter-patient arrhythmia
classification, as in de Chazal et al. 2004: AAMI classes from the beat symbols, a window around each
annotated R peak, and the beat's RR intervals beside it, split by record.

Models trained on some patients and tested on others fail mostly on the patient-to-patient spread of heart
rate and ECG amplitude. So every window is taken in its record's own terms (baseline removed, divided by the
record's typical beat amplitude), and the RR intervals come as ratios to the record's and the local rhythm: a
premature supraventricular beat looks like a normal one except that it comes early for *this* patient."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datasets import ArrayDataset, DataSplits
from .errors import DataFileError
from .groups import group_split
from .wfdb import AAMI_CLASSES, beat_annotations, read_annotations, read_header, wfdb_beats

BEFORE_S, AFTER_S = 0.25, 0.45  # the window around each R peak, in seconds: P wave to the end of the T wave
LOCAL_BEATS = 10                # RR intervals averaged around a beat for its local rhythm
LEAD = "MLII"                   # the lead asked for by name; a record without it gives its first lead
PACED_SYMBOL = "/"              # a record with paced beats is left out (AAMI: paced records are excluded)
# Ratios only: in seconds, a record's mean RR (and, nearly, its local one) would name the patient, and a model
# trained on a few patients learns their names (on MIT-BIH DS1's folds' validation records: macro AUROC 0.83
# with the ratios alone, 0.72 to 0.77 with the intervals in seconds as well).
RR_FEATURES = ("pre/record", "post/record", "local/record", "pre/local", "post/pre")


@dataclass
class Beats:
    """The beats of a folder: ``data`` holds x ``(N, 1, L + len(RR_FEATURES))``, the window with the RR
    features packed at its end (``ArrayDataset.side_features``), and y, the AAMI class (N, S, V, F, Q ->
    0..4); ``record`` is each beat's index into ``records``, the record names."""

    data: ArrayDataset
    record: np.ndarray
    records: list[str]

    def subset(self, index) -> "Beats":
        return Beats(self.data.subset(index), self.record[np.asarray(index)], self.records)


def rr_features(peaks: np.ndarray, local_beats: int = LOCAL_BEATS) -> np.ndarray:
    """``(n, len(RR_FEATURES))`` float32 for beats at sample ``peaks`` (n >= 2): from the intervals to the
    previous and the next beat (pre, post), their mean over about ``local_beats`` intervals around the beat
    (local) and over the whole record (record), the ratios ``RR_FEATURES`` names. The first beat's previous
    interval is its next one, and the last beat's next interval its previous one."""
    # at least a sample apart: two annotations on one sample must not divide by zero
    rr = np.maximum(np.diff(np.asarray(peaks, dtype=np.float64)), 1.0)
    pre, post = np.r_[rr[0], rr], np.r_[rr, rr[-1]]
    # The mean of ``pre`` over a centred window of ``local_beats`` beats, shortened at the record's ends.
    half = max(int(local_beats) // 2, 1)
    csum = np.r_[0.0, np.cumsum(pre)]
    lo = np.clip(np.arange(pre.size) - half, 0, pre.size)
    hi = np.clip(np.arange(pre.size) + half, 0, pre.size)
    local = (csum[hi] - csum[lo]) / (hi - lo)
    record = rr.mean()
    return np.stack([pre / record, post / record, local / record, pre / local, post / pre],
                    axis=1).astype(np.float32)


def _lead(header, lead):
    names = [s.description for s in header.signals]
    return lead if isinstance(lead, int) or lead in names else 0


def record_beats(stem, before: float = BEFORE_S, after: float = AFTER_S, lead=LEAD,
                 local_beats: int = LOCAL_BEATS) -> tuple[np.ndarray, np.ndarray]:
    """One record's packed beats ``(n, L + len(RR_FEATURES))`` (``before``/``after`` seconds around each R
    peak, baseline-free and in units of the record's median peak-to-peak beat amplitude, then the RR
    features) and their AAMI classes."""
    header = read_header(stem)
    windows, _, classes = wfdb_beats(stem, before=round(before * header.fs), after=round(after * header.fs),
                                     lead=_lead(header, lead))
    peaks, _ = beat_annotations(read_annotations(stem))
    windows = np.nan_to_num(windows - np.nanmedian(windows, axis=1, keepdims=True))
    amplitude = np.median(windows.max(axis=1) - windows.min(axis=1))
    windows = windows / max(float(amplitude), 1e-6)
    return np.concatenate([windows, rr_features(peaks, local_beats)], axis=1), classes


def read_beat_folder(folder, *, before: float = BEFORE_S, after: float = AFTER_S, lead=LEAD,
                     local_beats: int = LOCAL_BEATS, keep_paced: bool = False, records=None, log=print) -> Beats:
    """Every annotated record (``.hea`` with ``.atr``) of ``folder``, or those named in ``records``, as
    ``Beats``; records with paced beats (unless ``keep_paced``) and with fewer than two beats are left out,
    and ``log`` says which."""
    folder = Path(folder)
    stems = sorted(p.with_suffix("") for p in folder.glob("*.hea") if p.with_suffix(".atr").is_file())
    if records is not None:
        missing = sorted(set(map(str, records)) - {s.name for s in stems})
        if missing:
            raise DataFileError(folder, f"no annotated record(s) {', '.join(missing)} here")
        stems = [s for s in stems if s.name in set(map(str, records))]
    if not stems:
        raise DataFileError(folder, "no WFDB record with beat annotations (.hea beside .atr) in this folder")
    xs, ys, records, left_out = [], [], [], {"paced": [], "fewer than two beats": []}
    for stem in stems:
        _, symbols = beat_annotations(read_annotations(stem))
        if len(symbols) < 2:
            left_out["fewer than two beats"].append(stem.name)
        elif PACED_SYMBOL in symbols and not keep_paced:
            left_out["paced"].append(stem.name)
        else:
            x, y = record_beats(stem, before, after, lead, local_beats)
            xs.append(x)
            ys.append(y)
            records.append(stem.name)
    for why, names in left_out.items():
        if names and log is not None:
            log(f"{folder}: left out {len(names)} record(s), {why}: {', '.join(names)}")
    if not records:
        raise DataFileError(folder, "every record was left out")
    record = np.concatenate([np.full(len(y), i) for i, y in enumerate(ys)])
    data = ArrayDataset(np.concatenate(xs)[:, None], np.concatenate(ys), side_features=len(RR_FEATURES))
    return Beats(data, record, records)


def beat_splits(path, test=None, *, val_fraction: float = 0.15, test_fraction: float | None = None, seed: int = 0,
                **options) -> DataSplits:
    """``medkern.data.load`` for a folder of records: train/val (and test, from ``test``, another folder, or
    else ``test_fraction`` of the records) split by record."""
    beats = read_beat_folder(path, **options)
    held = None
    if test is not None:
        held = read_beat_folder(test, **options).data
    elif test_fraction is not None:
        rest, index = group_split(beats.data.y.numpy(), beats.record, test_fraction, seed)
        beats, held = beats.subset(rest), beats.subset(index).data
    val = None
    if val_fraction:
        rest, index = group_split(beats.data.y.numpy(), beats.record, val_fraction, seed + 1)
        beats, val = beats.subset(rest), beats.subset(index).data
    source = f"{path} ({len(np.unique(beats.record))} training records)"
    return DataSplits(beats.data, val, held, "sequence", len(AAMI_CLASSES), list(AAMI_CLASSES), source)
