"""Ordered grades declared by a data source's metadata: a .npz's ``task`` entry or an image folder's
metadata.json; sources without metadata say nothing."""
import json

import numpy as np
import pytest

from medkern.data import DataFileError
from medkern.data.metadata import declares_ordinal


def _npz(path, **extra):
    np.savez(path, train_images=np.zeros((2, 8, 8), np.uint8), train_labels=np.array([0, 1]), **extra)
    return path


@pytest.mark.parametrize("task, ordinal", [("ordinal-regression", True), ("Ordinal", True),
                                           ("multi-class", False), (None, False)],
                         ids=["medmnist-ordinal", "plain-word", "multi-class", "no-task-key"])
def test_npz_task_entry(tmp_path, task, ordinal):
    path = _npz(tmp_path / "grades.npz", **({} if task is None else {"task": np.array(task)}))
    assert declares_ordinal(path) is ordinal


@pytest.mark.parametrize("meta, ordinal", [({"task": "ordinal"}, True), ({"task": "binary-class"}, False),
                                           (None, False)], ids=["ordinal", "other-task", "no-metadata"])
def test_image_folder_metadata_json(tmp_path, meta, ordinal):
    (tmp_path / "labels.csv").write_text("image,label\na.png,0\n")
    if meta is not None:
        (tmp_path / "metadata.json").write_text(json.dumps(meta))
    assert declares_ordinal(tmp_path) is ordinal
    assert declares_ordinal(tmp_path / "labels.csv") is ordinal


def test_sources_without_metadata_and_broken_metadata(tmp_path):
    (tmp_path / "T_TRAIN.txt").write_text("1 0.5 0.2\n")
    assert not declares_ordinal(None) and not declares_ordinal("synthetic:ecg")
    assert not declares_ordinal(tmp_path / "T_TRAIN.txt")
    (tmp_path / "metadata.json").write_text("{not json")
    with pytest.raises(DataFileError, match="metadata.json"):
        declares_ordinal(tmp_path)
