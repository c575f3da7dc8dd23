"""COCO object-detection JSON (Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014).

A file holds ``images`` (id, file_name, width, height), ``annotations`` (id, image_id, category_id, bbox,
iscrowd, area, segmentation) and ``categories`` (id, name). `bbox` is ``[x, y, w, h]`` in continuous pixel
coordinates, so xyxy = (x, y, x + w, y + h) with no +1. Category ids may be any integers (COCO's own run
1..90 with gaps): labels are their ranks in id order and `AnnotatedSet.category_ids` keeps the ids, so a
written file has the same ids. Images without annotations are kept (background images).
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet, AnnotationError, AnnotationLog
from ninshiki.data.formats.common import clean_boxes, warn_dropped
from ninshiki.io import write_text
from ninshiki.structures import Detections

_NUMBER = (int, float)
_NUMBERS = frozenset(_NUMBER)   # exact types: bool is not a number here
_MISSING = object()
_LOOKED_AT = 5  # image files checked when guessing the images folder


def _field(record: Any, key: str, types: tuple[type, ...], where: str, default: Any = _MISSING) -> Any:
    """record[key] checked against `types` (bool is never a number here); errors name file and field."""
    if not isinstance(record, dict):
        raise AnnotationError(f"{where}: expected a JSON object, found {type(record).__name__}")
    if key not in record:
        if default is _MISSING:
            raise AnnotationError(f"{where}: missing field {key!r}")
        return default
    value = record[key]
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        kinds = " or ".join(t.__name__ for t in types)
        raise AnnotationError(f"{where}.{key}: expected {kinds}, found {value!r}")
    return value


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    except UnicodeDecodeError as err:
        raise AnnotationError(f"{path}: not UTF-8 text (byte {err.start})") from None
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected a JSON object with 'images', 'annotations' and 'categories'")
    return data


def _categories(data: dict, path: Path) -> list[tuple[int, str]]:
    """(id, name) of every category, sorted by id."""
    found: dict[int, str] = {}
    for k, cat in enumerate(_field(data, "categories", (list,), f"{path}")):
        cid = _field(cat, "id", (int,), f"{path}: categories[{k}]")
        if cid in found:
            raise AnnotationError(f"{path}: categories[{k}]: category id {cid} appears twice")
        found[cid] = _field(cat, "name", (str,), f"{path}: categories[{k}]")
    return sorted(found.items())


def _image_records(data: dict, path: Path) -> list[dict]:
    images = _field(data, "images", (list,), f"{path}")
    seen: set[int] = set()
    for k, record in enumerate(images):
        where = f"{path}: images[{k}]"
        image_id = _field(record, "id", (int,), where)
        _field(record, "file_name", (str,), where)
        for key in ("width", "height"):
            if _field(record, key, (int,), where) < 1:
                raise AnnotationError(f"{where}.{key}: must be a positive integer, found {record[key]}")
        if image_id in seen:
            raise AnnotationError(f"{where}: image id {image_id} appears twice")
        seen.add(image_id)
    return images


def _check_annotation(ann: Any, k: int, path: Path, labels: dict[int, int], positions: dict[int, int]) -> None:
    """Check one annotation field by field; raises `AnnotationError` naming the first field at fault."""
    where = f"{path}: annotations[{k}]"
    image_id = _field(ann, "image_id", (int,), where)
    if image_id not in positions:
        raise AnnotationError(f"{where}.image_id: {image_id} is not the id of any image in 'images'")
    category = _field(ann, "category_id", (int,), where)
    if category not in labels:
        raise AnnotationError(f"{where}.category_id: unknown category id {category} (categories: {sorted(labels)})")
    bbox = _field(ann, "bbox", (list,), where)
    if len(bbox) != 4 or not all(type(v) in _NUMBERS for v in bbox):
        raise AnnotationError(f"{where}.bbox: expected 4 numbers [x, y, w, h], found {bbox!r}")
    _field(ann, "iscrowd", (int,), where, default=0)
    _field(ann, "area", _NUMBER, where, default=0)


@dataclass
class _Table:
    """Every annotation of a file as arrays, in file order."""
    image: np.ndarray              # (M,) int64, position of the annotation's image in 'images'
    label: np.ndarray              # (M,) int64
    boxes: np.ndarray              # (M, 4) float64, xywh as read
    iscrowd: np.ndarray            # (M,) bool
    area: np.ndarray               # (M,) float64, NaN where absent
    segmentation: list[object]     # None where absent


def _annotation_table(data: dict, path: Path, labels: dict[int, int], positions: dict[int, int]) -> _Table:
    """All annotations, checked; plain type tests first (COCO's train set has 860k), field by field on failure."""
    image, label, boxes, crowd, area, segmentation = [], [], [], [], [], []
    for k, ann in enumerate(_field(data, "annotations", (list,), f"{path}", default=[])):
        try:
            box = ann["bbox"]
            ok = (type(ann["image_id"]) is int and ann["image_id"] in positions and type(ann["category_id"]) is int
                  and ann["category_id"] in labels and type(box) is list and len(box) == 4
                  and type(box[0]) in _NUMBERS and type(box[1]) in _NUMBERS and type(box[2]) in _NUMBERS
                  and type(box[3]) in _NUMBERS and type(ann.get("iscrowd", 0)) is int
                  and type(ann.get("area", 0)) in _NUMBERS)
        except (KeyError, TypeError):
            ok = False
        if not ok:
            _check_annotation(ann, k, path, labels, positions)
        image.append(positions[ann["image_id"]])
        label.append(labels[ann["category_id"]])
        boxes.append(ann["bbox"])
        crowd.append(ann.get("iscrowd", 0))
        area.append(ann.get("area", np.nan))
        segmentation.append(ann.get("segmentation"))
    return _Table(image=np.array(image, dtype=np.int64), label=np.array(label, dtype=np.int64),
                  boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4), iscrowd=np.array(crowd, dtype=bool),
                  area=np.array(area, dtype=np.float64), segmentation=segmentation)


def _images_root(path: Path, file_names: list[str], images_root: str | os.PathLike[str] | None,
                 strict: bool) -> Path:
    """The folder `file_name`s are relative to: given, or the first candidate holding the first few files."""
    if images_root is not None:
        return Path(images_root)
    here = path.parent
    candidates = [here, here / "images", here.parent / "images"]
    if "_" in path.stem:  # COCO's own layout: annotations/instances_val2017.json next to val2017/
        split = path.stem.rsplit("_", 1)[1]
        candidates += [here.parent / split, here.parent / "images" / split]
    sample = [name for name in file_names if not Path(name).is_absolute()][:_LOOKED_AT]
    if not sample:
        return here
    for folder in candidates:
        if all((folder / name).is_file() for name in sample):
            return folder
    message = (f"{path}: image files such as {sample[0]!r} were not found in any of "
               f"{', '.join(str(c) for c in candidates)}; pass images_root")
    if strict:
        raise FileNotFoundError(message)
    warnings.warn(message, stacklevel=3)
    return here


def _annotated_image(record: dict, idx: np.ndarray, table: _Table, boxes: np.ndarray) -> AnnotatedImage:
    """One image with the annotations `idx` (kept ones, file order); boxes are the clipped xyxy of all."""
    own = boxes[idx]                                                                # (N, 4), xyxy
    areas = None
    if not np.isnan(table.area[idx]).all():   # stored areas, and box areas where one is missing
        areas = np.where(np.isnan(table.area[idx]), (own[:, 2] - own[:, 0]) * (own[:, 3] - own[:, 1]), table.area[idx])
    segmentations = [table.segmentation[i] for i in idx]
    return AnnotatedImage(file=Path(record["file_name"]), width=record["width"], height=record["height"], boxes=own,
                          labels=table.label[idx], iscrowd=table.iscrowd[idx], image_id=record["id"], areas=areas,
                          segmentations=segmentations if any(seg is not None for seg in segmentations) else None)


def read_coco(json_path: str | os.PathLike[str], *, images_root: str | os.PathLike[str] | None = None,
              strict: bool = False) -> AnnotatedSet:
    """Read a COCO detection JSON file.

    Args:
        json_path: the annotation file.
        images_root: the folder `file_name`s are relative to. By default the first of: the JSON's folder,
            its ``images/`` subfolder, a sibling ``images/`` folder, and for COCO's own layout
            (``annotations/instances_val2017.json``) ``val2017/`` or ``images/val2017/`` beside ``annotations/``,
            that holds the first few image files. When none does, the JSON's folder (with a warning).
        strict: raise instead of repairing: a box needing clipping or dropping is an `AnnotationError`, and
            image files that cannot be found are a FileNotFoundError.

    Returns:
        The set, with `category_ids`, image ids, iscrowd, areas and segmentations kept; boxes xyxy.

    Raises:
        FileNotFoundError: the file does not exist.
        AnnotationError: invalid JSON (line and column named), a missing or mistyped field, an unknown image
            or category id (the annotation's index named).
    """
    path = Path(json_path)
    data = _load_json(path)
    categories = _categories(data, path)
    labels = {cid: k for k, (cid, _) in enumerate(categories)}
    records = _image_records(data, path)
    table = _annotation_table(data, path, labels, {r["id"]: k for k, r in enumerate(records)})
    root = _images_root(path, [r["file_name"] for r in records], images_root, strict)
    sizes = np.array([(r["width"], r["height"]) for r in records], dtype=np.float64).reshape(-1, 2)[table.image]
    xyxy = np.concatenate([table.boxes[:, :2], table.boxes[:, :2] + table.boxes[:, 2:]], axis=1)   # (M, 4)
    log = AnnotationLog()
    boxes, keep = clean_boxes(xyxy, sizes[:, 0], sizes[:, 1], lambda k: f"{path}: annotations[{k}].bbox", log,
                              strict=strict)
    kept = np.flatnonzero(keep)
    order = kept[np.argsort(table.image[kept], kind="stable")]      # kept annotations grouped by image
    bounds = np.searchsorted(table.image[order], np.arange(len(records) + 1))
    images = [_annotated_image(record, order[bounds[i]:bounds[i + 1]], table, boxes)
              for i, record in enumerate(records)]
    warn_dropped(log, 0, path)
    return AnnotatedSet(classes=[name for _, name in categories], images=images, root=root,
                        category_ids=[cid for cid, _ in categories], log=log)


def _file_name(ds: AnnotatedSet, image: AnnotatedImage, images_root: Path | None) -> str:
    """The image's path relative to `images_root` (default `ds.root`) in POSIX form; '..' is allowed."""
    if images_root is None and not image.file.is_absolute():
        return image.file.as_posix()
    root = ds.root if images_root is None else images_root
    return Path(os.path.relpath(ds.path(image).absolute(), root.absolute())).as_posix()


def _image_ids(images: Sequence[AnnotatedImage]) -> list[int]:
    """Each image's own id, and unused ids counting from 1 for images without one."""
    given = [im.image_id for im in images if im.image_id is not None]
    if len(set(given)) != len(given):
        raise ValueError("write_coco: two images have the same image_id")
    used, ids, next_id = set(given), [], 1
    for image in images:
        if image.image_id is None:
            while next_id in used:
                next_id += 1
            used.add(next_id)
        ids.append(next_id if image.image_id is None else image.image_id)
    return ids


def coco_dict(ds: AnnotatedSet, *, images_root: str | os.PathLike[str] | None = None) -> dict:
    """The COCO JSON dict of a set (what `write_coco` writes).

    `file_name` is the image path relative to `images_root` (default `ds.root`); bbox is xywh from xyxy;
    area is the stored area or w*h; category ids are `ds.category_ids` or 1..K; image ids are each image's
    `image_id` or unused ids from 1; segmentation is written where present. VOC's difficult flag has no COCO
    field and is not written.
    """
    root = None if images_root is None else Path(images_root)
    category_ids = list(ds.category_ids) if ds.category_ids is not None else list(range(1, len(ds.classes) + 1))
    if len(category_ids) != len(ds.classes):
        raise ValueError(f"write_coco: {len(category_ids)} category ids for {len(ds.classes)} classes")
    images, annotations = [], []
    for image, image_id in zip(ds.images, _image_ids(ds.images)):
        images.append({"id": int(image_id), "file_name": _file_name(ds, image, root), "width": int(image.width),
                       "height": int(image.height)})
        xywh = image.boxes.copy()                                        # (N, 4), xyxy -> xywh below
        xywh[:, 2:] -= xywh[:, :2]
        areas = image.areas if image.areas is not None else xywh[:, 2] * xywh[:, 3]
        if len(image) and (image.labels.min() < 0 or image.labels.max() >= len(ds.classes)):
            raise ValueError(f"write_coco: {image.file} has labels outside 0..{len(ds.classes) - 1}")
        segmentations = image.segmentations or [None] * len(image)
        for box, label, area, crowd, seg in zip(xywh.tolist(), image.labels.tolist(), np.asarray(areas).tolist(),
                                                image.iscrowd.tolist(), segmentations):
            ann = {"id": len(annotations) + 1, "image_id": int(image_id), "category_id": int(category_ids[label]),
                   "bbox": box, "area": float(area), "iscrowd": int(crowd)}
            if seg is not None:
                ann["segmentation"] = seg
            annotations.append(ann)
    return {"info": {"description": "written by ninshiki"}, "images": images, "annotations": annotations,
            "categories": [{"id": int(c), "name": n} for c, n in zip(category_ids, ds.classes)]}


def _plain(value: Any) -> Any:
    """numpy values inside segmentations, as JSON can hold them."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"write_coco: cannot write a {type(value).__name__} as JSON")


def write_coco(ds: AnnotatedSet, json_path: str | os.PathLike[str], *,
               images_root: str | os.PathLike[str] | None = None) -> None:
    """Write a set as COCO JSON (atomically), one image or annotation per line; see `coco_dict`."""
    encode, parts = json.JSONEncoder(default=_plain).encode, []   # one encoder: json.dumps(default=) makes one a call
    for key, value in coco_dict(ds, images_root=images_root).items():
        if isinstance(value, list) and value:
            rows = ",\n".join("  " + encode(v) for v in value)
            parts.append(f"{encode(key)}: [\n{rows}\n]")
        else:
            parts.append(f"{encode(key)}: {encode(value)}")
    write_text(json_path, "{\n" + ",\n".join(parts) + "\n}\n")


def results_json(detections_per_image: Sequence[Detections], image_ids: Sequence[int],
                 category_ids: Sequence[int]) -> list[dict]:
    """Detections in COCO's result format: one dict (image_id, category_id, bbox xywh, score) per box.

    Args:
        detections_per_image: one `Detections` per image, boxes xyxy in the image's pixels.
        image_ids: the COCO image id of each image.
        category_ids: the COCO category id of each label.
    """
    if len(detections_per_image) != len(image_ids):
        raise ValueError(f"results_json: {len(detections_per_image)} detections for {len(image_ids)} image ids")
    out = []
    for dets, image_id in zip(detections_per_image, image_ids):
        boxes = dets.boxes.detach().cpu().double().numpy()   # (N, 4), xyxy
        boxes[:, 2:] -= boxes[:, :2]                                                      # (N, 4), xywh
        labels = dets.labels.detach().cpu().tolist()
        if labels and (min(labels) < 0 or max(labels) >= len(category_ids)):
            raise ValueError(f"results_json: labels outside 0..{len(category_ids) - 1} for image {image_id}")
        out += [{"image_id": int(image_id), "category_id": int(category_ids[c]), "bbox": box.tolist(),
                 "score": float(s)} for box, c, s in zip(boxes, labels, dets.scores.detach().cpu().tolist())]
    return out
