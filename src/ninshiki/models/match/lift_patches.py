"""Scale- and rotation-normalised patches at keypoints, by bilinear sampling from an image pyramid: LIFT's
spatial transformers (Jaderberg et al., NeurIPS 2015), differentiable in the keypoints' positions and angles.

A keypoint (x, y, diameter d, angle a) is described by the P x P patch whose pixel (i, j) (row, column) is
the image at (x, y) + R(a) (u_j, u_i), u_k = (k - (P - 1) / 2) d / P, with R(a) = [[cos a, -sin a],
[sin a, cos a]] in the image's x right, y down frame (`ninshiki.match.features`). Rotating the image by +a
and adding a to the angle therefore gives the same patch. Each keypoint is sampled from the pyramid level
whose pixel is closest to d / P image pixels, so that a large patch is not aliased.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

PYRAMID_STEP = 2 ** -0.5   # each level is this much smaller than the one before


@dataclass(frozen=True)
class Pyramid:
    """Images at sizes 1, 1/sqrt(2), 1/2, ... of the original.

    Attributes:
        levels: the resized images, level 0 the original; each (B, C, h_l, w_l) float.
        size: (H, W) of the original.
    """

    levels: list[Tensor]
    size: tuple[int, int]


def build_pyramid(images: Tensor, *, max_diameter: float, patch_size: int) -> Pyramid:
    """The levels needed to sample patches up to `max_diameter` pixels across at about one pixel per sample.

    Each level is resized from the original with antialiasing (a bilinear filter widened to the new pixel).

    Shape:
        - images: (B, C, H, W) float.
    """
    height, width = images.shape[-2:]
    levels_needed = math.log(max(max_diameter, 1.0) / patch_size) / -math.log(PYRAMID_STEP)
    count = 1 + max(0, math.ceil(levels_needed - 1e-9))                          # 1e-9: log rounding
    levels = [images]
    for level in range(1, count):
        factor = PYRAMID_STEP ** level
        size = (max(1, round(height * factor)), max(1, round(width * factor)))
        if size[0] < 2 or size[1] < 2:
            break
        levels.append(F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False))
    return Pyramid(levels, (height, width))


def patch_grid(xy: Tensor, diameter: Tensor, angle: Tensor, patch_size: int) -> Tensor:
    """Where each patch pixel samples the image, in image pixels (see the module docstring).

    Shape:
        - xy: (N, 2); diameter, angle (degrees): (N,). Output: (N, P, P, 2) (x, y).
    """
    offsets = (torch.arange(patch_size, dtype=xy.dtype, device=xy.device) - (patch_size - 1) / 2) / patch_size
    u = offsets.view(1, 1, -1) * diameter.view(-1, 1, 1)                        # (N, 1, P) along columns
    v = offsets.view(1, -1, 1) * diameter.view(-1, 1, 1)                        # (N, P, 1) along rows
    radians = torch.deg2rad(angle).view(-1, 1, 1)
    cos, sin = torch.cos(radians), torch.sin(radians)
    x = xy[:, 0].view(-1, 1, 1) + cos * u - sin * v                              # (N, P, P)
    y = xy[:, 1].view(-1, 1, 1) + sin * u + cos * v                              # (N, P, P)
    return torch.stack([x, y], dim=-1)


def pyramid_level(diameter: Tensor, patch_size: int, count: int) -> Tensor:
    """The level whose pixel is closest to one patch sample, diameter / P image pixels.

    Shape:
        - diameter: (N,). Output: (N,) int64 in [0, count).
    """
    ratio = (diameter.detach().clamp_min(1e-6) / patch_size).log() / -math.log(PYRAMID_STEP)
    return ratio.round().clamp(0, count - 1).long()


def sample_patches(pyramid: Pyramid, xy: Tensor, diameter: Tensor, angle: Tensor, *, patch_size: int,
                   image_index: Tensor | None = None) -> Tensor:
    """Patches at keypoints, bilinear from the best pyramid level, zero outside the image.

    Args:
        pyramid: the images, from `build_pyramid`.
        xy: keypoint positions in original-image pixels.
        diameter: patch extents in original-image pixels.
        angle: orientations in degrees.
        patch_size: P.
        image_index: which image of the batch each keypoint is in (all in image 0 when None).

    Shape:
        - xy: (N, 2); diameter, angle, image_index: (N,). Output: (N, C, P, P).
    """
    levels = pyramid.levels
    batch, channels = levels[0].shape[:2]
    n = xy.shape[0]
    out = levels[0].new_zeros(n, channels, patch_size, patch_size)
    if n == 0:
        return out
    height, width = pyramid.size
    grid = patch_grid(xy, diameter, angle, patch_size)                           # (N, P, P, 2)
    scale = grid.new_tensor([2.0 / width, 2.0 / height])
    grid = (grid + 0.5) * scale - 1                                              # grid_sample's [-1, 1], any level
    level = pyramid_level(diameter, patch_size, len(levels))                     # (N,)
    image_index = torch.zeros(n, dtype=torch.long, device=xy.device) if image_index is None else image_index
    group = level * batch + image_index                                          # (N,)
    for key in torch.unique(group).tolist():
        rows = torch.nonzero(group == key).squeeze(1)                            # (n_k,)
        image = levels[key // batch][key % batch: key % batch + 1]               # (1, C, h, w)
        sampled = F.grid_sample(image, grid[rows].reshape(1, -1, patch_size, 2), mode="bilinear",
                                padding_mode="zeros", align_corners=False)       # (1, C, n_k * P, P)
        out = out.index_copy(0, rows, sampled.view(channels, len(rows), patch_size, patch_size).transpose(0, 1))
    return out
