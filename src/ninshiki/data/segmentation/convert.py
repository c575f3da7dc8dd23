"""Convert segmentation data between class-map PNGs, COCO and YOLO-seg.

Instances become class maps by drawing them (`draw.draw_label_mask`: value ``label + 1``, crowds ignored).
Class maps become instances one connected region (8-connected) per class per image: a class map does not
say where one object ends and the next of its class begins, so instance identity cannot be recovered, and
two touching cars become one "car". Each region is traced exactly (`masks.mask_to_polygons`), so the
polygons draw back to the very same pixels; ignored pixels (255) have no class and are not written, so they
come back as background. When the first class is background, mask value ``v`` is COCO label ``v - 1``;
otherwise (Cityscapes: class 0 is road) every class is a COCO category and mask value ``v`` is label ``v``.

A converted folder is complete and loadable by `load_segmentation_data`: images are hard-linked (or copied)
into ``images/<split>/``, never moved; class maps go to ``masks/<split>/`` with ``classes.csv``, COCO files to
``annotations/instances_<split>.json`` with ``coco.yaml``, YOLO-seg labels to ``labels/<split>/`` with
``data.yaml``. Nothing is written inside the source; every file is written atomically.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import yaml

from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet
from ninshiki.data.formats.coco import write_coco
from ninshiki.data.formats.masks import mask_to_polygons, write_index_mask, write_palette_mask
from ninshiki.data.formats.voc import _place
from ninshiki.data.formats.yolo_seg import write_data_yaml, write_yolo_seg
from ninshiki.data.segmentation.draw import is_background
from ninshiki.data.segmentation.layouts import from_annotated
from ninshiki.data.segmentation.types import SegmentationSet, load_label_mask
from ninshiki.data.segmentation_data import load_segmentation_data
from ninshiki.io import write_text

TARGETS = ("masks", "coco", "yolo-seg")
Colour = tuple[int, int, int]


def _check_out(out: Path, protected: list[Path]) -> None:
    """Refuse an output folder that is, or lies inside, a source folder."""
    target = out.expanduser().resolve()
    for folder in protected:
        source = folder.expanduser().resolve()
        if target == source or source in target.parents:
            raise ValueError(f"{out}: lies inside the source {folder}; write the converted data elsewhere")


def write_semantic_masks(annotated_set: AnnotatedSet, out_dir: str | os.PathLike[str], *,
                         palette: bool = True) -> list[Path]:
    """Draw each image's instances into a class-map PNG, ``out_dir/<image path>.png`` mirroring `annotated_set.root`.

    Values: 0 background, ``label + 1`` per object, 255 for crowd regions; VOC palette PNGs (`palette`) or
    grey index PNGs.

    Returns:
        The written mask paths, in image order.

    Raises:
        ValueError: `out_dir` is, or is inside, the images' root folder.
        AnnotationError: an object without a segmentation (the image and object named).
    """
    out = Path(out_dir)
    _check_out(out, [annotated_set.root])
    seg_set = from_annotated(annotated_set)
    written = []
    for item in seg_set.items:
        labels = load_label_mask(seg_set, item)                                 # (H, W) uint8
        target = out / _inside(seg_set.path(item), seg_set.root).with_suffix(".png")
        (write_palette_mask if palette else write_index_mask)(target, labels)
        written.append(target)
    return written


def _inside(path: Path, root: Path) -> Path:
    relative = Path(os.path.relpath(path.absolute(), root.absolute()))
    return Path(path.name) if relative.parts[:1] == ("..",) else relative


def _images_folder(seg_set: SegmentationSet) -> Path:
    """The deepest folder holding every image of the set (the split's images folder)."""
    parents = [str(seg_set.path(item).absolute().parent) for item in seg_set.items]
    return Path(os.path.commonpath(parents)) if parents else seg_set.root


def object_classes(classes: list[str]) -> tuple[list[str], int]:
    """The instance classes of a class list and the mask value of instance label 0 (1 after a background)."""
    return (list(classes[1:]), 1) if is_background(classes[0]) else (list(classes), 0)


def class_map_instances(labels: np.ndarray, *, first_value: int, num_classes: int,
                        ignore_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[object]]:
    """One instance per 8-connected region of each class of a class map.

    Args:
        labels: the class map.
        first_value: the mask value of instance label 0 (values below it are background).
        num_classes: the number of classes in the map (values at or above it, and `ignore_index`, are skipped).
        ignore_index: the value of unlabelled pixels.

    Returns:
        boxes (N, 4) xyxy pixel edges, labels (N,), areas (N,) in pixels, COCO polygons per instance.

    Shape:
        labels: (H, W) integer class indices.
    """
    boxes, names, areas, polygons = [], [], [], []
    for value in np.unique(labels).tolist():
        if value < first_value or value >= num_classes or value == ignore_index:
            continue
        count, parts, stats, _ = cv2.connectedComponentsWithStats((labels == value).astype(np.uint8), connectivity=8)
        for k in range(1, count):
            x, y, w, h, area = stats[k].tolist()
            crop = parts[y:y + h, x:x + w] == k                                      # (h, w) this region
            boxes.append([x, y, x + w, y + h])
            names.append(value - first_value)
            areas.append(area)
            polygons.append(mask_to_polygons(crop, offset=(x, y)))
    return (np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(names, dtype=np.int64),
            np.array(areas, dtype=np.float64), polygons)


def to_annotated(seg_set: SegmentationSet) -> AnnotatedSet:
    """The set as instances: its own annotations when drawn from polygons, else traced from its class maps.

    Files are relative to the split's images folder (`_images_folder`); see the module docstring for what a
    class map can and cannot give.
    """
    folder = _images_folder(seg_set)
    names, first = object_classes(seg_set.classes)
    images = []
    for item in seg_set.items:
        file = _inside(seg_set.path(item), folder)
        if item.mask is None and item.annotation is not None:   # drawn from polygons: class 0 is background
            images.append(replace(item.annotation, file=file))
            continue
        labels = load_label_mask(seg_set, item)                                          # (H, W) uint8
        boxes, classes, areas, polygons = class_map_instances(labels, first_value=first, num_classes=len(
            seg_set.classes), ignore_index=seg_set.ignore_index)
        images.append(AnnotatedImage(file=file, width=labels.shape[1], height=labels.shape[0], boxes=boxes,
                                     labels=classes, areas=areas, segmentations=polygons))
    return AnnotatedSet(classes=names, images=images, root=folder)


def _link_images(seg_set: SegmentationSet, target: Path) -> None:
    folder = _images_folder(seg_set)
    for item in seg_set.items:
        _place(seg_set.path(item), target / _inside(seg_set.path(item), folder))


def _classes_csv(classes: list[str], colours: list[Colour]) -> str:
    rows = [f"{k},{name},{r},{g},{b}" for k, (name, (r, g, b)) in enumerate(zip(classes, colours))]
    return "index,name,r,g,b\n" + "".join(row + "\n" for row in rows)


def _write_split(seg_set: SegmentationSet, split: str, out: Path, to: str, palette: bool) -> None:
    images = out / "images" / split
    _link_images(seg_set, images)
    if to == "masks":
        folder = _images_folder(seg_set)
        for item in seg_set.items:
            labels = load_label_mask(seg_set, item)                                      # (H, W) uint8
            target = out / "masks" / split / _inside(seg_set.path(item), folder).with_suffix(".png")
            (write_palette_mask if palette else write_index_mask)(target, labels)
        return
    annotated = replace(to_annotated(seg_set), root=images)
    if to == "coco":
        write_coco(annotated, out / "annotations" / f"instances_{split}.json", images_root=images)
    else:
        write_yolo_seg(annotated, out / "labels" / split, images_root=images)


def convert_segmentation(src_spec: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, to: str = "masks",
                         palette: bool = True) -> Path:
    """Convert a segmentation dataset (any `load_segmentation_data` spec) to class-map PNGs, COCO or YOLO-seg.

    Both splits are converted when the source has a val split (none is split off). See the module docstring
    for the layout written and what each direction keeps.

    Args:
        src_spec: the source: a folder, a YAML file or a COCO JSON file.
        out_dir: a new folder, or one a previous conversion wrote; never inside the source.
        to: ``masks``, ``coco`` or ``yolo-seg``.
        palette: class maps as VOC palette PNGs (else grey index PNGs); for ``masks``.

    Returns:
        `out_dir`.

    Raises:
        ValueError: an unknown target, or `out_dir` inside the source.
        FileExistsError: ``images/`` there already holds another file of an image's name.
    """
    if to not in TARGETS:
        raise ValueError(f"unknown segmentation format {to!r}; expected one of {', '.join(TARGETS)}")
    source, out = Path(src_spec), Path(out_dir)
    data = load_segmentation_data(source, val_fraction=0)
    splits = [("train", data.train)] + ([("val", data.val)] if data.val is not None else [])
    _check_out(out, [source if source.is_dir() else source.parent] + [s.root for _, s in splits])
    for split, seg_set in splits:
        _write_split(seg_set, split, out, to, palette)
    names, _ = object_classes(data.classes)
    val = "val" if data.val is not None else None
    if to == "masks":
        write_text(out / "classes.csv", _classes_csv(data.classes, data.colours))
    elif to == "coco":
        spec = {"format": "coco", "names": names, **{s: {"annotations": f"annotations/instances_{s}.json",
                                                         "images": f"images/{s}"} for s, _ in splits}}
        write_text(out / "coco.yaml", yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    else:
        write_data_yaml(out / "data.yaml", names=names, train="images/train", val=val and "images/val")
    return out
