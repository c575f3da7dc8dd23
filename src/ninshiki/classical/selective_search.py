"""Selective Search region proposals: Uijlings, van de Sande, Gevers and Smeulders, "Selective Search for Object
Recognition", IJCV 2013, configured as R-CNN used it (Girshick et al., CVPR 2014).

OpenCV contrib does the work: Felzenszwalb-Huttenlocher graph segmentation, then hierarchical grouping of
neighbouring regions by colour, texture, size and fill similarity; every region of every hierarchy is a proposal.
The configurations are those of R-CNN's released code (`selective_search_boxes.m`, which drives the authors'
MATLAB implementation), not OpenCV's `switchToSelectiveSearchFast` (k = 150, 300, 450):

- "fast": HSV and Lab colour spaces; k = 50 and 100 (minimum segment size k, sigma 0.8); two similarity
  strategies, colour + texture + size + fill and texture + size + fill. 2 x 2 x 2 = 8 hierarchies.
- "quality": HSV, Lab, rgI (R, G and intensity), H and intensity; k = 50, 100, 150, 300; those two strategies
  plus fill alone and size alone. 5 x 4 x 4 = 80 hierarchies, about 10x slower.

Ranking. Uijlings et al. order proposals by (position of the region in its hierarchy, 1 = the whole image)
times a uniform random number, so that large regions tend to come first while every level is represented.
OpenCV applies that rule with C's unseeded, process-wide `rand()`, so its order changes from call to call
(the set of boxes does not). Here the set is re-ranked deterministically by the same rule, with the box's rank
by area (1 = the largest) standing in for its position in the hierarchy, which OpenCV does not return, and a
generator seeded by `seed`. Truncating to `max_proposals` therefore keeps the same boxes on every call.

Speed (one CPU thread): about 0.1 s for a 128 px image and 0.5 s for a 320 px one in "fast" mode. Larger
images are shrunk to `max_side` first (R-CNN ran on PASCAL images, at most 500 px) and the boxes scaled back.
OpenCV's threads are whatever `cv2.setNumThreads` says; this module never changes the setting.
"""
from __future__ import annotations

import cv2
import numpy as np

_SEGMENTATION = cv2.ximgproc.segmentation
_MODES = {
    # mode: (colour spaces, graph-segmentation k values, strategy names)
    "fast": (("hsv", "lab"), (50, 100), ("colour+texture+size+fill", "texture+size+fill")),
    "quality": (("hsv", "lab", "rgi", "h", "intensity"), (50, 100, 150, 300),
                ("colour+texture+size+fill", "texture+size+fill", "fill", "size")),
}
_SIGMA = 0.8   # Gaussian smoothing before graph segmentation, as in R-CNN's code


def selective_search(image: np.ndarray, *, mode: str = "fast", max_proposals: int = 2000, min_size: int = 10,
                     max_side: int = 500, seed: int = 0) -> np.ndarray:
    """Class-agnostic object proposals for one image.

    Args:
        image: RGB uint8 image, (H, W, 3); gray (H, W) or (H, W, 1) is replicated to three channels.
        mode: "fast" (R-CNN's setting) or "quality"; see the module docstring.
        max_proposals: Keep at most this many boxes, in rank order.
        min_size: Drop boxes narrower or shorter than this, in pixels of `image` (R-CNN drops those under 20 px
            on PASCAL images of ~500 px; the default suits the 128-320 px inputs of the CPU models).
        max_side: Images with a longer side are shrunk to it before segmenting; boxes come back in `image` pixels.
        seed: Seed of the pseudo-random ranking; the same image and seed give the same boxes in the same order.

    Returns:
        (P, 4) float32 boxes, xyxy in pixels of `image` (x2, y2 exclusive), ranked, P <= max_proposals.

    Raises:
        ValueError: `image` is not uint8 of the shapes above or is empty, or `mode` is unknown.
    """
    if mode not in _MODES:
        raise ValueError(f"selective_search: mode must be one of {sorted(_MODES)}, got {mode!r}")
    if max_proposals < 0 or min_size < 0 or max_side < 1:
        raise ValueError(f"selective_search: need max_proposals >= 0, min_size >= 0 and max_side >= 1, got "
                         f"{max_proposals}, {min_size}, {max_side}")
    rgb = _as_rgb(image)
    height, width = rgb.shape[:2]
    small = _shrink(rgb, max_side)
    boxes = _segment(small, mode).astype(np.float64)                        # (N, 4) xyxy in `small` pixels
    boxes *= np.array([width / small.shape[1], height / small.shape[0]] * 2)
    boxes = np.minimum(boxes, np.array([width, height, width, height], dtype=np.float64))
    sizes = boxes[:, 2:] - boxes[:, :2]                                     # (N, 2) widths, heights
    boxes = np.unique(boxes[(sizes >= min_size).all(axis=1)], axis=0)       # sorted: a deterministic base order
    return rank_proposals(boxes, seed=seed)[:max_proposals].astype(np.float32)


def rank_proposals(boxes: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Uijlings et al.'s pseudo-random ranking, with the rank by area standing in for the hierarchy position.

    Each box gets the value u * r, r its rank by area (1 = largest, ties in input order) and u uniform in [0, 1)
    from a generator seeded by `seed`; boxes come back in increasing value.

    Shape:
        - boxes: (N, 4) xyxy. Output: the same N boxes, reordered.
    """
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])       # (N,)
    area_rank = np.empty(len(boxes))
    area_rank[np.argsort(-areas, kind="stable")] = np.arange(1, len(boxes) + 1)
    values = np.random.default_rng(seed).random(len(boxes)) * area_rank    # (N,)
    return boxes[np.argsort(values, kind="stable")]


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"selective_search: expected a uint8 numpy image, got {kind}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"selective_search: expected an (H, W, 3) RGB or (H, W) gray image, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"selective_search: the image is empty, shape {image.shape}")
    return np.ascontiguousarray(image)


def _shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))   # OpenCV sizes are (width, height)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _segment(rgb: np.ndarray, mode: str) -> np.ndarray:
    """All regions of all hierarchies, deduplicated by OpenCV, as (N, 4) int xyxy (x2, y2 exclusive)."""
    colour_spaces, ks, strategies = _MODES[mode]
    search = _SEGMENTATION.createSelectiveSearchSegmentation()
    for space in colour_spaces:
        search.addImage(_colour_space(rgb, space))
    for k in ks:
        search.addGraphSegmentation(_SEGMENTATION.createGraphSegmentation(sigma=_SIGMA, k=float(k), min_size=k))
    for name in strategies:
        search.addStrategy(_strategy(name))
    rects = np.asarray(search.process(), dtype=np.int64).reshape(-1, 4)    # (N, 4) x, y, w, h
    rects[:, 2:] += rects[:, :2]                                            # boundingRect: w = x_max - x_min + 1
    return rects


def _colour_space(rgb: np.ndarray, space: str) -> np.ndarray:
    if space == "hsv":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    if space == "lab":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    intensity = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if space == "rgi":
        return np.ascontiguousarray(np.dstack([rgb[:, :, 0], rgb[:, :, 1], intensity]))
    if space == "h":
        return np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[:, :, 0])
    return intensity


def _strategy(name: str) -> cv2.ximgproc.segmentation.SelectiveSearchSegmentationStrategy:
    make = {"colour": _SEGMENTATION.createSelectiveSearchSegmentationStrategyColor,
            "texture": _SEGMENTATION.createSelectiveSearchSegmentationStrategyTexture,
            "size": _SEGMENTATION.createSelectiveSearchSegmentationStrategySize,
            "fill": _SEGMENTATION.createSelectiveSearchSegmentationStrategyFill}
    parts = [make[part]() for part in name.split("+")]
    if len(parts) == 1:
        return parts[0]
    return _SEGMENTATION.createSelectiveSearchSegmentationStrategyMultiple(*parts)   # equal weights
