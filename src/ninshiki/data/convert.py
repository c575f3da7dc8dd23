"""Convert detection annotations between COCO, VOC and YOLO: read one format, write another.

This backs ``ninshiki data convert --from voc --to coco path/to/VOC2007 --out voc07.json``. Boxes and labels
carry over exactly (YOLO keeps 6 decimals of the normalised coordinates). What a target format cannot hold is
lost: COCO has no difficult flag; VOC marks crowd boxes difficult; YOLO keeps no flags, areas or segmentations.
Image files are never moved or modified: a COCO file names them relative to its own folder, a VOC folder
gets hard links (or copies) in ``JPEGImages/``, and YOLO labels mirror the images' folder.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ninshiki.data.annotations import AnnotatedSet
from ninshiki.data.formats.coco import read_coco, write_coco
from ninshiki.data.formats.voc import read_voc, write_voc
from ninshiki.data.formats.yolo import read_yolo, read_yolo_yaml, write_yolo
from ninshiki.io import write_text

FORMATS = ("coco", "voc", "yolo")
YOLO_SPLITS = ("train", "val", "test")


def _read_yolo_source(source: Path, image_set: str | None, classes: Sequence[str] | None,
                      labels_dir: Path | None) -> AnnotatedSet:
    """A YOLO split from a data.yaml (`image_set` names the split, default train) or from an images folder."""
    if source.suffix.lower() in (".yaml", ".yml"):
        info = read_yolo_yaml(source)
        split = image_set or "train"
        if split not in YOLO_SPLITS or info[split] is None:
            raise ValueError(f"{source}: no {split!r} split (splits: "
                             f"{', '.join(s for s in YOLO_SPLITS if info[s] is not None)})")
        return read_yolo(info[split], classes=list(classes) if classes is not None else info["names"],
                         labels_dir=labels_dir)
    if classes is None and labels_dir is not None and (labels_dir / "classes.txt").is_file():
        classes = (labels_dir / "classes.txt").read_text(encoding="utf-8").split("\n")[:-1]   # as we write it
    if classes is None:
        raise ValueError(f"{source}: YOLO labels hold class ids only; pass classes, or convert from a data.yaml")
    return read_yolo(source, classes=classes, labels_dir=labels_dir)


def read_annotations(source: str | os.PathLike[str], fmt: str, *, image_set: str | None = None,
                     classes: Sequence[str] | None = None,
                     labels_dir: str | os.PathLike[str] | None = None) -> AnnotatedSet:
    """Read `source` in format `fmt` (coco: a JSON file; voc: a VOC root; yolo: a data.yaml or an images folder).

    `image_set` picks VOC's ``ImageSets/Main/<image_set>.txt`` or the data.yaml split; `classes` is VOC's
    class list (default: see `read_voc`) or YOLO's names; `labels_dir` is where YOLO labels are when not
    where Ultralytics' rule puts them (see `read_yolo`).
    """
    path = Path(source)
    if fmt == "coco":
        return read_coco(path)
    if fmt == "voc":
        return read_voc(path, image_set=image_set, classes=classes)
    if fmt == "yolo":
        return _read_yolo_source(path, image_set, classes, None if labels_dir is None else Path(labels_dir))
    raise ValueError(f"unknown annotation format {fmt!r}; expected one of {', '.join(FORMATS)}")


def write_annotations(ds: AnnotatedSet, out: str | os.PathLike[str], fmt: str, *,
                      image_set: str | None = None) -> Path:
    """Write `ds` in format `fmt` to `out` (coco: a JSON path; voc: a VOC root; yolo: a labels folder).

    COCO file names are relative to the JSON's folder, so `read_coco(out)` finds the images. YOLO also gets
    ``classes.txt`` (one name per line, the order of the class ids) in the labels folder.
    """
    out = Path(out)
    if fmt == "coco":
        write_coco(ds, out, images_root=out.parent)
    elif fmt == "voc":
        write_voc(ds, out, image_set=image_set)
    elif fmt == "yolo":
        write_yolo(ds, out)
        write_text(out / "classes.txt", "".join(f"{name}\n" for name in ds.classes))
    else:
        raise ValueError(f"unknown annotation format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return out


def convert(source: str | os.PathLike[str], *, source_format: str, target_format: str,
            out: str | os.PathLike[str], image_set: str | None = None, classes: Sequence[str] | None = None,
            labels_dir: str | os.PathLike[str] | None = None) -> Path:
    """Convert one split of annotations from `source_format` to `target_format`.

    Args:
        source: a COCO JSON file, a VOC root, or a YOLO data.yaml or images folder.
        source_format: "coco", "voc" or "yolo".
        target_format: "coco", "voc" or "yolo".
        out: a JSON path (coco), a VOC root (voc) or a labels folder (yolo).
        image_set: the VOC image set or data.yaml split to read; also the VOC image set written.
        classes: the class names, for a YOLO images folder (required unless `labels_dir` holds the
            ``classes.txt`` a conversion to YOLO writes) or a VOC source (optional).
        labels_dir: a YOLO source's labels folder, mirroring its images folder, when the labels are not where
            Ultralytics' rule (last ``/images/`` -> ``/labels/``) finds them, as for a VOC folder converted.

    Returns:
        `out`.

    Raises:
        ValueError: an unknown format, `out` equal to `source`, or a YOLO folder without `classes`.
    """
    for fmt in (source_format, target_format):
        if fmt not in FORMATS:
            raise ValueError(f"unknown annotation format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if Path(out).exists() and Path(out).resolve() == Path(source).resolve():
        raise ValueError(f"{out}: the output is the source; write the converted annotations elsewhere")
    ds = read_annotations(source, source_format, image_set=image_set, classes=classes, labels_dir=labels_dir)
    return write_annotations(ds, out, target_format, image_set=image_set)
