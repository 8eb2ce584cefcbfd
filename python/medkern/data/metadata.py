"""What a data source states about its labels beyond the labels themselves: whether its classes are ordered
grades (a retinopathy scale, a severity score)."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .errors import DataFileError

# MedMNIST's own name for graded sets (RetinaMNIST's task is "ordinal-regression"), and the plain word.
ORDINAL_TASKS = ("ordinal", "ordinal-regression")
METADATA_FILE = "metadata.json"


def declares_ordinal(path) -> bool:
    """Whether the data at ``path`` says its classes are ordered grades: a ``task`` entry naming one of
    ``ORDINAL_TASKS``, as a string array in a ``.npz``, or in the ``metadata.json`` of an image folder (beside
    its labels CSV). Sources without metadata (UCR files, WFDB records, synthetic data) say nothing: False."""
    if path is None or str(path).startswith("synthetic"):
        return False
    path = Path(path)
    if path.suffix.lower() == ".npz":
        return _npz_task(path) in ORDINAL_TASKS
    folder = path if path.is_dir() else path.parent if path.suffix.lower() == ".csv" else None
    if folder is None or not (folder / METADATA_FILE).is_file():
        return False
    return _json_task(folder / METADATA_FILE) in ORDINAL_TASKS


def _npz_task(path: Path) -> str | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return str(npz["task"]).strip().lower() if "task" in npz.files else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataFileError(path, f"not a readable .npz archive ({e})") from e


def _json_task(path: Path) -> str | None:
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataFileError(path, f"cannot read the metadata ({e})") from e
    task = meta.get("task") if isinstance(meta, dict) else None
    return task.strip().lower() if isinstance(task, str) else None
