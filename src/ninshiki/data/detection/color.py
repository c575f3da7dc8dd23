"""YOLO's colour augmentation: a random hue shift and saturation and value gains, in OpenCV's 8-bit HSV.

The YOLO family (Redmon and Farhadi, "YOLO9000", 2017, and its ports) jitters exposure and saturation in HSV
space; the gains used here are those of the common ports (hue +-0.015 of a turn, saturation and value
x[0.3, 1.7] and x[0.6, 1.4]). Done through lookup tables on OpenCV's uint8 HSV it costs about a millisecond
for a 320 x 320 image, against ~15 ms for torchvision's float hue rotation (`ColorJitter(hue=...)`). Only
images change; boxes and masks pass through.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2


def hsv_jitter(image: Tensor, *, hue_shift: float, saturation: float, value: float) -> Tensor:
    """Shift the hue by `hue_shift` turns and multiply saturation and value by their gains.

    Shape:
        - image: (3, H, W) uint8 RGB. Output: (3, H, W) uint8 RGB.
    """
    pixels = np.ascontiguousarray(image.permute(1, 2, 0).numpy())                # (H, W, 3) RGB
    h, s, v = cv2.split(cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV_FULL))            # hue over 0..255 (a full turn)
    x = np.arange(256, dtype=np.float64)
    lut_h = ((x + round(hue_shift * 256)) % 256).astype(np.uint8)
    lut_s = np.clip(np.round(x * saturation), 0, 255).astype(np.uint8)
    lut_v = np.clip(np.round(x * value), 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(h, lut_h), cv2.LUT(s, lut_s), cv2.LUT(v, lut_v)))
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)                               # (H, W, 3) RGB
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


class RandomHSV(v2.Transform):
    """`hsv_jitter` with a hue shift drawn from [-hue, hue] turns and gains from [1 - s, 1 + s], [1 - v, 1 + v]."""

    def __init__(self, hue: float = 0.015, saturation: float = 0.7, value: float = 0.4) -> None:
        super().__init__()
        if not (0 <= hue <= 0.5 and 0 <= saturation <= 1 and 0 <= value <= 1):
            raise ValueError(f"hue must be in [0, 0.5] and saturation and value in [0, 1]; got {hue}, {saturation}, "
                             f"{value}")
        self.hue, self.saturation, self.value = hue, saturation, value

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        r = torch.rand(3) * 2 - 1                                                   # (3,) in [-1, 1)
        return {"hue_shift": float(r[0]) * self.hue, "saturation": 1 + float(r[1]) * self.saturation,
                "value": 1 + float(r[2]) * self.value}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Image):
            return inpt
        if inpt.dtype != torch.uint8 or inpt.ndim != 3 or inpt.shape[0] != 3:
            raise ValueError(f"RandomHSV needs a uint8 (3, H, W) image, got {inpt.dtype} {tuple(inpt.shape)}")
        return tv_tensors.wrap(hsv_jitter(inpt.as_subclass(Tensor), **params), like=inpt)
