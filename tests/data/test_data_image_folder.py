"""ISIC-style image folder reader: crafted PNG/JPEG folders and CSVs in tmp_path."""
import numpy as np
import pytest
from PIL import Image

from medkern.data import DataFileError, load, read_image_folder

COLOURS = {"a": (255, 0, 0), "b": (0, 128, 255), "c": (10, 200, 30), "d": (250, 250, 0)}


def make_folder(root, labels, csv_text=None, subfolder="", size=(12, 8), ext=".png"):
    images = root / subfolder
    images.mkdir(parents=True, exist_ok=True)
    for name, colour in COLOURS.items():
        Image.new("RGB", size, colour).save(images / f"ISIC_{name}{ext}")
    if csv_text is None:
        csv_text = "image,label\n" + "".join(f"ISIC_{n},{lab}\n" for n, lab in labels.items())
    (root / "labels.csv").write_text(csv_text)
    return root


def test_label_column_classes_and_pixels(tmp_path):
    root = make_folder(tmp_path, {"a": "malignant", "b": "benign", "c": "benign", "d": "malignant"})
    ds, names = read_image_folder(root, size=4)
    assert names == ["benign", "malignant"]
    assert ds.y.tolist() == [1, 0, 0, 1]
    assert ds.x.shape == (4, 3, 4, 4) and ds.x.dtype.is_floating_point
    blue = np.broadcast_to(np.array([0, 128, 255])[:, None, None] / 255, (3, 4, 4))
    np.testing.assert_allclose(ds.x[1].numpy(), blue, atol=1e-6)
    grey, _ = read_image_folder(root / "labels.csv", size=5, channels=1)
    assert grey.x.shape == (4, 1, 5, 5)


def test_centre_crop_keeps_aspect(tmp_path):
    img = np.zeros((8, 16, 3), dtype=np.uint8)
    img[:, :4] = 255  # white only in the left quarter, which a centre crop of the 8x8 middle drops
    Image.fromarray(img).save(tmp_path / "wide.png")
    (tmp_path / "l.csv").write_text("image_id,target\nwide.png,1\n")
    ds, names = read_image_folder(tmp_path, size=8)
    assert names == ["1"] and float(ds.x.max()) == 0.0
    ds, _ = read_image_folder(tmp_path, size=None)
    assert ds.x.shape == (1, 3, 8, 16) and float(ds.x[0, :, :, :4].min()) == 1.0


def test_one_hot_isic2019_layout_in_subfolder_jpeg(tmp_path):
    csv = "image,MEL,NV,BCC,UNK\nISIC_a,1.0,0.0,0.0,0.0\nISIC_b,0.0,0.0,1.0,0.0\nISIC_c,0.0,1.0,0.0,0.0\n"
    root = make_folder(tmp_path, None, csv_text=csv, subfolder="ISIC_2019_Training_Input", ext=".jpg")
    s = load(root, size=6, val_fraction=0)
    assert s.class_names == ["MEL", "NV", "BCC", "UNK"] and s.num_classes == 4 and s.kind == "image"
    assert s.train.y.tolist() == [0, 2, 1] and s.val is None
    red = s.train.x[0].mean(dim=(1, 2)).numpy()
    np.testing.assert_allclose(red, [1.0, 0.0, 0.0], atol=0.05)  # JPEG is lossy


def test_numeric_labels_and_test_folder(tmp_path):
    train = make_folder(tmp_path / "train", {"a": 10, "b": 2, "c": 2, "d": 10})
    test = make_folder(tmp_path / "test", {"a": 2, "b": 10})
    s = load(train, test=test, size=4, val_fraction=0.5)
    assert s.class_names == ["2", "10"]
    assert s.test.y.tolist() == [0, 1] and len(s.train) == 2 and len(s.val) == 2
    make_folder(tmp_path / "test", {"a": 3})
    with pytest.raises(DataFileError, match=r"labels\.csv: labels \['3'\] are not among the classes"):
        load(train, test=test, size=4)


@pytest.mark.parametrize("csv_text, problem", [
    ("img,label\nISIC_a,1\n", r"missing CSV column for the image id"),
    ("image,diagnosis_x,age\nISIC_a,mel,3\n", r"missing CSV label column"),
    ("image,label\nISIC_a,1,2\n", r"row 2: 3 fields where the header has 2"),
    ("image,label\nISIC_a,\n", r"row 2: empty label"),
    ("image,label\nISIC_zz,1\n", r"row 2: no PNG/JPEG file for image 'ISIC_zz'"),
    ("image,label\n", r"header row and at least one data row"),
    ("image,MEL,NV\nISIC_a,1,1\n", r"not one-hot"),
])
def test_bad_csv_names_file_and_problem(tmp_path, csv_text, problem):
    root = make_folder(tmp_path, None, csv_text=csv_text)
    with pytest.raises(DataFileError, match=r"labels\.csv: .*" + problem):
        read_image_folder(root)


def test_named_columns(tmp_path):
    root = make_folder(tmp_path, None, csv_text="file_x,lab_y\nISIC_a,u\nISIC_b,v\n")
    ds, names = read_image_folder(root, image_column="file_x", label_column="lab_y", size=2)
    assert names == ["u", "v"] and ds.y.tolist() == [0, 1]
    with pytest.raises(DataFileError, match=r"labels\.csv: missing CSV column 'nope'"):
        read_image_folder(root, image_column="file_x", label_column="nope")


def test_unreadable_image_names_the_image(tmp_path):
    root = make_folder(tmp_path, {"a": 0, "b": 1})
    (root / "ISIC_b.png").write_bytes(b"\x89PNG\r\n\x1a\n but then garbage")
    with pytest.raises(DataFileError, match=r"ISIC_b\.png: Pillow cannot open it"):
        read_image_folder(root)


def test_folder_problems(tmp_path):
    root = make_folder(tmp_path, {"a": 0, "b": 1}, size=(8, 8))
    Image.new("RGB", (9, 9)).save(root / "ISIC_a.png")
    with pytest.raises(DataFileError, match=r"images differ in size"):
        read_image_folder(root, size=None)
    (root / "other.csv").write_text("image,label\n")
    with pytest.raises(DataFileError, match=r"exactly one labels CSV .* found 2"):
        read_image_folder(root)
    Image.new("RGB", (8, 8)).save(root / "ISIC_a.jpg")
    with pytest.raises(DataFileError, match=r"row 2: 2 files"):
        read_image_folder(root, csv_path=root / "labels.csv")
