"""Random homographies, image warps and photometric changes: two views of one photo with known correspondences.

Self-supervised local features (LIFT trained here, SuperPoint's "homographic adaptation", DeTone et al. 2018)
and the evaluation of any extractor on real photos both need image pairs whose pixel correspondence is known
exactly. A plane seen from two cameras is related by a homography, so warping a real photo by a random,
plausible homography (and changing its brightness, contrast, gamma, noise and blur) gives such a pair.

Coordinates follow `ninshiki.match.features`: the centre of the top-left pixel is (0, 0), x right, y down,
which is also what `cv2.warpPerspective` uses, so `warp_points(xy, H)` is where `warp_image(image, H)` moves
the pixel at `xy`.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ninshiki.match.features import image_outline
from ninshiki.match.geometry import project

MAX_TRIES = 1000


def random_homography(height: int, width: int, rng: np.random.Generator, *, max_angle: float = 30.0,
                      scale: tuple[float, float] = (0.7, 1.4), perspective: float = 0.0008, max_shift: float = 0.15,
                      shear: float = 0.1, min_overlap: float = 0.7) -> np.ndarray:
    """A random, plausible homography of an image onto a frame of the same size.

    The map is, about the image centre c: x' = c + t + R(angle) S Sh P (x - c), with the rotation angle
    uniform in +-`max_angle` degrees, an isotropic scale log-uniform in `scale`, a shear (x += k y, k uniform
    in +-`shear`) with an aspect change of the same size, a perspective row (px, py, 1) with px, py uniform
    in +-`perspective` per pixel (0.0008 tilts a 500-pixel image by about +-20% at its edges), and a shift
    t uniform in +-`max_shift` of the width and height. Samples are drawn again until the image corners stay
    in front of the camera (so the warped outline is convex) and the warped image and the frame overlap by at
    least `min_overlap` of the smaller of the two.

    Args:
        height, width: the image (and frame) size.
        rng: the random generator (the same seed gives the same homography).

    Returns:
        The map from image pixels to frame pixels.

    Shape:
        - Output: (3, 3) float64, H[2, 2] = 1.

    Raises:
        ValueError: the options admit no homography that overlaps the frame enough.
    """
    if height < 2 or width < 2:
        raise ValueError(f"random_homography needs an image of at least 2x2 pixels, got {height}x{width}")
    if (not 0 < scale[0] <= scale[1] or min(max_angle, perspective, max_shift, shear) < 0
            or not 0 <= min_overlap <= 1 or shear >= 1):
        raise ValueError(f"random_homography: need 0 < scale[0] <= scale[1], non-negative ranges, shear < 1 and "
                         f"min_overlap in [0, 1], got scale={scale}, max_angle={max_angle}, "
                         f"perspective={perspective}, max_shift={max_shift}, shear={shear}, min_overlap={min_overlap}")
    outline = image_outline(height, width)                                       # (4, 2)
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    for _ in range(MAX_TRIES):
        angle = math.radians(rng.uniform(-max_angle, max_angle))
        zoom = math.exp(rng.uniform(math.log(scale[0]), math.log(scale[1])))
        k, aspect = rng.uniform(-shear, shear, 2)
        px, py = rng.uniform(-perspective, perspective, 2)
        shift = rng.uniform(-max_shift, max_shift, 2) * (width, height)
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        linear = rotation @ np.diag([zoom * (1 + aspect), zoom / (1 + aspect)]) @ np.array([[1.0, k], [0.0, 1.0]])
        core = np.eye(3)
        core[:2, :2] = linear
        core[2, :2] = px, py
        matrix = _translation(centre + shift) @ core @ _translation(-centre)
        matrix /= matrix[2, 2]
        if _plausible(matrix, outline, height, width, min_overlap):
            return matrix
    raise ValueError(f"random_homography: no sample of {MAX_TRIES} kept {min_overlap:.0%} overlap with the "
                     f"{height}x{width} frame; reduce max_shift, perspective or the scale range")


def _translation(offset: np.ndarray) -> np.ndarray:
    matrix = np.eye(3)
    matrix[:2, 2] = offset
    return matrix


def _plausible(matrix: np.ndarray, outline: np.ndarray, height: int, width: int, min_overlap: float) -> bool:
    w = outline @ matrix[2, :2] + matrix[2, 2]                                   # (4,)
    if not np.all(w > 0.1):                                                      # far in front of the horizon
        return False
    warped = project(matrix, outline).astype(np.float32)                         # (4, 2) convex since w > 0
    frame = outline.astype(np.float32)
    overlap, _ = cv2.intersectConvexConvex(warped, frame)
    smaller = min(abs(cv2.contourArea(warped)), abs(cv2.contourArea(frame)))
    return smaller > 0 and overlap >= min_overlap * smaller


def warp_points(xy: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Where the homography moves points (inf or nan for points sent to infinity).

    Shape:
        - xy: (N, 2) (x, y); matrix: (3, 3). Output: (N, 2) float64.
    """
    return project(np.asarray(matrix, np.float64), xy)


def warp_image(image: np.ndarray, matrix: np.ndarray,
               out_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Warp an image by a homography (bilinear, zero outside), with the mask of pixels taken from the image.

    Args:
        image: grayscale or colour, uint8 or float.
        matrix: the map from image pixels to output pixels.
        out_size: (height, width) of the output; the image's own size when None.

    Returns:
        The warped image (same dtype and channels), and a mask that is True where bilinear interpolation read
        only the image's pixels, no border (zero) pixel: where the output pixel's source position lies inside
        the image (to OpenCV's 1/32-pixel interpolation precision).

    Shape:
        - image: (H, W) or (H, W, C). Output: (h, w) or (h, w, C), and (h, w) bool.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"warp_image: expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    height, width = image.shape[:2]
    out_h, out_w = (height, width) if out_size is None else (int(out_size[0]), int(out_size[1]))
    matrix = np.asarray(matrix, np.float64)
    warped = cv2.warpPerspective(image, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if image.ndim == 3 and warped.ndim == 2:                                     # OpenCV drops a single channel
        warped = warped[:, :, None]
    # warping ones the same way: 1 exactly where interpolation gave no weight to a border (zero) pixel
    ones = cv2.warpPerspective(np.ones((height, width), np.float32), matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped, ones > 1 - 1e-4


def photometric_jitter(image: np.ndarray, rng: np.random.Generator, *, brightness: float = 0.15,
                       contrast: float = 0.3, gamma: float = 0.3, noise: float = 5.0, blur: float = 1.0) -> np.ndarray:
    """A random change of lighting and camera: blur, gamma, contrast, brightness and noise, in that order.

    Args:
        image: uint8 pixels.
        rng: the random generator (the same seed gives the same change).
        brightness: an offset uniform in +-brightness * 255.
        contrast: a gain about the image mean, uniform in [1 - contrast, 1 + contrast].
        gamma: an exponent exp(u) on the [0, 1] intensities, u uniform in +-gamma.
        noise: Gaussian noise whose standard deviation (grey levels) is uniform in [0, noise].
        blur: Gaussian blur whose sigma (pixels) is uniform in [0, blur]; none below 0.3.

    Returns:
        The changed image, uint8, same shape; all ranges 0 return it unchanged.

    Shape:
        - image: (H, W) or (H, W, C) uint8. Output: the same.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"photometric_jitter: expected an (H, W) or (H, W, C) uint8 image, got {image.dtype} "
                         f"{image.shape}")
    sigma = rng.uniform(0, blur) if blur > 0 else 0.0
    exponent = math.exp(rng.uniform(-gamma, gamma)) if gamma > 0 else 1.0
    gain = rng.uniform(1 - contrast, 1 + contrast) if contrast > 0 else 1.0
    offset = rng.uniform(-brightness, brightness) * 255 if brightness > 0 else 0.0
    spread = rng.uniform(0, noise) if noise > 0 else 0.0
    out = image.astype(np.float32)                                               # (H, W[, C])
    if sigma >= 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma).reshape(image.shape)
    if exponent != 1.0:
        out = 255.0 * (out / 255.0) ** exponent
    out = (out - out.mean()) * gain + out.mean() + offset
    if spread > 0:
        out = out + rng.normal(0.0, spread, out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
