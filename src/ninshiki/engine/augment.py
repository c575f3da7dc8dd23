"""Per-sample augmentation of whole uint8 batches on the batch's device.

torchvision.transforms.v2 draws one set of random parameters per call, so applied to a batch every image
gets the same crop. Training small images from memory is fastest when the batch stays one tensor, so the
two augmentations the recipes use (random crop with padding, horizontal flip) are done here per sample,
with an explicit generator so a resumed run draws the same numbers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def random_flip(images: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each image left-right with probability 1/2.

    Shape:
        - images: (B, C, H, W); output the same.
    """
    flip = torch.rand(images.shape[0], generator=generator, device=generator.device) < 0.5
    flip = flip.to(images.device)[:, None, None, None]
    return torch.where(flip, images.flip(-1), images)


def random_crop(images: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Zero-pad by `padding` pixels on each side and take a random crop of the original size per image.

    Shape:
        - images: (B, C, H, W); output the same.
    """
    if padding <= 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))                      # (B, C, H+2p, W+2p)
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator, device=generator.device)
    offsets = offsets.to(images.device)
    rows = (offsets[0][:, None] + torch.arange(h, device=images.device))[:, None, :, None]   # (B, 1, H, 1)
    cols = (offsets[1][:, None] + torch.arange(w, device=images.device))[:, None, None, :]   # (B, 1, 1, W)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    return padded[batch, torch.arange(images.shape[1], device=images.device)[None, :, None, None], rows, cols]


def augment_batch(images: Tensor, mode: str, generator: torch.Generator) -> Tensor:
    """Apply the configured augmentation ("none", "flip", "crop", "crop-flip") to a uint8 batch."""
    if "crop" in mode:
        images = random_crop(images, padding=max(1, images.shape[-1] // 8), generator=generator)
    if "flip" in mode:
        images = random_flip(images, generator)
    return images
