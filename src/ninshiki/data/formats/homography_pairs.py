"""Image pairs with a known homography between them: the ground truth of local-feature evaluation.

Folder layout, one subfolder per pair::

    PAIRS/<name>/a.png   (or a.jpg, any image extension)
    PAIRS/<name>/b.png
    PAIRS/<name>/H.txt   3x3 matrix mapping a's pixels to b's, whitespace-separated, row by row

``H.txt`` is written as the Oxford affine-covariant set (Mikolajczyk et al., IJCV 2005) and HPatches write
their ``H1to2p`` files, so those files can be copied in unchanged. A folder that itself holds ``H.txt`` is
one pair. Pixel coordinates follow `ninshiki.match.features` (centre of the top-left pixel at (0, 0)); the
Oxford matrices were estimated in that convention too.

OpenCV's sample data (Debian's opencv-doc) holds one pair of this kind from the Oxford set: graf1.png and
graf3.png with ``H1to3p.xml``; `opencv_doc_pairs` reads it. `write_warped_pairs` makes pairs from real
photos: each photo, and a view of it through a random homography with photometric changes.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ninshiki.data.formats.imagefolder import is_image_file
from ninshiki.data.images import read_image
from ninshiki.io import atomic_path, write_text

HOMOGRAPHY_FILE = "H.txt"
MAX_CONDITION = 1e12   # beyond this the matrix is singular to double precision (a plane seen edge-on)
# the Oxford pairs OpenCV's sample data carries: (image a, image b, XML file, matrix node)
OPENCV_DOC_PAIRS = (("graf1.png", "graf3.png", "H1to3p.xml", "H13"),)


@dataclass(frozen=True, eq=False)   # holds an array: compare fields explicitly
class HomographyPair:
    """Two images of one plane and the homography taking a's pixels to b's.

    Shape:
        - H: (3, 3) float64.
    """

    name: str
    a_path: Path
    b_path: Path
    H: np.ndarray


def read_homography(path: str | os.PathLike[str]) -> np.ndarray:
    """A 3x3 homography from a text file of 9 numbers (HPatches' / Oxford's ``H1to2p``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not 9 finite numbers, or a singular matrix; the message names the file (and line).

    Shape:
        - Output: (3, 3) float64.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such homography file")
    values: list[float] = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        for token in line.replace(",", " ").split():
            try:
                values.append(float(token))
            except ValueError:
                raise ValueError(f"{path}, line {number}: {token!r} is not a number; expected a 3x3 matrix, "
                                 f"9 numbers row by row") from None
    if len(values) != 9:
        raise ValueError(f"{path}: expected a 3x3 matrix (9 numbers row by row), found {len(values)} numbers")
    return check_homography(np.array(values, np.float64).reshape(3, 3), str(path))


def check_homography(matrix: np.ndarray, where: str) -> np.ndarray:
    """`matrix` as (3, 3) float64 if it is a finite, invertible homography; else a ValueError naming `where`."""
    matrix = np.asarray(matrix, np.float64)
    if matrix.shape != (3, 3):
        raise ValueError(f"{where}: a homography is 3x3, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{where}: the homography has non-finite entries (inf or nan)")
    if not np.linalg.cond(matrix) < MAX_CONDITION:
        raise ValueError(f"{where}: the homography is singular (determinant {np.linalg.det(matrix):.3g}); "
                         f"it maps the image onto a line or a point")
    return matrix


def _pair_image(folder: Path, stem: str) -> Path:
    """The single image file `stem`.<image extension> in `folder`."""
    found = sorted(p for p in folder.iterdir() if p.stem == stem and p.is_file() and is_image_file(p))
    if not found:
        raise FileNotFoundError(f"{folder}: missing image {stem}.png (or {stem}.jpg); a pair folder holds a.*, "
                                f"b.* and {HOMOGRAPHY_FILE}")
    if len(found) > 1:
        raise ValueError(f"{folder}: several images named {stem}: {', '.join(p.name for p in found)}")
    return found[0]


def read_pair_folder(folder: str | os.PathLike[str], name: str | None = None) -> HomographyPair:
    """One pair folder (a.*, b.*, H.txt); errors name the missing or bad file."""
    folder = Path(folder)
    matrix = read_homography(folder / HOMOGRAPHY_FILE)
    return HomographyPair(name or folder.name, _pair_image(folder, "a"), _pair_image(folder, "b"), matrix)


def read_homography_pairs(folder: str | os.PathLike[str]) -> list[HomographyPair]:
    """Every pair under `folder`, sorted by name (or the folder itself when it holds H.txt).

    Raises:
        FileNotFoundError: `folder` does not exist, or a pair lacks an image or its H.txt.
        ValueError: no pairs, or a bad matrix (see `read_homography`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of homography pairs")
    if (folder / HOMOGRAPHY_FILE).exists():
        return [read_pair_folder(folder)]
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        raise ValueError(f"{folder}: no pairs found; expected {folder}/<name>/{{a.png, b.png, {HOMOGRAPHY_FILE}}}")
    return [read_pair_folder(sub) for sub in subfolders]


def opencv_doc_pairs(folder: str | os.PathLike[str] | None = None) -> list[HomographyPair]:
    """The Oxford pairs in OpenCV's sample data whose files are all present (none when it is missing).

    Args:
        folder: the sample data folder; default `ninshiki.data.sample_photos.opencv_sample_dir()`.
    """
    if folder is None:
        from ninshiki.data.sample_photos import opencv_sample_dir

        try:
            folder = opencv_sample_dir()
        except FileNotFoundError:
            return []
    folder = Path(folder)
    pairs = []
    for a, b, xml, node in OPENCV_DOC_PAIRS:
        if all((folder / f).is_file() for f in (a, b, xml)):
            pairs.append(HomographyPair(f"{Path(a).stem}-{Path(b).stem}", folder / a, folder / b,
                                        _read_opencv_matrix(folder / xml, node)))
    return pairs


def _read_opencv_matrix(path: Path, node: str) -> np.ndarray:
    storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    try:
        matrix = storage.getNode(node).mat() if storage.isOpened() else None
    finally:
        storage.release()
    if matrix is None:
        raise ValueError(f"{path}: no {node!r} matrix in this OpenCV XML file")
    return check_homography(matrix, str(path))


def write_pair(folder: str | os.PathLike[str], a: np.ndarray, b: np.ndarray, matrix: np.ndarray) -> HomographyPair:
    """Write one pair folder (a.png, b.png, H.txt), each file atomically.

    Shape:
        - a, b: (H, W) or (H, W, 3) uint8 RGB; matrix: (3, 3).
    """
    folder = Path(folder)
    for stem, image in (("a", a), ("b", b)):
        pixels = image if image.ndim == 2 else np.ascontiguousarray(image[:, :, ::-1])   # RGB -> OpenCV's BGR
        with atomic_path(folder / f"{stem}.png") as tmp:
            if not cv2.imwrite(str(tmp), pixels):
                raise ValueError(f"{folder / stem}.png: OpenCV could not write it")
    matrix = check_homography(matrix, str(folder / HOMOGRAPHY_FILE))
    write_text(folder / HOMOGRAPHY_FILE, "\n".join(" ".join(f"{v:.10e}" for v in row) for row in matrix) + "\n")
    return HomographyPair(folder.name, folder / "a.png", folder / "b.png", matrix)


def write_warped_pairs(photos: Sequence[str | os.PathLike[str] | np.ndarray], out: str | os.PathLike[str], *,
                       count: int, seed: int = 0, max_side: int | None = 640) -> list[HomographyPair]:
    """Make `count` pairs from real photos: the photo (a) and a random homographic, photometrically changed
    view of it (b), cycling through the photos; written as `out/<nnnn>_<photo>/{a.png, b.png, H.txt}`.

    Args:
        photos: image files, or (H, W, 3) / (H, W) uint8 RGB arrays.
        out: the folder of pairs (created).
        count: pairs to write.
        seed: the random homographies and photometric changes follow from it.
        max_side: photos larger than this are first shrunk to it (area averaging); None keeps their size.
    """
    from ninshiki.match.homography import photometric_jitter, random_homography, warp_image

    if count < 1 or not photos:
        raise ValueError(f"write_warped_pairs needs photos and count >= 1, got {len(photos)} photos, count {count}")
    rng = np.random.default_rng(seed)
    pairs = []
    for index in range(count):
        source = photos[index % len(photos)]
        name = Path(source).stem if isinstance(source, (str, os.PathLike)) else f"photo{index % len(photos)}"
        a = _shrink(_as_rgb(source), max_side)                                         # (H, W, 3)
        matrix = random_homography(a.shape[0], a.shape[1], rng)                       # (3, 3)
        b, valid = warp_image(a, matrix)                                               # (H, W, 3), (H, W)
        b = np.where(valid[:, :, None], photometric_jitter(b, rng), 0).astype(np.uint8)   # keep the border black
        pairs.append(write_pair(Path(out) / f"{index:04d}_{name}", a, b, matrix))
    return pairs


def _as_rgb(photo: str | os.PathLike[str] | np.ndarray) -> np.ndarray:
    if isinstance(photo, (str, os.PathLike)):
        return read_image(photo, channels=3).permute(1, 2, 0).numpy()                # (H, W, 3)
    photo = np.asarray(photo)
    if photo.dtype != np.uint8 or photo.ndim not in (2, 3):
        raise ValueError(f"a photo must be an (H, W) or (H, W, 3) uint8 array, got {photo.dtype} {photo.shape}")
    return np.repeat(photo[:, :, None], 3, axis=2) if photo.ndim == 2 else photo[:, :, :3]


def _shrink(image: np.ndarray, max_side: int | None) -> np.ndarray:
    side = max(image.shape[:2])
    if max_side is None or side <= max_side:
        return np.ascontiguousarray(image)
    factor = max_side / side
    size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
