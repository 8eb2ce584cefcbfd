"""MedMNIST-format ``.npz``: ``{train,val,test}_{images,labels}``, uint8 images or volumes, one label per item."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .datasets import ArrayDataset
from .errors import DataFileError

# MedMNIST files carry no class names; these are the documented ones for the sets the project uses.
KNOWN_CLASS_NAMES = {
    "breastmnist": ["malignant", "normal_benign"],
    "pneumoniamnist": ["normal", "pneumonia"],
}
# An axis this short holds channels (colour, or MRI sequences such as T1, T1c, T2 and FLAIR), never a spatial
# side: no image or volume worth a convolutional network is 4 pixels across.
MAX_CHANNELS = 4
LAYOUTS = ("(N, H, W) or (N, H, W, C) images, or (N, D, H, W), (N, C, D, H, W) or (N, D, H, W, C) volumes, "
           f"with C <= {MAX_CHANNELS} channels and every spatial side > {MAX_CHANNELS}")


def read_medmnist(path) -> tuple[dict[str, ArrayDataset], list[str]]:
    """The splits present in the file (``train`` always; ``val``/``test`` when both their keys are there)
    as datasets of images ``(N, C, H, W)`` or volumes ``(N, C, D, H, W)`` (see ``channels_first``) scaled
    to [0, 1], and the class names."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataFileError(path, f"not a readable .npz archive ({e})") from e
    splits = {}
    for split in ("train", "val", "test"):
        keys = (f"{split}_images", f"{split}_labels")
        present = [k for k in keys if k in arrays]
        if split == "train" and len(present) < 2 or len(present) == 1:
            missing = sorted(set(keys) - set(present))
            raise DataFileError(path, f"missing key(s) {missing}; a MedMNIST file holds {{train,val,test}}"
                                      f"_{{images,labels}} (found {sorted(arrays)})")
        if present:
            splits[split] = _split(path, split, arrays[keys[0]], arrays[keys[1]])
    shapes = {tuple(ds.x.shape[1:]) for ds in splits.values()}
    if len(shapes) > 1:
        raise DataFileError(path, f"splits have different image shapes {sorted(shapes)}")
    num_classes = max(int(ds.y.max()) for ds in splits.values()) + 1
    names = KNOWN_CLASS_NAMES.get(path.stem.lower())
    if names is None or len(names) < num_classes:
        names = [str(c) for c in range(num_classes)]
    return splits, names


def channels_first(images: np.ndarray) -> np.ndarray:
    """``images`` as ``(N, C, H, W)`` images or ``(N, C, D, H, W)`` volumes. MedMNIST stores grey images as
    (N, H, W), colour ones as (N, H, W, 3) and volumes as (N, D, H, W); volumes with channels may come as
    (N, C, D, H, W) or (N, D, H, W, C). An axis of at most ``MAX_CHANNELS`` holds channels, so the layout
    follows from which axes are short. ValueError (``"shape ..., which is ambiguous: ..."`` or ``"shape ...;
    expected ..."``) where it does not."""
    short = [side <= MAX_CHANNELS for side in images.shape[1:]]
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4 and short == [False, False, True]:
        return images.transpose(0, 3, 1, 2)
    if images.ndim == 4 and not any(short):
        return images[:, None]
    if images.ndim == 5 and short == [True, False, False, False]:
        return images
    if images.ndim == 5 and short == [False, False, False, True]:
        return images.transpose(0, 4, 1, 2, 3)
    if images.ndim == 4 and short == [True, False, False]:
        raise ValueError(f"shape {images.shape}, which is ambiguous: channels-first images (N, C, H, W) with "
                         f"{images.shape[1]} channels, or volumes (N, D, H, W) only {images.shape[1]} deep; store "
                         "images channels last, (N, H, W, C), as MedMNIST does")
    if images.ndim == 5 and short[0] and short[-1]:
        raise ValueError(f"shape {images.shape}, which is ambiguous: volumes with channels first (N, C, D, H, W) "
                         "or last (N, D, H, W, C)")
    raise ValueError(f"shape {images.shape}; expected {LAYOUTS}")


def _split(path: Path, split: str, images: np.ndarray, labels: np.ndarray) -> ArrayDataset:
    try:
        images = channels_first(images)
    except ValueError as e:
        raise DataFileError(path, f"{split}_images has {e}") from None
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataFileError(path, f"{split}_labels has shape {labels.shape}; only one label per image is supported "
                                  "(multi-label MedMNIST sets are not)")
    if len(labels) != len(images):
        raise DataFileError(path, f"{split} has {len(images)} images but {len(labels)} labels")
    if len(labels) == 0:
        raise DataFileError(path, f"{split} split is empty")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise DataFileError(path, f"{split}_labels must be non-negative integers, got dtype {labels.dtype} "
                                  f"with minimum {labels.min()}")
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    x = images.astype(np.float32) / scale
    if not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
        raise DataFileError(path, f"{split}_images must be uint8 or floats in [0, 1]")
    return ArrayDataset(x, labels.astype(np.int64))
