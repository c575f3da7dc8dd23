"""YOLO text labels and the Ultralytics ``data.yaml`` (the format of Redmon et al.'s darknet, as Ultralytics uses it).

One ``<stem>.txt`` per image, one line per object: ``class cx cy w h`` with the centre and size divided by the
image width and height (cxcywh, normalised to [0, 1]). Labels are found by Ultralytics' rule: the last
``/images/`` in the image path becomes ``/labels/`` and the extension ``.txt`` (beside the image when the
path has no ``images`` folder), unless a labels folder is given. YOLO has no crowd or difficult flags: the
writer writes every box as an ordinary object (Ultralytics' own converters drop crowd and difficult boxes
instead).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet, AnnotationError, AnnotationLog
from ninshiki.data.formats.common import clean_boxes, image_size, read_yaml, warn_dropped
from ninshiki.data.formats.imagefolder import is_image_file
from ninshiki.io import write_text

Source = str | os.PathLike[str]
_DIGITS = 6  # decimals written: 0.5e-6 of the image side, under 1e-3 px up to 2,000 px images


def class_names(classes: Sequence[str] | Mapping[int, str], where: str) -> list[str]:
    """Class names from a list or an Ultralytics ``{id: name}`` dict (ids must be 0..K-1)."""
    if isinstance(classes, Mapping):
        ids = sorted(classes)
        if ids != list(range(len(ids))):
            raise AnnotationError(f"{where}: class ids must be 0..{len(ids) - 1} without gaps, found {ids}")
        classes = [classes[i] for i in ids]
    names = [str(name) for name in classes]
    if not names:
        raise AnnotationError(f"{where}: no class names")
    return names


def _walk_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _listed_images(listing: Path) -> list[Path]:
    """The image paths of a .txt list, relative ones taken from the list's folder."""
    files = []
    for n, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            path = listing.parent / line.strip().removeprefix("./")   # an absolute path stays absolute
            if not path.is_file():
                raise FileNotFoundError(f"{listing}:{n}: {path}: no such image file")
            files.append(path)
    return files


def _image_files(images: Source | Sequence[Source]) -> tuple[Path, list[Path]]:
    """The common folder of the sources, and every image path relative to it (or absolute)."""
    sources = [Path(images)] if isinstance(images, str | os.PathLike) else [Path(s) for s in images]
    found, bases = [], []
    for source in sources:
        if source.is_dir():
            bases.append(source)
            found += _walk_images(source)
        elif source.is_file() and source.suffix.lower() == ".txt":
            bases.append(source.parent)
            found += _listed_images(source)
        elif source.exists():
            raise ValueError(f"{source}: neither a folder of images nor a .txt list of image paths")
        else:
            raise FileNotFoundError(f"{source}: no such folder or image list")
    if not found:
        raise ValueError(f"{', '.join(map(str, sources))}: no image files found")
    root = bases[0] if len(set(bases)) == 1 else Path(os.path.commonpath([b.absolute() for b in bases]))
    files = []
    for path in found:
        try:
            files.append(path.absolute().relative_to(root.absolute()))
        except ValueError:  # a listed file outside the list's folder
            files.append(path.absolute())
    return root, files


def label_path(image: Path, *, images_root: Path | None = None, labels_dir: Path | None = None) -> Path:
    """Where the label file of `image` is: under `labels_dir` mirroring `images_root`, else Ultralytics' rule."""
    if labels_dir is not None and images_root is not None:
        relative = Path(os.path.relpath(image.absolute(), images_root.absolute()))
        return labels_dir / (relative if relative.parts[0] != ".." else Path(image.name)).with_suffix(".txt")
    text, images, labels = str(image.absolute()), f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if images in text:
        text = labels.join(text.rsplit(images, 1))
    return Path(text).with_suffix(".txt")


def _read_labels(path: Path, width: int, height: int, num_classes: int,
                 log: AnnotationLog) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (xyxy pixels) and labels of one label file; see `read_yolo` for the checks."""
    rows, labels, lines = [], [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise AnnotationError(f"{path}:{n}: expected 5 numbers 'class cx cy w h', found {len(fields)} "
                                  f"fields: {line.strip()!r}")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise AnnotationError(f"{path}:{n}: not a number in {line.strip()!r}") from None
        if not (values[0].is_integer() and 0 <= values[0] < num_classes):
            raise AnnotationError(f"{path}:{n}: class id {fields[0]} is not one of 0..{num_classes - 1}")
        rows.append(values[1:])
        labels.append(int(values[0]))
        lines.append(n)
    cxcywh = np.array(rows, dtype=np.float64).reshape(-1, 4) * [width, height, width, height]   # (N, 4) pixels
    xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
    boxes, keep = clean_boxes(xyxy, width, height, lambda i: f"{path}:{lines[i]}", log)
    return boxes[keep], np.array(labels, dtype=np.int64)[keep]


def read_yolo(images_dir: Source | Sequence[Source], *, classes: Sequence[str] | Mapping[int, str],
              labels_dir: Source | None = None) -> AnnotatedSet:
    """Read YOLO labels for a folder of images (searched recursively), a .txt list of image paths, or several.

    Image sizes come from the file headers (no pixels decoded; sizes as stored, before EXIF rotation, which
    the normalised coordinates refer to). An image without a label file is a background image, listed in
    `log.missing_labels`; an empty label file is a background image too.

    Args:
        images_dir: a folder, a .txt list (relative paths from its folder), or a list of these.
        classes: the class names, as a list or Ultralytics' ``{id: name}``.
        labels_dir: the folder of label files mirroring the images' folder; default: Ultralytics' rule.

    Returns:
        The set rooted at the images' (common) folder; boxes xyxy pixels.

    Raises:
        FileNotFoundError: a source, or an image listed in a .txt list, does not exist.
        AnnotationError: a line that is not 5 numbers, or a class id outside 0..K-1 (file and line named).
    """
    names = class_names(classes, f"read_yolo({images_dir})")
    root, files = _image_files(images_dir)
    labels_root = None if labels_dir is None else Path(labels_dir)
    log, images = AnnotationLog(), []
    for file in files:
        path = root / file
        width, height = image_size(path)
        labels_file = label_path(path, images_root=root, labels_dir=labels_root)
        if labels_file.is_file():
            boxes, labels = _read_labels(labels_file, width, height, len(names), log)
        else:
            log.missing_labels.append(f"{path}: no label file {labels_file}")
            boxes, labels = np.zeros((0, 4)), np.zeros(0, dtype=np.int64)
        images.append(AnnotatedImage(file=file, width=width, height=height, boxes=boxes, labels=labels))
    warn_dropped(log, 0, labels_root or root)
    return AnnotatedSet(classes=names, images=images, root=root, log=log)


def _split_paths(value: Any, base: Path, where: str) -> list[Path] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [base / value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return [base / v for v in value]
    raise AnnotationError(f"{where}: expected a path or a list of paths, found {value!r}")


def read_yolo_yaml(yaml_path: Source) -> dict:
    """Read an Ultralytics ``data.yaml``.

    A relative ``path`` is taken from the YAML file's folder (Ultralytics takes it from its own datasets
    folder setting, which other machines do not share); no ``path`` means that folder. ``train``, ``val``
    and ``test`` are relative to ``path``: a folder, a .txt list of images, or a list of these.

    Returns:
        ``{"path": Path, "train": [Path, ...], "val": [Path, ...] | None, "test": [Path, ...] | None,
        "names": [str, ...]}``

    Raises:
        FileNotFoundError: no such file.
        AnnotationError: malformed YAML (line named), no ``train``, or no usable ``names``/``nc``.
    """
    path = Path(yaml_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    data = read_yaml(path)
    if not isinstance(data, dict) or "train" not in data:
        raise AnnotationError(f"{path}: not an Ultralytics data.yaml (expected a mapping with 'train' and 'names')")
    if "names" in data:
        if not isinstance(data["names"], list | dict):
            raise AnnotationError(f"{path}: names: expected a list or an {{id: name}} mapping")
        names = class_names(data["names"], f"{path}: names")
    elif isinstance(data.get("nc"), int):
        names = [f"class_{i}" for i in range(data["nc"])]   # Ultralytics' default names
    else:
        raise AnnotationError(f"{path}: no 'names' (and no 'nc')")
    if "nc" in data and data["nc"] != len(names):
        raise AnnotationError(f"{path}: nc is {data['nc']} but {len(names)} names are given")
    base = path.parent / data["path"] if isinstance(data.get("path"), str) else path.parent
    splits = {key: _split_paths(data.get(key), base, f"{path}: {key}") for key in ("train", "val", "test")}
    return {"path": base, **splits, "names": names}


def _label_text(image: AnnotatedImage) -> str:
    xyxy = image.boxes
    cxcywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)   # (N, 4)
    cxcywh /= [image.width, image.height, image.width, image.height]                               # normalised
    return "".join(f"{label} " + " ".join(f"{v:.{_DIGITS}f}" for v in row) + "\n"
                   for label, row in zip(image.labels, cxcywh))


def write_yolo(ds: AnnotatedSet, labels_dir: Source, *, images_root: Source | None = None) -> None:
    """Write one label file per image (an empty one for a background image), atomically.

    Each file's path under `labels_dir` mirrors its image's path under `images_root` (default `ds.root`),
    with the extension ``.txt``; values are written with 6 decimals.

    Raises:
        ValueError: an image lies outside `images_root`, or two images would share a label file.
    """
    root = ds.root if images_root is None else Path(images_root)
    targets: dict[Path, Path] = {}
    for image in ds.images:
        relative = Path(os.path.relpath(ds.path(image).absolute(), root.absolute()))
        if relative.parts[:1] == ("..",):
            raise ValueError(f"write_yolo: {ds.path(image)} is not inside images_root {root}")
        target = Path(labels_dir) / relative.with_suffix(".txt")
        if target in targets:
            raise ValueError(f"write_yolo: {targets[target]} and {ds.path(image)} would share {target}")
        targets[target] = ds.path(image)
        write_text(target, _label_text(image))


def write_yolo_yaml(yaml_path: Source, *, classes: Sequence[str], train: Source | Sequence[Source],
                    val: Source | Sequence[Source] | None, path: Source = ".") -> None:
    """Write an Ultralytics ``data.yaml`` (names as ``{id: name}``), atomically; paths relative to `path`."""
    def plain(value: Source | Sequence[Source]) -> str | list[str]:
        return Path(value).as_posix() if isinstance(value, str | os.PathLike) else [Path(v).as_posix() for v in value]

    data: dict[str, Any] = {"path": Path(path).as_posix(), "train": plain(train)}
    if val is not None:
        data["val"] = plain(val)
    data["names"] = dict(enumerate(str(name) for name in classes))
    write_text(yaml_path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
