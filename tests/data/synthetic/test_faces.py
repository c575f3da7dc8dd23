"""synth_faces and its LFW faces: formats that agree, boxes, face sources by split, determinism, safe folders."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ninshiki.data.detection_data import load_detection_data
from ninshiki.data.formats.coco import read_coco
from ninshiki.data.synthetic import face_scene, faces
from ninshiki.data.synthetic.face_scene import face_alpha, face_count, lfw_crops, load_lfw_subset
from ninshiki.data.synthetic.faces import SOURCES_HEADER, synth_faces

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
SMALL = {"train": 4, "val": 2, "image_size": 96, "progress": False}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return synth_faces(tmp_path_factory.mktemp("faces") / "faces", seed=0, **SMALL)


@pytest.fixture(scope="module")
def larger(tmp_path_factory) -> Path:
    """16 images of 160 px: enough faces (about 40) for the checks on pixels."""
    return synth_faces(tmp_path_factory.mktemp("faces") / "faces", train=4, val=12, image_size=160, seed=1,
                       progress=False)


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def sources(root: Path, split: str) -> list[dict[str, str]]:
    header, *rows = (root / "annotations" / f"sources_{split}.csv").read_text().splitlines()
    assert header == SOURCES_HEADER
    return [dict(zip(header.split(","), row.split(","))) for row in rows]


def test_layout(small):
    for split, count in (("train", 4), ("val", 2)):
        names = [f"{split}_{i:06d}" for i in range(count)]
        assert sorted(p.stem for p in (small / "images" / split).iterdir()) == names
        assert sorted(p.stem for p in (small / "labels" / split).iterdir()) == names
        assert (small / "VOC" / "ImageSets" / "Main" / f"{split}.txt").read_text().split() == names
        for name in names:
            with Image.open(small / "images" / split / f"{name}.jpg") as jpeg:
                assert (jpeg.format, jpeg.mode, jpeg.size) == ("JPEG", "L", (96, 96))
    assert yaml.safe_load((small / "coco.yaml").read_text()) == {
        "format": "coco", "names": ["face"],
        "train": {"annotations": "annotations/instances_train.json", "images": "images/train"},
        "val": {"annotations": "annotations/instances_val.json", "images": "images/val"}}
    assert (small / "classes.txt").read_text() == "face\n"
    manifest = json.loads((small / "synth.json").read_text())
    assert set(manifest["files"]) | {"synth.json"} == set(digests(small))
    assert manifest["dataset"] == "faces" and "astronaut" not in manifest["backgrounds"]
    assert "camera" not in manifest["backgrounds"] and len(manifest["backgrounds"]) == 12
    readme = (small / "README.txt").read_text()
    assert "crops 0-79" in readme and "crops 80-99" in readme and "GRAYSCALE" in readme
    assert not [p for p in small.parent.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_coco_voc_and_yolo_give_the_same_boxes(small):
    coco = load_detection_data(small)  # finds coco.yaml
    voc = load_detection_data(small / "VOC")
    yolo = load_detection_data(small / "data.yaml")
    assert coco.classes == voc.classes == yolo.classes == ["face"]
    for split in ("train", "val"):
        c, v, y = (getattr(data, split) for data in (coco, voc, yolo))
        assert [i.file.name for i in c.images] == [i.file.name for i in v.images] == sorted(
            i.file.name for i in y.images)
        assert sum(len(image) for image in c.images) > 0 and not v.log.summary()
        for a, b, d in zip(c.images, v.images, sorted(y.images, key=lambda i: i.file.name)):
            np.testing.assert_array_equal(b.boxes, a.boxes)
            np.testing.assert_allclose(d.boxes, a.boxes, atol=1e-3)  # YOLO keeps 6 decimals of a fraction
            assert (a.labels == 0).all() and (b.labels == 0).all() and (d.labels == 0).all()


def test_boxes_are_whole_squares_inside_the_image_and_barely_overlap(larger):
    for split in ("train", "val"):
        for image in read_coco(larger / "annotations" / f"instances_{split}.json").images:
            boxes = image.boxes  # (N, 4)
            sides = boxes[:, 2:] - boxes[:, :2]
            assert (boxes >= 0).all() and (boxes <= 160).all() and (boxes == np.round(boxes)).all()
            assert (sides[:, 0] == sides[:, 1]).all() and (sides >= 24).all() and (sides <= 80).all()
            for i in range(len(boxes)):
                for j in range(i):
                    inter = np.clip(np.minimum(boxes[i, 2:], boxes[j, 2:]) - np.maximum(boxes[i, :2], boxes[j, :2]),
                                    0, None).prod()
                    assert inter <= 0.1 * min(sides[i, 0], sides[j, 0]) ** 2


def test_sources_list_the_split_own_crops_and_the_pixels_show_them(larger):
    crops = load_lfw_subset().astype(np.float64)[:100]  # (100, 25, 25) the faces
    centre = face_alpha(25, 0.0) >= 1  # (25, 25) where the mask is opaque
    matched = total = 0
    for split, pool in (("train", range(80)), ("val", range(80, 100))):
        ds = read_coco(larger / "annotations" / f"instances_{split}.json")
        rows = sources(larger, split)
        boxes = [(image.file.name, box) for image in ds.images for box in image.boxes]
        assert [(row["file_name"], [float(row[k]) for k in ("x0", "y0", "x1", "y1")]) for row in rows] == [
            (name, box.tolist()) for name, box in boxes]
        assert {int(row["lfw_index"]) for row in rows} <= set(pool)
        for row in rows:
            x0, y0, x1, y1 = (int(row[k]) for k in ("x0", "y0", "x1", "y1"))
            with Image.open(larger / "images" / split / row["file_name"]) as jpeg:
                seen = np.asarray(jpeg.crop((x0, y0, x1, y1)).resize((25, 25), Image.Resampling.BOX), np.float64)
            seen = seen[:, ::-1] if row["flipped"] == "1" else seen
            a = seen[centre] - seen[centre].mean()
            b = crops[:, centre] - crops[:, centre].mean(axis=1, keepdims=True)  # (100, P)
            correlation = b @ a / np.linalg.norm(b, axis=1) / np.linalg.norm(a)  # (100,)
            matched += int(np.argmax(correlation)) == int(row["lfw_index"])
            total += 1
    assert total >= 30 and matched >= 0.9 * total  # the recorded crop is the one pasted there (measured: 31/31)


def test_opencv_frontal_face_cascade_finds_the_generated_faces(larger):
    """The faces look like faces: OpenCV's pretrained detector finds most of them and little else."""
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    ds = read_coco(larger / "annotations" / "instances_val.json")
    found = detections = faces_total = 0
    for image in ds.images:
        grey = np.asarray(Image.open(ds.path(image)))
        xywh = np.asarray(cascade.detectMultiScale(grey, 1.1, 3, minSize=(20, 20))).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(np.float64)  # (D, 4)
        detections, faces_total = detections + len(boxes), faces_total + len(image)
        for truth in image.boxes:
            inter = np.clip(np.minimum(boxes[:, 2:], truth[2:]) - np.maximum(boxes[:, :2], truth[:2]), 0, None)
            union = (boxes[:, 2:] - boxes[:, :2]).prod(1) + (truth[2:] - truth[:2]).prod() - inter.prod(1)
            found += bool(len(boxes)) and (inter.prod(1) / union).max() >= 0.5
    # measured: 19 of the 24 faces found, with no false positive
    assert faces_total >= 20 and found >= 0.5 * faces_total and found >= 0.8 * detections


def test_lfw_crops_are_the_library_pixels_split_by_position():
    import skimage.data

    reference = np.round(skimage.data.lfw_subset() * 255).astype(np.uint8)  # shipped file: no download
    np.testing.assert_array_equal(load_lfw_subset(), reference)
    train_faces, train_other = lfw_crops("train")
    val_faces, val_other = lfw_crops("val")
    assert train_faces.shape == train_other.shape == (80, 25, 25) and val_faces.shape == (20, 25, 25)
    assert train_faces.dtype == np.uint8 and val_other.shape == (20, 25, 25)
    np.testing.assert_array_equal(np.concatenate([train_faces, val_faces, train_other, val_other]), reference)
    flat = np.concatenate([train_faces, val_faces]).reshape(100, -1).astype(np.float64)
    flat = (flat - flat.mean(1, keepdims=True)) / np.linalg.norm(flat - flat.mean(1, keepdims=True), axis=1,
                                                                  keepdims=True)
    assert (flat[:80] @ flat[80:].T).max() < 0.9  # no val face is a copy of a train face (measured 0.84)
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        lfw_crops("test")


def test_face_count_and_alpha_mask():
    rng = np.random.default_rng(0)
    counts = np.array([face_count(4, 0.1, rng) for _ in range(4000)])
    assert 0.08 < (counts == 0).mean() < 0.12 and set(counts.tolist()) == {0, 1, 2, 3, 4}
    assert abs((counts == 4).mean() - 0.9 / 4) < 0.03 and face_count(0, 0.1, rng) == 0
    alpha = face_alpha(40, 0.0)  # (40, 40)
    assert alpha[19:21, 19:21].min() == 1 and alpha[[0, 0, -1, -1], [0, -1, 0, -1]].max() == 0
    assert alpha[:, 0].max() == 0 and alpha[0].max() < 0.1 and 0 <= alpha.min() and alpha.max() <= 1
    np.testing.assert_allclose(face_alpha(40, 90.0), alpha.T, atol=1e-5)  # the ellipse turns with the face
    np.testing.assert_allclose(alpha, alpha[::-1, ::-1])


def test_same_arguments_same_bytes(tmp_path):
    first = synth_faces(tmp_path / "a", seed=3, **SMALL)
    before = digests(first)
    synth_faces(tmp_path / "a", seed=3, **SMALL)  # regenerated over its own previous output
    assert digests(first) == before
    other = digests(synth_faces(tmp_path / "b", seed=4, **SMALL))
    assert all(before[name] != other[name] for name in before if name.startswith("images/"))
    fewer = digests(synth_faces(tmp_path / "c", seed=3, **{**SMALL, "train": 2}))  # val does not depend on train
    val_files = [name for name in before if "val" in name]
    # per image: jpg, label, VOC xml, VOC link; per split: COCO json, sources csv, VOC image set
    assert len(val_files) == 2 * 4 + 3 and all(before[name] == fewer[name] for name in val_files)


def test_refuses_folders_holding_other_files(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"mine: the folder is not empty and is not a generated data set"):
        synth_faces(user, **SMALL)
    previous = synth_faces(tmp_path / "old", **{**SMALL, "val": 0})
    (previous / "images" / "train" / "added.jpg").write_bytes(b"user data")
    before = digests(previous)
    with pytest.raises(FileExistsError, match=r"added\.jpg; move them away"):
        synth_faces(previous, **SMALL)
    assert digests(previous) == before and (user / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        synth_faces(tmp_path / "file", **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "mine", "old"]


def test_bad_arguments_create_nothing(tmp_path):
    for kwargs, message in (({"train": 0}, "train must be at least 1"), ({"image_size": 40}, "at least 48"),
                            ({"max_faces": 51}, "max_faces must be at most 50"), ({"val": -1}, "val must be"),
                            ({"seed": 1.5}, "seed must be")):
        with pytest.raises(ValueError, match=message):
            synth_faces(tmp_path / "out", **{**SMALL, **kwargs})
    assert not any(tmp_path.iterdir())


def test_a_failed_run_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(faces, "write_voc", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        synth_faces(tmp_path / "out", **SMALL)
    assert not any(tmp_path.iterdir())


def test_a_missing_lfw_file_is_reported_not_fetched(monkeypatch):
    monkeypatch.setattr(face_scene, "_package_file", lambda *parts: None)
    with pytest.raises(FileNotFoundError, match="lfw_subset.npy is not installed"):
        lfw_crops("train")
