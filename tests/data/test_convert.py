"""convert: COCO -> VOC -> YOLO -> COCO keeps every box, the sources stay untouched, and bad requests are named."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet
from ninshiki.data.convert import convert, read_annotations
from ninshiki.data.formats.coco import read_coco, write_coco
from ninshiki.data.formats.voc import read_voc
from ninshiki.data.formats.yolo import write_yolo, write_yolo_yaml

CLASSES = ["circle", "square", "star"]


def _coco_source(tmp_path: Path) -> tuple[AnnotatedSet, Path]:
    """Six images (every third without objects) in data/images/train, and data/annotations/instances_train.json."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "images" / "train"
    folder.mkdir(parents=True)
    images = []
    for i in range(6):
        width, height = 48 + 7 * i, 40 - i
        Image.new("RGB", (width, height), (40 * i, 90, 200)).save(folder / f"{i:03d}.png")
        corners = rng.uniform(0, 1, (i % 3, 2)) * [width - 12, height - 12]                 # (N, 2)
        boxes = np.concatenate([corners, corners + rng.uniform(1, 11, (i % 3, 2))], axis=1)  # (N, 4), xyxy
        images.append(AnnotatedImage(file=Path(f"{i:03d}.png"), width=width, height=height, boxes=boxes,
                                     labels=rng.integers(0, 3, i % 3), image_id=100 + i))
    ds = AnnotatedSet(classes=list(CLASSES), images=images, root=folder, category_ids=[3, 17, 90])
    write_coco(ds, tmp_path / "data" / "annotations" / "instances_train.json")
    return ds, tmp_path / "data" / "annotations" / "instances_train.json"


def _by_stem(ds: AnnotatedSet) -> dict[str, AnnotatedImage]:
    return {image.file.stem: image for image in ds.images}


def test_coco_to_voc_to_yolo_to_coco_keeps_every_box(tmp_path: Path, helpers) -> None:
    original, json_path = _coco_source(tmp_path)
    before = helpers.digest_tree(tmp_path / "data")
    voc = convert(json_path, source_format="coco", target_format="voc", out=tmp_path / "VOC2007", image_set="train")
    labels = convert(voc, source_format="voc", target_format="yolo", out=tmp_path / "yolo", image_set="train",
                     classes=CLASSES)
    final = convert(voc, source_format="yolo", target_format="coco", out=tmp_path / "out" / "back.json",
                    labels_dir=labels)                                  # classes from the classes.txt written
    assert helpers.digest_tree(tmp_path / "data") == before            # no source file modified, added or removed
    assert (labels / "classes.txt").read_text() == "circle\nsquare\nstar\n"

    via_voc = _by_stem(read_voc(voc, image_set="train", classes=CLASSES))
    back = read_coco(final)                                             # file names relative to the JSON's folder
    assert back.classes == CLASSES and back.category_ids == [1, 2, 3]  # VOC and YOLO have no category ids
    assert all(back.path(image).is_file() for image in back.images)
    final_images = _by_stem(back)
    for stem, image in _by_stem(original).items():
        np.testing.assert_allclose(via_voc[stem].boxes, image.boxes, rtol=1e-6, atol=0)
        got = final_images[stem]
        assert (got.width, got.height) == (image.width, image.height)
        np.testing.assert_array_equal(got.labels, image.labels)
        bound = 0.75e-6 * np.array([image.width, image.height] * 2) + 1e-9   # YOLO's 6 decimals (see test_yolo)
        assert got.boxes.shape == image.boxes.shape and (np.abs(got.boxes - image.boxes) <= bound).all()


def test_voc_to_coco_finds_its_images(tmp_path: Path) -> None:
    original, json_path = _coco_source(tmp_path)
    voc = convert(json_path, source_format="coco", target_format="voc", out=tmp_path / "VOC")
    out = convert(voc, source_format="voc", target_format="coco", out=tmp_path / "voc.json")
    back = read_coco(out)
    assert back.root == tmp_path and back.images[1].file == Path("VOC/JPEGImages/001.png")
    assert back.classes == sorted(CLASSES) and back.num_boxes() == original.num_boxes()


def test_yolo_data_yaml_source_and_split(tmp_path: Path) -> None:
    original, _ = _coco_source(tmp_path)
    write_yolo(original, tmp_path / "data" / "labels" / "train")
    write_yolo_yaml(tmp_path / "data" / "data.yaml", classes=CLASSES, train="images/train", val=None)
    ds = read_annotations(tmp_path / "data" / "data.yaml", "yolo")
    assert ds.classes == CLASSES and ds.num_boxes() == original.num_boxes() and ds.log.summary() == ""
    with pytest.raises(ValueError, match=r"no 'val' split \(splits: train\)"):
        read_annotations(tmp_path / "data" / "data.yaml", "yolo", image_set="val")


def test_bad_requests(tmp_path: Path) -> None:
    _, json_path = _coco_source(tmp_path)
    with pytest.raises(ValueError, match="unknown annotation format 'labelme'"):
        convert(json_path, source_format="labelme", target_format="coco", out=tmp_path / "x.json")
    with pytest.raises(ValueError, match="the output is the source"):
        convert(json_path, source_format="coco", target_format="coco", out=json_path)
    with pytest.raises(ValueError, match="YOLO labels hold class ids only; pass classes"):
        convert(tmp_path / "data" / "images", source_format="yolo", target_format="coco", out=tmp_path / "y.json")
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.json").exists()
