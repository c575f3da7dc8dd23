"""Training windows for sliding-window detectors (Viola-Jones, Dalal-Triggs): an annotated object cut out at
the detector's window shape."""
from __future__ import annotations

import cv2
import numpy as np


def crop_window(image: np.ndarray, box: np.ndarray, window: tuple[int, int], *,
                interpolation: int | None = None) -> np.ndarray:
    """The object in `box` grown about its centre to the window's aspect ratio (edges replicated outside the
    image), resized to `window` (w, h).

    Args:
        interpolation: OpenCV's resize flag; None = INTER_AREA when shrinking, INTER_LINEAR when enlarging.

    Shape:
        image: (H, W) or (H, W, 3) uint8; box: (4,) xyxy; returns (h, w[, 3]) uint8.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    aspect = window[0] / window[1]
    w, h = max(w, h * aspect), max(h, w / aspect)
    left, top = round(cx - w / 2), round(cy - h / 2)
    right, bottom = left + max(round(w), 1), top + max(round(h), 1)
    pad = max(0, -left, -top, right - image.shape[1], bottom - image.shape[0])
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else image
    crop = padded[top + pad:bottom + pad, left + pad:right + pad]
    if interpolation is None:
        interpolation = cv2.INTER_AREA if crop.shape[1] > window[0] else cv2.INTER_LINEAR
    return cv2.resize(crop, window, interpolation=interpolation)
