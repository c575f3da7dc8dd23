"""The contract of classical models: fit in closed form (boosting, k-means, GMMs, linear SVMs), not by
gradient steps, yet built, saved, loaded, evaluated and served exactly like the networks.

A classical model is an `nn.Module` whose learned state lives in buffers: codebooks, GMM parameters, SVM
weights, cascades (as flat tensors). Their sizes are known only after `fit`, so `load_state` replaces the
buffers whole instead of copying into tensors of the same shape; weights files are plain safetensors like
every other model's. Hyper-parameters are constructor keywords (recorded in the weights' `model_kwargs`).

Classifiers take the images the classification pipeline gives every model, (B, C, H, W) float in [0, 1]
(their record's normalisation is mean 0, std 1), and return (B, K) scores, so `classify val` / `predict`
and the confusion matrix need nothing special. Detectors follow the `Detector` contract: `forward` returns
one `Detections` per image (all candidates, before the score threshold), `postprocess` filters and clips.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ninshiki.structures import Detections


class ClassicalModel(nn.Module):
    """Base class: buffers of any size, replaced whole by `load_state`."""

    classical = True
    classifier_names: tuple[str, ...] = ()

    def set_state(self, name: str, value: Tensor | np.ndarray) -> None:
        """Store learned state `name` (a buffer, created or replaced; kept on the model's device)."""
        tensor = torch.as_tensor(np.ascontiguousarray(value) if isinstance(value, np.ndarray) else value)
        self.register_buffer(name, tensor.detach().clone(), persistent=True)

    def state(self, name: str) -> Tensor:
        tensor = self._buffers.get(name)
        if tensor is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: train it (`fit`) or load its weights first")
        return tensor

    @property
    def fitted(self) -> bool:
        return bool(self._buffers)

    def load_state(self, state: Mapping[str, Tensor]) -> None:
        """Replace every buffer with the tensors of a weights file (names are flat: no submodules)."""
        bad = [k for k in state if "." in k]
        if bad:
            raise ValueError(f"{type(self).__name__}: unexpected nested keys in the weights: {bad[:5]}")
        for name in list(self._buffers):
            del self._buffers[name]
        for name, tensor in state.items():
            self.set_state(name, tensor)

    def extra_record(self) -> dict[str, Any]:
        """JSON-able facts a subclass wants in the weights' record (class names a pretrained file implies)."""
        return {}


class ClassicalClassifier(ClassicalModel):
    """An image classifier fit from a whole training set at once.

    Shape:
        fit: images (N, C, H, W) uint8, labels (N,) int64 in [0, num_classes).
        forward: x (B, C, H, W) float in [0, 1] -> scores (B, K) float32, higher = more likely.
    """

    num_classes: int

    def fit(self, images: Tensor, labels: Tensor, *, progress: bool = True) -> dict[str, float]:
        """Learn from the training set; returns facts worth logging (e.g. fit seconds, codebook size)."""
        raise NotImplementedError


class ClassicalDetector(ClassicalModel):
    """A sliding-window detector (Viola-Jones, Dalal-Triggs) under the `Detector` contract.

    `forward(images, targets=None)` returns a list of `Detections` (every candidate the detector keeps,
    scores in [0, 1], boxes xyxy in input pixels); `loss` is not defined (there is no gradient to take);
    `postprocess(raw, sizes)` applies `score_threshold` and `max_detections` and clips to `sizes`.
    """

    num_classes: int
    input_size: int
    score_threshold: float
    nms_iou: float
    max_detections: int

    def fit(self, train: Any, *, progress: bool = True) -> dict[str, float]:
        """Learn from an `AnnotatedSet` (images with boxes); returns facts worth logging."""
        raise NotImplementedError

    def loss(self, raw: Any, targets: Any) -> dict[str, Tensor]:
        raise TypeError(f"{type(self).__name__} is a classical detector: it is fit, not trained by a loss")

    def postprocess(self, raw: list[Detections], sizes: list[tuple[int, int]] | None = None) -> list[Detections]:
        results = []
        for i, det in enumerate(raw):
            keep = det.scores >= self.score_threshold
            det = det[keep][: self.max_detections]
            if sizes is not None:
                h, w = sizes[i]
                boxes = det.boxes.clone()
                boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
                boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
                det = Detections(boxes, det.scores, det.labels, det.masks)
            results.append(det)
        return results
