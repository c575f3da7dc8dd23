"""load_detection_data: every kind of spec gives the same train/val annotations; splits, summaries and errors."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet, AnnotationError
from ninshiki.data.detection_data import load_detection_data
from ninshiki.data.formats.coco import write_coco
from ninshiki.data.formats.voc import write_voc
from ninshiki.data.formats.yolo import write_yolo, write_yolo_yaml

CLASSES = ["circle", "square", "star"]
COUNTS = {"train": 6, "val": 3}


def _split(root: Path, split: str, seed: int) -> AnnotatedSet:
    """`COUNTS[split]` 40x32 images in root/images/<split>, with 0, 1 or 2 objects each."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(COUNTS[split]):
        path = root / "images" / split / f"{split}_{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 32), (30 * i, 60, 90)).save(path)
        corners = rng.uniform(0, 20, (i % 3, 2))                                            # (N, 2)
        boxes = np.concatenate([corners, corners + rng.uniform(2, 10, (i % 3, 2))], axis=1)  # (N, 4), xyxy
        images.append(AnnotatedImage(file=Path(path.name), width=40, height=32, boxes=boxes,
                                     labels=rng.integers(0, 3, i % 3)))
    return AnnotatedSet(classes=list(CLASSES), images=images, root=root / "images" / split, category_ids=[3, 17, 90])


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, dict[str, AnnotatedSet]]:
    """The generated dataset's layout: COCO + coco.yaml, YOLO labels + data.yaml, and a VOC folder."""
    root = tmp_path / "shapes"
    sets = {split: _split(root, split, seed) for seed, split in enumerate(COUNTS)}
    for split, ds in sets.items():
        write_coco(ds, root / "annotations" / f"instances_{split}.json")
        write_yolo(ds, root / "labels" / split)
        write_voc(ds, root / "VOC", image_set=split)
    (root / "coco.yaml").write_text(yaml.safe_dump({"format": "coco", "names": CLASSES, **{
        split: {"annotations": f"annotations/instances_{split}.json", "images": f"images/{split}"} for split in COUNTS}}))
    write_yolo_yaml(root / "data.yaml", classes=CLASSES, train="images/train", val="images/val")
    return root, sets


def _same(loaded: AnnotatedSet, expected: AnnotatedSet) -> None:
    got = {image.file.stem: image for image in loaded.images}
    assert sorted(got) == sorted(image.file.stem for image in expected.images)
    for image in expected.images:
        np.testing.assert_allclose(got[image.file.stem].boxes, image.boxes, rtol=0, atol=1e-6 * 40)
        np.testing.assert_array_equal(got[image.file.stem].labels, image.labels)
        assert loaded.path(got[image.file.stem]).is_file()


@pytest.mark.parametrize("spec, kind", [("coco.yaml", "COCO dataset"), (".", "COCO dataset"),
                                        ("data.yaml", "Ultralytics YOLO dataset"), ("VOC", "VOC"),
                                        ("voc-only", "VOC")])
def test_every_kind_of_spec_gives_the_same_splits(dataset, spec: str, kind: str, helpers) -> None:
    root, sets = dataset
    if spec == "voc-only":                                  # a folder holding one VOC root among VOC*/ folders
        (root.parent / "voc-only" / "VOC-notes").mkdir(parents=True)
        (root / "VOC").rename(root.parent / "voc-only" / "VOC2007")
        spec_path = root.parent / "voc-only"
    else:
        spec_path = root / spec
    before = helpers.digest_tree(root.parent)
    data = load_detection_data(spec_path)
    assert helpers.digest_tree(root.parent) == before
    assert data.classes == CLASSES and data.source.startswith(kind)
    _same(data.train, sets["train"])
    _same(data.val, sets["val"])
    assert data.summary().splitlines()[1:] == ["train: 6 images (2 without objects), 6 boxes",
                                               "val: 3 images (1 without objects), 3 boxes"]


def test_vocdevkit_layout(dataset) -> None:
    root, sets = dataset
    (root / "devkit" / "VOCdevkit").mkdir(parents=True)
    (root / "VOC").rename(root / "devkit" / "VOCdevkit" / "VOC2007")
    data = load_detection_data(root / "devkit")
    assert data.source == f"VOC {root / 'devkit' / 'VOCdevkit' / 'VOC2007'} (train / val)"
    _same(data.val, sets["val"])
    (root / "devkit" / "VOC2012" / "Annotations").mkdir(parents=True)
    with pytest.raises(ValueError, match="several VOC folders"):
        load_detection_data(root / "devkit")


def test_a_json_alone_is_split_by_seed(dataset) -> None:
    root, _ = dataset
    spec = root / "annotations" / "instances_train.json"
    data = load_detection_data(spec, val_fraction=0.34, split_seed=1)
    stems = {split: [im.file.stem for im in getattr(data, split).images] for split in ("train", "val")}
    assert len(stems["val"]) == 2 and sorted(stems["train"] + stems["val"]) == [f"train_{i:02d}" for i in range(6)]
    assert data.source == f"COCO {spec} (val: 2 of its images, split off with seed 1)"
    again = load_detection_data(spec, val_fraction=0.34, split_seed=1)
    assert [im.file.stem for im in again.val.images] == stems["val"]
    others = {tuple(im.file.stem for im in load_detection_data(spec, val_fraction=0.34, split_seed=s).val.images)
              for s in range(2, 8)}
    assert len(others | {tuple(stems["val"])}) > 1                     # the seed matters
    assert load_detection_data(spec, val_fraction=0).val is None
    assert "val: none" in load_detection_data(spec, val_fraction=0).summary()


def test_our_yaml_for_voc_and_yolo(dataset) -> None:
    root, sets = dataset
    (root / "v.yaml").write_text("format: voc\ntrain: {root: VOC, image_set: train}\nval: {root: VOC, image_set: val}\n")
    data = load_detection_data(root / "v.yaml")
    assert data.classes == CLASSES and data.source == f"VOC dataset {root / 'v.yaml'}"
    _same(data.val, sets["val"])
    (root / "y.yaml").write_text(f"format: yolo\nnames: {CLASSES}\ntrain: images/train\n"
                                 "val: {images: images/val, labels: labels/val}\ntest: images/test\n")
    data = load_detection_data(root / "y.yaml")
    _same(data.train, sets["train"])
    _same(data.val, sets["val"])


@pytest.mark.parametrize("text, message", [
    ("format: coco\ntrain: annotations/instances_train.json\nval: annotations/instances_val.json\nnames: [a, b, c]\n",
     "names ['a', 'b', 'c'] differ from the classes of the train annotations"),
    ("format: coco\ntrain: annotations/instances_train.json\nvalidation: x\n", "unknown key 'validation'"),
    ("format: coco\ntrain: {annotations: a.json, labels: b}\n", "train: unknown key 'labels'"),
    ("format: coco\ntrain: {images: images/train}\n", "train: expected a path or a mapping with 'annotations'"),
    ("format: tfrecord\ntrain: x\n", "format: expected one of coco, voc, yolo, found 'tfrecord'"),
    ("format: yolo\ntrain: images/train\n", "a yolo dataset needs 'names'"),
    ("format: coco\nval: x\n", "no 'train' entry"),
    ("classes: [a]\n", "neither our dataset YAML (no 'format') nor an Ultralytics data.yaml"),
    ("format: coco\ntrain: [a\n", "malformed YAML at line 3, column 1"),
])
def test_yaml_errors_name_the_file(dataset, text: str, message: str) -> None:
    root, _ = dataset
    (root / "bad.yaml").write_text(text)
    with pytest.raises(AnnotationError) as info:
        load_detection_data(root / "bad.yaml")
    assert str(info.value).startswith(str(root / "bad.yaml")) and message in str(info.value)


def test_val_with_other_classes_is_an_error(dataset) -> None:
    root, sets = dataset
    other = AnnotatedSet(classes=["circle", "square", "hexagon"], images=sets["val"].images, root=sets["val"].root)
    write_coco(other, root / "annotations" / "instances_val.json")
    with pytest.raises(AnnotationError, match=r"coco.yaml: val: the val split's classes \['circle', 'square', "
                                              r"'hexagon'\] \(ids \[1, 2, 3\]\) differ"):
        load_detection_data(root / "coco.yaml")
    xml = root / "VOC" / "Annotations" / "val_01.xml"                  # one object, of a random class
    xml.write_text(re.sub(r"<name>\w+</name>", "<name>moon</name>", xml.read_text()))
    with pytest.raises(AnnotationError, match=r"val_01.xml: object 0: class 'moon' is not among the classes"):
        load_detection_data(root / "VOC")


def test_bad_specs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere: no such file or folder"):
        load_detection_data(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no detection data found here"):
        load_detection_data(tmp_path)
    (tmp_path / "a.csv").write_text("x\n")
    with pytest.raises(ValueError, match="a.csv: not detection data"):
        load_detection_data(tmp_path / "a.csv")
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        load_detection_data(tmp_path, val_fraction=1.0)
