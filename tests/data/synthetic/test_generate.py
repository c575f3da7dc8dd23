"""synth_detect end to end: layout, agreement of COCO / VOC / YOLO / mask PNGs, determinism, safe folders."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ninshiki.data.formats.coco import read_coco
from ninshiki.data.formats.masks import polygons_to_mask, read_index_mask
from ninshiki.data.formats.voc import read_voc
from ninshiki.data.formats.yolo import read_yolo, read_yolo_yaml
from ninshiki.data.synthetic import DEFAULT_CLASSES, generate, synth_detect

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
CLASSES = list(DEFAULT_CLASSES)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """26 images of 320 px: enough for every class and every COCO size range."""
    return synth_detect(tmp_path_factory.mktemp("synth") / "shapes", train=20, val=6, seed=0, progress=False)


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout(shapes):
    for split, count in (("train", 20), ("val", 6)):
        for folder, suffix in (("images", "jpg"), ("labels", "txt"), ("masks", "png"), ("instances", "png")):
            assert sorted(p.name for p in (shapes / folder / split).iterdir()) == [
                f"{split}_{i:06d}.{suffix}" for i in range(count)]
        for folder in ("ImageSets/Main", "ImageSets/Segmentation"):
            assert (shapes / "VOC" / folder / f"{split}.txt").read_text().split() == [
                f"{split}_{i:06d}" for i in range(count)]
    for folder in ("Annotations", "JPEGImages", "SegmentationClass", "SegmentationObject"):
        assert len(list((shapes / "VOC" / folder).iterdir())) == 26
    assert (shapes / "classes.txt").read_text().splitlines() == CLASSES
    csv = (shapes / "classes.csv").read_text().splitlines()
    assert csv[:3] == ["index,name,r,g,b", "0,background,0,0,0", "1,circle,128,0,0"] and len(csv) == 10
    coco = yaml.safe_load((shapes / "coco.yaml").read_text())
    assert coco == {"format": "coco", "names": CLASSES,
                    "train": {"annotations": "annotations/instances_train.json", "images": "images/train"},
                    "val": {"annotations": "annotations/instances_val.json", "images": "images/val"}}
    data = read_yolo_yaml(shapes / "data.yaml")
    assert data["path"] == shapes and data["names"] == CLASSES and data["val"] == [shapes / "images" / "val"]
    manifest = json.loads((shapes / "synth.json").read_text())
    assert set(manifest["files"]) | {"synth.json"} == set(digests(shapes))
    assert manifest["seed"] == 0 and manifest["classes"] == CLASSES
    assert "at least 30% visible" in (shapes / "README.txt").read_text()
    assert not [p for p in shapes.parent.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_masks_boxes_and_polygons_agree(shapes):
    from pycocotools.coco import COCO

    for split in ("train", "val"):
        json_path = shapes / "annotations" / f"instances_{split}.json"
        ds, reference = read_coco(json_path), COCO(str(json_path))
        assert ds.root == shapes / "images" / split and ds.classes == CLASSES
        for image in ds.images:
            with Image.open(ds.path(image)) as jpeg:
                assert (jpeg.format, jpeg.mode, jpeg.size) == ("JPEG", "RGB", (320, 320))
            instances = read_index_mask(shapes / "instances" / split / f"{image.file.stem}.png")
            semantic = read_index_mask(shapes / "masks" / split / f"{image.file.stem}.png")
            assert instances.max() == len(image) and np.array_equal(semantic > 0, instances > 0)
            if len(image) == 0:
                continue  # a background image: read_coco gives no areas or segmentations
            annotations = reference.loadAnns(reference.getAnnIds(imgIds=image.image_id))
            for k, (box, label, area, polygons) in enumerate(zip(image.boxes, image.labels, image.areas,
                                                               image.segmentations)):
                mask = instances == k + 1
                rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
                np.testing.assert_array_equal(box, [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
                assert area == mask.sum() and (semantic[mask] == label + 1).all()
                np.testing.assert_array_equal(polygons_to_mask(polygons, 320, 320), mask)
                np.testing.assert_array_equal(reference.annToMask(annotations[k]), mask)  # pycocotools' view


def test_voc_and_yolo_say_what_coco_says(shapes):
    for split in ("train", "val"):
        coco = read_coco(shapes / "annotations" / f"instances_{split}.json")
        voc = read_voc(shapes / "VOC", image_set=split, classes=CLASSES)
        yolo = read_yolo(shapes / "images" / split, classes=CLASSES, labels_dir=shapes / "labels" / split)
        assert not voc.log.summary() and not yolo.log.dropped  # YOLO's 6 decimals may clip edge boxes by 1e-4 px
        for c, v, y in zip(coco.images, voc.images, sorted(yolo.images, key=lambda i: i.file.name)):
            assert c.file.name == v.file.name == y.file.name
            np.testing.assert_array_equal(v.boxes, c.boxes)
            np.testing.assert_allclose(y.boxes, c.boxes, atol=1e-3)
            assert (v.labels == c.labels).all() and (y.labels == c.labels).all()
            assert os.path.samefile(shapes / "VOC" / "JPEGImages" / c.file.name, coco.path(c))
            for voc_folder, folder in (("SegmentationClass", "masks"), ("SegmentationObject", "instances")):
                np.testing.assert_array_equal(
                    read_index_mask(shapes / "VOC" / voc_folder / f"{c.file.stem}.png"),
                    read_index_mask(shapes / folder / split / f"{c.file.stem}.png"))


def test_classes_sizes_and_background_images_are_all_present(shapes):
    labels, areas, empty = [], [], 0
    for split in ("train", "val"):
        for image in read_coco(shapes / "annotations" / f"instances_{split}.json").images:
            labels += list(image.labels)
            areas += [] if image.areas is None else list(image.areas)
            empty += len(image) == 0
            label_file = shapes / "labels" / split / f"{image.file.stem}.txt"
            assert (label_file.read_text() == "") == (len(image) == 0)
    assert set(labels) == set(range(len(CLASSES)))
    areas = np.array(areas)
    assert (areas < 32 ** 2).sum() >= 5 and (areas > 96 ** 2).sum() >= 3 and (areas.min() >= 20)
    assert ((areas >= 32 ** 2) & (areas <= 96 ** 2)).sum() >= 5
    assert empty >= 1


def test_same_arguments_same_bytes(tmp_path):
    args = {"train": 4, "val": 2, "image_size": 64, "progress": False}
    first = synth_detect(tmp_path / "a", seed=3, **args)
    before = digests(first)
    synth_detect(tmp_path / "a", seed=3, **args)  # regenerated over its own previous output
    assert digests(first) == before
    other = digests(synth_detect(tmp_path / "b", seed=4, **args))
    jpegs = [name for name in before if name.endswith(".jpg") and name.startswith("images")]
    assert all(before[name] != other[name] for name in jpegs)
    fewer = digests(synth_detect(tmp_path / "c", seed=3, **{**args, "train": 2}))  # val does not depend on train
    val_files = [name for name in before if "val" in name and "synth" not in name]
    # per image: jpg, label, 2 masks, VOC xml, link, 2 VOC masks; per split: COCO json, 2 VOC image sets
    assert len(val_files) == 2 * 8 + 3 and all(before[name] == fewer[name] for name in val_files)


def test_custom_classes(tmp_path):
    out = synth_detect(tmp_path / "glyphs", train=6, val=0, image_size=96, classes=["digit_7", "circle"],
                       max_objects=3, progress=False)
    ds = read_coco(out / "annotations" / "instances_train.json")
    assert ds.classes == ["digit_7", "circle"] and not (out / "images" / "val").exists()
    assert all(len(image) <= 3 and image.width == 96 for image in ds.images)
    assert read_yolo_yaml(out / "data.yaml")["val"] is None


def test_refuses_folders_holding_other_files(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"mine: the folder is not empty and is not a generated data set"):
        synth_detect(user, train=1, val=0, image_size=32, progress=False)
    previous = synth_detect(tmp_path / "old", train=1, val=0, image_size=32, progress=False)
    (previous / "images" / "train" / "added.jpg").write_bytes(b"user data")
    before = digests(previous)
    with pytest.raises(FileExistsError, match=r"added\.jpg; move them away"):
        synth_detect(previous, train=1, val=0, image_size=32, progress=False)
    assert digests(previous) == before and (user / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        synth_detect(tmp_path / "file", train=1, val=0, image_size=32, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "mine", "old"]


def test_bad_arguments_create_nothing(tmp_path):
    for kwargs, message in (({"train": 0}, "train must be at least 1"), ({"image_size": 16}, "image_size"),
                            ({"max_objects": 300}, "max_objects"), ({"val": -1}, "val"),
                            ({"classes": ["circle", "blob"]}, "unknown class 'blob'")):
        with pytest.raises(ValueError, match=message):
            synth_detect(tmp_path / "out", **{"train": 1, "progress": False, **kwargs})
    assert not any(tmp_path.iterdir())


def test_a_failed_run_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(generate, "write_voc", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        synth_detect(tmp_path / "out", train=2, val=0, image_size=32, progress=False)
    assert not any(tmp_path.iterdir())
