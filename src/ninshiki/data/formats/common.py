"""What the COCO, VOC and YOLO readers share: box checks with a record of every repair, image sizes, YAML.

A box partly outside its image is clipped to it; a box of zero or negative size, one entirely outside the
image, or one with a NaN/inf coordinate is dropped. Each repair is one `AnnotationLog` entry naming the file
and the line or field, and the dropped ones are also warned about (one warning per file read).
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from ninshiki.data.annotations import AnnotationError, AnnotationLog
from ninshiki.data.images import ImageReadError

_SHOWN = 3  # dropped boxes quoted in a warning; the log keeps them all


class InvalidBoxWarning(UserWarning):
    """Boxes dropped while reading annotations (zero or negative size, outside the image, NaN or inf)."""


def _fmt(box: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "] (xyxy)"


def clean_boxes(boxes: np.ndarray, width: float | np.ndarray, height: float | np.ndarray, where: Callable[[int], str],
                log: AnnotationLog, *, strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Clip boxes to their image and mark the ones to drop, recording each case in `log`.

    Args:
        boxes: boxes as read, xyxy pixels.
        width: image width in pixels, one for all boxes or one per box.
        height: image height in pixels, one for all boxes or one per box.
        where: names box ``i`` for the log, e.g. ``"labels/a.txt:3"``; called only for boxes with a problem.
        log: receives one `clipped` or `dropped` entry per repaired box.
        strict: raise `AnnotationError` on the first problem instead of repairing it.

    Returns:
        The clipped boxes and the mask of boxes to keep.

    Shape:
        boxes: (N, 4) float; width, height: scalars or (N,); returns (N, 4) float64 and (N,) bool.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(boxes).all(axis=1)                                           # (N,)
    safe = np.where(finite[:, None], boxes, 0.0)                                      # (N, 4)
    positive = finite & (safe[:, 2] > safe[:, 0]) & (safe[:, 3] > safe[:, 1])
    widths, heights = (np.broadcast_to(np.asarray(v, dtype=np.float64), (len(boxes),)) for v in (width, height))
    clipped = np.clip(safe, 0.0, np.stack([widths, heights, widths, heights], axis=1))  # (N, 4), xyxy
    inside = positive & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    # Less than 1e-3 px outside is rounding in the file (YOLO's 6 decimals), not a box to report as clipped.
    changed = inside & (np.abs(clipped - safe) > 1e-3).any(axis=1)
    problems: list[tuple[int, str, list[str]]] = []   # (box index, reason, log list it goes to)
    for i in np.flatnonzero(~inside):
        why = ("has a NaN or inf coordinate" if not finite[i] else "has zero or negative size" if not positive[i]
               else f"lies outside the {widths[i]:g}x{heights[i]:g} image")
        problems.append((int(i), why, log.dropped))
    for i in np.flatnonzero(changed):
        problems.append((int(i), f"extends outside the {widths[i]:g}x{heights[i]:g} image", log.clipped))
    problems.sort(key=lambda p: p[0])
    if strict and problems:
        i, why, _ = problems[0]
        raise AnnotationError(f"{where(i)}: box {_fmt(boxes[i])} {why}")
    for i, why, into in problems:
        action = "dropped" if into is log.dropped else "clipped"
        into.append(f"{where(i)}: box {_fmt(boxes[i])} {why}: {action}")
    return clipped, inside


def warn_dropped(log: AnnotationLog, since: int, source: str | os.PathLike[str]) -> None:
    """Warn once about the boxes dropped since `log.dropped` had `since` entries, quoting the first few."""
    new = log.dropped[since:]
    if not new:
        return
    more = f"; and {len(new) - _SHOWN} more" if len(new) > _SHOWN else ""
    warnings.warn(f"{source}: {len(new)} invalid box(es) dropped: " + "; ".join(new[:_SHOWN]) + more,
                  InvalidBoxWarning, stacklevel=3)


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) of an image file as stored, from its header (no pixels are decoded, no EXIF rotation).

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: the file is not an image PIL can identify.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # only the header is read
            with Image.open(path) as image:
                return image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as err:
        raise ImageReadError(path, f"cannot read the image header ({err})") from None


def read_yaml(path: Path) -> object:
    """The parsed YAML file; malformed YAML is an `AnnotationError` naming the file, line and column."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise AnnotationError(f"{path}: malformed YAML{at}: {getattr(err, 'problem', None) or err}") from None
