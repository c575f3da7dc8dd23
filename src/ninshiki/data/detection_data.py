"""One entry point for detection data: `load_detection_data(spec)` turns what a user passes to ``--data`` into
train and val `AnnotatedSet`s with one class list.

A spec is one of:

- our YAML file: ``format: coco|voc|yolo``, optional ``names``, and per split an entry (paths relative to the
  YAML's folder). COCO: ``{annotations: a.json, images: folder}`` (images optional) or just the JSON path;
  VOC: ``{root: VOC2007, image_set: trainval}`` (image_set optional) or just the root; YOLO: ``{images: folder,
  labels: folder}`` (labels optional) or just the images folder, with ``names`` required. The generated
  dataset writes one as ``coco.yaml``. An optional ``test`` entry is accepted and not loaded here.
- an Ultralytics ``data.yaml`` (``names`` and ``train``, no ``format``);
- a COCO ``.json`` file;
- a VOC root (a folder with ``Annotations/``): train from ``ImageSets/Main/train.txt`` or else ``trainval.txt``,
  val from ``val.txt`` or else ``test.txt``; without image sets, every XML file;
- a folder holding, looked for in this order, ``coco.yaml``, ``data.yaml``, or one ``VOC*/`` folder (a VOC
  root, or a ``VOCdevkit``-style folder holding exactly one).

When a spec gives no val split, `val_fraction` of the images (chosen with `split_seed`) become one, and
`source` says so; with ``val_fraction=0`` val is None. Every split shares the train split's class list: a val
split with other classes is an `AnnotationError`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ninshiki.data.annotations import AnnotatedSet, AnnotationError, AnnotationLog
from ninshiki.data.formats.coco import read_coco
from ninshiki.data.formats.common import read_yaml
from ninshiki.data.formats.voc import read_voc
from ninshiki.data.formats.yolo import class_names, read_yolo, read_yolo_yaml

_KINDS = ("our YAML file (format: coco|voc|yolo), an Ultralytics data.yaml, a COCO .json file, a VOC folder "
          "(with Annotations/), or a folder holding coco.yaml, data.yaml or a VOC*/ folder")
_ENTRY_KEYS = {"coco": ("annotations", "images"), "voc": ("root", "image_set"), "yolo": ("images", "labels")}
_YAML_KEYS = ("format", "names", "train", "val", "test")


@dataclass
class DetectionData:
    """The train and val annotations of a detection dataset, sharing `classes`."""
    train: AnnotatedSet
    val: AnnotatedSet | None
    classes: list[str]
    source: str          # what was read, and how val was made when it was split off

    def summary(self) -> str:
        """A few lines for the log: classes, images and boxes per split, and what the readers repaired."""
        shown = ", ".join(self.classes[:12]) + (", ..." if len(self.classes) > 12 else "")
        lines = [f"{self.source}: {len(self.classes)} classes ({shown})"]
        for name, split in (("train", self.train), ("val", self.val)):
            if split is None:
                lines.append(f"{name}: none")
                continue
            background = sum(1 for image in split.images if len(image) == 0)
            line = (f"{name}: {len(split.images)} images ({background} without objects), "
                    f"{split.num_boxes()} boxes")
            lines.append(line + (f"; {split.log.summary()}" if split.log.summary() else ""))
        return "\n".join(lines)


def _split(ds: AnnotatedSet, seed: int, fraction: float) -> tuple[AnnotatedSet, AnnotatedSet | None]:
    """Split `fraction` of the images (at least one, never all) off as val, chosen by `seed`."""
    n = len(ds.images)
    if fraction == 0 or n < 2:
        return ds, None
    n_val = min(max(1, round(n * fraction)), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    val, train = sorted(order[:n_val].tolist()), sorted(order[n_val:].tolist())
    return (replace(ds, images=[ds.images[i] for i in train]),
            replace(ds, images=[ds.images[i] for i in val], classes=list(ds.classes), log=AnnotationLog()))


def _same_classes(train: AnnotatedSet, val: AnnotatedSet, where: str) -> None:
    if val.classes != train.classes or (val.category_ids or None) != (train.category_ids or None):
        raise AnnotationError(f"{where}: the val split's classes {val.classes} (ids {val.category_ids}) differ "
                              f"from the train split's {train.classes} (ids {train.category_ids})")


def _finish(train: AnnotatedSet, val: AnnotatedSet | None, source: str, seed: int,
            fraction: float) -> DetectionData:
    if val is None:
        train, val = _split(train, seed, fraction)
        if val is not None:
            source += f" (val: {len(val.images)} of its images, split off with seed {seed})"
    return DetectionData(train=train, val=val, classes=list(train.classes), source=source)


def _voc_sets(root: Path) -> tuple[str | None, str | None]:
    main = root / "ImageSets" / "Main"
    train = next((s for s in ("train", "trainval") if (main / f"{s}.txt").is_file()), None)
    val = next((s for s in ("val", "test") if (main / f"{s}.txt").is_file()), None)
    return train, val


def _load_voc(root: Path) -> tuple[AnnotatedSet, AnnotatedSet | None, str]:
    train_set, val_set = _voc_sets(root)
    train = read_voc(root, image_set=train_set)
    val = None if val_set is None or train_set is None else read_voc(root, image_set=val_set, classes=train.classes)
    return train, val, f"VOC {root} ({train_set or 'all'}{f' / {val_set}' if val is not None else ''})"


def _entry(value: Any, fmt: str, where: str) -> dict[str, Any]:
    """A split entry of our YAML as a dict of its format's keys; a plain string is the first key."""
    first, *rest = _ENTRY_KEYS[fmt]
    if isinstance(value, str):
        return {first: value}
    if not isinstance(value, dict) or first not in value:
        raise AnnotationError(f"{where}: expected a path or a mapping with {first!r}, found {value!r}")
    unknown = sorted(set(value) - {first, *rest})
    if unknown:
        raise AnnotationError(f"{where}: unknown key {unknown[0]!r} (a {fmt} entry has {', '.join(_ENTRY_KEYS[fmt])})")
    return value


def _read_entry(entry: dict[str, Any], fmt: str, base: Path, names: list[str] | None) -> AnnotatedSet:
    def path(key: str) -> Path | None:
        return None if entry.get(key) is None else base / str(entry[key])

    if fmt == "coco":
        return read_coco(path("annotations"), images_root=path("images"))
    if fmt == "voc":
        return read_voc(path("root"), image_set=entry.get("image_set"), classes=names)
    return read_yolo(path("images"), classes=names, labels_dir=path("labels"))


def _load_our_yaml(path: Path, data: dict) -> tuple[AnnotatedSet, AnnotatedSet | None, str]:
    fmt = data["format"]
    if fmt not in _ENTRY_KEYS:
        raise AnnotationError(f"{path}: format: expected one of {', '.join(_ENTRY_KEYS)}, found {fmt!r}")
    unknown = sorted(set(data) - set(_YAML_KEYS))
    if unknown:
        raise AnnotationError(f"{path}: unknown key {unknown[0]!r} (expected {', '.join(_YAML_KEYS)})")
    if "train" not in data:
        raise AnnotationError(f"{path}: no 'train' entry")
    names = class_names(data["names"], f"{path}: names") if data.get("names") is not None else None
    if fmt == "yolo" and names is None:
        raise AnnotationError(f"{path}: a yolo dataset needs 'names'")
    train = _read_entry(_entry(data["train"], fmt, f"{path}: train"), fmt, path.parent, names)
    if names is not None and train.classes != names:
        raise AnnotationError(f"{path}: names {names} differ from the classes of the train annotations "
                              f"{train.classes}")
    val = None
    if data.get("val") is not None:
        val = _read_entry(_entry(data["val"], fmt, f"{path}: val"), fmt, path.parent, names or train.classes)
        _same_classes(train, val, f"{path}: val")
    return train, val, f"{fmt.upper()} dataset {path}"


def _load_yaml(path: Path) -> tuple[AnnotatedSet, AnnotatedSet | None, str]:
    data = read_yaml(path)
    if isinstance(data, dict) and "format" in data:
        return _load_our_yaml(path, data)
    if isinstance(data, dict) and "train" in data and ("names" in data or "nc" in data):
        info = read_yolo_yaml(path)
        train = read_yolo(info["train"], classes=info["names"])
        val = None if info["val"] is None else read_yolo(info["val"], classes=info["names"])
        return train, val, f"Ultralytics YOLO dataset {path}"
    raise AnnotationError(f"{path}: neither our dataset YAML (no 'format') nor an Ultralytics data.yaml "
                          f"(no 'train' and 'names')")


def _voc_in(folder: Path) -> Path | None:
    """The one VOC root among folder/VOC*/ and folder/VOC*/VOC*/, or None."""
    roots = []
    for sub in sorted(p for p in folder.glob("VOC*") if p.is_dir()):
        roots += [sub] if (sub / "Annotations").is_dir() else [
            p for p in sorted(sub.glob("VOC*")) if (p / "Annotations").is_dir()]
    if len(roots) > 1:
        raise ValueError(f"{folder}: several VOC folders ({', '.join(str(r) for r in roots)}); pass one of them")
    return roots[0] if roots else None


def _load(path: Path) -> tuple[AnnotatedSet, AnnotatedSet | None, str]:
    if path.is_dir():
        if (path / "Annotations").is_dir():
            return _load_voc(path)
        for name in ("coco.yaml", "data.yaml"):
            if (path / name).is_file():
                return _load_yaml(path / name)
        voc = _voc_in(path)
        if voc is not None:
            return _load_voc(voc)
        raise ValueError(f"{path}: no detection data found here; expected {_KINDS}")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return _load_yaml(path)
    if suffix == ".json":
        return read_coco(path), None, f"COCO {path}"
    raise ValueError(f"{path}: not detection data; expected {_KINDS}")


def load_detection_data(spec: str | os.PathLike[str], *, split_seed: int = 0,
                        val_fraction: float = 0.1) -> DetectionData:
    """Read a detection dataset from any spec the module docstring lists.

    Args:
        spec: a YAML file, a COCO JSON file, or a folder.
        split_seed: seeds the choice of val images when the spec has no val split.
        val_fraction: the fraction of images split off as val when there is none (0 for no val).

    Raises:
        FileNotFoundError: `spec` or a file it names does not exist.
        ValueError: `val_fraction` outside [0, 1), or a folder without detection data.
        AnnotationError: a malformed file, or splits whose classes differ.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{spec}: no such file or folder")
    train, val, source = _load(path)
    return _finish(train, val, source, split_seed, val_fraction)
