"""Our dataset YAML for semantic segmentation (what `segmentation_data` documents), read into `SegmentationSet`s.

Example::

    format: masks                   # masks | voc | coco | yolo-seg | cityscapes
    names: [background, cat, dog]   # background included; or {0: background, 1: cat, 2: dog}
    colors: [[0, 0, 0], [128, 0, 0], [0, 128, 0]]   # optional, RGB per class
    ignore_index: 255               # optional; must not be a class index
    id_map: {0: 0, 38: 1, 75: 2}    # optional: stored mask value -> class index or "ignore"; the rest ignored
    train: {images: images/train, masks: masks/train}
    val: {images: images/val, masks: masks/val}

`names` is required for ``masks`` and ``yolo-seg``; for the others it replaces (voc, cityscapes) or must
equal (coco) what the files give. Mask values index `names` as they are. A polygon format (coco, yolo-seg)
draws class ``k + 1`` for annotated class ``k``, class 0 being background: when its `names` do not start with
a background name they are taken as the object classes alone (as a detection YAML lists them) and
``background`` is prepended. `id_map` applies to mask files only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ninshiki.data.annotations import AnnotationError
from ninshiki.data.formats.cityscapes import CITYSCAPES_CLASSES, read_cityscapes
from ninshiki.data.formats.coco import read_coco
from ninshiki.data.formats.yolo import class_names
from ninshiki.data.formats.yolo_seg import read_yolo_seg
from ninshiki.data.segmentation.draw import is_background
from ninshiki.data.segmentation.layouts import from_annotated, read_mask_folder, read_voc_segmentation
from ninshiki.data.segmentation.types import IGNORE_INDEX, SegmentationSet

FORMATS = ("masks", "voc", "coco", "yolo-seg", "cityscapes")
_ENTRY_KEYS = {"masks": ("images", "masks"), "voc": ("root", "image_set"), "coco": ("annotations", "images"),
               "yolo-seg": ("images", "labels"), "cityscapes": ("root", "split")}
_YAML_KEYS = ("format", "names", "colors", "ignore_index", "id_map", "train", "val", "test")
_MAX_MASK_VALUE = 65535


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list | dict):
        raise AnnotationError(f"{where}: expected a list of class names or an {{id: name}} mapping, found {value!r}")
    names = class_names(value, where)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise AnnotationError(f"{where}: class name {repeated[0]!r} appears twice")
    return names


def _colours(value: Any, count: int, where: str) -> list[tuple[int, int, int]]:
    if not isinstance(value, list) or len(value) != count:
        raise AnnotationError(f"{where}: expected a list of {count} [r, g, b] colours, one per class")
    for k, colour in enumerate(value):
        if not (isinstance(colour, list) and len(colour) == 3 and all(_integer(c) and 0 <= c <= 255 for c in colour)):
            raise AnnotationError(f"{where}[{k}]: expected [r, g, b] with integers in 0..255, found {colour!r}")
    return [tuple(colour) for colour in value]


def _id_map(value: Any, count: int, ignore: int, where: str) -> np.ndarray:
    """(65536,) uint8 lookup table: stored value -> class index; values not listed -> `ignore`."""
    if not isinstance(value, dict) or not value:
        raise AnnotationError(f"{where}: expected a mapping {{stored mask value: class index or 'ignore'}}")
    table = np.full(_MAX_MASK_VALUE + 1, ignore, dtype=np.uint8)
    for stored, target in value.items():
        if not (_integer(stored) and 0 <= stored <= _MAX_MASK_VALUE):
            raise AnnotationError(f"{where}: key {stored!r} is not a mask value in 0..{_MAX_MASK_VALUE}")
        if target == "ignore":
            target = ignore
        if not (_integer(target) and (0 <= target < count or target == ignore)):
            raise AnnotationError(f"{where}.{stored}: {target!r} is neither a class index 0..{count - 1} nor "
                                  f"'ignore' ({ignore})")
        table[stored] = target
    return table


def _entry(value: Any, fmt: str, where: str) -> dict[str, Any]:
    """A split entry as a dict of its format's keys; a plain string is the first key (not for masks)."""
    keys = _ENTRY_KEYS[fmt]
    if isinstance(value, str) and fmt != "masks":
        return {keys[0]: value}
    required = keys if fmt == "masks" else keys[:1]
    if not isinstance(value, dict) or any(key not in value for key in required):
        raise AnnotationError(f"{where}: expected {'a path or ' if fmt != 'masks' else ''}a mapping with "
                              f"{' and '.join(repr(k) for k in required)}, found {value!r}")
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise AnnotationError(f"{where}: unknown key {unknown[0]!r} (a {fmt} entry has {', '.join(keys)})")
    return value


def _read_entry(entry: dict[str, Any], fmt: str, split: str, base: Path, names: list[str] | None,
                where: str) -> SegmentationSet:
    def path(key: str) -> Path | None:
        return None if entry.get(key) is None else base / str(entry[key])

    if fmt == "masks":
        return read_mask_folder(path("images"), path("masks"), root=base, classes=names)
    if fmt == "voc":
        return read_voc_segmentation(path("root"), str(entry.get("image_set") or split), classes=names)
    if fmt == "cityscapes":
        return read_cityscapes(path("root"), str(entry.get("split") or split))
    if fmt == "coco":
        ds = from_annotated(read_coco(path("annotations"), images_root=path("images")))
        if names is not None and ds.classes != names:
            raise AnnotationError(f"{where}: names {names} differ from the COCO file's ['background', "
                                  f"*categories] {ds.classes}")
        return ds
    return from_annotated(read_yolo_seg(path("images"), path("labels"), names=names[1:]))


def _check_names(fmt: str, names: list[str] | None, has_id_map: bool, where: str) -> None:
    if names is None and fmt in ("masks", "yolo-seg"):
        raise AnnotationError(f"{where}: a {fmt} dataset needs 'names' (background first)")
    if names is not None and fmt == "cityscapes" and not has_id_map and len(names) != len(CITYSCAPES_CLASSES):
        raise AnnotationError(f"{where}: names: the Cityscapes id map gives {len(CITYSCAPES_CLASSES)} classes, "
                              f"found {len(names)} names; give an id_map for another mapping")


def _apply(ds: SegmentationSet, data: dict, names: list[str] | None, where: str) -> SegmentationSet:
    """The YAML's names, colours, ignore index and id map, checked against the set's classes."""
    if names is not None:
        ds.classes = list(names)
    count = len(ds.classes)
    ignore = data.get("ignore_index", IGNORE_INDEX)
    if not (_integer(ignore) and count <= ignore <= 255):
        raise AnnotationError(f"{where}: ignore_index: expected an integer in {count}..255 (not a class index), "
                              f"found {ignore!r}")
    ds.ignore_index = ignore
    if data.get("colors") is not None:
        ds.colours = _colours(data["colors"], count, f"{where}: colors")
    if data.get("id_map") is not None:   # mask formats only (checked by load_our_yaml)
        ds.id_map = _id_map(data["id_map"], count, ignore, f"{where}: id_map")
    elif ds.id_map is not None and ds.ignore_index != IGNORE_INDEX:   # the Cityscapes table ignores with 255
        ds.id_map = np.where(ds.id_map == IGNORE_INDEX, ds.ignore_index, ds.id_map).astype(np.uint8)
    return ds


def load_our_yaml(path: Path, data: dict) -> tuple[SegmentationSet, SegmentationSet | None, str]:
    """The train and val sets of our YAML file `path` (parsed as `data`).

    Raises:
        AnnotationError: an unknown format or key (named), a missing entry, or invalid names, colors,
            ignore_index or id_map (the key named).
    """
    fmt = data["format"]
    if fmt not in FORMATS:
        raise AnnotationError(f"{path}: format: expected one of {', '.join(FORMATS)}, found {fmt!r}")
    unknown = sorted(set(data) - set(_YAML_KEYS), key=str)
    if unknown:
        raise AnnotationError(f"{path}: unknown key {unknown[0]!r} (expected {', '.join(_YAML_KEYS)})")
    if "train" not in data:
        raise AnnotationError(f"{path}: no 'train' entry")
    names = _names(data["names"], f"{path}: names") if data.get("names") is not None else None
    if names is not None and fmt in ("coco", "yolo-seg") and not is_background(names[0]):
        names = ["background", *names]   # the object classes alone, as a detection YAML lists them
    if data.get("id_map") is not None and fmt in ("coco", "yolo-seg"):
        raise AnnotationError(f"{path}: id_map: applies to mask files only; a {fmt} dataset's class maps are "
                              "drawn from polygons")
    _check_names(fmt, names, data.get("id_map") is not None, str(path))
    sets = []
    for split in ("train", "val"):
        if data.get(split) is None:
            sets.append(None)
            continue
        entry = _entry(data[split], fmt, f"{path}: {split}")
        ds = _read_entry(entry, fmt, split, path.parent, names, f"{path}: {split}")
        sets.append(_apply(ds, data, names if fmt in ("masks", "voc", "cityscapes") else None, str(path)))
    return sets[0], sets[1], f"{fmt} dataset {path}"
