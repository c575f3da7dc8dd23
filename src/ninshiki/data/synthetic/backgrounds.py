"""Background photos and textures for the generated data set: the sample images scikit-image and
scikit-learn install with themselves, so generation needs no download.

scikit-image's loaders fetch most of their images over the network (through pooch) and ship only some in
the package; `BACKGROUNDS` lists shipped ones, and `load_backgrounds` reads their files from the installed
packages (the same pixels as ``skimage.data.astronaut()`` etc., checked in the tests), so it never downloads. Left out on purpose, because they hold unannotated look-
alikes of the object classes (a detector would be taught that a real circle or letter is background):
cell (one blurred disc), coins, clock, colorwheel, checkerboard, horse, logo, page, text, retina (one large
disc) and the Shepp-Logan phantom (ellipses); lfw_subset and microaneurysms are too small (25 and 102 px).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

# loader name in skimage.data -> the file it reads from the installed package
SKIMAGE_BACKGROUNDS: dict[str, str] = {
    "astronaut": "astronaut.png", "brick": "brick.png", "camera": "camera.png", "chelsea": "chelsea.png",
    "coffee": "coffee.png", "grass": "grass.png", "gravel": "gravel.png", "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png", "moon": "moon.png", "rocket": "rocket.jpg",
    "stereo_motorcycle": "motorcycle_left.png",
}
SKLEARN_BACKGROUNDS = ("china", "flower")  # sklearn.datasets.load_sample_images' two photos
BACKGROUNDS: tuple[str, ...] = (*SKIMAGE_BACKGROUNDS, *SKLEARN_BACKGROUNDS)
MIN_CROP = 0.4  # crops span 40-100% of a photo's shorter side
MAX_UPSCALE = 2.0  # ... but are never enlarged more than this


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) grey or (H, W, 3|4) colour, any numeric type, to (H, W, 3) uint8."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(np.round(image * (255.0 if image.dtype.kind == "f" else 1.0)), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def _package_file(package: str, *parts: str) -> Path | None:
    """A data file installed inside `package`, found without importing it, or None when it is not there."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent.joinpath(*parts)
    return path if path.is_file() else None


def _read_photo(name: str) -> np.ndarray | None:
    """The pixels `skimage.data.<name>()` or `load_sample_images()` return, read from the installed file.

    Reading the shipped file ourselves cannot download anything, and skips the imports behind the loaders
    (skimage.io, scikit-learn and SciPy: seconds, for a few PNG and JPEG files).
    """
    if name in SKIMAGE_BACKGROUNDS:
        path = _package_file("skimage", "data", SKIMAGE_BACKGROUNDS[name])
    else:
        path = _package_file("sklearn", "datasets", "images", f"{name}.jpg")
    if path is None:
        return None
    with Image.open(path) as image:
        return np.asarray(image)


def load_backgrounds(names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The background photos, by name, as (H, W, 3) uint8 (grey ones repeated over three channels).

    Args:
        names: a subset of `BACKGROUNDS` (default: all of them that this installation ships).

    Raises:
        ValueError: an unknown name, or none of the requested photos is installed.
    """
    wanted = list(BACKGROUNDS if names is None else names)
    unknown = [name for name in wanted if name not in BACKGROUNDS]
    if unknown:
        raise ValueError(f"unknown background(s) {unknown}: choose among {', '.join(BACKGROUNDS)}")
    photos: dict[str, np.ndarray] = {}
    for name in wanted:
        if (image := _read_photo(name)) is not None:
            photos[name] = _as_rgb(image)
    if not photos:
        raise ValueError(f"none of the background photos {wanted} is installed with scikit-image or scikit-learn")
    return {name: photos[name] for name in wanted if name in photos}  # in the order asked, for determinism


class Backgrounds:
    """Random square views of the background photos: a crop of random scale and place, resized, maybe
    mirrored, with its brightness and contrast jittered.

    Args:
        names: the photos to use (default: every installed one in `BACKGROUNDS`).
    """

    def __init__(self, *, names: Sequence[str] | None = None) -> None:
        self.photos = load_backgrounds(names)
        self.names = list(self.photos)

    def sample(self, size: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """One background and the name of the photo it came from.

        Returns:
            (size, size, 3) uint8 image, and the photo's name.
        """
        name = self.names[int(rng.integers(len(self.names)))]
        photo = self.photos[name]
        height, width = photo.shape[:2]
        shorter = min(height, width)
        low = min(shorter, max(MIN_CROP * shorter, size / MAX_UPSCALE))
        crop = float(rng.uniform(low, shorter))
        x0, y0 = float(rng.uniform(0, width - crop)), float(rng.uniform(0, height - crop))
        view = Image.fromarray(photo).resize((size, size), Image.Resampling.BILINEAR,
                                             box=(x0, y0, x0 + crop, y0 + crop))
        pixels = np.asarray(view, dtype=np.float32)  # (size, size, 3)
        if rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        contrast, brightness = rng.uniform(0.75, 1.25), rng.uniform(0.8, 1.2)
        mean = pixels.mean()
        pixels = (pixels - mean) * contrast + mean * brightness
        return np.clip(np.round(pixels), 0, 255).astype(np.uint8), name
