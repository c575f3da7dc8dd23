"""Ultralytics YOLO segmentation labels: one normalised polygon per object.

One ``<stem>.txt`` per image, found as for YOLO boxes (`yolo.label_path`: the last ``/images/`` becomes
``/labels/``), one line per object: ``class x1 y1 x2 y2 ...``, the vertices of one polygon in continuous
pixel coordinates divided by the image width and height. Read, each object becomes a COCO pixel polygon, the
box of the pixels it draws and their count (as COCO's own ``bbox`` and ``area`` are made from its polygons).

Ultralytics holds one polygon per object. Writing an object of several polygons, or an RLE mask, its pixels
are traced again (`masks.mask_to_polygons`) and the parts joined into one outline by zero-width bridges
between their nearest vertices, as Ultralytics' own COCO converter joins parts (``merge_multi_segment``);
keeping only the largest part would lose pixels, while the bridges cover none, so the written polygon
rasterises to the object's pixels. YOLO has no crowd flag: crowd regions are left out, as Ultralytics'
converter leaves them out (written as objects they would become ordinary class pixels).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import yaml
from faster_coco_eval.core import mask as coco_mask

from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet, AnnotationError, AnnotationLog
from ninshiki.data.formats.common import image_size, warn_dropped
from ninshiki.data.formats.masks import _bridge_holes, mask_to_polygons
from ninshiki.data.formats.rle import decode_segmentation, to_rle
from ninshiki.data.formats.yolo import Source, _image_files, class_names, label_path
from ninshiki.io import write_text

TOLERANCE = 1e-3   # normalised coordinates this far outside [0, 1] are rounding and clipped, not errors
_DIGITS = 6        # decimals written, as Ultralytics writes them


def _parse_line(line: str, path: Path, n: int, num_classes: int) -> tuple[int, np.ndarray]:
    """The class id and the (P, 2) normalised vertices of one label line; errors name the file and line."""
    fields = line.split()
    where = f"{path}:{n}"
    try:
        values = np.array([float(f) for f in fields], dtype=np.float64)
    except ValueError:
        raise AnnotationError(f"{where}: not a number in {line.strip()!r}") from None
    if not (values[0].is_integer() and 0 <= values[0] < num_classes):
        raise AnnotationError(f"{where}: class id {fields[0]} is not one of 0..{num_classes - 1}")
    coords = values[1:]
    if len(coords) % 2:
        raise AnnotationError(f"{where}: odd number of coordinates ({len(coords)}); expected 'class x1 y1 x2 y2 ...'")
    if len(coords) < 6:
        hint = " (this is a box line 'class cx cy w h', not a polygon)" if len(coords) == 4 else ""
        raise AnnotationError(f"{where}: a polygon needs at least 3 points, found {len(coords) // 2}{hint}")
    outside = ~((coords >= -TOLERANCE) & (coords <= 1 + TOLERANCE))   # NaN counts as outside
    if outside.any():
        raise AnnotationError(f"{where}: coordinate {fields[1 + int(np.argmax(outside))]} is outside [0, 1] "
                              "(coordinates are divided by the image width and height)")
    return int(values[0]), np.clip(coords, 0.0, 1.0).reshape(-1, 2)


def _read_labels(path: Path, width: int, height: int, num_classes: int,
                 log: AnnotationLog) -> tuple[np.ndarray, np.ndarray, list[object], np.ndarray]:
    """Boxes (xyxy pixels), labels, COCO polygons and areas (pixels) of one label file."""
    boxes, labels, polygons, areas = [], [], [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        label, points = _parse_line(line, path, n, num_classes)
        polygon = (points * [width, height]).ravel().tolist()            # flat x0, y0, ... in pixels
        rle = to_rle([polygon], height, width)
        area = int(coco_mask.area(rle))
        if area == 0:
            log.dropped.append(f"{path}:{n}: the polygon covers no pixel centre: dropped")
            continue
        x, y, w, h = coco_mask.toBbox(rle).tolist()                       # the drawn pixels' box, as COCO's
        boxes.append([x, y, x + w, y + h])
        labels.append(label)
        polygons.append([polygon])
        areas.append(area)
    return (np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(labels, dtype=np.int64),
            polygons, np.array(areas, dtype=np.float64))


def read_yolo_seg(images_dir: Source | Sequence[Source], labels_dir: Source | None = None, *,
                  names: Sequence[str] | Mapping[int, str]) -> AnnotatedSet:
    """Read YOLO segmentation labels for a folder of images (recursively), a .txt list of images, or several.

    Image sizes come from the file headers (sizes as stored, before EXIF rotation). An image without a label
    file, or with an empty one, has no objects (listed in `log.missing_labels` when the file is missing).
    An object whose polygon covers no pixel centre (a sliver, or all its points on a line) draws nothing: it
    is dropped, logged in `log.dropped` and warned about, like a box of zero size.

    Args:
        images_dir: a folder, a .txt list (relative paths from its folder), or a list of these.
        labels_dir: the folder of label files mirroring the images' folder; default: Ultralytics' rule.
        names: the object class names (no background), a list or Ultralytics' ``{id: name}``.

    Returns:
        The set rooted at the images' folder; boxes xyxy pixel edges of the pixels each polygon draws,
        `segmentations` one COCO pixel polygon per object, `areas` the number of those pixels.

    Raises:
        FileNotFoundError: a source, or an image listed in a .txt list, does not exist.
        AnnotationError: a non-number, a class id outside 0..K-1, an odd number of coordinates, fewer than 3
            points, or a coordinate outside [0, 1] (beyond `TOLERANCE`); the file and line are named.
    """
    classes = class_names(names, f"read_yolo_seg({images_dir})")
    root, files = _image_files(images_dir)
    labels_root = None if labels_dir is None else Path(labels_dir)
    log, images = AnnotationLog(), []
    for file in files:
        path = root / file
        width, height = image_size(path)
        labels_file = label_path(path, images_root=root, labels_dir=labels_root)
        if labels_file.is_file():
            boxes, labels, segmentations, areas = _read_labels(labels_file, width, height, len(classes), log)
        else:
            log.missing_labels.append(f"{path}: no label file {labels_file}")
            boxes, labels, segmentations, areas = np.zeros((0, 4)), np.zeros(0, np.int64), [], np.zeros(0)
        images.append(AnnotatedImage(file=file, width=width, height=height, boxes=boxes, labels=labels,
                                     areas=areas, segmentations=segmentations))
    warn_dropped(log, 0, labels_root or root)
    return AnnotatedSet(classes=classes, images=images, root=root, log=log)


def object_polygon(segmentation: object, width: int, height: int) -> np.ndarray | None:
    """One polygon for one object: its only polygon as given, else its pixels traced and the parts bridged.

    Returns:
        (P, 2) pixel vertices, or None when the object covers no pixel.

    Raises:
        ValueError: a malformed segmentation (see `rle.to_rle`).
    """
    if isinstance(segmentation, list):
        usable = [p for p in segmentation if len(p) >= 6]
        if len(usable) == 1 and len(usable[0]) % 2 == 0:
            return np.asarray(usable[0], dtype=np.float64).reshape(-1, 2)
    mask = decode_segmentation(segmentation, height, width)                       # (H, W) bool
    parts = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in mask_to_polygons(mask)]
    if not parts:
        return None
    return _bridge_holes(parts[0], parts[1:])   # nearest part first: no bridge crosses a part not yet joined


def _label_text(image: AnnotatedImage, where: Path) -> str:
    segmentations = image.segmentations or [None] * len(image)
    lines = []
    for k, (label, crowd, segmentation) in enumerate(zip(image.labels.tolist(), image.iscrowd, segmentations)):
        if crowd:
            continue
        if segmentation is None or segmentation == []:
            raise ValueError(f"write_yolo_seg: {where}: object {k} has no segmentation; YOLO-seg needs a polygon")
        polygon = object_polygon(segmentation, image.width, image.height)
        if polygon is None:
            continue   # an object covering no pixel adds nothing to any class map
        normalised = np.clip(polygon / [image.width, image.height], 0.0, 1.0)    # (P, 2)
        lines.append(f"{label} " + " ".join(f"{v:.{_DIGITS}f}" for v in normalised.ravel()) + "\n")
    return "".join(lines)


def write_yolo_seg(ds: AnnotatedSet, labels_dir: Source, *, images_root: Source | None = None) -> None:
    """Write one YOLO-seg label file per image (an empty one for an image without objects), atomically.

    Each file's path under `labels_dir` mirrors its image's path under `images_root` (default `ds.root`), with
    the extension ``.txt``. See the module docstring for objects of several parts, RLE masks and crowds.

    Raises:
        ValueError: an image outside `images_root`, two images sharing a label file, or an object without a
            segmentation (the image and the object's index named).
    """
    root = ds.root if images_root is None else Path(images_root)
    targets: dict[Path, Path] = {}
    for image in ds.images:
        source = ds.path(image)
        relative = Path(os.path.relpath(source.absolute(), root.absolute()))
        if relative.parts[:1] == ("..",):
            raise ValueError(f"write_yolo_seg: {source} is not inside images_root {root}")
        target = Path(labels_dir) / relative.with_suffix(".txt")
        if target in targets:
            raise ValueError(f"write_yolo_seg: {targets[target]} and {source} would share {target}")
        targets[target] = source
        write_text(target, _label_text(image, source))


def write_data_yaml(yaml_path: Source, *, names: Sequence[str], train: str, val: str | None) -> None:
    """Write an Ultralytics ``data.yaml`` whose ``train`` / ``val`` are relative to the YAML's folder.

    No ``path`` key is written: Ultralytics then takes the YAML's own folder as the dataset root (a relative
    ``path`` would be taken from its datasets folder setting instead), and so does `yolo.read_yolo_yaml`, so
    the folder can be moved.
    """
    data: dict[str, object] = {"train": train}
    if val is not None:
        data["val"] = val
    data["names"] = dict(enumerate(str(name) for name in names))
    write_text(yaml_path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
