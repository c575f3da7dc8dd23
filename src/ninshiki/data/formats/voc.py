"""Pascal VOC XML annotations (Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge", IJCV 2010).

Layout: ``Annotations/<id>.xml`` (one per image), ``JPEGImages/<file>``, ``ImageSets/Main/<set>.txt`` (ids).
VOC boxes are 1-based inclusive pixel indices; like detectron2 we read them as continuous xyxy
``(xmin - 1, ymin - 1, xmax, ymax)``, so widths are ``xmax - xmin + 1`` as the devkit computes them, and the
writer inverts this exactly. VOC has no crowd regions: the writer marks crowd boxes `difficult` (both mean
"ignored by evaluation"), and reads give `difficult`, never `iscrowd`.
"""
from __future__ import annotations

import filecmp
import os
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet, AnnotationError, AnnotationLog
from ninshiki.data.formats.common import clean_boxes, image_size, warn_dropped
from ninshiki.io import atomic_path, write_text

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
_COORDS = ("xmin", "ymin", "xmax", "ymax")
_GUESSED_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass
class _Record:
    """One parsed XML file, before class names become labels."""
    xml: Path
    file: Path                     # relative to the VOC root
    width: int
    height: int
    names: list[str] = field(default_factory=list)
    boxes: list[list[float]] = field(default_factory=list)   # xyxy, continuous
    difficult: list[bool] = field(default_factory=list)


def _annotation_files(root: Path, image_set: str | None) -> list[Path]:
    annotations = root / "Annotations"
    if image_set is None:
        return sorted(p for p in annotations.glob("*.xml") if not p.name.startswith("."))
    listing = root / "ImageSets" / "Main" / f"{image_set}.txt"
    if not listing.is_file():
        found = sorted(p.stem for p in listing.parent.glob("*.txt")) if listing.parent.is_dir() else []
        raise FileNotFoundError(f"{listing}: no such image set file (sets found: {', '.join(found) or 'none'})")
    files = []
    for n, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            xml = annotations / f"{line.split()[0]}.xml"
            if not xml.is_file():
                raise FileNotFoundError(f"{xml}: no such annotation file (listed in {listing}, line {n})")
            files.append(xml)
    return files


def _number(element: ET.Element, path: str, where: str) -> float:
    text = element.findtext(path)
    if text is None:
        raise AnnotationError(f"{where}: missing <{path}>")
    try:
        return float(text)
    except ValueError:
        raise AnnotationError(f"{where}: <{path}> is not a number: {text.strip()!r}") from None


def _image_file(root: Path, xml: Path, filename: str | None) -> Path:
    """JPEGImages/<filename>, or JPEGImages/<xml stem>.<ext> when <filename> is absent or names no file."""
    candidates = [Path("JPEGImages") / filename] if filename else []
    candidates += [Path("JPEGImages") / (xml.stem + ext) for ext in _GUESSED_EXTENSIONS]
    return next((c for c in candidates if (root / c).is_file()), candidates[0])


def _size(tree: ET.Element, xml: Path, image: Path) -> tuple[int, int]:
    """(width, height) from <size>, or from the image header when <size> is absent or zero (it happens)."""
    if tree.find("size") is not None:
        width, height = (_number(tree, f"size/{key}", str(xml)) for key in ("width", "height"))
        if width >= 1 and height >= 1:
            if not (width.is_integer() and height.is_integer()):
                raise AnnotationError(f"{xml}: <size> must hold whole pixels, found {width} x {height}")
            return int(width), int(height)
    if not image.is_file():
        raise AnnotationError(f"{xml}: no usable <size>, and the image {image} is not there to read it from")
    return image_size(image)


def _parse(xml: Path, root: Path) -> _Record:
    try:
        tree = ET.parse(xml).getroot()
    except ET.ParseError as err:
        raise AnnotationError(f"{xml}: malformed XML: {err}") from None
    if tree.tag != "annotation":
        raise AnnotationError(f"{xml}: the root element is <{tree.tag}>, expected <annotation>")
    file = _image_file(root, xml, (tree.findtext("filename") or "").strip())
    width, height = _size(tree, xml, root / file)
    record = _Record(xml=xml, file=file, width=width, height=height)
    for j, obj in enumerate(tree.findall("object")):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise AnnotationError(f"{xml}: object {j}: missing <name>")
        where = f"{xml}: object {j} ({name})"
        if obj.find("bndbox") is None:
            raise AnnotationError(f"{where}: missing <bndbox>")
        x1, y1, x2, y2 = (_number(obj, f"bndbox/{key}", where) for key in _COORDS)
        difficult = _number(obj, "difficult", where) if obj.find("difficult") is not None else 0.0
        record.names.append(name)
        record.boxes.append([x1 - 1, y1 - 1, x2, y2])
        record.difficult.append(difficult == 1)
    return record


def _default_classes(records: list[_Record]) -> list[str]:
    found = {name for record in records for name in record.names}
    return list(VOC_CLASSES) if found <= set(VOC_CLASSES) else sorted(found)


def _annotated_image(record: _Record, index: dict[str, int], log: AnnotationLog) -> AnnotatedImage:
    for j, name in enumerate(record.names):
        if name not in index:
            raise AnnotationError(f"{record.xml}: object {j}: class {name!r} is not among the classes "
                                  f"({', '.join(index)})")
    boxes, keep = clean_boxes(np.array(record.boxes).reshape(-1, 4), record.width, record.height,
                              lambda j: f"{record.xml}: object {j} ({record.names[j]}) bndbox", log)
    return AnnotatedImage(file=record.file, width=record.width, height=record.height, boxes=boxes[keep],
                          labels=np.array([index[n] for n in record.names], dtype=np.int64)[keep],
                          difficult=np.array(record.difficult, dtype=bool)[keep])


def read_voc(voc_root: str | os.PathLike[str], *, image_set: str | None = None,
             classes: list[str] | tuple[str, ...] | None = None) -> AnnotatedSet:
    """Read a Pascal VOC folder.

    Args:
        voc_root: the folder holding ``Annotations/`` (e.g. ``VOCdevkit/VOC2007``).
        image_set: read the ids of ``ImageSets/Main/<image_set>.txt``; None reads every XML file.
        classes: the class list; None gives the 20 VOC classes when every name is one of them, else the
            sorted names found.

    Returns:
        The set, rooted at `voc_root`, with `difficult` flags kept; boxes xyxy (see the module docstring).

    Raises:
        FileNotFoundError: no ``Annotations/`` folder, no such image set, or an id without its XML file.
        AnnotationError: malformed XML (line named), a missing or non-numeric field, or a class name not
            in `classes` (file and object index named).
    """
    root = Path(voc_root)
    if not (root / "Annotations").is_dir():
        raise FileNotFoundError(f"{root}: not a VOC folder (no Annotations/ folder)")
    records = [_parse(xml, root) for xml in _annotation_files(root, image_set)]
    names = list(classes) if classes is not None else _default_classes(records)
    index = {name: k for k, name in enumerate(names)}
    log = AnnotationLog()
    images = [_annotated_image(record, index, log) for record in records]
    warn_dropped(log, 0, root / "Annotations")
    return AnnotatedSet(classes=names, images=images, root=root, log=log)


def _text(value: float) -> str:
    """A coordinate as VOC writes it: an integer when whole, else the shortest exact float."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _xml(image: AnnotatedImage, filename: str, folder: str, classes: list[str], depth: int) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for key, value in (("width", image.width), ("height", image.height), ("depth", depth)):
        ET.SubElement(size, key).text = str(int(value))
    ET.SubElement(root, "segmented").text = "0"
    for box, label, crowd, difficult in zip(image.boxes, image.labels, image.iscrowd, image.difficult):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = classes[label]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = str(int(crowd or difficult))
        bndbox = ET.SubElement(obj, "bndbox")
        for key, value in zip(_COORDS, (box[0] + 1, box[1] + 1, box[2], box[3])):
            ET.SubElement(bndbox, key).text = _text(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _place(source: Path, target: Path) -> None:
    """Put `source` at `target` by hard link, else by copy; never move; keep an identical file that is there."""
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such image file")
    if target.exists():
        if os.path.samefile(source, target) or filecmp.cmp(source, target, shallow=False):
            return
        raise FileExistsError(f"{target}: already exists with other content than {source}; not overwritten")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed: copy instead
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


def _depth(path: Path) -> int:
    with Image.open(path) as image:
        return len(image.getbands())


def write_voc(ds: AnnotatedSet, voc_root: str | os.PathLike[str], *, image_set: str | None = None) -> None:
    """Write a set as a VOC folder: ``Annotations/<stem>.xml``, images into ``JPEGImages/``, and the ids.

    Images are hard-linked into ``JPEGImages/`` where the file system allows, else copied; a file already
    there with the same content is left alone, one with other content is an error. ``ImageSets/Main/
    <image_set>.txt`` lists the ids when `image_set` is given. Files are written atomically.

    Raises:
        ValueError: two images share a file stem (their XML files would collide).
        FileNotFoundError: an image file of the set does not exist.
        FileExistsError: ``JPEGImages/`` holds a different file of the same name.
    """
    root = Path(voc_root)
    stems = [image.file.stem for image in ds.images]
    clashes = [stem for stem, count in Counter(stems).items() if count > 1]
    if clashes:
        raise ValueError(f"write_voc: several images share the file stem {clashes[0]!r}; VOC names each "
                         f"Annotations/<stem>.xml by it")
    for image, stem in zip(ds.images, stems):
        source = ds.path(image)
        _place(source, root / "JPEGImages" / source.name)
        write_text(root / "Annotations" / f"{stem}.xml",
                   _xml(image, source.name, root.absolute().name, ds.classes, _depth(source)))
    if image_set is not None:
        write_text(root / "ImageSets" / "Main" / f"{image_set}.txt", "".join(f"{s}\n" for s in stems))
