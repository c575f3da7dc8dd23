"""Training data for LIFT by homographic self-supervision: two views of one real photo related by a random
homography, with photometric changes, and corresponding keypoints with their patch geometry in both views.

The paper (Yi et al., ECCV 2016, section 4) trained on patches around SIFT keypoints that structure from
motion (VisualSFM) had matched across the photos of a landmark, with SIFT's scale and orientation. Here the
second view is made by warping, so the correspondence is exact: SIFT keypoints of the first view are
carried into the second by the homography H, their patch diameter scaled by H's local scale change and their
orientation turned by its local rotation (from H's Jacobian at the keypoint).
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ninshiki.data.formats.imagefolder import IMAGE_EXTENSIONS
from ninshiki.data.images import read_image
from ninshiki.data.sample_photos import opencv_sample_dir
from ninshiki.data.synthetic.backgrounds import BACKGROUNDS, load_backgrounds
from ninshiki.match.homography import photometric_jitter, random_homography, warp_image, warp_points
from ninshiki.match.sift import SiftExtractor

# OpenCV's sample photos used for training by default. Held out for evaluation (never trained on): the real
# pairs graf1/graf3, leuvenA/B, box/box_in_scene, aero1/aero3, Blender_Suzanne1/2, and building, home,
# starry_night, stuff; the chessboard and text images are left out as unlike photos.
OPENCV_TRAIN_PHOTOS = (
    "HappyFish.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "board.jpg", "butterfly.jpg", "cards.png",
    "chicky_512.png", "ela_original.jpg", "fruits.jpg", "left.jpg", "licenseplate_motion.jpg", "messi5.jpg",
    "orange.jpg", "pca_test1.jpg", "rubberwhale1.png", "smarties.png", "squirrel_cls.jpg", "sudoku.png")
OPENCV_HELD_OUT_PHOTOS = ("building.jpg", "home.jpg", "starry_night.jpg", "stuff.jpg", "graf1.png", "leuvenA.jpg",
                          "box_in_scene.png", "aero1.jpg", "Blender_Suzanne1.jpg")
MAX_SIDE = 640          # photos are shrunk to this longer side
SIFT_SUPPORT = 6.0      # patch diameter / SIFT keypoint size: SIFT's 4 x 4 cells of 3 sigma cover 6 sizes


@dataclass(frozen=True)
class ViewPair:
    """Two views of a photo; `homography` maps view1's pixels to view2's.

    Shape:
        - view1, view2: (h, w) uint8; valid1, valid2: (h, w) bool (pixels taken from the photo);
          homography: (3, 3) float64.
    """

    view1: np.ndarray
    view2: np.ndarray
    homography: np.ndarray
    valid1: np.ndarray
    valid2: np.ndarray


@dataclass(frozen=True)
class Correspondences:
    """Keypoints of view1 and where they are in view2, with the patch each is described by.

    Shape:
        - xy1, xy2: (N, 2) float32; diameter1, diameter2, angle1, angle2, rotation: (N,) float32, angles and
          rotation (view2's angle - view1's) in degrees.
    """

    xy1: np.ndarray
    diameter1: np.ndarray
    angle1: np.ndarray
    xy2: np.ndarray
    diameter2: np.ndarray
    angle2: np.ndarray
    rotation: np.ndarray

    def __len__(self) -> int:
        return len(self.xy1)


def load_photos(photos: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None) -> list[np.ndarray]:
    """Grayscale photos for training, each shrunk to at most `MAX_SIDE` pixels on its longer side.

    Args:
        photos: image files, or a folder whose image files (by extension, not recursive) are used; None for
            the defaults: scikit-image's and scikit-learn's shipped photos and, when OpenCV's sample data is
            installed, `OPENCV_TRAIN_PHOTOS`.

    Raises:
        FileNotFoundError: a file or folder is missing. ValueError: a file cannot be read (named), or a
            folder holds no image.

    Shape:
        - Output: (H, W) uint8 arrays.
    """
    if photos is None:
        grays = [cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) for rgb in load_backgrounds(BACKGROUNDS).values()]
        try:
            folder = opencv_sample_dir()
            paths = [folder / name for name in OPENCV_TRAIN_PHOTOS if (folder / name).is_file()]
        except FileNotFoundError:
            paths = []
        return [_shrink(g) for g in grays] + [_read(p) for p in paths]
    if isinstance(photos, (str, os.PathLike)):
        folder = Path(photos)
        if not folder.exists():
            raise FileNotFoundError(f"no such photo folder or file: {folder}")
        if folder.is_file():
            return [_read(folder)]
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not paths:
            raise ValueError(f"{folder}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) to train on")
        return [_read(p) for p in paths]
    if not photos:
        raise ValueError("load_photos: an empty list of photos")
    return [_read(Path(p)) for p in photos]


def _read(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"no such photo: {path}")
    return _shrink(read_image(path, channels=1)[0].numpy())


def _shrink(gray: np.ndarray) -> np.ndarray:
    factor = MAX_SIDE / max(gray.shape)
    if factor >= 1:
        return np.ascontiguousarray(gray)
    size = (max(1, round(gray.shape[1] * factor)), max(1, round(gray.shape[0] * factor)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def make_pair(photo: np.ndarray, rng: np.random.Generator, *, size: tuple[int, int] = (192, 256),
              jitter: bool = True) -> ViewPair:
    """Two views of a random crop of `photo`: the crop, and the crop warped by a random homography.

    Both views are sampled from the photo itself (view2 through H composed with the crop), so view2's
    corners show the photo around the crop rather than black wherever the photo extends that far.

    Args:
        photo: (H, W) uint8.
        rng: the random generator.
        size: (height, width) of the views.
        jitter: change brightness, contrast, gamma, noise and blur of each view independently.
    """
    height, width = size
    rows, cols = photo.shape
    least = max(height / rows, width / cols)                                     # the crop must fit the photo
    zoom = math.exp(rng.uniform(math.log(max(least, 0.5)), math.log(max(least, 1.25))))
    ox = rng.uniform(0, max(0.0, cols - width / zoom))
    oy = rng.uniform(0, max(0.0, rows - height / zoom))
    crop = np.array([[zoom, 0, (0.5 - ox) * zoom - 0.5], [0, zoom, (0.5 - oy) * zoom - 0.5], [0, 0, 1]])
    homography = random_homography(height, width, rng)
    view1, valid1 = warp_image(photo, crop, size)
    view2, valid2 = warp_image(photo, homography @ crop, size)
    if jitter:
        view1, view2 = photometric_jitter(view1, rng), photometric_jitter(view2, rng)
    return ViewPair(view1, view2, homography, valid1, valid2)


def local_similarity(homography: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scale change and rotation (degrees) of the homography near each point: sqrt|det J| and the angle
    of J's closest rotation, J the 2x2 Jacobian of the map at the point.

    Shape:
        - homography: (3, 3); xy: (N, 2). Output: (N,) and (N,) float64.
    """
    xy = np.asarray(xy, np.float64)
    w = xy @ homography[2, :2] + homography[2, 2]                                # (N,)
    mapped = warp_points(xy, homography)                                         # (N, 2)
    jac = (homography[None, :2, :2] - mapped[:, :, None] * homography[None, 2, None, :2]) / w[:, None, None]
    scale = np.sqrt(np.abs(np.linalg.det(jac)))                                  # (N,)
    rotation = np.degrees(np.arctan2(jac[:, 1, 0] - jac[:, 0, 1], jac[:, 0, 0] + jac[:, 1, 1]))
    return scale, rotation


def correspondences(pair: ViewPair, *, patch_size: int, max_points: int = 64, max_diameter: float | None = None,
                    rng: np.random.Generator | None = None, sift: SiftExtractor | None = None) -> Correspondences:
    """SIFT keypoints of view1 whose patches lie inside both views, and their matches in view2.

    Each keypoint's patch diameter is `SIFT_SUPPORT` times its SIFT size, clipped to [P, `max_diameter`]
    (default 4 P); keypoints closer than a quarter diameter to a stronger one are dropped (SIFT repeats a
    keypoint once per orientation), so that no two make near-identical patches. At most `max_points` are kept,
    a random subset when `rng` is given, else the strongest.
    """
    sift = sift or SiftExtractor(max_features=4 * max_points)
    found = sift.detect(pair.view1)                                              # strongest first
    diameter1 = np.clip(SIFT_SUPPORT * found.scale, patch_size, max_diameter or 4 * patch_size)
    xy1 = found.xy.astype(np.float64)
    scale, rotation = local_similarity(pair.homography, xy1)
    xy2, diameter2 = warp_points(xy1, pair.homography), diameter1 * scale
    keep = _inside(xy1, diameter1, pair.valid1) & _inside(xy2, diameter2, pair.valid2) & _isolated(xy1, diameter1)
    index = np.flatnonzero(keep)
    if rng is not None and len(index) > max_points:
        index = np.sort(rng.choice(index, max_points, replace=False))
    index = index[:max_points]
    return Correspondences(*(np.asarray(a, np.float32) for a in (
        xy1[index], diameter1[index], found.angle[index], xy2[index], diameter2[index],
        (found.angle[index] + rotation[index]) % 360.0, rotation[index])))


def _inside(xy: np.ndarray, diameter: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Whether a patch lies on valid pixels: its centre and 8 points on its inscribed circle (its corners, where
    a rotated patch reaches furthest, may fall outside).

    Shape:
        - xy: (N, 2); diameter: (N,); valid: (h, w) bool. Output: (N,) bool.
    """
    angles = np.arange(8) * (np.pi / 4)                                           # (8,)
    unit = np.concatenate([np.zeros((1, 2)), np.stack([np.cos(angles), np.sin(angles)], axis=1)])   # (9, 2)
    offsets = unit[None] * (np.asarray(diameter, np.float64) / 2)[:, None, None]       # (N, 9, 2)
    points = np.rint(xy[:, None] + offsets).astype(np.int64)                     # (N, 9, 2)
    height, width = valid.shape
    inside = (points[..., 0] >= 0) & (points[..., 0] < width) & (points[..., 1] >= 0) & (points[..., 1] < height)
    on_valid = valid[np.clip(points[..., 1], 0, height - 1), np.clip(points[..., 0], 0, width - 1)]
    return (inside & on_valid).all(axis=1)


def _isolated(xy: np.ndarray, diameter: np.ndarray) -> np.ndarray:
    """False for a keypoint within a quarter of its diameter of an earlier (stronger) one."""
    if len(xy) == 0:
        return np.zeros(0, bool)
    distance = np.linalg.norm(xy[:, None] - xy[None], axis=-1)                   # (N, N)
    close = np.triu(distance < 0.25 * diameter[None, :], k=1)                    # close[i, j]: i < j near j
    return ~close.any(axis=0)
