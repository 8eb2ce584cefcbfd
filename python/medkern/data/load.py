"""``load``: one entry point from a path (or nothing) to train/val/test splits."""
from __future__ import annotations

from pathlib import Path

from .datasets import ArrayDataset, DataSplits, stratified_split
from .errors import DataFileError
from .image_folder import read_image_folder
from .medmnist import read_medmnist
from .mitbih import beat_splits
from .synthetic import synthetic_ecg, synthetic_lesions, synthetic_nodules, synthetic_vitals
from .ucr import read_ucr
from .wfdb import AAMI_CLASSES, record_stem, wfdb_beats

TASKS = ("classify", "sequence", "forecast")
# name -> (generator, kind, class names)
SYNTHETIC = {
    "lesions": (synthetic_lesions, "image", ["benign", "malignant"]),
    "nodules": (synthetic_nodules, "volume", ["benign", "malignant"]),
    "ecg": (synthetic_ecg, "sequence", ["normal", "abnormal"]),
    "vitals": (synthetic_vitals, "sequence", []),
}
DEFAULT_SYNTHETIC = {"classify": "lesions", "sequence": "ecg", "forecast": "vitals"}


def load(path=None, *, test=None, task="classify", val_fraction=0.15, seed=0, test_fraction=None,
         **reader_options) -> DataSplits:
    """Train/val/test splits from ``path``, chosen by what it is:

    - None or ``"synthetic[:lesions|nodules|ecg|vitals]"``: the built-in generators (``n_train``, ``n_test``
      and the generator's own options, e.g. ``size``, ``length``, ``context``, ``horizon``); the default for
      ``task`` is lesion images (classify), ECG beats (sequence) or vital signs (forecast); ``nodules`` are
      CT-like volumes to classify;
    - ``.npz``: a MedMNIST file (2-D images or 3-D volumes) with its own splits;
    - ``.txt``/``.tsv`` (or the 2015 archive's ``<NAME>_TRAIN`` without a suffix): a UCR training file,
      ``test=`` its test file;
    - ``.hea``/``.dat``/``.atr`` or a record stem with a ``.hea`` beside it: a WFDB record cut into beat
      windows with AAMI classes (options of ``wfdb_beats``), ``test=`` another record;
    - a folder of WFDB records: all of them, as beats with their RR intervals (``medkern.data.mitbih``), split
      by record (validation and carved test records hold no beat of a training record), ``test=`` another;
    - a folder or a ``.csv``: images with a labels CSV (options of ``read_image_folder``), ``test=`` another.

    Where the source has no validation split, ``val_fraction`` of the training data is carved off
    (stratified, seeded); ``test_fraction`` likewise carves a test split where none exists.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if path is None or str(path).startswith("synthetic"):
        return _synthetic(None if path is None else str(path), task, val_fraction, seed, **reader_options)
    if task == "forecast":
        raise ValueError("forecasting reads only the built-in synthetic vital signs: pass no data path "
                         f"(got {path})")
    path = Path(path)
    suffix = path.suffix.lower()
    val = None
    if suffix == ".npz":
        if test is not None:
            raise ValueError(f"{path} is a MedMNIST file with its own test split; test= must not be given")
        splits, names = read_medmnist(path, **reader_options)
        train, val, test_ds = splits["train"], splits.get("val"), splits.get("test")
        kind = "volume" if train.x.dim() == 5 else "image"
    elif suffix in (".txt", ".tsv") or (path.is_file() and path.name.upper().endswith(("_TRAIN", "_TEST"))):
        train, test_ds, names = read_ucr(path, test, **reader_options)
        kind = "sequence"
    elif suffix in (".hea", ".dat", ".atr") or Path(str(record_stem(path)) + ".hea").is_file():
        train = _beats(path, **reader_options)
        test_ds = None if test is None else _beats(test, **reader_options)
        names, kind = list(AAMI_CLASSES), "sequence"
    elif path.is_dir() and any(path.glob("*.hea")):
        return beat_splits(path, test, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                           **reader_options)
    elif path.is_dir() or suffix == ".csv":
        train, names = read_image_folder(path, **reader_options)
        test_ds = None
        if test is not None:
            # the test folder has its own CSV; every other option (size, columns) carries over
            options = {k: v for k, v in reader_options.items() if k != "csv_path"}
            test_ds, _ = read_image_folder(test, **options, class_names=names)
        kind = "image"
    elif not path.exists():
        raise DataFileError(path, "no such file or directory")
    else:
        raise DataFileError(path, "unrecognised data: expected a MedMNIST .npz, a UCR .txt/.tsv, a WFDB record "
                                  "(.hea/.dat/.atr), or an image folder / labels .csv")
    return _finish(train, val, test_ds, kind, len(names), names, str(path), val_fraction, test_fraction, seed)


def _beats(record, **options) -> ArrayDataset:
    windows, _, classes = wfdb_beats(record, **options)
    return ArrayDataset(windows[:, None], classes)


def _synthetic(spec, task, val_fraction, seed, n_train=2000, n_test=500, **options) -> DataSplits:
    name = DEFAULT_SYNTHETIC[task] if spec in (None, "synthetic") else spec.partition(":")[2]
    if name not in SYNTHETIC:
        raise ValueError(f"unknown synthetic data {spec!r}; choose synthetic:{{{','.join(SYNTHETIC)}}}")
    generate, kind, names = SYNTHETIC[name]
    if (name == "vitals") != (task == "forecast"):
        raise ValueError(f"synthetic:{name} does not fit task {task!r}")
    if int(n_train) < 2 or int(n_test) < 1:
        raise ValueError(f"n_train must be >= 2 and n_test >= 1, got {n_train} and {n_test}")
    total = int(n_train) + int(n_test)
    data = generate(total, seed=seed, **options)
    train, test = stratified_split(data, int(n_test) / total, seed)
    source = f"synthetic:{name}(n={total}, seed={seed})"
    return _finish(train, None, test, kind, len(names), names, source, val_fraction, None, seed)


def _finish(train, val, test, kind, num_classes, names, source, val_fraction, test_fraction, seed) -> DataSplits:
    if test is None and test_fraction is not None:
        train, test = stratified_split(train, test_fraction, seed)
    if val is None and val_fraction:
        train, val = stratified_split(train, val_fraction, seed + 1)
    return DataSplits(train=train, val=val, test=test, kind=kind, num_classes=num_classes, class_names=list(names),
                      source=source)
