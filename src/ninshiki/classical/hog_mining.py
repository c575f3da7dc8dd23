"""Training a HOG + linear SVM window classifier with hard-negative mining, as Dalal and Triggs ("Histograms of
oriented gradients for human detection", CVPR 2005, section 4) trained their detector.

Round 0 fits a linear SVM (scikit-learn's `LinearSVC`, C = 0.01 as in the paper) on the positive windows and
windows sampled at random from the background images (every pyramid level, every window position, excluding
windows that overlap an `exclude` box by IoU >= `max_overlap`). Each further round scans every background
with the current detector and adds its false positives, windows whose margin is above -1 (inside the SVM's
margin, so each one still costs hinge loss), the `hard_per_image` strongest per image, then refits on
everything gathered so far. Negatives beyond `max_negatives` are dropped, easiest (lowest margin) first.
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from sklearn.svm import LinearSVC
from torchvision.ops import box_iou
from tqdm import tqdm

from ninshiki.classical.hog import HOGParams, gather_windows, hog_batch, hog_blocks, window_grid
from ninshiki.classical.hog_detect import pyramid_scales, score_windows

HARD_MARGIN = -1.0   # windows scoring above this still cost hinge loss: the hard negatives


@dataclass(frozen=True)
class MiningOptions:
    """How negatives are gathered (see the module docstring)."""
    rounds: int = 2                  # mining rounds after the first fit
    negatives_per_image: int = 10    # random windows per background in round 0
    hard_per_image: int = 20         # at most this many false positives per background and round
    max_negatives: int = 20000       # memory bound of the negative pool
    max_overlap: float = 0.3         # windows with IoU >= this with an excluded box are never negatives
    scale: float = 1.2               # pyramid step while scanning backgrounds (detection uses finer steps)
    seed: int = 0


def _level_windows(image: np.ndarray, params: HOGParams, scale: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each pyramid level's block grid and window boxes.

    Shape:
        yields blocks (By, Bx, block_dim) and boxes (Ny, Nx, 4) xyxy in `image` pixels.
    """
    height, width = image.shape[:2]
    win_w, win_h = params.win_size
    step_x, step_y = params.block_stride
    for level_scale in pyramid_scales((width, height), params.win_size, scale=scale):
        size = (round(width / level_scale), round(height / level_scale))
        level = image if size == (width, height) else cv2.resize(image, size, interpolation=cv2.INTER_LINEAR_EXACT)
        blocks = hog_blocks(level, params)
        ny, nx = window_grid(blocks, params)
        if ny == 0 or nx == 0:
            continue
        ys, xs = np.meshgrid(np.arange(ny) * step_y, np.arange(nx) * step_x, indexing="ij")
        boxes = np.stack([xs, ys, xs + win_w, ys + win_h], -1).astype(np.float64)          # (Ny, Nx, 4)
        yield blocks, boxes * np.array([width / size[0], height / size[1]] * 2)


def _allowed(boxes: np.ndarray, exclude: np.ndarray, max_overlap: float) -> np.ndarray:
    """(Ny, Nx) bool: windows overlapping no excluded box by IoU >= max_overlap."""
    if len(exclude) == 0:
        return np.ones(boxes.shape[:2], bool)
    iou = box_iou(torch.from_numpy(boxes.reshape(-1, 4)), torch.from_numpy(np.asarray(exclude, np.float64)))
    return (iou.max(1).values < max_overlap).numpy().reshape(boxes.shape[:2])


def _negatives(image: np.ndarray, exclude: np.ndarray, params: HOGParams, options: MiningOptions,
               model: tuple[np.ndarray, np.ndarray] | None, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
    """Negative descriptors from one background: random windows (model None) or the hardest false positives.

    Shape:
        returns descriptors (n, D) float32 and their margins under `model` (n,) (zeros in round 0).
    """
    found, margins = [], []
    for blocks, boxes in _level_windows(image, params, options.scale):
        allowed = _allowed(boxes, exclude, options.max_overlap)
        if model is None:
            rows, cols = np.nonzero(allowed)
            found.append((blocks, rows, cols))
            continue
        level = score_windows(blocks, model[0], model[1], params, grid_stride=params.block_stride,
                              win_stride=params.block_stride)[0]                       # (Ny, Nx)
        rows, cols = np.nonzero(allowed & (level > HARD_MARGIN))
        found.append((blocks, rows, cols))
        margins.append(level[rows, cols])
    total = sum(len(rows) for _, rows, _ in found)
    if total == 0:
        return np.zeros((0, params.descriptor_size), np.float32), np.zeros(0)
    if model is None:
        chosen = np.sort(rng.choice(total, min(total, options.negatives_per_image), replace=False))
        scores = np.zeros(total)
    else:
        scores = np.concatenate(margins)
        chosen = np.sort(np.argsort(-scores, kind="stable")[:options.hard_per_image])
    descriptors, offset = [], 0
    for blocks, rows, cols in found:
        picked = chosen[(chosen >= offset) & (chosen < offset + len(rows))] - offset
        if len(picked):
            descriptors.append(gather_windows(blocks, params, rows[picked], cols[picked]))
        offset += len(rows)
    return np.concatenate(descriptors), scores[chosen]


def _fit_svm(positives: np.ndarray, negatives: np.ndarray, C: float, seed: int) -> tuple[np.ndarray, float]:
    """LinearSVC (squared hinge, L2) on (P, D) positives against (N, D) negatives: weights (D,) and bias."""
    features = np.concatenate([positives, negatives])                          # (P + N, D)
    labels = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    svm = LinearSVC(C=C, random_state=seed, max_iter=5000).fit(features, labels)
    return svm.coef_[0].astype(np.float32), float(svm.intercept_[0])


def train_hog_svm(positives: np.ndarray, backgrounds: Sequence[np.ndarray], *, params: HOGParams,
                  exclude: Sequence[np.ndarray] | None = None, C: float = 0.01,
                  options: MiningOptions = MiningOptions(), progress: bool = True
                  ) -> tuple[np.ndarray, float, dict[str, float]]:
    """Fit a linear SVM on HOG descriptors of object windows against mined background windows.

    Args:
        positives: uint8 windows of the objects, (P, h, w) or (P, h, w, 3) with (w, h) == params.win_size
            (mirrored copies included if wanted).
        backgrounds: uint8 images (H, W) or (H, W, 3), same channels as `positives`, scanned for negatives.
        params: Descriptor geometry.
        exclude: Per background, (M, 4) xyxy boxes of objects that no negative may overlap.
        C: SVM regularisation (Dalal and Triggs: 0.01).
        options: Mining schedule.
        progress: Show a progress bar per round.

    Returns:
        weights (D,) float32 in OpenCV's descriptor order, bias, and facts for the log (positives,
        negatives, negatives added per round, fit seconds).

    Shape:
        positives (P, h, w[, 3]); backgrounds: each (H, W[, 3]); exclude: each (M, 4); weights (D,).
    """
    if len(positives) == 0:
        raise ValueError("train_hog_svm: no positive windows")
    exclude = list(exclude) if exclude is not None else [np.zeros((0, 4))] * len(backgrounds)
    if len(exclude) != len(backgrounds):
        raise ValueError(f"train_hog_svm: {len(exclude)} exclude lists for {len(backgrounds)} backgrounds")
    start = time.perf_counter()
    rng = np.random.default_rng(options.seed)
    pos = hog_batch(np.ascontiguousarray(positives), params)                   # (P, D)
    facts: dict[str, float] = {"positives": float(len(pos))}
    model, neg, neg_margins = None, [], []
    for round_index in range(options.rounds + 1):
        found = [_negatives(image, boxes, params, options, model, rng) for image, boxes in
                 tqdm(list(zip(backgrounds, exclude)), desc=f"hog mining round {round_index}",
                      disable=not progress, leave=False)]
        neg += [d for d, _ in found]
        neg_margins += [m if model is not None else np.full(len(m), HARD_MARGIN) for _, m in found]
        facts[f"negatives_round{round_index}"] = float(sum(len(d) for d, _ in found))
        negatives, margins = np.concatenate(neg), np.concatenate(neg_margins)
        if len(negatives) > options.max_negatives:                              # keep the hardest
            keep = np.sort(np.argsort(-margins, kind="stable")[:options.max_negatives])
            negatives, margins = negatives[keep], margins[keep]
            neg, neg_margins = [negatives], [margins]
        if len(negatives) == 0:
            raise ValueError("train_hog_svm: the backgrounds hold no window outside the excluded boxes")
        if model is not None and facts[f"negatives_round{round_index}"] == 0:
            break                                                               # nothing left to mine
        weights, bias = _fit_svm(pos, negatives, C, options.seed)
        model = (weights[None], np.array([bias]))
    facts.update(negatives=float(len(negatives)), fit_s=time.perf_counter() - start)
    return weights, bias, facts
