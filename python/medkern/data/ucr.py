"""UCR time-series archive files: one series per row, the class label first; whitespace-, tab- or
comma-separated (``.txt`` of the 2015 archive, ``.tsv`` of the 2018 one)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .datasets import ArrayDataset
from .errors import DataFileError


def read_ucr_rows(path) -> tuple[np.ndarray, np.ndarray]:
    """The raw labels ``(N,)`` and series ``(N, L)`` as float64, with every row checked."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise DataFileError(path, f"cannot read the file ({e})") from e
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        try:
            values = [float(f) for f in fields]
        except ValueError as e:
            raise DataFileError(path, f"line {lineno}: not a number ({e})") from e
        if len(values) < 2:
            raise DataFileError(path, f"line {lineno}: a label and at least one value are needed")
        if rows and len(values) != len(rows[0]):
            raise DataFileError(path, f"line {lineno}: ragged rows: {len(values) - 1} values where earlier rows "
                                      f"have {len(rows[0]) - 1} (variable-length series are not supported)")
        if not all(math.isfinite(v) for v in values):
            raise DataFileError(path, f"line {lineno}: missing or non-finite values")
        rows.append(values)
    if not rows:
        raise DataFileError(path, "no data rows")
    table = np.asarray(rows, dtype=np.float64)
    labels = table[:, 0]
    if not np.all(labels == np.round(labels)):
        raise DataFileError(path, "class labels in the first column must be integer-valued")
    return labels, table[:, 1:]


def read_ucr(train_path, test_path=None) -> tuple[ArrayDataset, ArrayDataset | None, list[str]]:
    """Train (and test) as signal datasets ``(N, 1, L)``. The archive's labels (e.g. -1/1 or 1..5) become
    0..K-1 in increasing numeric order, fixed by the training file; ``class_names`` are the original labels."""
    labels, series = read_ucr_rows(train_path)
    classes = np.unique(labels)
    names = [str(int(c)) for c in classes]
    train = ArrayDataset(series[:, None].astype(np.float32), np.searchsorted(classes, labels).astype(np.int64))
    test = None
    if test_path is not None:
        test_labels, test_series = read_ucr_rows(test_path)
        if test_series.shape[1] != series.shape[1]:
            raise DataFileError(test_path, f"series have length {test_series.shape[1]} but the training file "
                                           f"{train_path} has {series.shape[1]}")
        unknown = sorted(set(np.unique(test_labels)) - set(classes))
        if unknown:
            raise DataFileError(test_path, f"labels {[int(u) for u in unknown]} do not occur in the training file "
                                           f"{train_path} (classes {names})")
        test = ArrayDataset(test_series[:, None].astype(np.float32),
                            np.searchsorted(classes, test_labels).astype(np.int64))
    return train, test, names
