"""One entry point for classification data: `load_classification_data(source)`.

A source is a built-in name (``digits``, ``fashion-mnist``, ``mnist``), a class folder, a ``.csv`` list
or a folder of MNIST-style IDX files. Whatever the source, the result is a `ClassificationData` whose
splits yield ``(image uint8 (C, H, W), label)`` and batch with `collate_skipping`.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import replace
from pathlib import Path

import torch

from ninshiki.data.builtin import IDX_SETS, find_idx_files, load_digits_data, load_idx_folder, load_idx_set
from ninshiki.data.files import labels_for_names, load_csv, load_folder
from ninshiki.data.splits import (ClassificationData, ConvertedSplit, FileSplit, InMemorySplit, LoadOptions,
                                  Unreadable, collate_skipping, stratified_split)

__all__ = ["BUILTIN_SOURCES", "ClassificationData", "ConvertedSplit", "FileSplit", "InMemorySplit", "Unreadable",
           "collate_skipping", "load_classification_data", "stratified_split"]

BUILTIN_SOURCES = ("digits", *IDX_SETS)
_KINDS = ("a class folder (root/<class>/<image>, optionally split into train/ and val/ or test/), "
          "a .csv list of 'path,label' lines, or a folder holding MNIST-style IDX files (train-*, t10k-*)")


def _as_size(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be a positive int or (height, width), got {image_size!r}")
    return size  # type: ignore[return-value]


def _unknown_source(source: str) -> Exception:
    """FileNotFoundError for something that looks like a path, else a ValueError listing what is accepted."""
    if any(sep in source for sep in ("/", "\\", os.sep)) or Path(source).suffix or source.startswith((".", "~")):
        return FileNotFoundError(f"{source}: no such file or folder")
    close = difflib.get_close_matches(source.lower(), BUILTIN_SOURCES, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown data source {source!r}: not a built-in name ({', '.join(BUILTIN_SOURCES)}) "
                      f"and not an existing path.{hint} Accepted: a built-in name, {_KINDS}.")


def _load(source: str, data_root: str | None, opts: LoadOptions, split_val: bool) -> ClassificationData:
    name = source.strip().lower().replace("_", "-")
    if name == "digits":
        return load_digits_data(opts, split_val=split_val)
    if name in IDX_SETS:
        return load_idx_set(name, data_root, opts, split_val=split_val)
    path = Path(source).expanduser()
    if not path.exists():
        raise _unknown_source(source)
    if path.is_dir():
        if {"train-images", "train-labels"} <= find_idx_files(path).keys():
            return load_idx_folder(path, opts, split_val=split_val)
        return load_folder(path, opts, split_val=split_val)
    if path.suffix.lower() == ".csv":
        return load_csv(path, opts, split_val=split_val)
    raise ValueError(f"{source}: not a data source; accepted: a built-in name "
                     f"({', '.join(BUILTIN_SOURCES)}), {_KINDS}")


def _relabel(split: InMemorySplit | ConvertedSplit | FileSplit, classes: list[str], into: list[str],
             where: str) -> InMemorySplit | ConvertedSplit | FileSplit:
    """The same split with labels re-indexed from `classes` into `into` (matched by name)."""
    if isinstance(split, ConvertedSplit):
        return replace(split, base=_relabel(split.base, classes, into, where))
    names = [classes[int(label)] for label in split.labels]
    labels = labels_for_names(names, into, where)
    if isinstance(split, InMemorySplit):
        return replace(split, labels=torch.tensor(labels, dtype=torch.int64))
    return replace(split, labels=labels)


def _attach_val(data: ClassificationData, val_data: str, opts: LoadOptions) -> ClassificationData:
    """Use a separate source for validation, at the training set's size and channels."""
    val_opts = replace(opts, val_split=0.0, image_size=data.image_size, channels=data.channels)
    loaded = _load(val_data, None, val_opts, split_val=False)
    val = _relabel(loaded.train, loaded.classes, data.classes, val_data)  # type: ignore[arg-type]
    return replace(data, val=val, val_is_test=False, skipped=data.skipped + loaded.skipped)


def load_classification_data(source: str, *, data_root: str | None = None, val_data: str | None = None,
                             val_split: float = 0.1, image_size: int | tuple[int, int] | None = None,
                             channels: int | None = None, seed: int = 0, strict: bool = False,
                             memory_limit_mb: int = 2048) -> ClassificationData:
    """Load a labelled image-classification set with its train and validation splits.

    Args:
        source: ``digits`` (scikit-learn, 1,797 8x8 images, stratified split), ``fashion-mnist`` or
            ``mnist`` (IDX files; the official 10k test split is the validation split), a class folder
            (``train/`` + ``val/`` or ``test/`` subfolders are used as they are, otherwise a stratified
            split), a ``.csv`` list of ``path,label`` lines (stratified split), or a folder of IDX files.
        data_root: folder holding the IDX files of ``fashion-mnist``/``mnist`` (or a subfolder named so);
            default ``/usr/share/datasets/<name>``.
        val_data: a separate validation source (a class folder, CSV list or IDX folder, whose training
            part is used); its class names must be among the training classes. Replaces any split.
        val_split: share of each class held out for validation when the source has no split; 0 = none.
        image_size: output (h, w), or one int for squares. None: native for the built-ins and IDX
            folders, 224 x 224 for folders and CSV lists (shorter side resized, centre crop).
        channels: 1 or 3. None: native (1 for digits and IDX sets, 3 for image files).
        seed: seed of the stratified split.
        strict: raise `ImageReadError` at the first unreadable file instead of skipping it with a warning.
        memory_limit_mb: image files are decoded into memory (`InMemorySplit`) when the decoded set fits
            this, else decoded on access (`FileSplit`); arrays too large to resize up front are resized
            on access (`ConvertedSplit`).

    Raises:
        FileNotFoundError: a path that does not exist, or missing IDX files (the message says how to get them).
        ValueError: an unknown source name (the message lists the accepted kinds), or malformed data.
        ImageReadError: an unreadable image with ``strict=True``.
    """
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 or 3 (or None for the source's own), got {channels}")
    if memory_limit_mb < 0:
        raise ValueError(f"memory_limit_mb must be >= 0, got {memory_limit_mb}")
    if not 0.0 <= val_split < 1.0:
        raise ValueError(f"val_split must be in [0, 1), got {val_split}")
    opts = LoadOptions(val_split=val_split, image_size=_as_size(image_size), channels=channels, seed=seed,
                       strict=strict, memory_limit_mb=memory_limit_mb)
    data = _load(source, data_root, opts, split_val=val_data is None)
    return data if val_data is None else _attach_val(data, val_data, opts)
