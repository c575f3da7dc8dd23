"""The ImageFolder layout: ``root/<class>/<file>``, one folder per class (as torchvision's ImageFolder).

Files are found recursively inside each class folder and recognised as images by their extension,
case-insensitively. Hidden files and folders (a leading dot) and macOS ``__MACOSX`` folders are skipped;
any other file is listed in `FolderListing.ignored` so a data check can report it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".pnm",
                              ".tif", ".tiff", ".webp"})


@dataclass
class FolderListing:
    """The images of a class folder, in a deterministic order (classes sorted, files sorted per class)."""

    paths: list[Path]
    labels: list[int]                # index into `classes`, one per path
    classes: list[str]
    ignored: list[Path] = field(default_factory=list)  # files without an image extension


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True when the name ends with a known image extension (any case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _skipped(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _walk_files(folder: Path) -> list[Path]:
    """Every visible file under `folder`, sorted; hidden folders are not entered."""
    found: list[Path] = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _skipped(d))
        found += [Path(parent) / f for f in files if not _skipped(f)]
    return sorted(found)


def class_folders(root: str | os.PathLike[str]) -> list[Path]:
    """The visible subfolders of `root`, sorted by name.

    Raises:
        FileNotFoundError: `root` does not exist.
        NotADirectoryError: `root` is not a folder.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    return sorted((p for p in root.iterdir() if p.is_dir() and not _skipped(p.name)), key=lambda p: p.name)


def scan_image_folder(root: str | os.PathLike[str]) -> FolderListing:
    """List the images of an ImageFolder tree.

    Args:
        root: the folder holding one subfolder per class.

    Returns:
        Paths with their labels, the sorted class names, and the ignored (non-image) files, including
        loose files directly inside `root`.

    Raises:
        FileNotFoundError: `root` does not exist.
        ValueError: `root` has no class folders, or some class folders hold no images (all are named).
    """
    root = Path(root)
    folders = class_folders(root)
    if not folders:
        raise ValueError(f"{root}: no class folders found; expected the layout {root}/<class>/<image file>")
    ignored = sorted(p for p in root.iterdir() if p.is_file() and not _skipped(p.name))
    paths: list[Path] = []
    labels: list[int] = []
    empty: list[str] = []
    for label, folder in enumerate(folders):
        files = _walk_files(folder)
        images = [f for f in files if is_image_file(f)]
        ignored += [f for f in files if not is_image_file(f)]
        if not images:
            empty.append(folder.name)
        paths += images
        labels += [label] * len(images)
    if empty:
        raise ValueError(f"{root}: class folder(s) without image files: {', '.join(empty)} "
                         f"(image extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return FolderListing(paths=paths, labels=labels, classes=[f.name for f in folders], ignored=ignored)
