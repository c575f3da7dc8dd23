"""One entry point for semantic segmentation data: `load_segmentation_data(spec)` turns what a user passes to
``--data`` into train and val `SegmentationSet`s with one class list.

A spec is one of:

- a mask folder (the generated shapes data set is one): ``images/`` and ``masks/`` holding the same relative
  paths, masks as index or palette PNGs, optionally split into ``train/`` and ``val/`` (or ``valid/``) in
  both; class names (and colours) from ``classes.csv`` or ``classes.txt`` (see `layouts.read_class_list`);
- a PASCAL VOC root (``ImageSets/Segmentation``, ``SegmentationClass``, ``JPEGImages``): ``train.txt`` and
  ``val.txt``, or ``trainval.txt`` and a split; background + the 20 VOC classes, 255 ignored; or a folder
  (``VOCdevkit``) holding exactly one such ``VOC*/``;
- a Cityscapes root (``leftImg8bit/``, ``gtFine/``): the 19 train classes through the official id map;
- a COCO ``.json`` file (polygons or RLE), or an Ultralytics YOLO-seg ``data.yaml``: classes
  ``["background", *names]``, class maps drawn from the polygons; a folder holding none of the above but a
  ``coco.yaml`` (our YAML) or a ``data.yaml``, looked for in this order, is read through it;
- our YAML: ``format: masks|voc|coco|yolo-seg|cityscapes``, ``names`` (background included, a list or
  ``{id: name}``; for coco and yolo-seg, names without background are the object classes), optional ``colors`` (``[r, g, b]`` per class), ``ignore_index`` (default 255), ``id_map``
  (stored mask value -> class index or ``ignore``; values it does not list are ignored), and per split an
  entry, paths relative to the YAML's folder: masks ``{images, masks}``; voc ``{root, image_set}`` or the root;
  coco ``{annotations, images}`` or the JSON; yolo-seg ``{images, labels}`` or the images; cityscapes
  ``{root, split}`` or the root (image set and split default to the entry's name). An optional ``test``
  entry is accepted and not loaded. Unknown keys are errors.

When a spec gives no val split, `val_fraction` of the images (chosen with `split_seed`) become one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ninshiki.data.annotations import AnnotationError, AnnotationLog
from ninshiki.data.formats.cityscapes import cityscapes_splits, is_cityscapes_root, read_cityscapes
from ninshiki.data.formats.coco import read_coco
from ninshiki.data.formats.common import read_yaml
from ninshiki.data.formats.masks import voc_palette
from ninshiki.data.formats.yolo import read_yolo_yaml
from ninshiki.data.formats.yolo_seg import read_yolo_seg
from ninshiki.data.segmentation.layouts import (
    check_mask_header,
    check_mask_sizes,
    find_class_list,
    from_annotated,
    is_voc_segmentation_root,
    mask_size_problem,
    read_class_list,
    read_mask_folder,
    read_voc_segmentation,
    voc_segmentation_sets,
)
from ninshiki.data.segmentation.types import SegmentationSet, load_label_mask
from ninshiki.data.segmentation.yaml_spec import load_our_yaml

_KINDS = ("a mask folder (images/ and masks/ with classes.csv or classes.txt), a VOC root (ImageSets/Segmentation, "
          "SegmentationClass), a VOCdevkit folder, a Cityscapes root (leftImg8bit/, gtFine/), a COCO .json file, "
          "an Ultralytics YOLO-seg data.yaml, our YAML (format: masks|voc|coco|yolo-seg|cityscapes), or a folder "
          "holding coco.yaml or data.yaml")
_VAL_NAMES = ("val", "valid", "validation")
Colour = tuple[int, int, int]


@dataclass
class SegmentationData:
    """The train and val splits of a semantic segmentation dataset, sharing `classes`."""
    train: SegmentationSet
    val: SegmentationSet | None
    classes: list[str]
    colours: list[Colour]   # RGB per class: the dataset's own, else the VOC palette's
    source: str             # what was read, and how val was made when it was split off

    def summary(self) -> str:
        """A few lines for the log: classes, images per split, where the class maps come from."""
        shown = ", ".join(self.classes[:12]) + (", ..." if len(self.classes) > 12 else "")
        head = f"{self.source}: {len(self.classes)} classes ({shown}), {self.train.ignore_index} = ignore"
        if self.train.id_map is not None:
            mapped = int((self.train.id_map != self.train.ignore_index).sum())
            head += f"; id_map maps {mapped} stored values to classes, the rest to ignore"
        lines = [head]
        for name, split in (("train", self.train), ("val", self.val)):
            if split is None:
                lines.append(f"{name}: none")
                continue
            drawn = sum(1 for item in split.items if item.mask is None)
            objects = sum(len(item.annotation) for item in split.items if item.annotation is not None)
            kind = (f"class maps drawn from {objects} objects' polygons" if drawn == len(split.items)
                    else "mask files" if drawn == 0 else f"{drawn} drawn from polygons, the rest mask files")
            line = f"{name}: {len(split.items)} images ({kind})"
            lines.append(line + (f"; {split.log.summary()}" if split.log.summary() else ""))
        return "\n".join(lines)


def _split(ds: SegmentationSet, seed: int, fraction: float) -> tuple[SegmentationSet, SegmentationSet | None]:
    """Split `fraction` of the images (at least one, never all) off as val, chosen by `seed`."""
    n = len(ds.items)
    if fraction == 0 or n < 2:
        return ds, None
    n_val = min(max(1, round(n * fraction)), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    val, train = sorted(order[:n_val].tolist()), sorted(order[n_val:].tolist())
    return (replace(ds, items=[ds.items[i] for i in train]),
            replace(ds, items=[ds.items[i] for i in val], classes=list(ds.classes), log=AnnotationLog()))


def _colours(ds: SegmentationSet) -> list[Colour]:
    if ds.colours is not None:
        return [tuple(int(v) for v in c) for c in ds.colours]
    palette = voc_palette()
    return [tuple(palette[3 * k:3 * k + 3]) for k in range(len(ds.classes))]


def _finish(train: SegmentationSet, val: SegmentationSet | None, source: str, seed: int,
            fraction: float) -> SegmentationData:
    if val is not None and (val.classes != train.classes or val.ignore_index != train.ignore_index):
        raise AnnotationError(f"{source}: the val split's classes {val.classes} differ from the train split's "
                              f"{train.classes}")
    for split in (train, val):
        if split is not None:
            check_mask_sizes(split)
    if val is None:
        train, val = _split(train, seed, fraction)
        if val is not None:
            source += f" (val: {len(val.items)} of its images, split off with seed {seed})"
    return SegmentationData(train=train, val=val, classes=list(train.classes), colours=_colours(train),
                            source=source)


def _load_mask_root(root: Path) -> tuple[SegmentationSet, SegmentationSet | None, str]:
    class_file = find_class_list(root, root / "masks")
    if class_file is None:
        raise FileNotFoundError(f"{root}: a mask folder needs classes.csv (index,name[,r,g,b] per mask value) or "
                                "classes.txt (one class name per line) beside images/ and masks/")
    classes, colours = read_class_list(class_file)
    images, masks = root / "images", root / "masks"
    if not (images / "train").is_dir():
        return read_mask_folder(images, masks, root=root, classes=classes, colours=colours), None, f"masks {root}"
    train = read_mask_folder(images / "train", masks / "train", root=root, classes=classes, colours=colours)
    name = next((n for n in _VAL_NAMES if (images / n).is_dir()), None)
    val = None if name is None else read_mask_folder(images / name, masks / name, root=root, classes=classes,
                                                     colours=colours)
    return train, val, f"masks {root}"


def _load_voc(root: Path) -> tuple[SegmentationSet, SegmentationSet | None, str]:
    train_set, val_set = voc_segmentation_sets(root)
    train = read_voc_segmentation(root, train_set)
    val = None if val_set is None else read_voc_segmentation(root, val_set)
    return train, val, f"VOC {root} ({train_set}{f' / {val_set}' if val_set else ''})"


def _load_cityscapes(root: Path) -> tuple[SegmentationSet, SegmentationSet | None, str]:
    splits = cityscapes_splits(root)
    if "train" not in splits:
        raise FileNotFoundError(f"{root}: no leftImg8bit/train with gtFine/train (splits found: {splits})")
    val = read_cityscapes(root, "val") if "val" in splits else None
    return read_cityscapes(root, "train"), val, f"Cityscapes {root}"


def _load_ultralytics(path: Path) -> tuple[SegmentationSet, SegmentationSet | None, str]:
    info = read_yolo_yaml(path)
    train = from_annotated(read_yolo_seg(info["train"], names=info["names"]))
    val = None if info["val"] is None else from_annotated(read_yolo_seg(info["val"], names=info["names"]))
    return train, val, f"Ultralytics YOLO-seg dataset {path}"


def _voc_in(folder: Path) -> Path | None:
    """The one VOC segmentation root among folder/VOC*/ and folder/VOC*/VOC*/, or None."""
    roots = []
    for sub in sorted(p for p in folder.glob("VOC*") if p.is_dir()):
        roots += [sub] if is_voc_segmentation_root(sub) else [
            p for p in sorted(sub.glob("VOC*")) if is_voc_segmentation_root(p)]
    if len(roots) > 1:
        raise ValueError(f"{folder}: several VOC folders ({', '.join(str(r) for r in roots)}); pass one of them")
    return roots[0] if roots else None


def _load_folder(path: Path) -> tuple[SegmentationSet, SegmentationSet | None, str]:
    if (path / "images").is_dir() and (path / "masks").is_dir():
        return _load_mask_root(path)
    if is_voc_segmentation_root(path):
        return _load_voc(path)
    if is_cityscapes_root(path):
        return _load_cityscapes(path)
    voc = _voc_in(path)
    if voc is not None:
        return _load_voc(voc)
    for name in ("coco.yaml", "data.yaml"):   # what a conversion to coco / yolo-seg writes
        if (path / name).is_file():
            return _load_yaml(path / name)
    raise ValueError(f"{path}: no segmentation data found here; expected {_KINDS}")


def _load_yaml(path: Path) -> tuple[SegmentationSet, SegmentationSet | None, str]:
    data = read_yaml(path)
    if isinstance(data, dict) and "format" in data:
        return load_our_yaml(path, data)
    if isinstance(data, dict) and "train" in data and ("names" in data or "nc" in data):
        return _load_ultralytics(path)
    raise AnnotationError(f"{path}: neither our dataset YAML (no 'format') nor an Ultralytics data.yaml "
                          "(no 'train' and 'names')")


def load_segmentation_data(spec: str | os.PathLike[str], *, split_seed: int = 0,
                           val_fraction: float = 0.1) -> SegmentationData:
    """Read a semantic segmentation dataset from any spec the module docstring lists.

    Mask headers are checked against their images now (mode and size, see `layouts`); mask values are checked
    when a mask is read, and all at once by `check_segmentation_set`.

    Args:
        spec: a folder, a YAML file, or a COCO JSON file.
        split_seed: seeds the choice of val images when the spec has no val split.
        val_fraction: the fraction of images split off as val when there is none (0 for no val).

    Raises:
        FileNotFoundError: `spec` or a file or folder it names does not exist.
        ValueError: `val_fraction` outside [0, 1), or a folder without segmentation data.
        AnnotationError: a malformed file, an image without its mask, a mask of the wrong size or mode,
            splits whose classes differ; the file (and line or key) named.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{spec}: no such file or folder")
    if path.is_dir():
        train, val, source = _load_folder(path)
    elif path.suffix.lower() in (".yaml", ".yml"):
        train, val, source = _load_yaml(path)
    elif path.suffix.lower() == ".json":
        train, val, source = from_annotated(read_coco(path)), None, f"COCO {path}"
    else:
        raise ValueError(f"{path}: not segmentation data; expected {_KINDS}")
    return _finish(train, val, source, split_seed, val_fraction)


def check_segmentation_set(seg_set: SegmentationSet, *, limit: int | None = None) -> list[str]:
    """Read every class map of a set (the first `limit` with a limit) and return what is wrong, one line each.

    Checks each mask's mode and size against its image (headers), and its values after `id_map` against the
    classes (`types.check_label_mask`); a class map drawn from polygons is checked against its image's size.
    Nothing is raised for a problem found; each line names the file.
    """
    problems = []
    for item in seg_set.items if limit is None else seg_set.items[:limit]:
        try:
            check_mask_header(seg_set, item)
            labels = load_label_mask(seg_set, item)   # (H, W) uint8, values checked
            if item.mask is None:
                image = seg_set.path(item)
                if not image.is_file():
                    raise FileNotFoundError(f"{image}: no such image file")
                problem = mask_size_problem(image, (labels.shape[1], labels.shape[0]), f"{image} (annotated size)")
                if problem:
                    problems.append(problem)
        except (AnnotationError, FileNotFoundError) as error:
            problems.append(str(error))
    return problems
