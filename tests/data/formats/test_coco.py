"""read_coco / write_coco / coco_dict / results_json: ids, flags, repairs, errors, and pycocotools agreement."""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet, AnnotationError
from ninshiki.data.formats.coco import coco_dict, read_coco, results_json, write_coco
from ninshiki.data.formats.common import InvalidBoxWarning
from ninshiki.structures import Detections

POLYGON = [[10.0, 10.0, 30.0, 10.0, 30.0, 20.0]]


def _coco(tmp_path: Path, *, images_dir: str = ".", json_name: str = "instances.json") -> Path:
    """Three images (one without objects) and categories with ids 90, 3, 17 listed out of order."""
    folder = tmp_path / images_dir
    folder.mkdir(parents=True, exist_ok=True)
    for name, size in (("a.png", (64, 48)), ("b.png", (40, 30)), ("empty.png", (20, 20))):
        Image.new("RGB", size, (90, 120, 30)).save(folder / name)
    data = {
        "images": [{"id": 7, "file_name": "a.png", "width": 64, "height": 48},
                   {"id": 3, "file_name": "b.png", "width": 40, "height": 30},
                   {"id": 11, "file_name": "empty.png", "width": 20, "height": 20}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 90, "bbox": [1.5, 2.25, 10.0, 20.5], "area": 150.0,
             "iscrowd": 0, "segmentation": POLYGON},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [30, 5, 20, 30], "area": 480.5, "iscrowd": 1,
             "segmentation": {"size": [48, 64], "counts": "abc"}},
            {"id": 3, "image_id": 3, "category_id": 17, "bbox": [0, 0, 40, 30], "iscrowd": 0}],
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 3, "name": "car"}, {"id": 17, "name": "cat"}],
    }
    path = tmp_path / "annotations" / json_name if images_dir != "." else tmp_path / json_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_read_keeps_ids_flags_areas_segmentations_and_background(tmp_path: Path, helpers) -> None:
    path = _coco(tmp_path)
    before = helpers.digest_tree(tmp_path)
    ds = read_coco(path)
    assert helpers.digest_tree(tmp_path) == before                      # nothing modified or added
    assert ds.classes == ["car", "cat", "toothbrush"] and ds.category_ids == [3, 17, 90]
    assert ds.root == tmp_path and [im.file for im in ds.images] == [Path("a.png"), Path("b.png"), Path("empty.png")]
    a, b, empty = ds.images
    assert [a.image_id, b.image_id, empty.image_id] == [7, 3, 11] and (a.width, a.height) == (64, 48)
    np.testing.assert_array_equal(a.boxes, [[1.5, 2.25, 11.5, 22.75], [30, 5, 50, 35]])  # xywh -> xyxy
    np.testing.assert_array_equal(a.labels, [2, 0])
    np.testing.assert_array_equal(a.iscrowd, [False, True])
    np.testing.assert_array_equal(a.areas, [150.0, 480.5])
    assert a.segmentations == [POLYGON, {"size": [48, 64], "counts": "abc"}]
    assert b.areas is None and b.segmentations is None and b.labels.tolist() == [1]
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)
    assert ds.num_boxes() == 3 and ds.log.summary() == ""


def test_write_read_round_trip_is_exact(tmp_path: Path) -> None:
    ds = read_coco(_coco(tmp_path))
    out = tmp_path / "out" / "copy.json"
    write_coco(ds, out, images_root=tmp_path)
    back = read_coco(out, images_root=tmp_path)
    assert back.classes == ds.classes and back.category_ids == ds.category_ids
    for x, y in zip(ds.images, back.images):
        assert (x.file, x.width, x.height, x.image_id) == (y.file, y.width, y.height, y.image_id)
        np.testing.assert_allclose(y.boxes, x.boxes, rtol=1e-12, atol=0)
        np.testing.assert_array_equal(y.labels, x.labels)
        np.testing.assert_array_equal(y.iscrowd, x.iscrowd)
        assert y.segmentations == x.segmentations
    np.testing.assert_array_equal(back.images[0].areas, [150.0, 480.5])
    np.testing.assert_array_equal(back.images[1].areas, [40 * 30])   # no stored area: w * h is written
    assert [p.name for p in out.parent.iterdir()] == ["copy.json"]   # no temporary file left behind


def test_coco_dict_defaults_for_sets_made_in_memory(tmp_path: Path) -> None:
    images = [AnnotatedImage(file=Path("x/1.jpg"), width=10, height=8, boxes=[[1, 2, 4, 8]], labels=[1]),
              AnnotatedImage(file=Path("x/2.jpg"), width=10, height=8, boxes=np.zeros((0, 4)), labels=[], image_id=1),
              AnnotatedImage(file=Path("x/3.jpg"), width=10, height=8, boxes=[[0, 0, 1, 1]], labels=[0],
                             segmentations=[np.array([[0, 0, 1, 0, 1, 1]])])]
    ds = AnnotatedSet(classes=["a", "b"], images=images, root=tmp_path / "data")
    d = coco_dict(ds)
    assert [c["id"] for c in d["categories"]] == [1, 2]
    assert [im["id"] for im in d["images"]] == [2, 1, 3]            # image 2 keeps its id; others take free ones
    assert [im["file_name"] for im in d["images"]] == ["x/1.jpg", "x/2.jpg", "x/3.jpg"]
    first = d["annotations"][0]
    assert first["bbox"] == [1.0, 2.0, 3.0, 6.0] and first["area"] == 18.0 and first["category_id"] == 2
    assert "segmentation" not in first
    assert coco_dict(ds, images_root=tmp_path)["images"][0]["file_name"] == "data/x/1.jpg"
    write_coco(ds, tmp_path / "mem.json")                              # numpy segmentation written as lists
    assert json.loads((tmp_path / "mem.json").read_text())["annotations"][1]["segmentation"] == [[0, 0, 1, 0, 1, 1]]
    with pytest.raises(ValueError, match="2 category ids for 3 classes"):
        coco_dict(AnnotatedSet(classes=["a", "b", "c"], images=[], category_ids=[1, 2]))


@pytest.mark.parametrize("layout", ["annotations/instances_val2017.json:val2017",
                                    "annotations/instances_val2017.json:images/val2017",
                                    "annotations/instances.json:images", "instances.json:images"])
def test_images_folder_is_found(tmp_path: Path, layout: str) -> None:
    json_rel, images_rel = layout.split(":")
    path = _coco(tmp_path, images_dir=images_rel, json_name=Path(json_rel).name)
    if json_rel.startswith("instances"):                       # the JSON beside an images/ folder
        path = path.rename(tmp_path / json_rel)
    assert read_coco(path).root == tmp_path / images_rel


def test_images_not_found_warns_or_raises_when_strict(tmp_path: Path) -> None:
    path = _coco(tmp_path)
    (tmp_path / "a.png").unlink()
    with pytest.warns(UserWarning, match="'a.png' were not found"):
        assert read_coco(path).root == tmp_path
    with pytest.raises(FileNotFoundError, match="pass images_root"):
        read_coco(path, strict=True)
    assert read_coco(path, images_root=tmp_path / "elsewhere").root == tmp_path / "elsewhere"


def _write(tmp_path: Path, data: object | str) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


GOOD = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [1, 1, 5, 5]}],
        "categories": [{"id": 5, "name": "x"}]}


@pytest.mark.parametrize("edit, message", [
    ("{\n  \"images\": [\n    {\"id\": 1,,}\n]}", "invalid JSON at line 3, column 14"),
    ([1, 2], "expected a JSON object with 'images'"),
    ({"images": GOOD["images"], "annotations": []}, "missing field 'categories'"),
    ({**GOOD, "images": [{"id": 1, "file_name": "a.png", "height": 48}]}, "images[0]: missing field 'width'"),
    ({**GOOD, "images": [{"id": 1, "file_name": "a.png", "width": "64", "height": 48}]},
     "images[0].width: expected int, found '64'"),
    ({**GOOD, "images": GOOD["images"] * 2}, "images[1]: image id 1 appears twice"),
    ({**GOOD, "annotations": [GOOD["annotations"][0], {**GOOD["annotations"][0], "category_id": 6}]},
     "annotations[1].category_id: unknown category id 6"),
    ({**GOOD, "annotations": [{**GOOD["annotations"][0], "image_id": 2}]},
     "annotations[0].image_id: 2 is not the id of any image"),
    ({**GOOD, "annotations": [{**GOOD["annotations"][0], "bbox": [1, 2, 3]}]},
     "annotations[0].bbox: expected 4 numbers [x, y, w, h], found [1, 2, 3]"),
    ({**GOOD, "annotations": [{**GOOD["annotations"][0], "iscrowd": "no"}]}, "annotations[0].iscrowd: expected int"),
    ({**GOOD, "categories": GOOD["categories"] * 2}, "categories[1]: category id 5 appears twice"),
])
def test_malformed_files_name_file_and_field(tmp_path: Path, edit: object, message: str) -> None:
    path = _write(tmp_path, edit)
    with pytest.raises(AnnotationError) as info:
        read_coco(path, images_root=tmp_path)
    assert str(info.value).startswith(f"{path}") and message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.json: no such file"):
        read_coco(tmp_path / "nope.json")


def test_boxes_clipped_or_dropped_with_a_record(tmp_path: Path) -> None:
    anns = [{"id": k, "image_id": 1, "category_id": 5, "bbox": bbox} for k, bbox in enumerate(
        [[-4, 10, 20, 10], [5, 5, 0, 10], [1, 1, 5, 5], [70, 5, 10, 10], [10, 5, -3, 10]])]
    path = _write(tmp_path, json.dumps({**GOOD, "annotations": anns}).replace("-3", "NaN"))
    with pytest.warns(InvalidBoxWarning) as record:
        ds = read_coco(path, images_root=tmp_path)
    assert len(record) == 1                                            # one warning per file read
    text = str(record[0].message)
    assert "3 invalid box(es) dropped" in text and f"{path}: annotations[1].bbox" in text
    np.testing.assert_array_equal(ds.images[0].boxes, [[0, 10, 16, 20], [1, 1, 6, 6]])
    assert ds.log.clipped == [(f"{path}: annotations[0].bbox: box [-4, 10, 16, 20] (xyxy) extends outside the "
                              f"64x48 image: clipped")]
    assert [e.split(":")[1].strip() for e in ds.log.dropped] == ["annotations[1].bbox", "annotations[3].bbox",
                                                                  "annotations[4].bbox"]
    assert "zero or negative size" in ds.log.dropped[0] and "outside the 64x48 image" in ds.log.dropped[1]
    assert "NaN or inf" in ds.log.dropped[2]
    assert ds.log.summary() == "1 boxes clipped to their image; 3 empty or invalid boxes dropped"
    with pytest.raises(AnnotationError, match=r"annotations\[0\].bbox: box \[-4, 10, 16, 20\] \(xyxy\) extends"):
        read_coco(path, images_root=tmp_path, strict=True)


def test_results_json_and_pycocotools_agree_on_a_perfect_detector(tmp_path: Path) -> None:
    """Our ground-truth dict and result list, evaluated by pycocotools, give AP 1 for the true boxes."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ds = read_coco(_coco(tmp_path))
    dets = [Detections(torch.tensor(im.boxes, dtype=torch.float32), torch.linspace(0.9, 0.5, len(im)),
                       torch.tensor(im.labels)) for im in ds.images]
    results = results_json(dets, [im.image_id for im in ds.images], ds.category_ids)
    assert results[0] == {"image_id": 7, "category_id": 90, "bbox": [1.5, 2.25, 10.0, 20.5],
                          "score": pytest.approx(0.9)}
    assert len(results) == 3 and {r["category_id"] for r in results} == {3, 17, 90}
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        gt = COCO()
        gt.dataset = coco_dict(ds)
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # category 3's only box is a crowd region: no AP there (-1); the other two are found exactly
    assert evaluation.stats[0] == pytest.approx(1.0) and evaluation.stats[1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2 detections for 1 image ids"):
        results_json(dets[:2], [1], ds.category_ids)
    with pytest.raises(ValueError, match="labels outside 0..1"):
        results_json(dets[:1], [7], [3, 17])
