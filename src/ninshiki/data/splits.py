"""Dataset splits for classification: decoded in memory (`InMemorySplit`, or `ConvertedSplit` when resized
on access), or decoded from files on access (`FileSplit`).

All yield ``(image uint8 (C, H, W), label int)``. A `FileSplit` item whose file cannot be read is an
`Unreadable` marker instead of an exception, and `collate_skipping` drops those from the batch and hands
back one message per file, so the training loop can warn and count without dying on one bad JPEG.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ninshiki.data.images import MAX_PIXELS, ImageReadError, read_image, resize_to, to_channels

Item = tuple[Tensor, int]


def convert(images: Tensor, image_size: tuple[int, int] | None, channels: int | None) -> Tensor:
    """Bring (..., C, H, W) uint8 images to `channels` and `image_size` (None keeps what they have)."""
    if channels is not None:
        images = to_channels(images, channels)
    if image_size is not None:
        images = resize_to(images, image_size)
    return images


@dataclass
class InMemorySplit(Dataset[Item]):
    """Decoded images held in one tensor; `images[i]` is exactly what item i yields.

    Shape:
        - images: (N, C, H, W) uint8.
        - labels: (N,) int64.
    """

    images: Tensor
    labels: Tensor
    paths: list[str] | None = None      # the file behind each image, for reporting predictions

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        self.labels = torch.as_tensor(self.labels, dtype=torch.int64)
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must have shape ({len(self.images)},), got {tuple(self.labels.shape)}")
        if self.paths is not None and len(self.paths) != len(self.images):
            raise ValueError(f"{len(self.paths)} paths for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Item:
        return self.images[index], int(self.labels[index])

    def subset(self, indices: np.ndarray) -> InMemorySplit:
        """The items at `indices` (a copy)."""
        index = torch.as_tensor(indices, dtype=torch.int64)
        paths = [self.paths[i] for i in index.tolist()] if self.paths is not None else None
        return InMemorySplit(self.images[index], self.labels[index], paths)


@dataclass
class ConvertedSplit(Dataset[Item]):
    """An `InMemorySplit` brought to another size and/or channel count item by item, on access.

    Used when converting the whole split up front would exceed the memory limit (60k images at
    224 x 224), so the images stay in memory at their native size. It is deliberately not an
    `InMemorySplit`: its `base.images` are not what it yields.
    """

    base: InMemorySplit
    image_size: tuple[int, int]
    channels: int

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Item:
        image, label = self.base[index]
        return convert(image, self.image_size, self.channels), label

    @property
    def labels(self) -> Tensor:
        return self.base.labels

    @property
    def paths(self) -> list[str] | None:
        return self.base.paths


@dataclass(frozen=True)
class Unreadable:
    """Stands in for an item whose file could not be decoded; `shape` is what the image would have had."""

    path: str
    reason: str
    shape: tuple[int, int, int]  # (C, H, W)

    @property
    def message(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class FileSplit(Dataset[Union[Item, Unreadable]]):
    """Images decoded from their files on every access, then brought to `image_size` with `resize_to`.

    With ``strict=False`` an unreadable file yields an `Unreadable` marker (use `collate_skipping`);
    with ``strict=True`` it raises `ImageReadError`.
    """

    paths: list[str]
    labels: list[int]
    image_size: tuple[int, int]
    channels: int = 3
    max_pixels: int = MAX_PIXELS
    strict: bool = False

    def __post_init__(self) -> None:
        self.paths = [str(p) for p in self.paths]
        self.labels = [int(label) for label in self.labels]
        if len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} paths for {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Item | Unreadable:
        path = self.paths[index]
        try:
            image = read_image(path, channels=self.channels, max_pixels=self.max_pixels)
        except ImageReadError as err:
            if self.strict:
                raise
            return Unreadable(path, err.reason, (self.channels, *self.image_size))
        return resize_to(image, self.image_size), self.labels[index]

    def subset(self, indices: np.ndarray) -> FileSplit:
        """The items at `indices`."""
        picked = [int(i) for i in indices]
        return FileSplit([self.paths[i] for i in picked], [self.labels[i] for i in picked],
                         self.image_size, self.channels, self.max_pixels, self.strict)


def collate_skipping(batch: list[Item | Unreadable]) -> tuple[Tensor, Tensor, list[str]]:
    """Stack the readable items; return one "path: reason" message per unreadable one.

    Works for both split types (an `InMemorySplit` never skips). A batch with nothing readable gives
    empty tensors of the right shape, so the caller can test ``len(labels) == 0``.

    Shape:
        - Output: images (B, C, H, W) uint8, labels (B,) int64, with B the readable items.
    """
    kept = [item for item in batch if not isinstance(item, Unreadable)]
    skipped = [item.message for item in batch if isinstance(item, Unreadable)]
    if kept:
        images = torch.stack([image for image, _ in kept])
    else:
        shape = batch[0].shape if batch else (0, 0, 0)
        images = torch.empty((0, *shape), dtype=torch.uint8)
    labels = torch.tensor([label for _, label in kept], dtype=torch.int64)
    return images, labels, skipped


def _random_keys(indices: np.ndarray, seed: int) -> np.ndarray:
    """A pseudo-random uint64 per index: the SplitMix64 finaliser of (seed, index).

    Written out rather than drawn from a NumPy generator so a split never changes with the NumPy
    version, the platform or Python's hash seed: a validation set stays the same set of files.
    """
    def mix(z: np.ndarray) -> np.ndarray:
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))

    golden = np.uint64(0x9E3779B97F4A7C15)
    base = mix(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) + golden)
    return mix(base + (indices.astype(np.uint64) + np.uint64(1)) * golden)  # uint64 arithmetic wraps


def stratified_split(labels: np.ndarray | list[int], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices so every class keeps the same share in train and validation.

    Each class gives ``round(n * val_fraction)`` (half up) of its samples to validation, but always keeps
    at least one in train (so a class with one sample goes to train). Which samples go is decided by a
    hash of (seed, index), so the split is the same on every run, platform and NumPy version.

    Args:
        labels: (N,) integer class labels.
        val_fraction: share of each class for validation, in [0, 1).
        seed: the random seed.

    Returns:
        (train_idx, val_idx), each sorted int64.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    keys = _random_keys(np.arange(len(labels)), seed)
    train: list[np.ndarray] = []
    val: list[np.ndarray] = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        members = members[np.argsort(keys[members], kind="stable")]  # shuffled, by the hash
        n_val = min(int(len(members) * val_fraction + 0.5), len(members) - 1)  # round half up
        val.append(members[:n_val])
        train.append(members[n_val:])
    return _sorted_indices(train), _sorted_indices(val)


def _sorted_indices(parts: list[np.ndarray]) -> np.ndarray:
    return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


@dataclass
class ClassificationData:
    """A labelled classification set, ready for a DataLoader with `collate_skipping`.

    Every split yields images of `channels` x `image_size` and labels indexing `classes`.
    """

    classes: list[str]
    train: Dataset | None
    val: Dataset | None
    channels: int
    image_size: tuple[int, int]           # (h, w)
    skipped: list[str] = field(default_factory=list)  # "path: reason" per unreadable file found while loading
    source: str = ""
    val_is_test: bool = False             # True when `val` is an official test split

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class LoadOptions:
    """The caller's choices that every source loader needs; None means "the source's native value"."""

    val_split: float = 0.1
    image_size: tuple[int, int] | None = None
    channels: int | None = None
    seed: int = 0
    strict: bool = False
    memory_limit_mb: int = 2048

    def fits_in_memory(self, count: int, channels: int, size: tuple[int, int]) -> bool:
        """Whether `count` decoded images of this shape stay within `memory_limit_mb`."""
        return count * channels * size[0] * size[1] <= self.memory_limit_mb * 2**20


def limit_split(split: InMemorySplit | ConvertedSplit | FileSplit, count: int, *, seed: int
                ) -> InMemorySplit | ConvertedSplit | FileSplit:
    """About `count` items of `split`, every class keeping its share (the same hash-seeded choice as
    `stratified_split`), in their original order: a smaller training set for quick comparisons."""
    labels = _split_labels(split)
    if count >= len(labels):
        return split
    _, keep = stratified_split(labels, count / len(labels), seed)
    return _subset(split, keep)


def _split_labels(split: InMemorySplit | ConvertedSplit | FileSplit) -> np.ndarray:
    if isinstance(split, ConvertedSplit):
        split = split.base
    if isinstance(split, InMemorySplit):
        return split.labels.cpu().numpy()
    if isinstance(split, FileSplit):
        return np.asarray(split.labels)
    raise TypeError(f"cannot take a subset of a {type(split).__name__}")


def _subset(split: InMemorySplit | ConvertedSplit | FileSplit, keep: np.ndarray
            ) -> InMemorySplit | ConvertedSplit | FileSplit:
    if isinstance(split, ConvertedSplit):
        return replace(split, base=_subset(split.base, keep))
    if isinstance(split, InMemorySplit):
        return split.subset(keep)
    return replace(split, paths=[split.paths[i] for i in keep], labels=[split.labels[i] for i in keep])
