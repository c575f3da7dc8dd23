"""Data sets made of image files: class folders (ImageFolder layout) and CSV lists.

Files are decoded once into memory when the decoded set fits `memory_limit_mb`, by a few threads (PIL
releases the GIL while decoding); larger sets stay on disk as a `FileSplit`. An unreadable file is
skipped with a warning naming it, or raises with ``strict=True``.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ninshiki.data.formats.csvlist import read_csv_list
from ninshiki.data.formats.imagefolder import class_folders, scan_image_folder
from ninshiki.data.images import ImageReadError, UnreadableImageWarning, read_image, resize_to
from ninshiki.data.splits import ClassificationData, FileSplit, InMemorySplit, LoadOptions, stratified_split

DEFAULT_IMAGE_SIZE = (224, 224)
VAL_FOLDER_NAMES = ("val", "valid", "validation", "test")  # first found wins; "test" marks an official test split
_WORKERS = max(1, min(4, os.cpu_count() or 1))


def _read_resized(path: str, size: tuple[int, int], channels: int) -> Tensor | ImageReadError:
    try:
        return resize_to(read_image(path, channels=channels), size)
    except ImageReadError as err:  # returned, not raised: the caller decides to warn or to stop
        return err


def decode_in_memory(paths: list[str], labels: list[int], size: tuple[int, int], channels: int, *,
                     strict: bool = False, desc: str = "decoding") -> tuple[InMemorySplit, list[str]]:
    """Decode and resize every file into one tensor, skipping the unreadable ones.

    Returns:
        The split of the readable files, and one "path: reason" message per skipped file.

    Raises:
        ImageReadError: with ``strict=True``, at the first unreadable file.
    """
    out = torch.empty((len(paths), channels, *size), dtype=torch.uint8)  # (N, C, h, w), trimmed below
    kept_paths: list[str] = []
    kept_labels: list[int] = []
    skipped: list[str] = []
    pool = ThreadPoolExecutor(max_workers=_WORKERS)
    try:
        results = pool.map(_read_resized, paths, [size] * len(paths), [channels] * len(paths))
        for path, label, result in tqdm(zip(paths, labels, results), total=len(paths), desc=desc,
                                        unit="img", disable=None, leave=False):
            if isinstance(result, ImageReadError):
                if strict:
                    raise result
                warnings.warn(f"skipping unreadable image {result}", UnreadableImageWarning, stacklevel=2)
                skipped.append(str(result))
                continue
            out[len(kept_paths)] = result
            kept_paths.append(path)
            kept_labels.append(label)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    images = out[:len(kept_paths)]
    return InMemorySplit(images, torch.tensor(kept_labels, dtype=torch.int64), kept_paths), skipped


def _make_split(paths: list[str], labels: list[int], opts: LoadOptions, eager: bool,
                desc: str) -> tuple[InMemorySplit | FileSplit, list[str]]:
    size, channels = opts.image_size or DEFAULT_IMAGE_SIZE, opts.channels or 3
    if not eager:
        return FileSplit(paths, labels, size, channels, strict=opts.strict), []
    return decode_in_memory(paths, labels, size, channels, strict=opts.strict, desc=desc)


def _build(source: str, classes: list[str], train: tuple[list[str], list[int]],
           val: tuple[list[str], list[int]] | None, opts: LoadOptions, val_is_test: bool) -> ClassificationData:
    """Decode (or wrap) the train and val file lists into a ClassificationData."""
    size, channels = opts.image_size or DEFAULT_IMAGE_SIZE, opts.channels or 3
    eager = opts.fits_in_memory(len(train[0]) + (len(val[0]) if val else 0), channels, size)
    train_split, skipped = _make_split(*train, opts, eager, desc="train images")
    if len(train_split) == 0:
        raise ValueError(f"{source}: none of the {len(train[0])} training images can be read")
    val_split = None
    if val is not None and val[0]:
        val_split, val_skipped = _make_split(*val, opts, eager, desc="val images")
        skipped += val_skipped
        val_split = val_split if len(val_split) else None  # every validation file was unreadable
    return ClassificationData(classes=classes, train=train_split, val=val_split, channels=channels,
                              image_size=size, skipped=skipped, source=source, val_is_test=val_is_test)


def _split_lists(paths: list[str], labels: list[int], opts: LoadOptions,
                 split_val: bool) -> tuple[tuple[list[str], list[int]], tuple[list[str], list[int]] | None]:
    if not split_val or opts.val_split == 0:
        return (paths, labels), None
    train_idx, val_idx = stratified_split(np.asarray(labels), opts.val_split, opts.seed)
    return _pick(paths, labels, train_idx), _pick(paths, labels, val_idx)


def _pick(paths: list[str], labels: list[int], indices: np.ndarray) -> tuple[list[str], list[int]]:
    return [paths[i] for i in indices], [labels[i] for i in indices]


def labels_for_names(names: list[str], classes: list[str], where: str | Path) -> list[int]:
    """Map class names onto `classes`; a name outside it is an error naming the source."""
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(names) - index.keys())
    if unknown:
        raise ValueError(f"{where}: class(es) {', '.join(unknown)} are not among the training classes "
                         f"({', '.join(classes)})")
    return [index[name] for name in names]


def find_split_folders(root: Path) -> tuple[Path, Path, bool] | None:
    """(train, val, val_is_test) when `root` holds ``train/`` and ``val/`` (or valid, validation, test)."""
    names = {p.name: p for p in class_folders(root)}
    if "train" not in names:
        return None
    for name in VAL_FOLDER_NAMES:
        if name in names:
            return names["train"], names[name], name == "test"
    return None


def load_folder(root: Path, opts: LoadOptions, *, split_val: bool = True) -> ClassificationData:
    """A class folder; with ``train/`` and ``val/`` (or ``test/``) subfolders those are the splits."""
    layout = find_split_folders(root)
    if layout is None:
        listing = scan_image_folder(root)
        train, val = _split_lists([str(p) for p in listing.paths], listing.labels, opts, split_val)
        return _build(str(root), listing.classes, train, val, opts, val_is_test=False)
    train_dir, val_dir, is_test = layout
    listing = scan_image_folder(train_dir)
    val = None
    if split_val:
        val_listing = scan_image_folder(val_dir)
        names = [val_listing.classes[i] for i in val_listing.labels]
        val = ([str(p) for p in val_listing.paths], labels_for_names(names, listing.classes, val_dir))
    train = ([str(p) for p in listing.paths], listing.labels)
    return _build(str(root), listing.classes, train, val, opts, val_is_test=is_test and split_val)


def load_csv(path: Path, opts: LoadOptions, *, split_val: bool = True) -> ClassificationData:
    """A ``path,label`` CSV list; classes are the sorted label names; stratified split."""
    paths, names = read_csv_list(path)
    classes = sorted(set(names))
    train, val = _split_lists([str(p) for p in paths], labels_for_names(names, classes, path), opts, split_val)
    return _build(str(path), classes, train, val, opts, val_is_test=False)
