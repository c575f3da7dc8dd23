"""Data sets that are already arrays: scikit-learn's digits, and MNIST-style IDX folders.

Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``)
or any folder holding the four IDX files; MNIST the same way from ``/usr/share/datasets/mnist``.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ninshiki.data.formats.idx import read_idx
from ninshiki.data.splits import (ClassificationData, ConvertedSplit, InMemorySplit, LoadOptions, convert,
                                  stratified_split)

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIGIT_CLASSES = [str(i) for i in range(10)]
IDX_SETS = {  # name -> (default folder, class names, how to get the files)
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"), FASHION_MNIST_CLASSES,
                      "install them with `apt-get install dataset-fashion-mnist`, or pass "),
    "mnist": (Path("/usr/share/datasets/mnist"), DIGIT_CLASSES, "pass "),
}
# train-images-idx3-ubyte(.gz); the dot variant (train-images.idx3-ubyte) is common in re-distributions
_IDX_NAME = re.compile(r"^(train|t10k)-(images|labels)[-.]idx[13]-ubyte(\.gz)?$")
_CHUNK = 1024  # images converted per step, to bound the temporary memory of eager resizing


def in_memory(images: torch.Tensor, labels: np.ndarray, opts: LoadOptions, *, total: int | None = None,
              paths: list[str] | None = None) -> InMemorySplit | ConvertedSplit:
    """Wrap decoded images at the requested size and channels: converted now if that fits in memory, else on access.

    Args:
        images: (N, C, H, W) uint8 at their native size.
        labels: (N,) class indices.
        opts: the requested size, channels and memory limit.
        total: images over all splits, for the memory decision (default N).
        paths: the file behind each image, if any.
    """
    n, channels, height, width = images.shape
    out_channels, out_size = opts.channels or channels, opts.image_size or (height, width)
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if (out_channels, out_size) == (channels, (height, width)):
        return InMemorySplit(images, labels_t, paths)
    if not opts.fits_in_memory(total or n, out_channels, out_size):
        return ConvertedSplit(InMemorySplit(images, labels_t, paths), out_size, out_channels)  # on access
    out = torch.empty((n, out_channels, *out_size), dtype=torch.uint8)
    for start in range(0, n, _CHUNK):
        out[start:start + _CHUNK] = convert(images[start:start + _CHUNK], out_size, out_channels)
    return InMemorySplit(out, labels_t, paths)


def _split_arrays(images: torch.Tensor, labels: np.ndarray, opts: LoadOptions,
                  split_val: bool) -> tuple[Dataset, Dataset | None]:
    """Stratified train/val split of arrays (no split when `split_val` is False or val_split is 0)."""
    if not split_val or opts.val_split == 0:
        return in_memory(images, labels, opts), None
    train_idx, val_idx = stratified_split(labels, opts.val_split, opts.seed)
    train = in_memory(images[train_idx], labels[train_idx], opts, total=len(labels))
    val = in_memory(images[val_idx], labels[val_idx], opts, total=len(labels)) if len(val_idx) else None
    return train, val


def load_digits_data(opts: LoadOptions, *, split_val: bool = True) -> ClassificationData:
    """scikit-learn's 1,797 8x8 digits, values 0..16 scaled to 0..255, one channel, stratified split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    scaled = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8)
    images = torch.from_numpy(scaled)[:, None]                          # (N, 1, 8, 8)
    train, val = _split_arrays(images, digits.target.astype(np.int64), opts, split_val)
    return ClassificationData(classes=list(DIGIT_CLASSES), train=train, val=val, channels=opts.channels or 1,
                              image_size=opts.image_size or (8, 8), source="digits")


def find_idx_files(folder: Path) -> dict[str, Path]:
    """Map "train-images", "t10k-labels", ... to the IDX files found in `folder` (may be empty)."""
    found: dict[str, Path] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            match = _IDX_NAME.match(path.name)
            if match and path.is_file():
                found.setdefault(f"{match[1]}-{match[2]}", path)  # sorted: the raw file wins over .gz
    return found


def _read_pair(files: dict[str, Path], split: str, num_classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check the images and labels of one split: (N, H, W) uint8 and (N,) int64."""
    images_path, labels_path = files[f"{split}-images"], files[f"{split}-labels"]
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{images_path}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"{labels_path}: expected integer labels (N,), got {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise ValueError(f"{labels_path}: {len(labels)} labels for the {len(images)} images of {images_path}")
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 0 or (num_classes is not None and labels.max() >= num_classes)):
        raise ValueError(f"{labels_path}: labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    return images, labels


def load_idx_folder(folder: Path, opts: LoadOptions, *, classes: list[str] | None = None,
                    source: str | None = None, split_val: bool = True) -> ClassificationData:
    """An MNIST-style folder: train-* files, and t10k-* files used as the official test split.

    Without t10k files (or a test split) the training files are split with `opts.val_split`.
    Class names default to "0", "1", ... up to the largest label.
    """
    files = find_idx_files(folder)
    if not {"train-images", "train-labels"} <= files.keys():
        raise FileNotFoundError(f"{folder}: no train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] pair")
    train_images, train_labels = _read_pair(files, "train", len(classes) if classes else None)
    classes = classes or [str(i) for i in range(int(train_labels.max(initial=0)) + 1)]
    has_test = {"t10k-images", "t10k-labels"} <= files.keys()
    images = torch.from_numpy(train_images)[:, None]  # (N, 1, H, W)
    if has_test and split_val:
        test_images, test_labels = _read_pair(files, "t10k", len(classes))
        total = len(train_labels) + len(test_labels)
        train = in_memory(images, train_labels, opts, total=total)
        val = in_memory(torch.from_numpy(test_images)[:, None], test_labels, opts, total=total)
    else:
        train, val = _split_arrays(images, train_labels, opts, split_val)
    return ClassificationData(classes=list(classes), train=train, val=val, channels=opts.channels or 1,
                              image_size=opts.image_size or (int(train_images.shape[1]), int(train_images.shape[2])),
                              source=source or str(folder), val_is_test=has_test and split_val)


def load_idx_set(name: str, data_root: str | None, opts: LoadOptions, *, split_val: bool = True) -> ClassificationData:
    """A named IDX set ("fashion-mnist", "mnist") from `data_root` (or its subfolder `name`) or the default folder."""
    default, classes, how = IDX_SETS[name]
    candidates = [Path(data_root), Path(data_root) / name] if data_root else [default]
    for folder in candidates:
        if {"train-images", "train-labels", "t10k-images", "t10k-labels"} <= find_idx_files(folder).keys():
            return load_idx_folder(folder, opts, classes=classes, source=f"{name} ({folder})", split_val=split_val)
    raise FileNotFoundError(
        f"{name}: the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) are not in {' or '.join(map(str, candidates))}; "
        f"{how}`--data-root DIR` (data_root=DIR) with DIR holding them")
