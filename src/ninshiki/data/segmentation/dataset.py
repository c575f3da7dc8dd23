"""Semantic segmentation samples from image files and their class maps, and their batches.

`SegmentationDataset` decodes each image with `read_image` (safe decoding, EXIF orientation applied, RGB),
reads its class map with `load_label_mask`, brings the map into the upright image's frame and applies a
transform (`transforms.train_transform` / `transforms.eval_transform`). As for detection, an image file that
cannot be decoded is not an exception: the item is an `Unreadable` marker, and `collate_segmentation` drops
it and names it in `SegmentationBatch.skipped`. A wrong mask (missing, unreadable, of another size, with
values outside the classes) is the user's data being wrong: its `AnnotationError` propagates.

EXIF orientation: masks are drawn on the displayed (upright) photo in practice, so a mask the size of the
upright image is used as it is. A mask the size of the image as stored, when the file has an EXIF orientation
other than 1, is turned and mirrored the way the pixels are (`upright_mask`). Where both frames have the same
size (a 180-degree turn, a mirror, a square image) the mask is taken as upright. Any other size is an error.

Decoded images and their upright masks can be kept in memory after the first read (`cache_images`). Each
DataLoader worker fills its own cache, so use persistent workers (`segmentation_loader` does) or none.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ninshiki.data.annotations import AnnotationError
from ninshiki.data.detection.orientation import exif_orientation
from ninshiki.data.images import ImageReadError, read_image
from ninshiki.data.segmentation.transforms import IGNORE_INDEX, MULTIPLE, Placement
from ninshiki.data.segmentation.types import SegmentationSet, load_label_mask
from ninshiki.data.splits import Unreadable

Transform = Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Placement]]


@dataclass
class SegmentationSample:
    """One transformed image with its class map, and what maps predictions back to the original."""
    image: Tensor                      # (3, H, W) float32 in [0, 1]
    mask: Tensor                       # (H, W) int64 class indices, ignore_index unlabelled or padding
    valid_size: tuple[int, int]        # (h, w) of image content at the top-left
    original_size: tuple[int, int]     # (H0, W0) of the upright decoded image
    index: int                         # position in the dataset (and in SegmentationSet.items)
    file: Path                         # the image file
    original_mask: Tensor | None = None  # (H0, W0) uint8 upright class map (keep_original_mask); read-only


@dataclass
class SegmentationBatch:
    """Samples padded to one size (a multiple of 32); unreadable files are named in `skipped`."""
    images: Tensor                     # (B, 3, H, W) float32 in [0, 1], zero-padded bottom and right
    targets: Tensor                    # (B, H, W) int64, padded with ignore_index
    valid_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]
    indices: list[int]
    files: list[Path]
    original_masks: list[Tensor | None]
    skipped: list[str] = field(default_factory=list)  # "path: reason" per unreadable file

    def __len__(self) -> int:
        return len(self.indices)

    def to(self, device: str | torch.device, *, non_blocking: bool = True) -> SegmentationBatch:
        """The batch with images, targets and original masks on `device` (asynchronous from pinned memory)."""
        def move(tensor: Tensor | None) -> Tensor | None:
            return None if tensor is None else tensor.to(device, non_blocking=non_blocking)

        return replace(self, images=move(self.images), targets=move(self.targets),
                       original_masks=[move(mask) for mask in self.original_masks])

    def pin_memory(self) -> SegmentationBatch:
        """Called by DataLoader(pin_memory=True): page-locked tensors for asynchronous copies to the GPU."""
        return replace(self, images=self.images.pin_memory(), targets=self.targets.pin_memory(),
                       original_masks=[None if m is None else m.pin_memory() for m in self.original_masks])


def upright_mask(mask: Tensor, *, decoded: tuple[int, int], orientation: int, path: Path) -> Tensor:
    """A class map in the frame of the upright decoded image, by the rule of the module docstring.

    Args:
        mask: (h, w) class map as read.
        decoded: (H, W) of the image `read_image` returned (upright).
        orientation: the image file's EXIF orientation 1-8.
        path: the mask (or image) file, for the error message.

    Raises:
        AnnotationError: the mask is neither the upright nor the stored size of its image.
    """
    height, width = decoded
    if tuple(mask.shape) == (height, width):
        return mask
    stored = (width, height) if orientation >= 5 else (height, width)
    if orientation != 1 and tuple(mask.shape) == stored:
        return _orient(mask, orientation)
    note = f" ({stored[1]}x{stored[0]} as stored, EXIF orientation {orientation})" if orientation != 1 else ""
    raise AnnotationError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image is "
                          f"{width}x{height}{note}")


def _orient(mask: Tensor, orientation: int) -> Tensor:
    """Move a stored-frame map as PIL's `exif_transpose` moves the pixels (transposes named as PIL's)."""
    moved = {
        2: lambda m: m.flip(1),                 # FLIP_LEFT_RIGHT
        3: lambda m: m.flip(0, 1),              # ROTATE_180
        4: lambda m: m.flip(0),                 # FLIP_TOP_BOTTOM
        5: lambda m: m.T,                       # TRANSPOSE
        6: lambda m: torch.rot90(m, -1),        # ROTATE_270 (90 degrees clockwise)
        7: lambda m: m.flip(0, 1).T,            # TRANSVERSE
        8: lambda m: torch.rot90(m, 1),         # ROTATE_90 (anticlockwise)
    }[orientation](mask)
    return moved.contiguous()


class SegmentationDataset(Dataset):
    """Items are `SegmentationSample`s, or `Unreadable` markers for image files that cannot be decoded.

    Args:
        seg_set: the split's images and where their class maps come from.
        transform: `(image uint8 (3, H, W), mask uint8 (H, W)) -> (image, mask, Placement)`.
        cache_images: keep decoded images and upright masks in memory after the first read.
        keep_original_mask: put the upright full-resolution class map in each sample (for evaluation at the
            original resolution when the transform scales images; see `transforms`).

    Raises (from `__getitem__`):
        AnnotationError: the class map is missing, unreadable, of the wrong size or holds unknown classes.
    """

    def __init__(self, seg_set: SegmentationSet, transform: Transform, *, cache_images: bool = True,
                 keep_original_mask: bool = False) -> None:
        self.seg_set, self.transform = seg_set, transform
        self.cache_images, self.keep_original_mask = cache_images, keep_original_mask
        self._cache: list[tuple[Tensor, Tensor] | None] = [None] * len(seg_set.items)

    def __len__(self) -> int:
        return len(self.seg_set.items)

    def file(self, index: int) -> Path:
        return self.seg_set.path(self.seg_set.items[index])

    def load(self, index: int) -> tuple[Tensor, Tensor]:
        """The decoded upright image and its upright class map, before any transform.

        Shape:
            - Output: image (3, H, W) uint8; mask (H, W) uint8.

        Raises:
            ImageReadError: the image file cannot be decoded.
            AnnotationError: as the class docstring says.
        """
        cached = self._cache[index]
        if cached is not None:
            return cached
        item = self.seg_set.items[index]
        path = self.file(index)
        image = read_image(path)   # (3, H, W) uint8, upright
        labels = torch.from_numpy(load_label_mask(self.seg_set, item))   # (h, w) uint8 as stored
        where = self.seg_set.mask_path(item) or path
        mask = upright_mask(labels, decoded=(int(image.shape[1]), int(image.shape[2])),
                            orientation=exif_orientation(path), path=where)
        if self.cache_images:
            self._cache[index] = (image, mask)
        return image, mask

    def __getitem__(self, index: int) -> SegmentationSample | Unreadable:
        path = self.file(index)
        try:
            image, mask = self.load(index)
        except ImageReadError as err:
            size = getattr(self.transform, "size", None)
            return Unreadable(str(path), err.reason, (3, size, size) if size else (3, 0, 0))
        out_image, out_mask, placement = self.transform(image, mask)
        original = mask if self.keep_original_mask else None
        return SegmentationSample(out_image, out_mask, placement.valid_size, (int(mask.shape[0]), int(mask.shape[1])),
                                  index, path, original)


def _round_up(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple


def collate_segmentation(samples: Sequence[SegmentationSample | Unreadable], *, multiple: int = MULTIPLE,
                         ignore_index: int = IGNORE_INDEX) -> SegmentationBatch:
    """Pad the readable samples to the batch's largest size rounded up to `multiple`; name the unreadable.

    Images are padded with 0 and targets with `ignore_index`, at the bottom and right, so each sample's
    content keeps the top-left `valid_size` corner.

    Shape:
        - Output images: (B, 3, H, W) float32, targets (B, H, W) int64, with B the readable samples and H, W
          multiples of `multiple`; (0, 3, H, W) from the markers' shape when none is readable.
    """
    kept = [s for s in samples if isinstance(s, SegmentationSample)]
    skipped = [s.message for s in samples if isinstance(s, Unreadable)]
    sizes = [tuple(s.image.shape[-2:]) for s in kept] or [tuple(s.shape[-2:]) for s in samples] or [(0, 0)]
    height = _round_up(max(h for h, _ in sizes), multiple)
    width = _round_up(max(w for _, w in sizes), multiple)
    images = torch.zeros((len(kept), 3, height, width), dtype=torch.float32)    # (B, 3, H, W)
    targets = torch.full((len(kept), height, width), ignore_index, dtype=torch.int64)   # (B, H, W)
    for i, sample in enumerate(kept):
        h, w = sample.image.shape[-2:]
        images[i, :, :h, :w] = sample.image
        targets[i, :h, :w] = sample.mask
    return SegmentationBatch(images, targets, [s.valid_size for s in kept], [s.original_size for s in kept],
                             [s.index for s in kept], [s.file for s in kept], [s.original_mask for s in kept],
                             skipped)


def segmentation_loader(dataset: Dataset, *, batch_size: int, shuffle: bool, workers: int = 0,
                        generator: torch.Generator | None = None, drop_last: bool = False,
                        pin_memory: bool | None = None) -> DataLoader:
    """A DataLoader of `SegmentationBatch`es, with persistent workers when `workers` > 0.

    The padding multiple comes from the dataset's transform (`multiple`, default 32) and the padding label
    from its `SegmentationSet.ignore_index`. The order follows `generator`; so does the augmentation when
    `workers` > 0 (PyTorch seeds each worker from it). `pin_memory` None pins when CUDA is available.
    """
    multiple = int(getattr(getattr(dataset, "transform", None), "multiple", MULTIPLE))
    ignore_index = int(getattr(getattr(dataset, "seg_set", None), "ignore_index", IGNORE_INDEX))
    collate = functools.partial(collate_segmentation, multiple=multiple, ignore_index=ignore_index)
    pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, collate_fn=collate,
                      generator=generator, drop_last=drop_last, persistent_workers=workers > 0,
                      pin_memory=pin_memory)
