"""Detection transforms: the image, its xyxy boxes and any instance masks moved together by
torchvision.transforms.v2, ending in a letterbox to a square network input.

The augmentations are those each detector family was published with:

- ``"ssd"``: SSD (Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016): zoom-out onto a canvas up
  to 4x the image's side (the "expansion" trick for small objects), a random crop that keeps a minimum IoU
  with some object, horizontal flip, and photometric distortion. The distortion is per pixel, so it is
  applied after the letterbox, to S x S pixels whatever the photo's size (3-4x cheaper for a 640 x 480 photo
  at S = 320; the paper distorts first); it then also tints the grey padding, which holds no object.
- ``"yolo"``: YOLO (Redmon et al., 2016; the recipe of its successors): scale jitter 0.5-1.5 and 10%
  translation as one affine warp of the letterboxed image, horizontal flip, HSV jitter (`color.RandomHSV`).
  Mosaic (4 images in one, Bochkovskiy et al., YOLOv4, 2020) needs other samples, so the dataset does it
  (`ninshiki.data.detection.mosaic`); the transform only records its probability.
- ``"basic"``: horizontal flip (Faster R-CNN, R-CNN). ``"none"``: the letterbox alone (evaluation).

The letterbox resizes (antialiased) so the longer side equals the input size and pads the bottom and right
with grey 114, so the image keeps the input's top-left corner: `Letterbox.valid_size` is then the
(height, width) a detector's postprocess clips to, and mapping back is one scale (`Letterbox.to_original`
for boxes, `Letterbox.masks_to_original` for instance masks). Boxes that leave the image or shrink below
`MIN_BOX_SIZE` input pixels are dropped together with their labels, masks and any other per-box entry
(``iscrowd``), by `SanitizeBoundingBoxes`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ninshiki.data.detection.color import RandomHSV

GREY = 114            # letterbox and zoom-out fill, as YOLO and SSD ports use
MIN_BOX_SIZE = 2.0    # boxes narrower or shorter than this many input pixels are dropped
MODES = ("ssd", "yolo", "basic", "none")
Target = dict[str, Tensor]


@dataclass(frozen=True)
class Letterbox:
    """How an image of `size` = (h, w) was placed on the network input: input = original * scale + pad.

    Our `letterbox` pads bottom and right, so its pads are 0; the fields allow centred placements too.
    """
    scale: float
    pad_x: float
    pad_y: float
    size: tuple[int, int]  # (h, w) of the original image

    @staticmethod
    def fit(size: tuple[int, int], side: int) -> Letterbox:
        """The letterbox that scales an image of `size` = (h, w) so its longer side is `side`."""
        height, width = size
        if height < 1 or width < 1 or side < 1:
            raise ValueError(f"cannot letterbox an image of {width}x{height} pixels to {side}")
        return Letterbox(side / max(height, width), 0.0, 0.0, (int(height), int(width)))

    @property
    def resized(self) -> tuple[int, int]:
        """(h, w) of the resized image before padding (rounded half up, at least 1)."""
        height, width = self.size
        return max(1, math.floor(height * self.scale + 0.5)), max(1, math.floor(width * self.scale + 0.5))

    def to_input(self, boxes: Tensor) -> Tensor:
        """Map xyxy boxes from original-image pixels to network-input pixels.

        Shape:
            - boxes: (N, 4) float, xyxy. Output: (N, 4), same dtype and device.
        """
        shift = boxes.new_tensor([self.pad_x, self.pad_y, self.pad_x, self.pad_y])
        return boxes * self.scale + shift

    def to_original(self, boxes: Tensor) -> Tensor:
        """Map xyxy boxes from network-input pixels back to original-image pixels, clipped to that image.

        Shape:
            - boxes: (N, 4) float, xyxy. Output: (N, 4), same dtype and device.
        """
        shift = boxes.new_tensor([self.pad_x, self.pad_y, self.pad_x, self.pad_y])
        out = (boxes - shift) / self.scale  # (N, 4)
        height, width = self.size
        return torch.stack([out[:, 0].clamp(0, width), out[:, 1].clamp(0, height),
                            out[:, 2].clamp(0, width), out[:, 3].clamp(0, height)], dim=1)

    def masks_to_original(self, masks: Tensor, *, threshold: float | None = 0.5) -> Tensor:
        """Map per-object masks from network-input pixels back to the original image's pixels.

        Each original pixel takes the input's value where its centre lands, ``(x + 0.5) * scale + pad``:
        the nearest input pixel's for bool masks; for probabilities, the bilinear interpolation of the four
        around it (`F.interpolate`'s ``align_corners=False`` rule, at the exact letterbox scale rather than
        a rounded size ratio), thresholded to bool (``>= threshold``) unless `threshold` is None. Only the
        pixels the resized image fills are read, never the padding. Objects are processed in chunks, so the
        float intermediates stay below ~64 MB.

        Args:
            masks: over the whole input or cropped to its valid region (`valid_size`): anything anchored at
                the input's top-left corner that covers the image.
            threshold: for float masks, the probability from which a pixel belongs to the object.

        Shape:
            - masks: (N, h, w) bool or float. Output: (N, H0, W0) with (H0, W0) = `size`, bool (float for
              float masks with `threshold` None), on the masks' device.

        Raises:
            ValueError: masks that are not (N, h, w) or do not cover the image's region.
        """
        height, width = self.size
        rows, (y_first, y_last) = self._centres(height, self.pad_y, masks, -2)       # (H0,) input y
        cols, (x_first, x_last) = self._centres(width, self.pad_x, masks, -1)       # (W0,) input x
        if masks.dtype == torch.bool:
            iy, ix = rows.floor().long().clamp(y_first, y_last), cols.floor().long().clamp(x_first, x_last)
            return masks[:, iy][:, :, ix]                                            # (N, H0, W0)
        (y0, y1, wy), (x0, x1, wx) = _bilinear(rows, y_first, y_last), _bilinear(cols, x_first, x_last)
        chunk = max(1, (16 << 20) // max(1, height * max(masks.shape[-1], width)))
        out = []
        for part in masks.split(chunk):
            part = part.float()                                                      # (n, h, w)
            part = part[:, y0] * (1 - wy)[:, None] + part[:, y1] * wy[:, None]       # (n, H0, w)
            part = part[:, :, x0] * (1 - wx) + part[:, :, x1] * wx                    # (n, H0, W0)
            out.append(part if threshold is None else part >= threshold)
        if not out:
            return masks.new_zeros((0, height, width), dtype=torch.float32 if threshold is None else torch.bool)
        return torch.cat(out)

    def _centres(self, count: int, pad: float, masks: Tensor, dim: int) -> tuple[Tensor, tuple[int, int]]:
        """Input coordinates of the original pixels' centres along one axis, and the first and last input
        pixel the resized image fills there (`resized`, shifted by the pad)."""
        if masks.ndim != 3:
            raise ValueError(f"masks must be (N, h, w), got shape {tuple(masks.shape)}")
        centres = (torch.arange(count, dtype=torch.float64, device=masks.device) + 0.5) * self.scale + pad  # (count,)
        first = math.floor(pad + 0.5)
        last = max(first, math.floor(pad + count * self.scale + 0.5) - 1)
        if masks.shape[dim] <= last:
            raise ValueError(f"masks of shape {tuple(masks.shape)} do not cover the image: a {self.size[1]}x"
                             f"{self.size[0]} image letterboxed at scale {self.scale:g} fills input pixels "
                             f"{first}..{last} along dimension {dim}")
        return centres, (first, last)

    def valid_size(self, input_size: int | Sequence[int]) -> tuple[int, int]:
        """(h, w) of the region of an input of `input_size` (a side, or (h, w)) that the image covers.

        It is where the image's far edges land (`to_input`), rounded up: a box clipped to it reaches the
        original image's edges. The resized pixels (`resized`) may end up to half a pixel short of it.
        """
        in_h, in_w = (input_size, input_size) if isinstance(input_size, int) else (int(input_size[0]),
                                                                                 int(input_size[1]))
        height, width = self.size
        far_y, far_x = self.pad_y + height * self.scale, self.pad_x + width * self.scale
        return min(in_h, math.ceil(round(far_y, 6))), min(in_w, math.ceil(round(far_x, 6)))


def _bilinear(centres: Tensor, first: int, last: int) -> tuple[Tensor, Tensor, Tensor]:
    """Neighbour indices and weight of linear interpolation at continuous coordinates, as `F.interpolate`
    with ``align_corners=False`` over the pixels first..last (the edge pixels' values continue outwards).

    Shape:
        - centres: (M,) float64. Output: lower (M,) int64, upper (M,) int64, weight of the upper (M,) float32.
    """
    source = (centres - 0.5).clamp(first, last)                              # (M,) in pixel-index units
    lower = source.floor().long()
    upper = (lower + 1).clamp(max=last)
    return lower, upper, (source - lower).float()


def letterbox_boxes(boxes: Tensor, box: Letterbox) -> Tensor:
    """Move xyxy boxes of the original image onto the letterboxed input (`Letterbox.to_input`)."""
    return box.to_input(boxes)


def letterbox(image: Tensor, size: int) -> tuple[Tensor, Letterbox]:
    """Resize keeping the aspect ratio so the longer side is `size` (antialiased); pad bottom/right with 114.

    Shape:
        - image: (C, H, W) uint8. Output: (C, size, size) uint8.
    """
    box = Letterbox.fit(tuple(image.shape[-2:]), size)
    return _fit_image(image, box, size), box


def _fit_image(image: Tensor, box: Letterbox, size: int, *, fill: int = GREY) -> Tensor:
    """Resize and pad one image-like tensor: an image (antialiased), or (N, H, W) `tv_tensors.Mask`s.

    Masks take the pixel nearest to each output pixel's centre (NEAREST_EXACT: torch's plain NEAREST reads
    up to a pixel up and left of it), the rule `Letterbox.masks_to_original` inverts.
    """
    res_h, res_w = box.resized
    if tuple(image.shape[-2:]) != (res_h, res_w):
        exact = v2.InterpolationMode.NEAREST_EXACT if isinstance(image, tv_tensors.Mask) else None
        image = (TF.resize(image, [res_h, res_w], interpolation=exact) if exact is not None
                 else TF.resize(image, [res_h, res_w], antialias=True))
    if (res_h, res_w) != (size, size):
        image = TF.pad(image, [0, 0, size - res_w, size - res_h], fill=fill)
    return image


def _letterbox_sample(image: tv_tensors.Image, target: Target, size: int) -> tuple[Any, Target, Letterbox]:
    """Letterbox an image with its boxes and masks (tv_tensors in, tv_tensors out)."""
    box = Letterbox.fit(tuple(image.shape[-2:]), size)
    out = dict(target)
    boxes = target["boxes"]
    out["boxes"] = tv_tensors.BoundingBoxes(box.to_input(boxes.as_subclass(Tensor)), format="XYXY",
                                            canvas_size=(size, size))
    if "masks" in target:
        masks = target["masks"]
        out["masks"] = (tv_tensors.Mask(_fit_image(tv_tensors.Mask(masks), box, size, fill=0)) if len(masks)
                        else tv_tensors.Mask(masks.new_zeros(0, size, size)))
    return _fit_image(image, box, size), out, box


def _per_box_entries(inputs: tuple[Any, Target]) -> list[Tensor]:
    """Labels and every other per-box tensor (iscrowd, areas) for SanitizeBoundingBoxes to filter.

    Masks are left out: SanitizeBoundingBoxes filters them by itself.
    """
    target = inputs[1]
    count = target["boxes"].shape[0]
    return [value for key, value in target.items() if key not in ("boxes", "masks")
            and isinstance(value, Tensor) and value.ndim >= 1 and value.shape[0] == count]


def _wrap(image: Tensor, target: Mapping[str, Tensor]) -> tuple[tv_tensors.Image, Target]:
    """Check the inputs and wrap them as tv_tensors (copies: cached dataset tensors must stay untouched)."""
    if not isinstance(image, Tensor) or image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"expected a uint8 (3, H, W) image, got {getattr(image, 'dtype', '')} {shape}")
    height, width = image.shape[-2:]
    boxes = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4)
    labels = torch.as_tensor(target["labels"], dtype=torch.int64)
    if labels.shape != (len(boxes),):
        raise ValueError(f"{len(boxes)} boxes but labels of shape {tuple(labels.shape)}")
    out: Target = {key: torch.as_tensor(value).clone() for key, value in target.items() if key not in ("boxes", "labels")}
    out["boxes"] = tv_tensors.BoundingBoxes(boxes.clone(), format="XYXY", canvas_size=(height, width))
    out["labels"] = labels.clone()
    if "masks" in target:
        masks = out["masks"]
        if masks.shape != (len(boxes), height, width):
            raise ValueError(f"masks of shape {tuple(masks.shape)} for {len(boxes)} boxes on a "
                             f"{width}x{height} image; expected ({len(boxes)}, {height}, {width})")
        out["masks"] = tv_tensors.Mask(masks)
    return tv_tensors.Image(image), out


class DetectionTransform:
    """`(image uint8 (3, H, W), target) -> (image float32 (3, S, S) in [0, 1], target, Letterbox)`.

    `before` runs on the original image, then the letterbox, then `after` on the S x S input, then boxes
    are clamped to the input and sanitized. The returned `Letterbox` maps input pixels to the image the
    letterbox was applied to: the original image when no augmentation changes geometry (evaluation).
    Random choices come from torch's global generator (seeded per DataLoader worker by PyTorch).

    Target: {"boxes": (N, 4) float xyxy, "labels": (N,) int64, optional "masks": (N, H, W) uint8, and
    optional other (N,) entries such as "iscrowd"}; the output target is in input pixels, boxes float32.
    """

    def __init__(self, *, size: int, mode: str = "none", mosaic: float = 0.0,
                 before: Sequence[v2.Transform] = (), after: Sequence[v2.Transform] = ()) -> None:
        if size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        if not 0.0 <= mosaic <= 1.0:
            raise ValueError(f"mosaic is a probability in [0, 1], got {mosaic}")
        self.size, self.mode, self.mosaic = int(size), mode, float(mosaic)
        self.before, self.after = list(before), list(after)
        self.finish = v2.Compose([v2.ClampBoundingBoxes(),
                                  v2.SanitizeBoundingBoxes(min_size=MIN_BOX_SIZE, labels_getter=_per_box_entries)])

    def __call__(self, image: Tensor, target: Mapping[str, Tensor]) -> tuple[Tensor, Target, Letterbox]:
        image, sample = _wrap(image, target)
        for step in self.before:
            if isinstance(step, v2.RandomIoUCrop) and len(sample["boxes"]) == 0:
                continue  # it needs an object to keep; an empty image would only retry until it gives up
            image, sample = step(image, sample)
        image, sample, box = _letterbox_sample(image, sample, self.size)
        for step in self.after:
            image, sample = step(image, sample)
        image, sample = self.finish(image, sample)
        out = {key: value.as_subclass(Tensor) if isinstance(value, Tensor) else value for key, value in sample.items()}
        return TF.to_dtype(image.as_subclass(Tensor), torch.float32, scale=True), out, box

    def __repr__(self) -> str:
        names = [type(step).__name__ for step in self.before] + ["letterbox"] + [type(step).__name__ for step in self.after]
        steps = ", ".join(names)
        return f"DetectionTransform(size={self.size}, mode={self.mode!r}, mosaic={self.mosaic}, steps=[{steps}])"


def _fill() -> dict[type, int]:
    # A new dict each time: torchvision converts the values in place.
    return {tv_tensors.Image: GREY, tv_tensors.Mask: 0}


def train_transform(size: int, *, mode: str = "ssd", mosaic: float = 0.0, hflip: float = 0.5,
                    photometric: bool = True) -> DetectionTransform:
    """The training augmentation of `mode` (see the module docstring), ending in an S x S letterbox.

    Args:
        size: the network input side S.
        mode: "ssd", "yolo", "basic" or "none".
        mosaic: probability of a 4-image mosaic, applied by `DetectionDataset` (which reads it from here).
        hflip: probability of a horizontal flip (all modes but "none").
        photometric: colour augmentation in "ssd" (photometric distortion) and "yolo" (HSV jitter).
    """
    if mode not in MODES:
        raise ValueError(f"unknown augmentation mode {mode!r}; choose one of {', '.join(MODES)}")
    if not 0.0 <= hflip <= 1.0:
        raise ValueError(f"hflip is a probability in [0, 1], got {hflip}")
    flip = [v2.RandomHorizontalFlip(hflip)] if hflip > 0 and mode != "none" else []
    before: list[v2.Transform] = []
    after: list[v2.Transform] = []
    if mode == "ssd":
        before = [v2.RandomZoomOut(fill=_fill(), side_range=(1.0, 4.0), p=0.5), v2.RandomIoUCrop(), *flip]
        # after the letterbox: S x S pixels to distort whatever the photo's size (see the module docstring)
        after = [v2.RandomPhotometricDistort(p=0.5)] if photometric else []
    elif mode == "yolo":
        after = [v2.RandomAffine(degrees=0.0, translate=(0.1, 0.1), scale=(0.5, 1.5), fill=_fill(),
                                 interpolation=v2.InterpolationMode.BILINEAR), *flip]
        after += [RandomHSV(hue=0.015, saturation=0.7, value=0.4)] if photometric else []
    elif mode == "basic":
        before = flip
    return DetectionTransform(size=size, mode=mode, mosaic=mosaic, before=before, after=after)


def eval_transform(size: int) -> DetectionTransform:
    """The letterbox alone: its `Letterbox` maps detections back to the original image."""
    return DetectionTransform(size=size, mode="none")
