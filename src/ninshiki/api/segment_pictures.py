"""The picture of a validation: image, ground truth and prediction side by side for a few images."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor


def save_validation_samples(path: Path, split: Any, predictions: dict[int, Tensor], data: Any) -> Path | None:
    """Draw the kept predictions (dataset index -> (H0, W0) class map) next to their images and masks.

    Images are read again here (upright, RGB) rather than kept through the evaluation, which holds only
    the few class maps it was asked to keep.
    """
    from ninshiki.data.annotations import AnnotationError
    from ninshiki.data.images import read_image
    from ninshiki.data.segmentation.types import load_label_mask
    from ninshiki.viz.segmentation import save_segmentation_grid

    if not predictions:
        return None
    images, truths, preds = [], [], []
    for index in sorted(predictions):
        item = split.items[index]
        image = read_image(split.path(item), channels=3)   # (3, H, W) uint8, EXIF applied
        prediction = predictions[index].numpy()
        try:
            truth = load_label_mask(split, item, tuple(prediction.shape))
        except AnnotationError:   # a mask in the stored (not EXIF-rotated) frame: evaluated, just not drawn here
            continue
        images.append(image.permute(1, 2, 0).numpy())
        truths.append(np.asarray(truth))
        preds.append(prediction)
    if not images:
        return None
    return save_segmentation_grid(path, images, truths, preds, data.classes, data.colours)
