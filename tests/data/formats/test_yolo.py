"""read_yolo / write_yolo / read_yolo_yaml / write_yolo_yaml: Ultralytics' label rule, precision, errors."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet, AnnotationError
from ninshiki.data.formats.common import InvalidBoxWarning
from ninshiki.data.formats.yolo import label_path, read_yolo, read_yolo_yaml, write_yolo, write_yolo_yaml


def _dataset(tmp_path: Path, labels: dict[str, str | None], size: tuple[int, int] = (100, 50)) -> Path:
    """root/images/train/<stem>.png with root/labels/train/<stem>.txt (None: no label file)."""
    for stem, text in labels.items():
        image = tmp_path / "images" / "train" / f"{stem}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size).save(image)
        if text is not None:
            label = tmp_path / "labels" / "train" / f"{stem}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(text)
    return tmp_path / "images" / "train"


def test_read_by_ultralytics_rule_with_background_images(tmp_path: Path, helpers) -> None:
    images = _dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.4\n\n1 0.1 0.9 0.2 0.2\n", "b": "", "sub/c": None})
    before = helpers.digest_tree(tmp_path)
    ds = read_yolo(images, classes={0: "cat", 1: "dog"})
    assert helpers.digest_tree(tmp_path) == before
    assert ds.classes == ["cat", "dog"] and ds.root == images
    a, b, c = ds.images
    assert [im.file for im in ds.images] == [Path("a.png"), Path("b.png"), Path("sub/c.png")]
    assert (a.width, a.height) == (100, 50)
    np.testing.assert_allclose(a.boxes, [[40, 15, 60, 35], [0, 40, 20, 50]], atol=1e-12)
    assert a.labels.tolist() == [0, 1] and len(b) == 0 and len(c) == 0
    assert ds.log.missing_labels == [(f"{images / 'sub' / 'c.png'}: no label file "
                                     f"{(tmp_path / 'labels' / 'train' / 'sub' / 'c.txt').absolute()}")]
    assert ds.log.summary() == "1 images without a label file (read as background)"


def test_label_path_rule() -> None:
    assert label_path(Path("/d/images/x/images/train/a.b.jpg")) == Path("/d/images/x/labels/train/a.b.txt")
    assert label_path(Path("/d/pics/a.jpg")) == Path("/d/pics/a.txt")                 # no images/ folder
    assert label_path(Path("/d/i/s/a.jpg"), images_root=Path("/d/i"), labels_dir=Path("/l")) == Path("/l/s/a.txt")


def test_labels_dir_and_image_lists(tmp_path: Path) -> None:
    images = _dataset(tmp_path, {"a": None, "b": None})
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "b.txt").write_text("0 0.5 0.5 1 1\n")
    ds = read_yolo(images, classes=["x"], labels_dir=tmp_path / "mine")
    assert [len(im) for im in ds.images] == [0, 1] and len(ds.log.missing_labels) == 1
    listing = tmp_path / "list.txt"
    listing.write_text(f"./images/train/b.png\n\n{images / 'a.png'}\n")
    listed = read_yolo(listing, classes=["x"], labels_dir=tmp_path / "mine")
    assert listed.root == tmp_path and [im.file for im in listed.images] == [Path("images/train/b.png"),
                                                                              Path("images/train/a.png")]
    both = read_yolo([images, listing], classes=["x"], labels_dir=tmp_path / "mine")
    assert both.root == tmp_path.absolute() and len(both.images) == 4
    listing.write_text("images/train/b.png\nimages/train/nope.png\n")
    with pytest.raises(FileNotFoundError, match=r"list.txt:2: .*nope.png: no such image file"):
        read_yolo(listing, classes=["x"])
    with pytest.raises(FileNotFoundError, match="absent: no such folder or image list"):
        read_yolo(tmp_path / "absent", classes=["x"])
    with pytest.raises(ValueError, match="no image files found"):
        read_yolo(tmp_path / "mine", classes=["x"])


@pytest.mark.parametrize("line, message", [
    ("0 0.5 0.5 0.2", "a.txt:2: expected 5 numbers 'class cx cy w h', found 4 fields"),
    ("0 0.5 0.5 0.2 0.2 0.3 0.3", "found 7 fields"),
    ("0 0.5 half 0.2 0.2", "a.txt:2: not a number in '0 0.5 half 0.2 0.2'"),
    ("2 0.5 0.5 0.2 0.2", "a.txt:2: class id 2 is not one of 0..1"),
    ("0.5 0.5 0.5 0.2 0.2", "a.txt:2: class id 0.5 is not one of 0..1"),
    ("-1 0.5 0.5 0.2 0.2", "a.txt:2: class id -1 is not one of 0..1"),
])
def test_malformed_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    images = _dataset(tmp_path, {"a": f"1 0.5 0.5 0.1 0.1\n{line}\n"})
    with pytest.raises(AnnotationError) as info:
        read_yolo(images, classes=["a", "b"])
    assert str(info.value).startswith(str(tmp_path / "labels" / "train" / "a.txt")) and message in str(info.value)


def test_boxes_clipped_or_dropped_with_a_record(tmp_path: Path) -> None:
    images = _dataset(tmp_path, {"a": "0 0.95 0.5 0.2 0.2\n0 0.5 0.5 0 0.2\n0 nan 0.5 0.1 0.1\n0 0.5 0.5 0.5 0.5\n"})
    with pytest.warns(InvalidBoxWarning, match=r"2 invalid box\(es\) dropped: .*a.txt:2: box"):
        ds = read_yolo(images, classes=["a"])
    label = (tmp_path / "labels" / "train" / "a.txt").absolute()
    np.testing.assert_allclose(ds.images[0].boxes, [[85, 20, 100, 30], [25, 12.5, 75, 37.5]])
    assert ds.log.clipped[0].startswith(f"{label}:1: box [85, 20, 105, 30] (xyxy) extends outside")
    assert [e.split(": box")[0] for e in ds.log.dropped] == [f"{label}:2", f"{label}:3"]


def test_write_read_round_trip_within_the_written_precision(tmp_path: Path) -> None:
    source = tmp_path / "data" / "images"
    (source / "val").mkdir(parents=True)
    Image.new("RGB", (1999, 1001)).save(source / "val" / "big.png")
    Image.new("RGB", (30, 20)).save(source / "val" / "empty.png")
    boxes = np.array([[0.0, 0.0, 1999.0, 1001.0], [123.456789, 7.000001, 124.5, 999.999], [1e-3, 500, 2, 501]])
    ds = AnnotatedSet(classes=["a", "b", "c"], root=source, images=[
        AnnotatedImage(file=Path("val/big.png"), width=1999, height=1001, boxes=boxes, labels=[2, 0, 1]),
        AnnotatedImage(file=Path("val/empty.png"), width=30, height=20, boxes=np.zeros((0, 4)), labels=[])])
    write_yolo(ds, tmp_path / "data" / "labels")
    lines = (tmp_path / "data" / "labels" / "val" / "big.txt").read_text().splitlines()
    assert lines[0] == "2 0.500000 0.500000 1.000000 1.000000"       # 6 decimals
    assert (tmp_path / "data" / "labels" / "val" / "empty.txt").read_text() == ""
    back = read_yolo(source, classes=ds.classes)                       # found by the /images/ -> /labels/ rule
    assert back.log.summary() == ""
    # 6 decimals: cx and w are each off by at most 0.5e-6 of the side, so a corner (cx - w/2) by 0.75e-6 of it
    error = np.abs(back.images[0].boxes - boxes)
    assert (error <= 0.75e-6 * np.array([1999, 1001, 1999, 1001]) + 1e-9).all()
    assert error.max() > 1e-5                                          # (rounding did happen: the bound matters)
    np.testing.assert_array_equal(back.images[0].labels, [2, 0, 1])
    with pytest.raises(ValueError, match="is not inside images_root"):
        write_yolo(ds, tmp_path / "labels", images_root=source / "val" / "other")


def test_read_yolo_yaml_names_as_dict_or_list(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "data.yaml").write_text("path: ../data\ntrain: images/train\nval: [images/v1, images/v2]\n"
                                               "names:\n  0: cat\n  1: dog\n")
    info = read_yolo_yaml(tmp_path / "ds" / "data.yaml")
    assert info == {"path": tmp_path / "ds" / "../data", "train": [tmp_path / "ds" / "../data/images/train"],
                    "val": [tmp_path / "ds/../data/images/v1", tmp_path / "ds/../data/images/v2"], "test": None,
                    "names": ["cat", "dog"]}
    (tmp_path / "b.yaml").write_text("train: t.txt\nnc: 2\nnames: [cat, dog]\n")
    info = read_yolo_yaml(tmp_path / "b.yaml")
    assert info["path"] == tmp_path and info["train"] == [tmp_path / "t.txt"] and info["names"] == ["cat", "dog"]
    (tmp_path / "c.yaml").write_text("train: t\nnc: 3\n")
    assert read_yolo_yaml(tmp_path / "c.yaml")["names"] == ["class_0", "class_1", "class_2"]


@pytest.mark.parametrize("text, message", [
    ("train: a\nnames: [a, b\n", "malformed YAML at line 3, column 1"),
    ("names: [a]\n", "not an Ultralytics data.yaml"),
    ("train: a\n", "no 'names' (and no 'nc')"),
    ("train: a\nnc: 3\nnames: [a, b]\n", "nc is 3 but 2 names are given"),
    ("train: a\nnames: {0: a, 2: b}\n", "names: class ids must be 0..1 without gaps, found [0, 2]"),
    ("train: 5\nnames: [a]\n", "train: expected a path or a list of paths, found 5"),
])
def test_read_yolo_yaml_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "data.yaml").write_text(text)
    with pytest.raises(AnnotationError) as info:
        read_yolo_yaml(tmp_path / "data.yaml")
    assert str(info.value).startswith(str(tmp_path / "data.yaml")) and message in str(info.value)


def test_write_yolo_yaml_reads_back(tmp_path: Path) -> None:
    write_yolo_yaml(tmp_path / "y" / "data.yaml", classes=["cat", "dög"], train="images/train",
                    val=[Path("images/val")], path=".")
    text = (tmp_path / "y" / "data.yaml").read_text(encoding="utf-8")
    assert "names:\n  0: cat\n  1: dög\n" in text
    info = read_yolo_yaml(tmp_path / "y" / "data.yaml")
    assert info["names"] == ["cat", "dög"] and info["val"] == [tmp_path / "y" / "images" / "val"]
    assert os.listdir(tmp_path / "y") == ["data.yaml"]
