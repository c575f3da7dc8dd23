"""Shared fixtures for the data tests: image files of every mode, and every kind of broken file."""
from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

SIZE = (64, 48)  # (width, height) as PIL counts


def gradient_rgb(width: int = SIZE[0], height: int = SIZE[1]) -> np.ndarray:
    """A smooth (H, W, 3) uint8 image: survives JPEG compression with small errors."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                     np.full_like(x, 128)], axis=-1).astype(np.uint8)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that claims width x height pixels but holds almost no data (a decompression-bomb stand-in)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def write_mode(path: Path, mode: str) -> Path:
    """Save a 64x48 image in PIL `mode` (format from the suffix)."""
    rgb = Image.fromarray(gradient_rgb())
    if mode == "I;16":
        image = Image.fromarray((np.asarray(rgb.convert("L")).astype(np.uint16) * 257))
    elif mode == "P":
        image = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    else:
        image = rgb.convert(mode)
    image.save(path)
    return path


def write_exif_rotated(path: Path, orientation: int = 6) -> np.ndarray:
    """A JPEG stored 64 wide x 48 tall with a white 16x16 block at the stored top-left, tagged `orientation`.

    Returns the stored (H, W, 3) array.
    """
    stored = np.zeros((48, 64, 3), dtype=np.uint8)
    stored[:16, :16] = 255
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, quality=95)
    return stored


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    """One file per kind of breakage, with the reason `read_image` should give."""
    folder = tmp_path / "bad"
    folder.mkdir()
    good = Image.fromarray(gradient_rgb())
    good.save(folder / "whole.jpg", quality=90)
    good.save(folder / "whole.png")
    files = {
        "empty": folder / "empty.jpg",
        "truncated_jpeg": folder / "truncated.jpg",
        "truncated_png": folder / "truncated.png",
        "random_bytes": folder / "noise.jpg",
        "text": folder / "notes_as_image.png",
    }
    files["empty"].touch()
    jpeg, png = (folder / "whole.jpg").read_bytes(), (folder / "whole.png").read_bytes()
    files["truncated_jpeg"].write_bytes(jpeg[: len(jpeg) // 2])
    files["truncated_png"].write_bytes(png[: len(png) // 2])
    files["random_bytes"].write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    files["text"].write_text("this is not a picture\n")
    (folder / "whole.jpg").unlink()
    (folder / "whole.png").unlink()
    return files


def digest_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, to prove nothing was modified, added or removed."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def class_folder(tmp_path: Path) -> Callable[..., Path]:
    """Make root/<class>/<i>.png with `per_class[c]` distinct small images per class."""
    def make(name: str = "folder", per_class: dict[str, int] | None = None, size: tuple[int, int] = (20, 16)) -> Path:
        root = tmp_path / name
        per_class = per_class or {"cat": 6, "dog": 6, "fox": 6}
        for c, (cls, count) in enumerate(sorted(per_class.items())):
            (root / cls).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                array = np.full((size[1], size[0], 3), (c * 80 + i) % 256, dtype=np.uint8)
                Image.fromarray(array).save(root / cls / f"{i:03d}.png")
        return root
    return make


@pytest.fixture
def helpers() -> SimpleNamespace:
    """The file-making helpers above, for tests (conftest modules are not importable by name)."""
    return SimpleNamespace(gradient_rgb=gradient_rgb, png_header_only=png_header_only, write_mode=write_mode,
                           write_exif_rotated=write_exif_rotated, digest_tree=digest_tree)
