"""A folder of PNG/JPEG images with a CSV of labels, as the ISIC challenges ship them: one row per image,
an image-id column, and either one label column (``benign``/``malignant``, 0/1, a diagnosis) or one-hot
columns, one per class (ISIC 2018/2019 ``MEL,NV,BCC,...``)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .datasets import ArrayDataset
from .errors import DataFileError

IMAGE_COLUMNS = ("image", "image_id", "image_name", "isic_id", "filename", "file", "name")
LABEL_COLUMNS = ("label", "target", "benign_malignant", "class", "diagnosis", "dx")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def find_labels_csv(folder: Path) -> Path:
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".csv")
    if len(found) != 1:
        raise DataFileError(folder, f"expected exactly one labels CSV in the folder, found {len(found)} "
                                    f"({[p.name for p in found]}); name it with csv_path=")
    return found[0]


def read_image_folder(path, csv_path=None, image_column=None, label_column=None, size: int | None = 64,
                      channels: int = 3, class_names=None) -> tuple[ArrayDataset, list[str]]:
    """Images ``(N, channels, size, size)`` in [0, 1] (centre-cropped to a square, then resized; ``size=None``
    keeps the files' own size, which must then agree) and int64 labels, in CSV row order. Classes are the
    sorted label values (numerically when they are integers) or the one-hot column names; pass
    ``class_names`` to map onto an existing set (a test folder onto its training folder's classes)."""
    path = Path(path)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if size is not None and int(size) < 1:
        raise ValueError(f"size must be positive or None, got {size}")
    if path.suffix.lower() == ".csv":
        csv_path, root = path, path.parent
    elif path.is_dir():
        root = path
        csv_path = Path(csv_path) if csv_path is not None else find_labels_csv(path)
    else:
        raise DataFileError(path, "not an image folder or a labels CSV")
    ids, labels, names = _read_labels(csv_path, image_column, label_column, class_names)
    files = _index_images(root)
    images = []
    for row, image_id in enumerate(ids, start=2):
        candidates = files.get(image_id) or files.get(Path(image_id).stem, [])
        if len(candidates) != 1:
            problem = "no PNG/JPEG file" if not candidates else f"{len(candidates)} files {candidates}"
            raise DataFileError(csv_path, f"row {row}: {problem} for image {image_id!r} in {root} "
                                          "or its subfolders")
        images.append(_read_image(candidates[0], size, channels))
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataFileError(root, f"images differ in size {sorted(shapes)}; pass size= to resize them")
    return ArrayDataset(np.stack(images), np.asarray(labels, dtype=np.int64)), names


def _read_labels(path: Path, image_column, label_column, class_names):
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel writes a BOM
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataFileError(path, f"cannot read the labels CSV ({e})") from e
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise DataFileError(path, "the labels CSV needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise DataFileError(path, f"row {i}: {len(r)} fields where the header has {len(header)}")
    body = [[cell.strip() for cell in r] for r in rows[1:]]

    def column(wanted, candidates):
        if wanted is not None:
            if wanted not in header:
                raise DataFileError(path, f"missing CSV column {wanted!r} (columns: {header})")
            return header.index(wanted)
        for c in candidates:
            if c in lower:
                return lower.index(c)
        return None

    img = column(image_column, IMAGE_COLUMNS)
    if img is None:
        raise DataFileError(path, f"missing CSV column for the image id (one of {list(IMAGE_COLUMNS)}; columns: "
                                  f"{header}); name it with image_column=")
    ids = [r[img] for r in body]
    for i, v in enumerate(ids, start=2):
        if not v:
            raise DataFileError(path, f"row {i}: empty image id")
    lab = column(label_column, LABEL_COLUMNS)
    if lab is not None:
        values = [r[lab] for r in body]
        for i, v in enumerate(values, start=2):
            if not v:
                raise DataFileError(path, f"row {i}: empty label in column {header[lab]!r}")
        names = class_names if class_names is not None else _sorted_classes(values)
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise DataFileError(path, f"labels {unknown} are not among the classes {list(names)}")
        return ids, [list(names).index(v) for v in values], list(names)
    return (ids, *_one_hot(path, header, body, img, class_names))


def _sorted_classes(values):
    unique = set(values)
    try:
        return [str(v) for v in sorted(unique, key=lambda v: float(v))] if all(
            float(v) == int(float(v)) for v in unique) else sorted(unique)
    except ValueError:
        return sorted(unique)


def _one_hot(path: Path, header, body, img: int, class_names):
    cols = [i for i in range(len(header)) if i != img]
    try:
        table = np.array([[float(r[i]) for i in cols] for r in body])
    except ValueError:
        table = None
    if table is None or not np.all((table == 0) | (table == 1)) or not np.all(table.sum(axis=1) == 1):
        raise DataFileError(path, f"missing CSV label column (one of {list(LABEL_COLUMNS)}), and the other columns "
                                  f"{[header[i] for i in cols]} are not one-hot class indicators; name it with "
                                  "label_column=")
    names = [header[i] for i in cols]
    if class_names is not None and list(class_names) != names:
        raise DataFileError(path, f"one-hot columns {names} differ from the classes {list(class_names)}")
    return [int(k) for k in table.argmax(axis=1)], names


def _index_images(root: Path) -> dict[str, list[Path]]:
    """File name and stem -> paths of the images in ``root`` and its immediate subfolders (more than one
    path is an ambiguity, reported only if the CSV asks for that id)."""
    found: dict[str, list[Path]] = {}
    for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                found.setdefault(p.name, []).append(p)
                found.setdefault(p.stem, []).append(p)
    return found


def _read_image(path: Path, size: int | None, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if size is not None:
                im.draft("RGB" if channels == 3 else "L", (size, size))  # JPEG: decode at a reduced scale
            im = im.convert("RGB" if channels == 3 else "L")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataFileError(path, f"Pillow cannot open it as an image ({e})") from e
    if size is not None:
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        bilinear = getattr(Image, "Resampling", Image).BILINEAR  # Pillow < 9.1 has no Resampling enum
        im = im.resize((size, size), bilinear, box=(left, top, left + side, top + side))
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)
