"""Read one image file into a uint8 tensor, the same way whatever its mode, or say why it cannot be read.

Every file goes through one conversion, so a folder mixing 8-bit JPEGs, 16-bit PNGs, palette GIFs and CMYK
scans gives tensors on one scale:

1. The size is checked against `max_pixels` before any pixel is decoded (decompression bombs).
2. The EXIF orientation is applied, so a phone photo stored sideways comes out upright.
3. High-bit-depth modes are scaled to 8 bit by a fixed rule (see `_to_8bit`):
   ``I;16*`` by its full 16-bit range; ``I`` (32-bit int) by 0..65535 when every value fits, else by the
   image's own min..max; ``F`` (float) by 0..1 when every value fits, else by its own min..max.
4. Palette images become RGB, or RGBA when the palette has transparency; CMYK, YCbCr, LAB, HSV become RGB.
5. Alpha is composited onto black (pixel * alpha / 255): the usual choice for training data, and the one
   that leaves opaque images untouched.
6. The result is converted to 1 channel (luminance, ITU-R 601-2 as PIL's "L") or 3 (RGB).

PIL's global settings (``Image.MAX_IMAGE_PIXELS``, ``ImageFile.LOAD_TRUNCATED_IMAGES``) are never changed.
PIL's own bomb limit still applies on top of `max_pixels`: a file larger than twice ``MAX_IMAGE_PIXELS``
is refused by PIL while opening, and is reported the same way.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

MAX_PIXELS = 89_478_485  # PIL's default limit: ~0.25 GB as 24-bit RGB
EXIF_ORIENTATION = 0x0112

_MODE_ISSUES = {
    "1": "1-bit", "L": "grayscale", "LA": "grayscale+alpha", "La": "grayscale+alpha", "P": "palette",
    "PA": "palette+alpha", "RGBA": "RGBA", "RGBa": "RGBA", "CMYK": "CMYK", "YCbCr": "YCbCr", "LAB": "LAB",
    "HSV": "HSV", "I": "32-bit integer", "F": "32-bit float",
}


class ImageReadError(ValueError):
    """An image file that cannot be read; ``str()`` gives "path: reason"."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # survives DataLoader workers
        return type(self), (self.path, self.reason)


class UnreadableImageWarning(UserWarning):
    """Warned once per file that a loader skips because it cannot be read."""


@dataclass
class ImageInfo:
    """What `inspect_image` learns about a file without converting it."""

    path: str
    format: str | None = None           # "JPEG", "PNG", ... as PIL names it
    mode: str | None = None             # PIL mode before conversion
    size: tuple[int, int] | None = None  # (width, height) as stored, before EXIF rotation
    exif_orientation: int = 1           # 1 = upright; 2..8 = flipped and/or rotated
    issues: list[str] = field(default_factory=list)  # "16-bit", "CMYK", "exif-rotated", ... or the error
    error: str | None = None            # why the file cannot be read; None when it can


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(path, "no such file")
    if not path.is_file():
        raise ImageReadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")


def _open(path: Path, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse bombs before decoding."""
    _check_file(path)
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as err:
        raise ImageReadError(path, f"decompression bomb ({err})") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image (format not recognised)") from None
    except OSError as err:
        if "truncated" in str(err).lower():  # cut inside the header (EXIF, markers)
            raise ImageReadError(path, "truncated image file") from None
        raise ImageReadError(path, f"cannot open: {err.strerror or err}") from None
    except (ValueError, SyntaxError, EOFError, IndexError, struct.error) as err:
        raise ImageReadError(path, f"corrupt image header ({err})") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageReadError(path, f"decompression bomb: {width}x{height} = {width * height:,} pixels "
                                   f"exceeds the limit of {max_pixels:,}")
    return image


def _decode(image: Image.Image, path: Path) -> Image.Image:
    """Decode the pixels and apply the EXIF orientation, turning decoder failures into ImageReadError."""
    try:
        image.load()
    except OSError as err:
        message = str(err)
        reason = "truncated image file" if "truncated" in message.lower() else f"corrupt image data ({message})"
        raise ImageReadError(path, reason) from None
    except (ValueError, SyntaxError, EOFError, IndexError, struct.error) as err:
        raise ImageReadError(path, f"corrupt image data ({err})") from None
    try:
        return ImageOps.exif_transpose(image)
    except Exception as err:  # noqa: BLE001 - PIL raises many types on malformed EXIF blocks
        raise ImageReadError(path, f"malformed EXIF data ({err})") from None


def _scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (values.astype(np.float64) - low) * 255.0 / max(high - low, 1e-12)
    return np.clip(np.floor(scaled + 0.5), 0, 255).astype(np.uint8)  # round half up


def _to_8bit(image: Image.Image) -> Image.Image:
    """Bring any mode to one of L, LA, RGB, RGBA (the rules are in the module docstring)."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode.startswith("I;16"):
        return Image.fromarray(_scale(np.asarray(image), 0, 65535))  # (H, W) uint8 -> "L"
    if mode in ("I", "F"):
        values = np.asarray(image).astype(np.float64)
        values[~np.isfinite(values)] = 0
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        fixed_high = 65535.0 if mode == "I" else 1.0
        if low >= 0 and high <= fixed_high:
            low, high = 0.0, fixed_high
        return Image.fromarray(_scale(values, low, high))
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode in ("PA", "RGBa", "RGBX"):
        return image.convert("RGBA" if "A" in mode or "a" in mode else "RGB")
    if mode in ("La", "1"):
        return image.convert("LA" if mode == "La" else "L")
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV


def _composite_on_black(image: Image.Image) -> Image.Image:
    if image.mode not in ("LA", "RGBA"):
        return image
    pixels = np.asarray(image).astype(np.uint16)
    color, alpha = pixels[..., :-1], pixels[..., -1:]
    out = ((color * alpha + 127) // 255).astype(np.uint8)
    return Image.fromarray(out[..., 0] if image.mode == "LA" else out)  # "L" or "RGB"


def read_image(path: str | os.PathLike[str], *, channels: int = 3, max_pixels: int = MAX_PIXELS) -> Tensor:
    """Decode an image file into a uint8 tensor.

    Args:
        path: the image file.
        channels: 1 for luminance, 3 for RGB.
        max_pixels: files with more pixels (width * height) are refused before decoding.

    Returns:
        The upright image, converted as the module docstring describes.

    Shape:
        - Output: (channels, H, W) uint8, H and W after EXIF rotation.

    Raises:
        ImageReadError: the file is missing, empty, not an image, truncated, corrupt or a bomb.
        ValueError: `channels` is not 1 or 3.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    path = Path(path)
    with _open(path, max_pixels) as image:
        converted = _composite_on_black(_to_8bit(_decode(image, path)))
        target = "L" if channels == 1 else "RGB"
        converted = converted if converted.mode == target else converted.convert(target)
        array = np.array(converted, dtype=np.uint8)  # (H, W) or (H, W, 3), a copy we own
    tensor = torch.from_numpy(array)
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


def _mode_issues(image: Image.Image) -> list[str]:
    if image.mode.startswith("I;16"):
        return ["16-bit"]
    issue = _MODE_ISSUES.get(image.mode)
    if image.mode == "P" and "transparency" in image.info:
        issue = "palette+alpha"
    return [issue] if issue else []


def inspect_image(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """Describe a file for the data check: format, mode, size, orientation and anything unusual.

    The header is read first; pixels are decoded (to find truncated or corrupt data) only when the
    image is within `max_pixels`, so a bomb is reported without being decoded.
    """
    path = Path(path)
    info = ImageInfo(path=str(path))
    try:
        with _open(path, max_pixels=2**62) as image:  # the bomb check below records instead of raising
            info.format, info.mode, info.size = image.format, image.mode, image.size
            info.issues += _mode_issues(image)
            info.exif_orientation = _orientation(image)
            if info.exif_orientation != 1:
                info.issues.append("exif-rotated")
            width, height = image.size
            if width * height > max_pixels:
                raise ImageReadError(path, f"decompression bomb: {width}x{height} = {width * height:,} pixels "
                                           f"exceeds the limit of {max_pixels:,}")
            _decode(image, path)
    except ImageReadError as err:
        info.error = err.reason
        info.issues.append("decompression bomb" if err.reason.startswith("decompression bomb") else err.reason)
    return info


def _orientation(image: Image.Image) -> int:
    try:
        value = int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - a malformed EXIF block only means "no usable orientation" here
        return 1
    return value if 1 <= value <= 8 else 1


def resize_to(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Scale so the image covers `size` (antialiased), then crop the centre to exactly `size`.

    Shape:
        - Input: (..., C, H, W) uint8.
        - Output: (..., C, h, w) uint8 with (h, w) = size; the input itself when already that size.
    """
    height, width = image.shape[-2:]
    target_h, target_w = size
    if (height, width) == (target_h, target_w):
        return image
    scale = max(target_h / height, target_w / width)  # the shorter side (relative to the target) fits
    new_size = [max(target_h, round(height * scale)), max(target_w, round(width * scale))]
    resized = TF.resize(image, new_size, antialias=True)
    return TF.center_crop(resized, [target_h, target_w])


def to_channels(image: Tensor, channels: int) -> Tensor:
    """Convert between 1 (luminance) and 3 (RGB) channels; same weights as PIL's "L" conversion.

    Shape:
        - Input: (..., C, H, W) uint8 with C in {1, 3}.
        - Output: (..., channels, H, W) uint8; the input itself when C == channels.
    """
    have = image.shape[-3]
    if have == channels:
        return image
    if (have, channels) == (1, 3):
        return image.expand(*image.shape[:-3], 3, *image.shape[-2:]).contiguous()
    if (have, channels) == (3, 1):
        r, g, b = (image.select(-3, i).to(torch.int32) for i in range(3))
        luma = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16  # PIL's fixed-point ITU-R 601-2
        return luma.to(torch.uint8).unsqueeze(-3)
    raise ValueError(f"cannot convert {have} channels to {channels}")
