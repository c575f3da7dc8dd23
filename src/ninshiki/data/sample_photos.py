"""OpenCV's sample photos and videos (Debian's opencv-doc package), located without any download.

The classical detectors are checked against OpenCV on real pictures: faces in photos (messi5.jpg, the
basketball frames) and pedestrians in the street video vtest.avi. These files are not in the OpenCV wheels;
they come with the ``opencv-doc`` package, which puts them in `DEFAULT_SAMPLE_DIR`. The environment
variable ``NINSHIKI_OPENCV_SAMPLES`` points elsewhere (e.g. a copy of OpenCV's ``samples/data`` folder).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ninshiki.data.images import read_image
from ninshiki.data.synthetic.backgrounds import load_backgrounds

SAMPLE_DIR_ENV = "NINSHIKI_OPENCV_SAMPLES"
DEFAULT_SAMPLE_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
# the sample photos showing real human faces (found by eye; OpenCV's frontal-face cascade finds them too)
FACE_PHOTOS = ("messi5.jpg", "basketball1.png", "basketball2.png")
PEDESTRIAN_VIDEO = "vtest.avi"  # 795 frames, 768x576, people walking across a square

_HOW_TO_GET = (
    "install Debian/Ubuntu's opencv-doc package (apt-get install opencv-doc), or unpack it without "
    "installing: apt-get download opencv-doc && dpkg-deb --fsys-tarfile opencv-doc_*.deb | tar -x "
    f"./usr/share/doc/opencv-doc/examples/data, then set {SAMPLE_DIR_ENV} to the folder "
    "usr/share/doc/opencv-doc/examples/data it made (any copy of OpenCV's samples/data folder works too)")


def opencv_sample_dir() -> Path:
    """The folder of OpenCV's sample data: ``$NINSHIKI_OPENCV_SAMPLES`` when set, else `DEFAULT_SAMPLE_DIR`.

    Raises:
        FileNotFoundError: the folder does not exist; the message says how to get it.
    """
    configured = os.environ.get(SAMPLE_DIR_ENV)
    if configured:
        folder = Path(configured).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder (named by {SAMPLE_DIR_ENV}); {_HOW_TO_GET}")
        return folder
    if not DEFAULT_SAMPLE_DIR.is_dir():
        raise FileNotFoundError(f"OpenCV's sample data is not at {DEFAULT_SAMPLE_DIR}: {_HOW_TO_GET}")
    return DEFAULT_SAMPLE_DIR


def opencv_sample(name: str) -> Path:
    """The path of one sample file, e.g. ``opencv_sample("messi5.jpg")``.

    Raises:
        ValueError: `name` is not a plain file name inside the folder.
        FileNotFoundError: the folder or the file is missing.
    """
    if not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"opencv_sample: expected a file name such as 'messi5.jpg', got {name!r}")
    folder = opencv_sample_dir()
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such sample file in {folder} (an older or partial copy of "
                                f"OpenCV's samples/data?)")
    return path


def read_video_frames(path: str | os.PathLike[str], count: int, step: int = 1) -> list[np.ndarray]:
    """Frames 0, step, 2 * step, ... of a video file, `count` of them.

    Args:
        path: any video OpenCV's FFmpeg backend reads.
        count: how many frames to return (>= 1).
        step: take every `step`-th frame (>= 1); the others are skipped without conversion.

    Returns:
        `count` frames, each (H, W, 3) uint8 RGB.

    Raises:
        FileNotFoundError: no such file.
        ValueError: OpenCV cannot open or decode the file, or it ends before `count` frames; the message names
            the file.
    """
    for name, value in (("count", count), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"read_video_frames: {name} must be a positive integer, got {value!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ValueError(f"{path}: OpenCV cannot open it as a video (not a video, corrupt, or a codec its "
                             f"FFmpeg backend lacks)")
        frames: list[np.ndarray] = []
        for index in range(count * step):
            if index % step == 0:
                ok, frame = capture.read()  # (H, W, 3) uint8 BGR
                if ok:
                    frames.append(np.ascontiguousarray(frame[:, :, ::-1]))  # (H, W, 3) RGB
            else:
                ok = capture.grab()
            if not ok:
                raise ValueError(f"{path}: could decode only {index} frame(s), so {len(frames)} of the {count} "
                                 f"asked for (every {step}-th); the video is shorter or damaged")
        return frames
    finally:
        capture.release()


def face_photos() -> dict[str, np.ndarray]:
    """The photos with real faces: OpenCV's `FACE_PHOTOS` and scikit-image's astronaut (Eileen Collins).

    Returns:
        File name (or "astronaut") -> (H, W, 3) uint8 RGB image.

    Raises:
        FileNotFoundError: OpenCV's sample data is missing (see `opencv_sample_dir`).
    """
    photos = {name: read_image(opencv_sample(name), channels=3).permute(1, 2, 0).numpy() for name in FACE_PHOTOS}
    photos["astronaut"] = load_backgrounds(["astronaut"])["astronaut"]
    return photos


def pedestrian_frames(count: int = 10, *, step: int = 20) -> list[np.ndarray]:
    """`count` frames of OpenCV's pedestrian video vtest.avi, every `step`-th from the first.

    Returns:
        (576, 768, 3) uint8 RGB frames.

    Raises:
        FileNotFoundError: OpenCV's sample data is missing (see `opencv_sample_dir`).
    """
    return read_video_frames(opencv_sample(PEDESTRIAN_VIDEO), count, step)
