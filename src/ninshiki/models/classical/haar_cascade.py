"""Viola-Jones: Viola and Jones, "Rapid object detection using a boosted cascade of simple features", CVPR 2001.

`haar_cascade` is a detector of one attentional cascade of boosted Haar stumps per class (the method is binary;
one class, e.g. faces, is the usual case). `fit` crops the annotated objects as positives and trains each cascade
with negatives bootstrapped from the same images outside the boxes (`classical.haar.train`); `forward` converts
the images to gray as `cv2.cvtColor(RGB2GRAY)` does and runs `classical.haar.detect.detect_multiscale`, which
finds what `cv2.CascadeClassifier.detectMultiScale` finds. `haar_cascade_from_opencv` loads OpenCV's pretrained
cascades and `export_opencv_xml` writes a cascade that `cv2.CascadeClassifier` loads.

Weights: each cascade is stored as flat tensors (`cascade{c}_window`, `_rects`, `_rect_count`, `_tilted`,
`_stumps`, `_stages`; see `cascade_to_state`), so they save as safetensors and load into a fresh model.
"""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from ninshiki.classical.base import ClassicalDetector
from ninshiki.classical.haar.cascade import HaarCascade, HaarFeature, Stage, Stump
from ninshiki.classical.haar.detect import CompiledCascade, compile_cascade, detect_multiscale
from ninshiki.classical.haar.opencv_xml import opencv_cascade_path, read_cascade_xml, write_cascade_xml
from ninshiki.classical.windows import crop_window
from ninshiki.registry import register
from ninshiki.structures import Detections

_PAPER = "Viola & Jones, Rapid object detection using a boosted cascade of simple features, CVPR 2001"
# What OpenCV's cascades find, from their file names (first match wins).
_OPENCV_CLASSES = (("frontalcatface", "cat_face"), ("face", "face"), ("fullbody", "person"),
                   ("upperbody", "upper_body"), ("lowerbody", "lower_body"), ("eye", "eye"), ("smile", "smile"),
                   ("plate", "license_plate"))


def cascade_to_state(cascade: HaarCascade, prefix: str) -> dict[str, np.ndarray]:
    """A cascade as flat arrays named `prefix` + suffix (exact float64 values, rectangles padded to 3).

    Shape:
        returns: _window (2,) int64; _rects (F, 3, 5) float64; _rect_count (F,) int64; _tilted (F,) uint8;
        _stumps (S, 4) float64 rows [feature, threshold, left, right]; _stages (T, 2) float64 rows
        [number of stumps, threshold].
    """
    rects = np.zeros((len(cascade.features), 3, 5))   # (F, 3, 5)
    for k, feature in enumerate(cascade.features):
        rects[k, :len(feature.rects)] = feature.rects
    stumps = [(s.feature, s.threshold, s.left, s.right) for stage in cascade.stages for s in stage.stumps]
    return {f"{prefix}_window": np.array(cascade.window, np.int64), f"{prefix}_rects": rects,
            f"{prefix}_rect_count": np.array([len(f.rects) for f in cascade.features], np.int64),
            f"{prefix}_tilted": np.array([f.tilted for f in cascade.features], np.uint8),
            f"{prefix}_stumps": np.array(stumps, np.float64).reshape(-1, 4),
            f"{prefix}_stages": np.array([(len(s.stumps), s.threshold) for s in cascade.stages]).reshape(-1, 2)}


def cascade_from_state(state: Mapping[str, np.ndarray], prefix: str) -> HaarCascade:
    """The inverse of `cascade_to_state`."""
    rects, counts, tilted = (state[f"{prefix}_{k}"] for k in ("rects", "rect_count", "tilted"))
    features = [HaarFeature(rects=rects[k, :counts[k]].copy(), tilted=bool(tilted[k])) for k in range(len(rects))]
    stumps = [Stump(int(f), float(t), float(a), float(b)) for f, t, a, b in state[f"{prefix}_stumps"]]
    stages, start = [], 0
    for size, threshold in state[f"{prefix}_stages"]:
        stages.append(Stage(stumps=stumps[start:start + int(size)], threshold=float(threshold)))
        start += int(size)
    window = tuple(int(v) for v in state[f"{prefix}_window"])
    return HaarCascade(window=window, features=features, stages=stages)


class HaarCascadeDetector(ClassicalDetector):
    """One Haar cascade per class, run at every scale; see the module docstring and `haar_cascade`."""

    def __init__(self, *, num_classes: int = 1, in_channels: int = 3, window: int | Sequence[int] = 24,
                 scale_factor: float = 1.1, min_neighbors: int = 3, min_size: int = 0, max_size: int = 0,
                 train_options: Mapping[str, Any] | None = None, input_size: int = 640,
                 score_threshold: float = 0.0, nms_iou: float = 0.5, max_detections: int = 100) -> None:
        super().__init__()
        if num_classes < 1 or in_channels not in (1, 3) or not scale_factor > 1:
            raise ValueError(f"haar_cascade: num_classes >= 1, in_channels 1 or 3 and scale_factor > 1, got "
                             f"{num_classes}, {in_channels}, {scale_factor}")
        self.num_classes, self.in_channels = num_classes, in_channels
        self.window = (int(window), int(window)) if np.isscalar(window) else tuple(int(v) for v in window)
        self.scale_factor, self.min_neighbors = float(scale_factor), int(min_neighbors)
        self.min_size, self.max_size = int(min_size), int(max_size)
        self.train_options = dict(train_options or {})
        self.input_size, self.score_threshold = input_size, score_threshold
        self.nms_iou, self.max_detections = nms_iou, max_detections   # nms_iou: grouping replaces NMS here
        self.class_names: list[str] | None = None
        self._compiled: dict[int, CompiledCascade] = {}

    def set_state(self, name: str, value: Tensor | np.ndarray) -> None:
        super().set_state(name, value)
        self._compiled = {}   # cascades are rebuilt from the new buffers when next used

    def set_cascade(self, class_index: int, cascade: HaarCascade) -> None:
        """Store `cascade` as the detector of class `class_index`."""
        if not 0 <= class_index < self.num_classes:
            raise ValueError(f"class_index {class_index} is not in [0, {self.num_classes})")
        for name, array in cascade_to_state(cascade, f"cascade{class_index}").items():
            self.set_state(name, array)

    def cascade(self, class_index: int = 0) -> HaarCascade:
        """The cascade of class `class_index`, rebuilt from the buffers."""
        prefix = f"cascade{class_index}"
        keys = ("window", "rects", "rect_count", "tilted", "stumps", "stages")
        return cascade_from_state({f"{prefix}_{k}": self.state(f"{prefix}_{k}").cpu().numpy() for k in keys}, prefix)

    def _compiled_cascade(self, class_index: int) -> CompiledCascade:
        if class_index not in self._compiled:
            self._compiled[class_index] = compile_cascade(self.cascade(class_index))
        return self._compiled[class_index]

    def extra_record(self) -> dict[str, Any]:
        return {"classes": list(self.class_names)} if self.class_names else {}

    def export_opencv_xml(self, path: str | Path, class_index: int = 0) -> None:
        """Write class `class_index`'s cascade as OpenCV XML (`cv2.CascadeClassifier(path)` loads it)."""
        write_cascade_xml(self.cascade(class_index), path)

    def forward(self, images: Tensor, targets: Any = None) -> list[Detections]:
        """Detect in each image; every box the grouping keeps, highest score first (module docstring).

        Shape:
            images: (B, C, H, W) float in [0, 1], C = in_channels (RGB for 3).
            returns: B `Detections`, boxes xyxy float32 in input pixels, labels the cascades' class indices.
        """
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"haar_cascade expects (B, {self.in_channels}, H, W) images, got {tuple(images.shape)}")
        pixels = (images.detach().float() * 255).round().clamp(0, 255).to(torch.uint8).cpu()   # (B, C, H, W)
        size = (self.min_size, self.min_size)
        limit = (self.max_size, self.max_size)
        results = []
        for image in pixels:
            gray = image[0].numpy() if self.in_channels == 1 else \
                cv2.cvtColor(np.ascontiguousarray(image.permute(1, 2, 0).numpy()), cv2.COLOR_RGB2GRAY)   # (H, W)
            found = []
            for c in range(self.num_classes):
                boxes, _, scores = detect_multiscale(self._compiled_cascade(c), gray, scale_factor=self.scale_factor,
                                                     min_neighbors=self.min_neighbors, min_size=size, max_size=limit)
                found.append((boxes, scores, np.full(len(boxes), c)))
            boxes, scores, labels = (np.concatenate(parts) for parts in zip(*found))
            order = np.argsort(-scores, kind="stable")
            xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1)[order]   # (N, 4)
            results.append(Detections(torch.as_tensor(xyxy, dtype=torch.float32), torch.as_tensor(
                scores[order], dtype=torch.float32), torch.as_tensor(labels[order], dtype=torch.int64)).to(
                images.device))
        return results

    def fit(self, train: Any, *, progress: bool = True) -> dict[str, float]:
        """Train one cascade per class from an `AnnotatedSet` (see `classical.haar.train.train_cascade`).

        Positives: every box of the class, grown about its centre to the window's aspect ratio, cut from the
        gray image (edges replicated where it leaves the image), resized to the window with INTER_AREA, and its
        mirror image (COCO crowd regions are not positives). Negatives: windows of the same images that do not
        overlap a box of the class, crowds included.

        Returns:
            Facts for the log: stages, weak classifiers, positives and the estimated false-positive rate per
            window, summed (rates: averaged) over the classes.
        """
        from ninshiki.classical.haar.train import CascadeTrainConfig, CascadeTrainer

        if len(train.classes) != self.num_classes:
            raise ValueError(f"haar_cascade was built for {self.num_classes} classes, the data has "
                             f"{len(train.classes)}: {train.classes}")
        grays, boxes, labels, crowd = _load_gray(train)
        config = CascadeTrainConfig(window=self.window, **self.train_options)
        facts = {"stages": 0.0, "weak_classifiers": 0.0, "positives": 0.0, "false_positive_rate": 0.0}
        for c, name in enumerate(train.classes):
            crops = [crop_positive(gray, box, self.window)
                     for gray, b, lab, cr in zip(grays, boxes, labels, crowd) for box in b[(lab == c) & ~cr]]
            if not crops:
                raise ValueError(f"haar_cascade: no training boxes of class {name!r}")
            positives = np.stack(crops + [crop[:, ::-1] for crop in crops])   # (2P, h, w) with mirror images
            trainer = CascadeTrainer(config)
            cascade = trainer.train(positives, grays, exclude=[b[lab == c] for b, lab in zip(boxes, labels)],
                                    progress=progress)   # crowd regions of the class are no negatives either
            if not cascade.stages:
                raise ValueError(f"haar_cascade: no stage could be trained for class {name!r} "
                                 f"({trainer.stop_reason})")
            self.set_cascade(c, cascade)
            facts["stages"] += len(cascade.stages)
            facts["weak_classifiers"] += sum(len(stage.stumps) for stage in cascade.stages)
            facts["positives"] += len(positives)
            facts["false_positive_rate"] += trainer.false_positive_rate / self.num_classes
        self.class_names = list(train.classes)
        return facts


def crop_positive(gray: np.ndarray, box: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """A positive training window: the box grown to the window's aspect ratio, resized with INTER_AREA.

    Shape:
        gray: (H, W) uint8; box: (4,) xyxy; returns (h, w) uint8 with (w, h) = window.
    """
    return crop_window(gray, box, window, interpolation=cv2.INTER_AREA)


def _load_gray(train: Any) -> tuple[list[np.ndarray], ...]:
    """Upright gray images of an `AnnotatedSet`, with per image its boxes (M, 4) xyxy float64, labels (M,) and
    crowd flags (M,) bool, in the upright pixels.

    Unreadable files are skipped with a warning naming them, as the detection pipeline does.
    """
    from ninshiki.data.detection.dataset import DetectionDataset
    from ninshiki.data.images import ImageReadError, UnreadableImageWarning

    dataset = DetectionDataset(train, transform=None, cache_images=False, skip_crowd=False)   # only `load` is used
    grays, boxes, labels, crowd = [], [], [], []
    for i in range(len(dataset)):
        try:
            image, target = dataset.load(i)   # (3, H, W) uint8 upright, boxes in its pixels
        except ImageReadError as error:
            warnings.warn(f"skipping unreadable image {error}", UnreadableImageWarning, stacklevel=2)
            continue
        grays.append(cv2.cvtColor(np.ascontiguousarray(image.permute(1, 2, 0).numpy()), cv2.COLOR_RGB2GRAY))
        boxes.append(target["boxes"].numpy().astype(np.float64).reshape(-1, 4))
        labels.append(target["labels"].numpy())
        crowd.append(target["iscrowd"].numpy().astype(bool))
    if not grays:
        raise ValueError("haar_cascade: none of the training images could be read")
    return grays, boxes, labels, crowd


@register(task="detect", test_input=(3, 96, 96), paper=_PAPER, classical=True)
def haar_cascade(*, num_classes: int = 1, in_channels: int = 3, window: int | Sequence[int] = 24,
                 scale_factor: float = 1.1, min_neighbors: int = 3, min_size: int = 0, max_size: int = 0,
                 num_stages: int = 20, min_hit_rate: float = 0.995, max_false_alarm: float = 0.5,
                 max_weak_per_stage: int = 100, num_negatives: int = 2000, feature_step: int = 2, seed: int = 0,
                 input_size: int = 640, score_threshold: float = 0.0, max_detections: int = 100,
                 **options: Any) -> HaarCascadeDetector:
    """Viola-Jones detector (see the module docstring).

    Args:
        window: the detection window, a side or (width, height); 24 as in the paper.
        scale_factor, min_neighbors, min_size, max_size: detection, as `cv2.CascadeClassifier.detectMultiScale`
            (sizes in input pixels, square; 0 = no limit).
        num_stages, min_hit_rate, max_false_alarm, max_weak_per_stage, num_negatives, feature_step, seed:
            training (`classical.haar.train.CascadeTrainConfig`); per-stage hit and false-alarm rates as in
            section 4 of the paper.
        options: further `CascadeTrainConfig` fields (e.g. `scan_step`, `min_negatives`).
    """
    from ninshiki.classical.haar.train import CascadeTrainConfig

    train_options = dict(num_stages=num_stages, min_hit_rate=min_hit_rate, max_false_alarm=max_false_alarm,
                         max_weak_per_stage=max_weak_per_stage, num_negatives=num_negatives,
                         feature_step=feature_step, seed=seed, **options)
    known = {f.name for f in dataclasses.fields(CascadeTrainConfig)} - {"window"}
    if unknown := sorted(set(train_options) - known):
        raise ValueError(f"haar_cascade: unknown options {unknown}; training options are {sorted(known)}")
    return HaarCascadeDetector(num_classes=num_classes, in_channels=in_channels, window=window,
                               scale_factor=scale_factor, min_neighbors=min_neighbors, min_size=min_size,
                               max_size=max_size, train_options=train_options, input_size=input_size,
                               score_threshold=score_threshold, max_detections=max_detections)


def haar_cascade_from_opencv(name: str, **kwargs: Any) -> HaarCascadeDetector:
    """A one-class `haar_cascade` running one of OpenCV's cascades ("haarcascade_frontalface_default", any name
    of `cv2.data.haarcascades`) or a cascade XML file; its class is named after the file ("face", "person", ...).
    """
    path = Path(name) if name.endswith(".xml") and Path(name).is_file() else opencv_cascade_path(name)
    cascade = read_cascade_xml(path)
    model = haar_cascade(num_classes=1, window=cascade.window, **kwargs)
    model.set_cascade(0, cascade)
    stem = path.stem.removeprefix("haarcascade_")
    model.class_names = [next((cls for key, cls in _OPENCV_CLASSES if key in stem), stem)]
    return model
