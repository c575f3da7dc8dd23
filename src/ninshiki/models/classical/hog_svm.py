"""Dalal-Triggs: Dalal and Triggs, "Histograms of oriented gradients for human detection", CVPR 2005.

`hog_svm` is a sliding-window detector with one linear SVM per class over HOG descriptors of a shared window
(task "detect"), or a whole-image HOG + one-vs-rest linear SVM classifier (task "classify",
`hog_svm_classifier.HOGSVMClassifier`).

Detection: images go through an image pyramid (step `scale`, OpenCV's levels and resizing); every window of
every level gets each class's margin b_k + w_k . x in one correlation of the level's HOG block grid
(`classical.hog_detect`); windows with margin >= `hit_threshold` are candidates, grouped per class by
non-maximum suppression at `nms_iou` (`grouping="nms"`, the default, keeps scores meaningful for average
precision) or by OpenCV's rectangle grouping (`"opencv"`, what `hog_svm_from_opencv` uses, so that OpenCV's
pretrained people detectors find exactly what `cv2.HOGDescriptor.detectMultiScale` finds).

Scores: a detection's score is sigmoid(margin), in (0, 1); margin 0, the SVM's decision boundary, is score
0.5. `score_threshold` (default 0) filters those scores in `postprocess`, so with the default every candidate
`forward` returns is kept, i.e. every window with margin >= `hit_threshold`; score_threshold t > 0 keeps
margins >= max(hit_threshold, logit(t)) (`margin_threshold`). `hit_threshold` defaults to -1 for trained
detectors: windows inside the SVM's margin stay candidates, with scores 0.27-0.5, so average precision sees
a ranked list rather than only the confident hits (draw with score_threshold 0.5 for margin > 0);
`hog_svm_from_opencv` uses OpenCV's 0.

Training (`fit`): the window is `win_size` or, by default, the training boxes' median aspect ratio with a
short side of 64 px, shrunk (to no less than 4 cells) to the 10th percentile of the boxes' short sides,
since the pyramid only shrinks images and smaller objects could never be found; sides are multiples of the
cell. Positives are the boxes grown about their centres to the window's aspect ratio, resized to the window,
plus their mirror images; negatives are mined in the training images outside the class's boxes
(`classical.hog_mining`). Colour images are used as OpenCV's BGR arrays (its tie-breaking between channels).

Weights: `weights` (K, D) float32 and `bias` (K,) float64 (OpenCV's descriptor order), `hog` (13,) the
descriptor geometry (`HOGParams.as_array`): flat tensors, saved as safetensors and loaded by `load_state`.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor
from torchvision.ops import batched_nms

from ninshiki.classical.base import ClassicalDetector
from ninshiki.classical.hog import HOGParams
from ninshiki.classical.hog_detect import clip_rectangles, group_rectangles, pyramid_hits
from ninshiki.classical.hog_mining import MiningOptions, train_hog_svm
from ninshiki.classical.windows import crop_window
from ninshiki.registry import register
from ninshiki.structures import Detections

PAPER = "Dalal & Triggs, Histograms of oriented gradients for human detection, CVPR 2005"
_OPENCV = {"default_people": ((64, 128), cv2.HOGDescriptor_getDefaultPeopleDetector),
           "daimler_people": ((48, 96), cv2.HOGDescriptor_getDaimlerPeopleDetector)}
SHORT_SIDE = 64       # the window's short side when the boxes allow it (Dalal-Triggs: 64x128 people)
MIN_CELLS = 4         # the smallest window side, in cells


@dataclass(frozen=True)
class HOGSVMDetectorConfig:
    """Options of the detector; sizes in pixels (see the module docstring)."""
    win_size: tuple[int, int] | None = None   # (width, height); None: from the training boxes
    cell_size: int = 8
    block_cells: int = 2                      # blocks of block_cells x block_cells cells, stepping one cell
    nbins: int = 9
    gamma_correction: bool = True
    C: float = 0.01                           # SVM regularisation (Dalal-Triggs)
    mining_rounds: int = 2
    negatives_per_image: int = 10
    hard_per_image: int = 20
    max_negatives: int = 20000
    mirror: bool = True                       # add mirrored positives
    hit_threshold: float = -1.0               # candidates: margin >= this (-1: inside the SVM's margin)
    win_stride: int = 8                       # window step at every pyramid level
    scale: float = 1.05                       # pyramid step
    nlevels: int = 64
    grouping: str = "nms"                     # "nms" or "opencv"
    group_threshold: int = 2                  # OpenCV grouping: clusters need more members than this
    seed: int = 0

    def __post_init__(self) -> None:
        if self.grouping not in ("nms", "opencv"):
            raise ValueError(f"hog_svm: grouping must be 'nms' or 'opencv', got {self.grouping!r}")
        if self.win_size is not None:
            object.__setattr__(self, "win_size", (int(self.win_size[0]), int(self.win_size[1])))

    def params(self, win_size: tuple[int, int]) -> HOGParams:
        block = self.cell_size * self.block_cells
        return HOGParams(win_size=win_size, block_size=(block, block), block_stride=(self.cell_size,) * 2,
                         cell_size=(self.cell_size,) * 2, nbins=self.nbins, gamma_correction=self.gamma_correction)


def window_from_boxes(boxes: np.ndarray, cell: int, min_side: int) -> tuple[int, int]:
    """The detection window (width, height) for objects of these xyxy boxes (module docstring)."""
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    aspect = float(np.median(heights / np.maximum(widths, 1e-6)))                   # height / width
    small = float(np.percentile(np.minimum(widths, heights), 10))
    short = max(min(SHORT_SIDE, int(small // cell) * cell), MIN_CELLS * cell, min_side)
    long = max(short, round(short * max(aspect, 1 / aspect) / cell) * cell)
    return (short, long) if aspect >= 1 else (long, short)


def to_opencv_arrays(images: Tensor, in_channels: int) -> list[np.ndarray]:
    """(B, C, H, W) float [0, 1] RGB -> uint8 arrays as OpenCV holds them: (H, W) gray or (H, W, 3) BGR."""
    if images.dim() != 4 or images.shape[1] != in_channels:
        raise ValueError(f"hog_svm expects (B, {in_channels}, H, W) images, got {tuple(images.shape)}")
    pixels = (images.detach().float() * 255).round().clamp(0, 255).to(torch.uint8).cpu()   # (B, C, H, W)
    if in_channels == 1:
        return [np.ascontiguousarray(p[0].numpy()) for p in pixels]
    return [np.ascontiguousarray(p.flip(0).permute(1, 2, 0).numpy()) for p in pixels]


class HOGSVMDetector(ClassicalDetector):
    """Sliding-window HOG + linear SVM detector, one SVM per class (module docstring)."""

    def __init__(self, *, num_classes: int = 1, in_channels: int = 3,
                 config: HOGSVMDetectorConfig = HOGSVMDetectorConfig(), input_size: int = 640,
                 score_threshold: float = 0.0, nms_iou: float = 0.45, max_detections: int = 100,
                 class_names: list[str] | None = None) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"hog_svm: in_channels must be 1 or 3, got {in_channels}")
        self.num_classes, self.in_channels, self.config = num_classes, in_channels, config
        self.input_size, self.score_threshold = input_size, score_threshold
        self.nms_iou, self.max_detections = nms_iou, max_detections
        self.class_names = class_names

    def hog_params(self) -> HOGParams:
        return HOGParams.from_array(self.state("hog").cpu().numpy())

    def set_svms(self, params: HOGParams, weights: np.ndarray, bias: np.ndarray) -> None:
        """Store the geometry and the (K, D) weights and (K,) biases."""
        weights = np.asarray(weights, np.float32).reshape(self.num_classes, -1)
        if weights.shape[1] != params.descriptor_size:
            raise ValueError(f"hog_svm: {weights.shape[1]} weights per class, the descriptor has "
                             f"{params.descriptor_size}")
        self.set_state("hog", params.as_array())
        self.set_state("weights", weights)
        self.set_state("bias", np.asarray(bias, np.float64).reshape(self.num_classes))

    def extra_record(self) -> dict[str, Any]:
        return {"classes": list(self.class_names)} if self.class_names else {}

    def forward(self, images: Tensor, targets: Any = None) -> list[Detections]:
        """Detect in each image; every candidate the grouping keeps, highest score first.

        Shape:
            images: (B, C, H, W) float in [0, 1], C = in_channels (RGB for 3).
            returns: B `Detections`, boxes xyxy float32 in input pixels, scores sigmoid(margin).
        """
        params, cfg = self.hog_params(), self.config
        weights, bias = self.state("weights").cpu().numpy(), self.state("bias").cpu().numpy()
        results = []
        for array in to_opencv_arrays(images, self.in_channels):
            rects, margins, labels = pyramid_hits(array, weights, bias, params, hit_threshold=cfg.hit_threshold,
                                                  win_stride=(cfg.win_stride,) * 2, scale=cfg.scale,
                                                  nlevels=cfg.nlevels)
            boxes, margins, labels = self._group(rects, margins, labels, (array.shape[1], array.shape[0]))
            order = np.argsort(-margins, kind="stable")
            results.append(Detections(torch.as_tensor(boxes[order], dtype=torch.float32),
                                      torch.sigmoid(torch.as_tensor(margins[order])).float(),
                                      torch.as_tensor(labels[order], dtype=torch.int64)).to(images.device))
        return results

    def _group(self, rects: np.ndarray, margins: np.ndarray, labels: np.ndarray, size: tuple[int, int]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidates (x, y, w, h) -> grouped xyxy boxes clipped to the image, their margins and labels."""
        if self.config.grouping == "opencv":
            parts = [group_rectangles(rects[labels == k], margins[labels == k], self.config.group_threshold)
                     for k in range(self.num_classes)]
            labels = np.concatenate([np.full(len(r), k) for k, (r, _) in enumerate(parts)]).astype(np.int64)
            rects = np.concatenate([r for r, _ in parts]).reshape(-1, 4)
            margins = np.concatenate([m for _, m in parts])
        boxes, keep = clip_rectangles(rects, size)
        boxes, margins, labels = boxes[keep], margins[keep], labels[keep]
        if self.config.grouping == "nms" and len(boxes):
            kept = batched_nms(torch.from_numpy(boxes), torch.from_numpy(margins), torch.from_numpy(labels),
                               self.nms_iou).numpy()
            boxes, margins, labels = boxes[kept], margins[kept], labels[kept]
        return boxes, margins, labels

    def fit(self, train: Any, *, progress: bool = True) -> dict[str, float]:
        """Train one SVM per class from an `AnnotatedSet` with hard-negative mining (module docstring).

        Returns:
            Facts for the log: window width and height, positives and negatives (summed over classes), seconds.
        """
        if len(train.classes) != self.num_classes:
            raise ValueError(f"hog_svm was built for {self.num_classes} classes, the data has "
                             f"{len(train.classes)}: {train.classes}")
        images, boxes, labels = _load_images(train, self.in_channels)
        cfg = self.config
        block = cfg.cell_size * cfg.block_cells
        all_boxes = np.concatenate(boxes)
        if len(all_boxes) == 0:
            raise ValueError("hog_svm: the training images hold no boxes")
        window = cfg.win_size or window_from_boxes(all_boxes, cfg.cell_size, block)
        params = cfg.params(window)
        options = MiningOptions(rounds=cfg.mining_rounds, negatives_per_image=cfg.negatives_per_image,
                                hard_per_image=cfg.hard_per_image, max_negatives=cfg.max_negatives, seed=cfg.seed)
        facts = {"window_width": float(window[0]), "window_height": float(window[1]), "positives": 0.0,
                 "negatives": 0.0, "fit_s": 0.0}
        weights, biases = [], []
        for k, name in enumerate(train.classes):
            crops = [crop_window(image, box, window) for image, b, lab in zip(images, boxes, labels)
                     for box in b[lab == k]]
            if not crops:
                raise ValueError(f"hog_svm: no training boxes of class {name!r}")
            positives = np.stack(crops + ([c[:, ::-1] for c in crops] if cfg.mirror else []))   # (P, h, w[, 3])
            w, b, found = train_hog_svm(positives, images, params=params, C=cfg.C, options=options,
                                        exclude=[bx[lab == k] for bx, lab in zip(boxes, labels)], progress=progress)
            weights.append(w)
            biases.append(b)
            for key in ("positives", "negatives", "fit_s"):
                facts[key] += found[key]
        self.set_svms(params, np.stack(weights), np.array(biases))
        self.class_names = list(train.classes)
        return facts


def _load_images(train: Any, in_channels: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Upright images of an `AnnotatedSet` as OpenCV arrays, with their boxes (xyxy float64) and labels.

    Unreadable files are skipped with a warning naming them, as the detection pipeline does.
    """
    from ninshiki.data.detection.dataset import DetectionDataset
    from ninshiki.data.images import ImageReadError, UnreadableImageWarning

    dataset = DetectionDataset(train, transform=None, cache_images=False)   # only `load`: no transform
    images, boxes, labels = [], [], []
    for i in range(len(dataset)):
        try:
            image, target = dataset.load(i)                                   # (3, H, W) uint8 RGB, upright
        except ImageReadError as error:
            warnings.warn(f"skipping unreadable image {error}", UnreadableImageWarning, stacklevel=2)
            continue
        rgb = np.ascontiguousarray(image.permute(1, 2, 0).numpy())            # (H, W, 3)
        images.append(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR if in_channels == 3 else cv2.COLOR_RGB2GRAY))
        boxes.append(target["boxes"].numpy().astype(np.float64).reshape(-1, 4))
        labels.append(target["labels"].numpy())
    if not images:
        raise ValueError("hog_svm: none of the training images could be read")
    return images, boxes, labels


@register(task="detect", also_tasks=("classify",), classical=True, test_input=(3, 128, 128), paper=PAPER)
def hog_svm(*, num_classes: int = 1, in_channels: int = 3, task: str = "detect", input_size: int = 640,
            score_threshold: float = 0.0, nms_iou: float = 0.45, max_detections: int = 100,
            **options: Any) -> ClassicalDetector:
    """HOG + linear SVM (module docstring): a detector (task "detect") or a classifier (task "classify").

    Args:
        task: "detect" or "classify".
        input_size, score_threshold, nms_iou, max_detections: the detector's `Detector` attributes.
        options: `HOGSVMDetectorConfig` fields for "detect" (win_size, cell_size, block_cells, nbins,
            gamma_correction, C, mining_rounds, negatives_per_image, hard_per_image, max_negatives, mirror,
            hit_threshold, win_stride, scale, nlevels, grouping, group_threshold, seed);
            `HOGSVMClassifierConfig` fields for "classify" (cell_size, block_cells, nbins, signed,
            gamma_correction, C, seed).
    """
    if task == "classify":
        from ninshiki.models.classical.hog_svm_classifier import HOGSVMClassifier, HOGSVMClassifierConfig

        return HOGSVMClassifier(num_classes=num_classes, in_channels=in_channels,
                                config=_config(HOGSVMClassifierConfig, options))
    if task != "detect":
        raise ValueError(f"hog_svm: task must be 'detect' or 'classify', got {task!r}")
    return HOGSVMDetector(num_classes=num_classes, in_channels=in_channels,
                          config=_config(HOGSVMDetectorConfig, options), input_size=input_size,
                          score_threshold=score_threshold, nms_iou=nms_iou, max_detections=max_detections)


def _config(kind: type, options: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(kind)}
    if unknown := sorted(set(options) - known):
        raise ValueError(f"hog_svm: unknown options {unknown}; {kind.__name__} has {sorted(known)}")
    return kind(**options)


def hog_svm_from_opencv(name: str, **kwargs: Any) -> HOGSVMDetector:
    """OpenCV's pretrained people detector "default_people" (Dalal-Triggs INRIA, 64x128 windows) or
    "daimler_people" (48x96), with OpenCV's detectMultiScale settings (OpenCV's grouping, threshold 0)."""
    if name not in _OPENCV:
        raise ValueError(f"hog_svm_from_opencv: unknown detector {name!r}; OpenCV has {sorted(_OPENCV)}")
    window, coefficients = _OPENCV[name]
    options = {"win_size": window, "grouping": "opencv", "hit_threshold": 0.0, **kwargs}
    model = hog_svm(num_classes=1, **options)
    vector = np.asarray(coefficients(), np.float32).ravel()             # weights, then the bias
    model.set_svms(model.config.params(window), vector[:-1][None], vector[-1:].astype(np.float64))
    model.class_names = ["person"]
    return model


def margin_threshold(score_threshold: float, hit_threshold: float) -> float:
    """The smallest margin a detection can have after `postprocess` (the score mapping of the docstring)."""
    if score_threshold <= 0:
        return hit_threshold
    if score_threshold >= 1:
        return math.inf
    return max(hit_threshold, math.log(score_threshold / (1 - score_threshold)))
