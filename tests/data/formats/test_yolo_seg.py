"""read_yolo_seg / write_yolo_seg / write_data_yaml: polygons in pixels, bad lines named, parts joined, round trips."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet, AnnotationError
from ninshiki.data.formats.common import InvalidBoxWarning
from ninshiki.data.formats.rle import decode_segmentation, encode_mask
from ninshiki.data.formats.yolo import read_yolo_yaml
from ninshiki.data.formats.yolo_seg import read_yolo_seg, write_data_yaml, write_yolo_seg

NAMES = ["cat", "dog"]

# pycocotools' RLE objects predate NumPy 2's __array__(copy=...) protocol; harmless here
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def dataset(root: Path, labels: dict[str, str | None], size: tuple[int, int] = (100, 50)) -> Path:
    """root/images/train/<stem>.png with root/labels/train/<stem>.txt (None: no label file)."""
    for stem, text in labels.items():
        image = root / "images" / "train" / f"{stem}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size).save(image)
        if text is not None:
            label = root / "labels" / "train" / f"{stem}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(text)
    return root / "images" / "train"


def test_read_polygons_in_pixels_boxes_and_areas(tmp_path: Path, helpers) -> None:
    images = dataset(tmp_path, {"a": "1 0.1 0.2 0.5 0.2 0.5 0.6\n\n0 0.1025 0 1 0 1 1 0.1025 1\n", "b": "", "c": None})
    before = helpers.digest_tree(tmp_path)
    ds = read_yolo_seg(images, names={0: "cat", 1: "dog"})
    assert helpers.digest_tree(tmp_path) == before
    assert ds.classes == NAMES and ds.root == images
    a, b, c = ds.images
    assert a.labels.tolist() == [1, 0] and len(b) == 0 and len(c) == 0
    np.testing.assert_allclose(a.segmentations[0], [[10, 10, 50, 10, 50, 30]], atol=1e-9)   # x * 100, y * 50
    for k in range(2):   # boxes and areas of the pixels drawn, as pycocotools makes COCO's from polygons
        rle = coco_mask.merge(coco_mask.frPyObjects(a.segmentations[k], 50, 100))
        x, y, w, h = coco_mask.toBbox(rle).tolist()
        np.testing.assert_allclose(a.boxes[k], [x, y, x + w, y + h])
        assert a.areas[k] == coco_mask.area(rle)
    np.testing.assert_allclose(a.boxes[1], [10, 0, 100, 50])          # x0 = 10.25: pixel 10's centre is inside
    assert a.areas[1] == 90 * 50
    assert b.segmentations == [] and len(ds.log.missing_labels) == 1 and "c.png: no label file" in ds.log.missing_labels[0]


def test_labels_dir_and_tolerance(tmp_path: Path) -> None:
    images = dataset(tmp_path, {"a": None})
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("0 -0.0005 0 1.0009 0 0.5 1\n")   # rounding past the edge: clipped
    ds = read_yolo_seg(images, tmp_path / "mine", names=NAMES)
    np.testing.assert_allclose(ds.images[0].segmentations[0], [[0, 0, 100, 0, 50, 50]])


def test_a_polygon_drawing_no_pixel_is_dropped_and_logged(tmp_path: Path) -> None:
    line, sliver = "0 0.1 0.5 0.5 0.5 0.9 0.5", "1 0.101 0.1 0.104 0.1 0.104 0.9"   # no pixel centre inside
    images = dataset(tmp_path, {"a": f"{line}\n1 0.1 0.1 0.2 0.1 0.2 0.2\n{sliver}\n"})
    with pytest.warns(InvalidBoxWarning, match="a.txt:1: the polygon covers no pixel centre"):
        ds = read_yolo_seg(images, names=NAMES)
    assert ds.images[0].labels.tolist() == [1] and len(ds.images[0].segmentations) == 1
    assert [entry.split(": ")[0][-7:] for entry in ds.log.dropped] == ["a.txt:1", "a.txt:3"]


@pytest.mark.parametrize("line, message", [
    ("0 0.1 0.1 0.5 0.1 0.5", r"a.txt:2: odd number of coordinates \(5\)"),
    ("0 0.1 0.1 0.5 0.1", r"a.txt:2: a polygon needs at least 3 points, found 2 \(this is a box line"),
    ("0 0.1 0.1", "a.txt:2: a polygon needs at least 3 points, found 1$"),
    ("0 0.1 0.1 0.5 0.1 1.2 0.5", r"a.txt:2: coordinate 1.2 is outside \[0, 1\]"),
    ("0 0.1 0.1 0.5 -0.01 0.5 0.5", r"a.txt:2: coordinate -0.01 is outside \[0, 1\]"),
    ("0 0.1 0.1 0.5 nan 0.5 0.5", r"a.txt:2: coordinate nan is outside \[0, 1\]"),
    ("0 0.1 0.1 0.5 x 0.5 0.5", "a.txt:2: not a number in '0 0.1 0.1 0.5 x 0.5 0.5'"),
    ("2 0.1 0.1 0.5 0.1 0.5 0.5", "a.txt:2: class id 2 is not one of 0..1"),
    ("0.5 0.1 0.1 0.5 0.1 0.5 0.5", "a.txt:2: class id 0.5 is not one of 0..1"),
])
def test_bad_lines_name_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    images = dataset(tmp_path, {"a": f"1 0.1 0.1 0.5 0.1 0.5 0.5\n{line}\n"})
    with pytest.raises(AnnotationError, match=message):
        read_yolo_seg(images, names=NAMES)


def annotated(root: Path, segmentations: list[object], labels: list[int], crowd: list[bool] | None = None,
              size: tuple[int, int] = (40, 30)) -> AnnotatedSet:
    (root / "sub").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size).save(root / "sub" / "x.png")
    n = len(labels)
    image = AnnotatedImage(file=Path("sub/x.png"), width=size[0], height=size[1], boxes=np.tile([0, 0, 1, 1], (n, 1)),
                           labels=np.array(labels), iscrowd=crowd, segmentations=segmentations)
    return AnnotatedSet(classes=list(NAMES), images=[image], root=root)


def test_write_then_read_keeps_single_polygons(tmp_path: Path) -> None:
    polygon = [3.25, 2.75, 20.5, 4.0, 11.0, 17.125]
    ds = annotated(tmp_path / "images", [[polygon]], [1])
    write_yolo_seg(ds, tmp_path / "labels")
    text = (tmp_path / "labels" / "sub" / "x.txt").read_text()
    assert text == "1 0.081250 0.091667 0.512500 0.133333 0.275000 0.570833\n"
    back = read_yolo_seg(tmp_path / "images", names=NAMES)   # labels found by Ultralytics' rule
    np.testing.assert_allclose(back.images[0].segmentations[0][0], polygon, atol=0.5e-6 * 40)


def test_parts_and_rle_become_one_polygon_with_the_same_pixels(tmp_path: Path) -> None:
    two_parts = [[2.0, 2.0, 8.0, 2.0, 8.0, 8.0, 2.0, 8.0], [20.0, 10.0, 30.0, 10.0, 25.0, 25.0]]
    ring = np.zeros((30, 40), np.uint8)
    cv2.circle(ring, (12, 20), 7, 1, -1)
    cv2.circle(ring, (12, 20), 3, 0, -1)
    ring[2:4, 35:38] = 1                                    # and an island
    crowd = encode_mask(np.ones((30, 40), bool))
    ds = annotated(tmp_path / "images", [two_parts, encode_mask(ring), crowd], [0, 1, 0], crowd=[False, False, True])
    write_yolo_seg(ds, tmp_path / "labels")
    lines = (tmp_path / "labels" / "sub" / "x.txt").read_text().splitlines()
    assert len(lines) == 2 and [line.split()[0] for line in lines] == ["0", "1"]   # one line each; crowd left out
    back = read_yolo_seg(tmp_path / "images", names=NAMES).images[0]
    for original, written in zip(ds.images[0].segmentations, back.segmentations):
        np.testing.assert_array_equal(decode_segmentation(written, 30, 40), decode_segmentation(original, 30, 40))


def test_write_errors(tmp_path: Path) -> None:
    ds = annotated(tmp_path / "images", [[[1.0, 1.0, 5.0, 1.0, 5.0, 5.0]], None], [0, 1])
    with pytest.raises(ValueError, match=r"write_yolo_seg: .*sub/x.png: object 1 has no segmentation"):
        write_yolo_seg(ds, tmp_path / "labels")
    with pytest.raises(ValueError, match="is not inside images_root"):
        write_yolo_seg(ds, tmp_path / "labels", images_root=tmp_path / "elsewhere")


def test_data_yaml_without_path_is_read_from_its_folder(tmp_path: Path) -> None:
    write_data_yaml(tmp_path / "out" / "data.yaml", names=NAMES, train="images/train", val=None)
    text = (tmp_path / "out" / "data.yaml").read_text()
    assert "path" not in text and text.startswith("train: images/train\nnames:\n  0: cat\n")
    info = read_yolo_yaml(tmp_path / "out" / "data.yaml")
    assert info["train"] == [tmp_path / "out" / "images" / "train"] and info["val"] is None and info["names"] == NAMES
