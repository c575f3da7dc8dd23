"""Converting segmentation data: COCO <-> YOLO-seg <-> class-map PNGs, on the generated shapes set and tiny cases."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ninshiki.data.formats.coco import read_coco
from ninshiki.data.formats.masks import read_index_mask
from ninshiki.data.formats.rle import decode_segmentation
from ninshiki.data.segmentation.convert import (
    class_map_instances,
    convert_segmentation,
    object_classes,
    write_semantic_masks,
)
from ninshiki.data.segmentation.types import load_label_mask
from ninshiki.data.segmentation_data import load_segmentation_data
from ninshiki.data.synthetic import synth_detect


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_detect(tmp_path_factory.mktemp("synth") / "shapes", train=4, val=2, image_size=64, progress=False)


def test_coco_to_masks_equals_the_generated_masks(shapes: Path, tmp_path: Path, helpers) -> None:
    before = helpers.digest_tree(shapes)
    annotated = read_coco(shapes / "annotations" / "instances_train.json")
    written = write_semantic_masks(annotated, tmp_path / "palette")
    assert [p.name for p in written] == [f"train_00000{i}.png" for i in range(4)]
    for path in written:
        with Image.open(path) as image:
            assert image.mode == "P"
        np.testing.assert_array_equal(read_index_mask(path), read_index_mask(shapes / "masks" / "train" / path.name))
    grey = write_semantic_masks(annotated, tmp_path / "grey", palette=False)
    with Image.open(grey[0]) as image:
        assert image.mode == "L"
    with pytest.raises(ValueError, match="lies inside the source"):
        write_semantic_masks(annotated, shapes / "images" / "train" / "masks")
    assert helpers.digest_tree(shapes) == before


def test_coco_to_yolo_seg_to_coco_draws_the_same_objects(shapes: Path, tmp_path: Path, helpers) -> None:
    before = helpers.digest_tree(shapes)
    source = shapes / "annotations" / "instances_train.json"
    convert_segmentation(source, tmp_path / "yolo", to="yolo-seg")
    assert (tmp_path / "yolo" / "images" / "train" / "train_000000.jpg").is_file()
    assert (tmp_path / "yolo" / "labels" / "train" / "train_000000.txt").is_file()
    convert_segmentation(tmp_path / "yolo" / "data.yaml", tmp_path / "coco", to="coco")
    original = read_coco(source)
    back = read_coco(tmp_path / "coco" / "annotations" / "instances_train.json")
    assert back.classes == original.classes and back.root == tmp_path / "coco" / "images" / "train"
    for a, b in zip(original.images, back.images):
        assert a.file == b.file and b.labels.tolist() == a.labels.tolist()
        np.testing.assert_allclose(b.boxes, a.boxes, atol=1e-3)
        for s, t in zip(a.segmentations, b.segmentations):
            np.testing.assert_array_equal(decode_segmentation(t, b.height, b.width),
                                          decode_segmentation(s, a.height, a.width))
    assert helpers.digest_tree(shapes) == before


def test_masks_to_coco_and_back_to_masks(shapes: Path, tmp_path: Path, helpers) -> None:
    before = helpers.digest_tree(shapes)
    out = convert_segmentation(shapes, tmp_path / "coco", to="coco")
    data = load_segmentation_data(out)                                # found through its coco.yaml
    assert data.source == f"coco dataset {out / 'coco.yaml'}"
    source = load_segmentation_data(shapes)
    assert data.classes == source.classes and [len(data.train.items), len(data.val.items)] == [4, 2]
    for converted, original in ((data.train, source.train), (data.val, source.val)):
        for a, b in zip(converted.items, original.items):
            np.testing.assert_array_equal(load_label_mask(converted, a), load_label_mask(original, b))
    masks = convert_segmentation(out / "coco.yaml", tmp_path / "masks", to="masks")
    assert (masks / "classes.csv").read_text() == (shapes / "classes.csv").read_text()
    for path in sorted((shapes / "masks" / "val").glob("*.png")):
        np.testing.assert_array_equal(read_index_mask(masks / "masks" / "val" / path.name), read_index_mask(path))
    assert helpers.digest_tree(shapes) == before
    with pytest.raises(ValueError, match="lies inside the source"):
        convert_segmentation(shapes, shapes / "converted", to="coco")
    with pytest.raises(ValueError, match="unknown segmentation format 'voc'"):
        convert_segmentation(shapes, tmp_path / "x", to="voc")


def test_class_map_instances_one_per_connected_region() -> None:
    labels = np.zeros((6, 9), np.uint8)
    labels[0:2, 0:2] = 1
    labels[2:4, 2:4] = 1        # touches the first block at a corner: one 8-connected region
    labels[0:3, 6:8] = 1        # a second region of class 1
    labels[4:6, 6:9] = 2
    labels[5, 0] = 255          # ignored: not written
    boxes, classes, areas, polygons = class_map_instances(labels, first_value=1, num_classes=3, ignore_index=255)
    assert classes.tolist() == [0, 0, 1] and areas.tolist() == [8, 6, 6]
    np.testing.assert_array_equal(boxes, [[0, 0, 4, 4], [6, 0, 8, 3], [6, 4, 9, 6]])
    for k, value in enumerate([1, 1, 2]):
        drawn = decode_segmentation(polygons[k], 6, 9)
        region = np.zeros_like(drawn)
        x0, y0, x1, y1 = boxes[k].astype(int)
        region[y0:y1, x0:x1] = labels[y0:y1, x0:x1] == value
        np.testing.assert_array_equal(drawn, region)
    assert object_classes(["background", "a"]) == (["a"], 1) and object_classes(["road", "car"]) == (["road", "car"], 0)


def test_a_class_list_without_background_keeps_every_class(tmp_path: Path) -> None:
    root = tmp_path / "city"
    mask = np.array([[0, 0, 1, 1], [0, 255, 1, 1]], np.uint8)
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    Image.new("RGB", (4, 2)).save(root / "images" / "a.png")
    Image.fromarray(mask).save(root / "masks" / "a.png")
    (root / "classes.csv").write_text("0,road\n1,car\n")
    out = convert_segmentation(root, tmp_path / "coco", to="coco")
    data = load_segmentation_data(out / "coco.yaml", val_fraction=0)
    assert data.classes == ["background", "road", "car"]
    # road (0) and car (1) become 1 and 2; the ignored pixel has no class and comes back as background
    assert load_label_mask(data.train, data.train.items[0]).tolist() == [[1, 1, 2, 2], [1, 0, 2, 2]]
