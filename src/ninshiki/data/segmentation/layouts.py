"""Readers of the semantic segmentation layouts on disk, each giving a `SegmentationSet`.

- a mask folder: ``images/`` and ``masks/`` with the same relative paths and stems, masks PNG (index or
  palette), class names from ``classes.csv`` or ``classes.txt`` (`read_class_list`);
- a PASCAL VOC root: ``ImageSets/Segmentation/<set>.txt``, ``JPEGImages/``, ``SegmentationClass/`` palette PNGs;
- instance annotations (COCO, YOLO-seg) as an `AnnotatedSet`, drawn into class maps (`from_annotated`).

Mask sizes are checked against their images here from the file headers, without decoding pixels
(`check_mask_sizes`). A mask must match its image either as stored or as displayed after the image's EXIF
orientation: the dataset rotates a mask of the stored size along with the image, and uses a mask of the
upright size as it is, so both are consistent with what training sees.
"""
from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ninshiki.data.annotations import AnnotatedSet, AnnotationError
from ninshiki.data.formats.imagefolder import is_image_file
from ninshiki.data.formats.voc import VOC_CLASSES
from ninshiki.data.images import EXIF_ORIENTATION
from ninshiki.data.segmentation.draw import is_background, require_segmentations
from ninshiki.data.segmentation.types import SegmentationSet, SegmentedImage

Colour = tuple[int, int, int]
CLASS_FILES = ("classes.csv", "classes.txt")
MASK_MODES = ("L", "P", "I;16", "I;16B", "I;16L", "I")   # what `masks.read_index_mask` reads as ids
_GUESSED_EXTENSIONS = (".jpg", ".jpeg", ".png")


def _read_class_csv(path: Path) -> tuple[list[str], list[Colour] | None]:
    rows = [(n, row) for n, row in enumerate(csv.reader(path.read_text(encoding="utf-8").splitlines()), 1)
            if row and any(cell.strip() for cell in row)]
    if rows and not rows[0][1][0].strip().lstrip("-").isdigit():
        rows = rows[1:]   # a header line such as "index,name,r,g,b"
    found: dict[int, tuple[str, Colour | None]] = {}
    for n, row in rows:
        cells = [cell.strip() for cell in row]
        if len(cells) not in (2, 5) or not all(c.lstrip("-").isdigit() for c in cells[:1] + cells[2:]):
            raise AnnotationError(f"{path}:{n}: expected 'index,name' or 'index,name,r,g,b' with integer "
                                  f"index and colour, found {','.join(row)!r}")
        index, name, colour = int(cells[0]), cells[1], tuple(int(c) for c in cells[2:]) or None
        if colour is not None and not all(0 <= c <= 255 for c in colour):
            raise AnnotationError(f"{path}:{n}: colour values must lie in 0..255, found {colour}")
        if index in found:
            raise AnnotationError(f"{path}:{n}: class index {index} appears twice")
        found[index] = (name, colour)
    if sorted(found) != list(range(len(found))) or not found:
        raise AnnotationError(f"{path}: class indices must be 0..K-1 without gaps, found {sorted(found)}")
    colours = [found[i][1] for i in range(len(found))]
    if any(c is None for c in colours) and any(c is not None for c in colours):
        raise AnnotationError(f"{path}: give a colour (r,g,b) for every class or for none")
    return [found[i][0] for i in range(len(found))], None if colours[0] is None else colours


def read_class_list(path: str | os.PathLike[str]) -> tuple[list[str], list[Colour] | None]:
    """Class names (and colours) of a mask dataset, from ``classes.csv`` or ``classes.txt``.

    ``classes.csv`` has one ``index,name`` or ``index,name,r,g,b`` row per mask value (an optional header
    line), indices 0..K-1. ``classes.txt`` has one name per line, the name on line k for mask value k - 1;
    when its first line is not a background name (``background``, ``_background_``, ``__background__``,
    ``bg``), ``background`` is prepended as class 0, so that line k is mask value k (how the generated shapes
    data set and most object-list files count).

    Returns:
        The names, and the colours (RGB per class) or None when the file gives none.

    Raises:
        AnnotationError: malformed rows, gaps or repeats in the indices, or a name given twice (line named).
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        names, colours = _read_class_csv(path)
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        for n, line in enumerate(lines, 1):
            if not line.strip():
                raise AnnotationError(f"{path}:{n}: empty class name")
        names, colours = [line.strip() for line in lines], None
        if not names:
            raise AnnotationError(f"{path}: no class names")
        if not is_background(names[0]):
            names = ["background", *names]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise AnnotationError(f"{path}: class name {name!r} appears twice")
        seen.add(name)
    return names, colours


def find_class_list(*folders: Path) -> Path | None:
    """The first ``classes.csv`` or ``classes.txt`` in `folders` (csv first: it can hold colours)."""
    return next((folder / name for folder in folders for name in CLASS_FILES if (folder / name).is_file()), None)


def read_mask_folder(images_dir: Path, masks_dir: Path, *, root: Path, classes: list[str],
                     colours: list[Colour] | None = None) -> SegmentationSet:
    """Pair every image under `images_dir` with the PNG of the same relative path and stem under `masks_dir`.

    An image without its mask is an error, not a skipped image: a mask missing from a folder of masks is a
    broken or unfinished export far more often than an intended omission, and an unlabelled image cannot
    be trained on anyway. Masks without an image are not read.

    Raises:
        FileNotFoundError: a folder does not exist or holds no images.
        AnnotationError: an image without its mask PNG (or with a lossy JPEG "mask"); both paths named.
    """
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
    images = sorted(p for p in images_dir.rglob("*") if p.is_file() and is_image_file(p)
                    and not any(part.startswith(".") for part in p.relative_to(images_dir).parts))
    if not images:
        raise FileNotFoundError(f"{images_dir}: no image files")
    items = []
    for image in images:
        mask = masks_dir / image.relative_to(images_dir).with_suffix(".png")
        if not mask.is_file():
            lossy = [p for p in mask.parent.glob(f"{mask.stem}.*") if p.suffix.lower() in (".jpg", ".jpeg")]
            why = (f"{lossy[0]} is a JPEG: masks must be PNG (JPEG compression changes class values)" if lossy
                   else f"no mask {mask}")
            raise AnnotationError(f"{image}: {why}")
        items.append(SegmentedImage(file=_relative(image, root), mask=_relative(mask, root)))
    return SegmentationSet(classes=list(classes), items=items, root=root, colours=colours)


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.relative_to(root)
    except ValueError:
        return path.absolute()


def is_voc_segmentation_root(folder: Path) -> bool:
    return (folder / "ImageSets" / "Segmentation").is_dir() and (folder / "SegmentationClass").is_dir()


def voc_segmentation_sets(root: Path) -> tuple[str, str | None]:
    """The image sets for train and val: train / val, else trainval / None (val to be split off)."""
    listing = root / "ImageSets" / "Segmentation"
    has = {p.stem for p in listing.glob("*.txt")}
    if "train" in has:
        return "train", "val" if "val" in has else None
    if "trainval" in has:
        return "trainval", None
    raise FileNotFoundError(f"{listing}: no train.txt or trainval.txt (found: {', '.join(sorted(has)) or 'none'})")


def read_voc_segmentation(root: Path, image_set: str, *, classes: list[str] | None = None,
                          colours: list[Colour] | None = None) -> SegmentationSet:
    """One image set of a VOC root: ``JPEGImages/<id>.jpg`` with ``SegmentationClass/<id>.png``, 255 ignored.

    Classes: `classes`, else a ``classes.csv`` / ``classes.txt`` in the root or the folder above it (the
    generated shapes data set keeps one beside its ``VOC/``), else background and the 20 VOC classes.
    Colours: `colours`, the class file's, or None (the VOC palette, which the masks are drawn in).

    Raises:
        FileNotFoundError: no such image set file.
        AnnotationError: a listed id without its image or mask (the list's file and line named).
    """
    listing = root / "ImageSets" / "Segmentation" / f"{image_set}.txt"
    if not listing.is_file():
        raise FileNotFoundError(f"{listing}: no such image set file")
    if classes is None:
        found = find_class_list(root, root.parent)
        classes, file_colours = read_class_list(found) if found else (["background", *VOC_CLASSES], None)
        colours = colours if colours is not None else file_colours
    items = []
    for n, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        name = line.split()[0]
        image = next((root / "JPEGImages" / (name + ext) for ext in _GUESSED_EXTENSIONS
                      if (root / "JPEGImages" / (name + ext)).is_file()), None)
        mask = root / "SegmentationClass" / f"{name}.png"
        if image is None or not mask.is_file():
            missing = f"no image JPEGImages/{name}.jpg" if image is None else f"no mask {mask}"
            raise AnnotationError(f"{listing}:{n}: {name}: {missing}")
        items.append(SegmentedImage(file=image.relative_to(root), mask=mask.relative_to(root)))
    return SegmentationSet(classes=list(classes), items=items, root=root, colours=colours)


def from_annotated(annotated: AnnotatedSet) -> SegmentationSet:
    """A polygon-sourced set: classes ``["background", *annotated.classes]``, one item per annotated image.

    Raises:
        AnnotationError: an object without a segmentation (image and object index named), found now rather
            than when its image is first drawn.
    """
    require_segmentations(annotated)
    items = [SegmentedImage(file=image.file, annotation=image) for image in annotated.images]
    return SegmentationSet(classes=["background", *annotated.classes], items=items, root=annotated.root,
                           log=annotated.log)


def _header(path: Path) -> tuple[tuple[int, int], str, int]:
    """(width, height), mode and EXIF orientation of an image file, from its header.

    Raises:
        FileNotFoundError: no such file.
        AnnotationError: a header PIL cannot read (the file named).
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                try:
                    orientation = int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
                except Exception:  # noqa: BLE001 - a malformed EXIF block means no usable orientation
                    orientation = 1
                return image.size, image.mode, orientation
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as error:
        raise AnnotationError(f"{path}: cannot read the file's header ({error})") from None


def mask_size_problem(image: Path, mask_size: tuple[int, int], where: Path | str) -> str | None:
    """Why a mask of `mask_size` (W, H) does not fit `image`, or None: it has the image's stored size, or its
    upright size after the EXIF orientation, or the image's header is unreadable (the dataset skips such an
    image as unreadable; that is not a mask problem).
    """
    try:
        (width, height), _, orientation = _header(image)
    except AnnotationError:
        return None
    if mask_size == (width, height) or (orientation in (5, 6, 7, 8) and mask_size == (height, width)):
        return None
    shown = f" ({height}x{width} as displayed after its EXIF rotation)" if orientation in (5, 6, 7, 8) else ""
    return f"{where}: mask is {mask_size[0]}x{mask_size[1]} (WxH) but its image {image} is {width}x{height}{shown}"


def check_mask_header(dataset: SegmentationSet, item: SegmentedImage) -> None:
    """Check one mask file's header: an index or palette mode, and the size of its image (see the docstring).

    Raises:
        FileNotFoundError: the image or the mask does not exist.
        AnnotationError: the mask is a colour image, unreadable, or of another size than its image (named).
    """
    mask = dataset.mask_path(item)
    if mask is None:
        return
    size, mode, _ = _header(mask)
    if mode not in MASK_MODES:
        raise AnnotationError(f"{mask}: a {mode} image is not an index mask; expected a grey (L, I;16) or "
                              "palette (P) PNG whose values are class ids")
    if not dataset.path(item).is_file():
        raise FileNotFoundError(f"{dataset.path(item)}: no such image file (its mask is {mask})")
    problem = mask_size_problem(dataset.path(item), size, mask)
    if problem:
        raise AnnotationError(problem)


def check_mask_sizes(dataset: SegmentationSet) -> None:
    """`check_mask_header` for every item: headers only, so a few thousand pairs take about a second."""
    for item in dataset.items:
        check_mask_header(dataset, item)
