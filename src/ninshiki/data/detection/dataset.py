"""Detection samples from annotated image files, and their batches.

`DetectionDataset` decodes each file with `read_image` (safe decoding, EXIF orientation applied, RGB), brings
the annotated boxes into the upright image's frame (`orientation.upright_boxes`), optionally tiles a mosaic
with three other images, and applies a transform such as `train_transform` / `eval_transform`. As for
classification (`data.splits.FileSplit`), a file that cannot be read is not an exception: the item is an
`Unreadable` marker, and `collate_detection` drops it from the batch and names it in `DetectionBatch.skipped`.

Decoded images can be kept in memory after their first read (`cache_images`): a few thousand 320-pixel
images take a few hundred MB. Each DataLoader worker process fills its own cache, so use persistent workers
(`detection_loader` does) or none for the cache to last across epochs.

Instance segmentation (`with_masks`) adds each object's mask to its target, rasterised from the record's
COCO segmentation (polygons or RLE, by pycocotools' rasteriser: the pixels the mask AP is computed on) in
the annotated frame and turned upright like the boxes (`orientation.orient_masks`). Masks are rasterised
anew for every sample and never cached: one image's masks are N full-size planes, a dataset's would not fit.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ninshiki.data.annotations import AnnotatedSet, AnnotationError
from ninshiki.data.detection.mosaic import mosaic, random_center
from ninshiki.data.detection.orientation import annotation_orientation, exif_orientation, orient_boxes, orient_masks
from ninshiki.data.detection.transforms import Letterbox
from ninshiki.data.images import ImageReadError, read_image
from ninshiki.data.splits import Unreadable

Target = dict[str, Tensor]
Transform = Callable[[Tensor, Target], tuple[Tensor, Target, Letterbox]]


@dataclass
class DetectionSample:
    """One transformed image with its target in network-input pixels."""
    image: Tensor          # (3, S, S) float32 in [0, 1]
    target: Target         # "boxes" (N, 4) float32 xyxy input pixels, "labels" (N,) int64 (+ "iscrowd", "masks")
    letterbox: Letterbox   # input pixels -> pixels of the image before the final resize (the original in eval)
    index: int             # position in the dataset (and in AnnotatedSet.images)
    file: Path             # the image file


@dataclass
class DetectionBatch:
    """Samples stacked for a model; unreadable files of the batch are named in `skipped`, not included."""
    images: Tensor                    # (B, 3, S, S) float32 in [0, 1]
    targets: list[Target]
    letterboxes: list[Letterbox]
    indices: list[int]
    files: list[Path]
    skipped: list[str] = field(default_factory=list)  # "path: reason" per unreadable file

    def __len__(self) -> int:
        return len(self.indices)

    def to(self, device: str | torch.device, *, non_blocking: bool = True) -> DetectionBatch:
        """The batch with images and target tensors on `device` (asynchronous copies from pinned memory)."""
        def move(tensor: Tensor) -> Tensor:
            return tensor.to(device, non_blocking=non_blocking)

        return replace(self, images=move(self.images),
                       targets=[{key: move(value) for key, value in target.items()} for target in self.targets])

    def pin_memory(self) -> DetectionBatch:
        """Called by DataLoader(pin_memory=True): page-locked tensors for asynchronous copies to the GPU."""
        return replace(self, images=self.images.pin_memory(),
                       targets=[{key: value.pin_memory() for key, value in target.items()} for target in self.targets])


class DetectionDataset(Dataset):
    """Items are `DetectionSample`s, or `Unreadable` markers for files that cannot be decoded.

    Args:
        annotated: the split's images and boxes.
        transform: `(image uint8 (3, H, W), target) -> (image, target, Letterbox)`, e.g. `train_transform`.
        cache_images: keep decoded images (and their upright boxes) in memory after the first read.
        mosaic: probability of tiling each item with three random others (`mosaic.mosaic`) before the
            transform; None takes the transform's own `mosaic` (`train_transform(mosaic=...)`). Needs a
            transform with a `size` (the canvas side).
        skip_crowd: drop COCO crowd regions from the targets; otherwise they stay, flagged in "iscrowd" (their
            masks too, with `with_masks`).
        with_masks: add "masks" (N, H, W) uint8 to each target, one per box, from the records'
            `segmentations` (see the module docstring); transforms and mosaic move them with the boxes.

    Raises (from `__getitem__`):
        AnnotationError: the annotated image size is neither the file's stored nor its upright size; with
            `with_masks`, an object without a segmentation or with a malformed one (naming file and object).
    """

    def __init__(self, annotated: AnnotatedSet, transform: Transform, *, cache_images: bool = True,
                 mosaic: float | None = None, skip_crowd: bool = True, with_masks: bool = False) -> None:
        self.annotated, self.transform = annotated, transform
        self.cache_images, self.skip_crowd, self.with_masks = cache_images, skip_crowd, with_masks
        self.mosaic = float(getattr(transform, "mosaic", 0.0) if mosaic is None else mosaic)
        if not 0.0 <= self.mosaic <= 1.0:
            raise ValueError(f"mosaic is a probability in [0, 1], got {self.mosaic}")
        self.size: int | None = getattr(transform, "size", None)
        if self.mosaic > 0 and not self.size:
            raise ValueError("mosaic needs a transform with a `size` attribute (the canvas side), "
                             f"such as train_transform(...); got {transform!r}")
        # image, target without masks, and the orientation that moved the annotations upright
        self._cache: list[tuple[Tensor, Target, int] | None] = [None] * len(annotated.images)

    def __len__(self) -> int:
        return len(self.annotated.images)

    def file(self, index: int) -> Path:
        return self.annotated.path(self.annotated.images[index])

    def load(self, index: int) -> tuple[Tensor, Target]:
        """The decoded upright image and its target in its pixels, before any transform.

        Shape:
            - Output: image (3, H, W) uint8; boxes (N, 4) float32 xyxy; labels (N,) int64; with
              `with_masks`, masks (N, H, W) uint8.

        Raises:
            ImageReadError: the file cannot be decoded.
        """
        cached = self._cache[index]
        if cached is None:
            cached = self._decode(index)
            if self.cache_images:
                self._cache[index] = cached
        image, target, turn = cached
        if self.with_masks:
            target = {**target, "masks": self._masks(index, turn, tuple(image.shape[-2:]))}
        return image, target

    def _decode(self, index: int) -> tuple[Tensor, Target, int]:
        record = self.annotated.images[index]
        path = self.file(index)
        image = read_image(path)                                            # (3, H, W) uint8, upright
        annotated = (record.height, record.width)
        turn = annotation_orientation(annotated=annotated, decoded=tuple(image.shape[-2:]),
                                      orientation=exif_orientation(path), path=path)
        boxes = torch.from_numpy(record.boxes).to(torch.float32).reshape(-1, 4)  # (N, 4) xyxy as annotated
        boxes = boxes if turn == 1 else orient_boxes(boxes, turn, annotated)
        target: Target = {"boxes": boxes, "labels": torch.from_numpy(record.labels).to(torch.int64)}
        crowd = torch.from_numpy(record.iscrowd).to(torch.bool)             # (N,)
        if self.skip_crowd:
            target = {key: value[~crowd] for key, value in target.items()}
        else:
            target["iscrowd"] = crowd
        return image, target, turn

    def _masks(self, index: int, turn: int, size: tuple[int, int]) -> Tensor:
        """(N, H, W) uint8 masks of the objects `load` keeps, in the upright image's pixels."""
        from ninshiki.data.formats.rle import decode_segmentation  # faster-coco-eval: imported when masks are used

        record = self.annotated.images[index]
        kept = [j for j in range(len(record)) if not (self.skip_crowd and record.iscrowd[j])]
        masks = torch.zeros((len(kept), record.height, record.width), dtype=torch.uint8)  # (N, h, w) annotated
        for row, j in enumerate(kept):
            segmentation = record.segmentations[j] if record.segmentations is not None else None
            if segmentation is None:
                raise AnnotationError(f"{self.file(index)}: object {j} has no segmentation; instance masks need "
                                      "one (polygons or RLE) for every object")
            try:
                pixels = decode_segmentation(segmentation, record.height, record.width)  # (h, w) bool
            except (ValueError, TypeError, KeyError) as err:
                raise AnnotationError(f"{self.file(index)}: object {j}: malformed segmentation ({err})") from None
            masks[row] = torch.from_numpy(pixels)
        masks = orient_masks(masks, turn)                                   # (N, H, W) upright
        if tuple(masks.shape[-2:]) != size:   # cannot happen after annotation_orientation; guards the invariant
            raise AnnotationError(f"{self.file(index)}: masks of {tuple(masks.shape[-2:])} for an image of {size}")
        return masks.contiguous()

    def __getitem__(self, index: int) -> DetectionSample | Unreadable:
        path = self.file(index)
        try:
            image, target = self._mosaic_or_single(index)
        except ImageReadError as err:
            shape = (3, self.size, self.size) if self.size else (3, 0, 0)
            return Unreadable(str(path), err.reason, shape)
        image, target, box = self.transform(image, target)
        return DetectionSample(image, target, box, index, path)

    def _mosaic_or_single(self, index: int) -> tuple[Tensor, Target]:
        image, target = self.load(index)  # this item's own file: its failure makes the item Unreadable
        if self.mosaic <= 0 or float(torch.rand(())) >= self.mosaic:
            return image, target
        partners = torch.randint(len(self), (3,)).tolist()
        try:
            parts = [(image, target)] + [self.load(i) for i in partners]
        except ImageReadError:
            return image, target  # that partner is reported when its own index comes up
        return mosaic(parts, self.size, center=random_center(self.size))


def collate_detection(samples: Sequence[DetectionSample | Unreadable]) -> DetectionBatch:
    """Stack the readable samples; name the unreadable ones.

    Shape:
        - Output images: (B, 3, S, S) float32 with B the readable samples; (0, 3, S, S) when none is.
    """
    kept = [s for s in samples if isinstance(s, DetectionSample)]
    skipped = [s.message for s in samples if isinstance(s, Unreadable)]
    if kept:
        images = torch.stack([s.image for s in kept])
    else:
        shape = samples[0].shape if samples else (3, 0, 0)
        images = torch.empty((0, *shape), dtype=torch.float32)
    return DetectionBatch(images, [s.target for s in kept], [s.letterbox for s in kept], [s.index for s in kept],
                          [s.file for s in kept], skipped)


def detection_loader(dataset: Dataset, *, batch_size: int, shuffle: bool, workers: int = 0,
                     generator: torch.Generator | None = None, drop_last: bool = False,
                     pin_memory: bool | None = None) -> DataLoader:
    """A DataLoader of `DetectionBatch`es, with persistent workers when `workers` > 0.

    The order follows `generator`; so does the augmentation when `workers` > 0 (PyTorch seeds each worker
    from it), while with `workers` = 0 it draws from the main process's global generator. `pin_memory`
    None pins when CUDA is available.
    """
    pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      collate_fn=collate_detection, generator=generator, drop_last=drop_last,
                      persistent_workers=workers > 0, pin_memory=pin_memory)
