"""Faces for the generated face-detection data: scikit-image's LFW crops, and scenes with them pasted in.

``skimage.data.lfw_subset()`` holds 200 grayscale 25x25 crops from Labeled Faces in the Wild (Huang et al.,
2007): the first 100 are faces, cropped tightly from the forehead to the chin, the last 100 are patches of
the same photos' backgrounds. They are read from the file scikit-image installs (never downloaded) and split
by position: faces 0-79 and non-faces 100-179 train, faces 80-99 and non-faces 180-199 validate. The subset
carries no identity labels, so the split separates crops (photos), not provably people.

A pasted face is its crop resized to a random side, mirrored or not, given a random contrast and brightness,
a little noise and a small tilt, and blended through a soft elliptical alpha mask (opaque in the middle,
fading to nothing at the crop's edge) so no square border remains. Its box is the square the crop was
resized to: the crop's whole extent, which is the face from forehead to chin.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ninshiki.data.synthetic.backgrounds import _package_file

LFW_SIDE = 25
LFW_FACES = {"train": range(80), "val": range(80, 100)}          # indices into lfw_subset()
LFW_NON_FACES = {"train": range(100, 180), "val": range(180, 200)}
PLACEMENT_TRIES = 20
ALPHA_FADE = 0.25  # the mask fades over the outer quarter of the ellipse's radius
ELLIPSE_WIDTH = 0.9  # half-width of the ellipse relative to the half-height: faces are taller than wide


@dataclass(frozen=True)
class FaceConfig:
    """How faces are drawn into a scene.

    Sides are log-uniform in [min_side, max_side] (capped at half the image side), so small faces are the
    most common, as in photos; min_side 24 is the Viola-Jones detection window.
    """
    max_faces: int = 4
    empty_fraction: float = 0.1   # scenes without any face
    min_side: int = 24
    max_side: int = 96
    max_angle: float = 12.0       # tilt, degrees either way
    max_overlap: float = 0.1      # the most of the smaller box that another face's box may cover


@dataclass
class FaceScene:
    """A generated grey image and its faces, in painting order."""
    image: np.ndarray    # (H, W) uint8
    boxes: np.ndarray    # (N, 4) float64 xyxy, on pixel edges
    sources: np.ndarray  # (N,) int64 index of each face's crop in lfw_subset()
    angles: np.ndarray   # (N,) float64 tilt in degrees, counter-clockwise
    flipped: np.ndarray  # (N,) bool mirrored left-right


def load_lfw_subset() -> np.ndarray:
    """All 200 crops of ``skimage.data.lfw_subset()``, read from the installed file (no download).

    Returns:
        (200, 25, 25) uint8: 0-99 faces, 100-199 non-faces (the file's floats in [0, 1], times 255, rounded).

    Raises:
        FileNotFoundError: this scikit-image installation lacks the file.
    """
    path = _package_file("skimage", "data", "lfw_subset.npy")
    if path is None:
        raise FileNotFoundError("scikit-image's data file skimage/data/lfw_subset.npy is not installed; "
                                "reinstall scikit-image (the file ships inside the package)")
    crops = np.load(path, allow_pickle=False)  # (200, 25, 25) float64 in [0, 1]
    if crops.shape != (200, LFW_SIDE, LFW_SIDE):
        raise ValueError(f"{path}: expected 200 crops of 25x25, found shape {crops.shape}")
    return np.round(crops * 255).astype(np.uint8)


def lfw_crops(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The face and non-face crops of one split, for crop-level checks of face classifiers.

    Args:
        split: "train" (faces 0-79, non-faces 100-179) or "val" (faces 80-99, non-faces 180-199).

    Returns:
        faces (N, 25, 25) uint8 and non_faces (M, 25, 25) uint8: 80 and 80 for train, 20 and 20 for val.
    """
    if split not in LFW_FACES:
        raise ValueError(f"lfw_crops: split must be 'train' or 'val', got {split!r}")
    crops = load_lfw_subset()
    return crops[LFW_FACES[split]].copy(), crops[LFW_NON_FACES[split]].copy()


def face_alpha(side: int, angle: float) -> np.ndarray:
    """The soft elliptical mask of a face of `side` pixels tilted by `angle` degrees.

    Returns:
        (side, side) float32 in [0, 1]: 1 inside 75% of the ellipse's radius, 0 at and beyond the ellipse,
        whose half-height is side / 2 (so the mask never reaches past the crop's square).
    """
    centre = (side - 1) / 2
    v, u = (np.mgrid[0:side, 0:side].astype(np.float32) - centre) / (side / 2)  # (2, side, side)
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    across, down = u * cos - v * sin, u * sin + v * cos  # coordinates in the face's own (tilted) frame
    radius = np.sqrt((across / ELLIPSE_WIDTH) ** 2 + down ** 2)  # (side, side) 1 on the ellipse
    return np.clip((1 - radius) / ALPHA_FADE, 0, 1).astype(np.float32)


def render_face(crop: np.ndarray, side: int, rng: np.random.Generator, config: FaceConfig
                ) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """One face crop as it will be pasted: resized, maybe mirrored, jittered and tilted.

    Shape:
        crop: (25, 25) uint8. Returns the face (side, side) float32 grey values and its alpha
        (side, side) float32, then the tilt in degrees and whether it was mirrored.
    """
    flipped = bool(rng.random() < 0.5)
    angle = float(rng.uniform(-config.max_angle, config.max_angle))
    contrast, brightness = rng.uniform(0.7, 1.3), rng.uniform(0.7, 1.3)
    source = Image.fromarray(crop[:, ::-1] if flipped else crop).convert("F")
    mean = float(crop.mean())
    # rotated about the centre; the corners it uncovers are filled with the mean and lie outside the mask
    face = source.resize((side, side), Image.Resampling.BICUBIC).rotate(angle, Image.Resampling.BILINEAR,
                                                                         fillcolor=mean)
    pixels = np.asarray(face, dtype=np.float32)  # (side, side)
    pixels = (pixels - mean) * contrast + mean * brightness
    pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * np.float32(2.0)  # like the photos' grain
    return np.clip(pixels, 0, 255), face_alpha(side, angle), angle, flipped


def face_count(max_faces: int, empty_fraction: float, rng: np.random.Generator) -> int:
    """0 with probability `empty_fraction`, else uniform in 1..max_faces (0 when max_faces is 0)."""
    if max_faces == 0 or rng.random() < empty_fraction:
        return 0
    return int(rng.integers(1, max_faces + 1))


def _free_place(side: int, height: int, width: int, boxes: list[np.ndarray], max_overlap: float,
                rng: np.random.Generator) -> np.ndarray | None:
    """A box (4,) xyxy of `side` inside the image overlapping no earlier box by more than allowed, or None."""
    earlier = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)  # (N, 4)
    for _ in range(PLACEMENT_TRIES):
        x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        box = np.array([x, y, x + side, y + side], dtype=np.float64)
        inter = (np.clip(np.minimum(earlier[:, 2:], box[2:]) - np.maximum(earlier[:, :2], box[:2]), 0, None)
                 .prod(axis=1))  # (N,)
        smaller = np.minimum((earlier[:, 2:] - earlier[:, :2]).prod(axis=1), side * side)  # (N,)
        if np.all(inter <= max_overlap * smaller):
            return box
    return None


def compose_faces(background: np.ndarray, crops: np.ndarray, pool: range, config: FaceConfig,
                  rng: np.random.Generator) -> FaceScene:
    """Paste 0..max_faces faces, chosen uniformly from `pool`, onto a grey `background`.

    Args:
        background: (H, W) uint8 grey image.
        crops: (200, 25, 25) uint8, all of lfw_subset (what `load_lfw_subset` returns).
        pool: the indices of the crops this split may use.
        config: counts, sides, tilt and overlap.
        rng: the image's own generator (the scene depends on nothing else).
    """
    height, width = background.shape
    canvas = background.astype(np.float32)  # (H, W)
    largest = min(config.max_side, min(height, width) // 2)
    boxes, sources, angles, flips = [], [], [], []
    for _ in range(face_count(config.max_faces, config.empty_fraction, rng)):
        side = round(math.exp(rng.uniform(math.log(config.min_side), math.log(largest))))
        index = pool[int(rng.integers(len(pool)))]
        face, alpha, angle, flipped = render_face(crops[index], side, rng, config)
        box = _free_place(side, height, width, boxes, config.max_overlap, rng)
        if box is None:
            continue
        x0, y0 = int(box[0]), int(box[1])
        region = canvas[y0:y0 + side, x0:x0 + side]
        region += alpha * (face - region)
        boxes.append(box)
        sources.append(index)
        angles.append(angle)
        flips.append(flipped)
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    return FaceScene(image=image, boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                     sources=np.asarray(sources, dtype=np.int64), angles=np.asarray(angles, dtype=np.float64),
                     flipped=np.asarray(flips, dtype=bool))
