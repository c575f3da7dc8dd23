"""Semantic segmentation transforms: an image and its class map moved together, and the way back.

Both transforms take `(image uint8 (3, H, W), mask (H, W) class indices)` and return
`(image float32 (3, h, w) in [0, 1], mask int64 (h, w), Placement)`. The image stays uint8 until the last
step. Images are resized bilinearly with antialiasing, masks with nearest neighbours ("nearest-exact": pixel
centres map to pixel centres, as the bilinear resize of the image does, so edges stay aligned).

- `train_transform(size)`: the augmentation of FCN / PSPNet / DeepLab training: a random rescale (0.5-2x),
  optionally a random rotation (PSPNet's +-10 degrees; `rotate`), a horizontal flip, a light colour jitter on the image only, then a size x size window. Where the rescaled
  image is smaller than the window it is padded at the bottom and right (image 0, mask `ignore_index`), so
  the image content is always the window's top-left `Placement.valid_size`.
- `eval_transform()`: the image as it is (downscaled only when its longer side exceeds `max_size`); the
  collate function pads each batch to a multiple of 32 at the bottom and right.

Evaluation at the original resolution (the only way scores stay comparable across `max_size` settings): the
network's logits of the valid region, `logits[:, :h, :w]` with `(h, w) = Placement.valid_size`, are upsampled
bilinearly to `Placement.original_size` before the arg-max (`logits_to_original`) and scored against the
ORIGINAL mask. The dataset hands that mask over with each sample when asked (`SegmentationDataset(...,
keep_original_mask=True)`); without a `max_size` the sample's mask already is the original one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

IGNORE_INDEX = 255   # the mask value of padding and unlabelled pixels (VOC's void)
MULTIPLE = 32        # batches are padded to a multiple of the deepest stride of the segmenters


@dataclass(frozen=True)
class Placement:
    """Where the transformed image's content came from.

    The top-left `valid_size` pixels hold image content (the rest is padding); for `eval_transform` they are
    the whole original image scaled by `scale`, so predictions map back with `logits_to_original`. For
    `train_transform` they are a random (possibly flipped) window of the image scaled by `scale`.
    """
    scale: float
    valid_size: tuple[int, int]      # (h, w) of the content at the top-left of the returned image
    original_size: tuple[int, int]   # (H0, W0) of the image given to the transform


def _check(image: Tensor, mask: Tensor) -> None:
    if not isinstance(image, Tensor) or image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"expected a uint8 (3, H, W) image, got {getattr(image, 'dtype', '')} {shape}")
    if not isinstance(mask, Tensor) or mask.shape != image.shape[-2:]:
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"expected a ({image.shape[1]}, {image.shape[2]}) mask for the image, got {shape}")


def resize_pair(image: Tensor, mask: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Resize an image (bilinear, antialiased) and its class map (nearest-exact) to `size` = (h, w).

    Shape:
        - image: (3, H, W) uint8; mask: (H, W) integer. Output: (3, h, w) uint8, (h, w) same dtype as mask.
    """
    if tuple(image.shape[-2:]) == tuple(size):
        return image, mask
    image = TF.resize(image, list(size), interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
    mask = TF.resize(mask[None], list(size), interpolation=v2.InterpolationMode.NEAREST_EXACT)[0]  # (h, w)
    return image, mask


class SegmentationTrainTransform:
    """Random rescale, flip, colour jitter and a `size` x `size` window (see the module docstring).

    Random choices come from torch's global generator (seeded per DataLoader worker by PyTorch).
    """

    def __init__(self, *, size: int, scale: tuple[float, float] = (0.5, 2.0), hflip: float = 0.5,
                 photometric: bool = True, rotate: float = 0.0, ignore_index: int = IGNORE_INDEX) -> None:
        if size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be a range (low, high) with 0 < low <= high, got {scale}")
        if not 0.0 <= hflip <= 1.0:
            raise ValueError(f"hflip is a probability in [0, 1], got {hflip}")
        if not 0.0 <= rotate <= 180.0:
            raise ValueError(f"rotate is the largest rotation in degrees, in [0, 180], got {rotate}")
        self.rotate = float(rotate)
        self.size, self.scale, self.hflip = int(size), (float(scale[0]), float(scale[1])), float(hflip)
        self.ignore_index, self.multiple = int(ignore_index), MULTIPLE
        # light jitter: segmentation labels colours rarely; strong distortions hurt on small sets. No hue: its
        # RGB -> HSV -> RGB round trip cost more than the rest of the transform together (1.8 of 2.9 ms per
        # 160 px crop), in loader workers that share the CPU with training.
        self.jitter = v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2) if photometric else None

    def __call__(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Placement]:
        """Shape: image (3, H, W) uint8, mask (H, W) -> image (3, S, S) float32, mask (S, S) int64."""
        _check(image, mask)
        height, width = image.shape[-2:]
        low, high = self.scale
        factor = low + (high - low) * float(torch.rand(()))
        scaled = (max(1, round(height * factor)), max(1, round(width * factor)))
        image, mask = resize_pair(image, mask.to(torch.uint8), scaled)
        if self.rotate:
            image, mask = self._rotated(image, mask)
        if float(torch.rand(())) < self.hflip:
            image, mask = image.flip(-1), mask.flip(-1)
        # the window: random where the image is larger than it, its top-left otherwise (padding follows)
        win_h, win_w = min(scaled[0], self.size), min(scaled[1], self.size)
        top = int(torch.randint(scaled[0] - win_h + 1, ()))
        left = int(torch.randint(scaled[1] - win_w + 1, ()))
        image = image[:, top:top + win_h, left:left + win_w]   # (3, h, w)
        mask = mask[top:top + win_h, left:left + win_w]         # (h, w)
        if self.jitter is not None:
            image = self.jitter(image)   # before the padding, so padded pixels stay 0
        pad = [0, 0, self.size - win_w, self.size - win_h]   # left, top, right, bottom
        image = TF.pad(image, pad, fill=0)                                   # (3, S, S)
        target = TF.pad(mask[None].to(torch.int64), pad, fill=self.ignore_index)[0]   # (S, S)
        return (TF.to_dtype(image, torch.float32, scale=True), target,
                Placement(factor, (win_h, win_w), (int(height), int(width))))

    def _rotated(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Rotate about the centre by an angle drawn from [-rotate, rotate] (PSPNet's augmentation), in place:
        corners that leave the frame are cut, those that enter it are image 0 and mask `ignore_index`."""
        angle = self.rotate * (2.0 * float(torch.rand(())) - 1.0)
        image = TF.rotate(image, angle, interpolation=v2.InterpolationMode.BILINEAR, fill=0)
        mask = TF.rotate(mask[None], angle, interpolation=v2.InterpolationMode.NEAREST, fill=self.ignore_index)[0]
        return image, mask

    def __repr__(self) -> str:
        return (f"SegmentationTrainTransform(size={self.size}, scale={self.scale}, hflip={self.hflip}, "
                f"photometric={self.jitter is not None}, rotate={self.rotate})")


class SegmentationEvalTransform:
    """The image unchanged, or scaled down so its longer side is `max_size`; padding is the collate's job."""

    def __init__(self, *, max_size: int | None = None, multiple: int = MULTIPLE) -> None:
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size must be a positive number of pixels or None, got {max_size}")
        if multiple < 1:
            raise ValueError(f"multiple must be a positive number of pixels, got {multiple}")
        self.max_size, self.multiple = max_size, int(multiple)

    def __call__(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Placement]:
        """Shape: image (3, H, W) uint8, mask (H, W) -> image (3, h, w) float32, mask (h, w) int64."""
        _check(image, mask)
        height, width = (int(v) for v in image.shape[-2:])
        factor = 1.0
        if self.max_size is not None and max(height, width) > self.max_size:
            factor = self.max_size / max(height, width)
            size = (max(1, round(height * factor)), max(1, round(width * factor)))
            image, mask = resize_pair(image, mask, size)
        valid = (int(image.shape[-2]), int(image.shape[-1]))
        return (TF.to_dtype(image, torch.float32, scale=True), mask.to(torch.int64),
                Placement(factor, valid, (height, width)))

    def __repr__(self) -> str:
        return f"SegmentationEvalTransform(max_size={self.max_size}, multiple={self.multiple})"


def train_transform(size: int, *, scale: tuple[float, float] = (0.5, 2.0), hflip: float = 0.5,
                    photometric: bool = True, rotate: float = 0.0,
                    ignore_index: int = IGNORE_INDEX) -> SegmentationTrainTransform:
    """The training augmentation: rescale by a factor drawn uniformly from `scale`, rotate by up to `rotate`
    degrees either way, flip with probability `hflip`, jitter colours when `photometric`, and cut a
    `size` x `size` window (padded where needed, the mask with `ignore_index`)."""
    return SegmentationTrainTransform(size=size, scale=scale, hflip=hflip, photometric=photometric, rotate=rotate,
                                      ignore_index=ignore_index)


def eval_transform(*, max_size: int | None = None, multiple: int = MULTIPLE) -> SegmentationEvalTransform:
    """The evaluation transform: no change unless the longer side exceeds `max_size` (then scaled down
    keeping the aspect ratio); batches are padded to a multiple of `multiple` by the loader's collate."""
    return SegmentationEvalTransform(max_size=max_size, multiple=multiple)


def logits_to_original(logits: Tensor, valid_size: tuple[int, int], original_size: tuple[int, int]) -> Tensor:
    """One image's class scores on its original pixels: the valid region, upsampled bilinearly in float32.

    Take the arg-max of the result and score it against the original mask (see the module docstring).

    Shape:
        - logits: (K, H, W), H >= valid_size[0], W >= valid_size[1]. Output: (K, *original_size) float32.
    """
    height, width = valid_size
    if logits.shape[-2] < height or logits.shape[-1] < width:
        raise ValueError(f"logits of {tuple(logits.shape)} do not cover the valid region {valid_size}")
    valid = logits[None, :, :height, :width].float()   # (1, K, h, w)
    if (height, width) == tuple(original_size):
        return valid[0]
    return F.interpolate(valid, size=tuple(original_size), mode="bilinear", align_corners=False)[0]  # (K, H0, W0)
