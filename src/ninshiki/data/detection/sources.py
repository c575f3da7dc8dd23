"""What `predict` reads: an image file, a folder, a glob pattern or a video file; and annotated videos out.

`iter_sources` yields `SourceBatch`es of decoded uint8 RGB images. Images are decoded by `read_image` (EXIF
orientation applied); video frames by OpenCV (``cv2.VideoCapture``, BGR turned to RGB) and named
``clip.mp4#frame000012`` after their index in the video. Names are paths relative to the source's folder
(the folder, the file's folder, or the pattern's fixed prefix), so two files of one source never share one. A folder is read non-recursively in name order
(use a glob such as ``"photos/**/*.jpg"`` to recurse); hidden files are ignored, and any other file that is
neither an image nor a video by its extension, or that cannot be decoded, is a skip named in
`SourceBatch.skipped` ("path: reason"), never an exception.

Batches never mix videos with other files: each video's frames come in batches of their own, so a caller
can write one annotated video per source with `VideoWriter`.
"""
from __future__ import annotations

import glob
import itertools
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import cv2
import numpy as np
import torch
from torch import Tensor

from ninshiki.data.formats.imagefolder import is_image_file
from ninshiki.data.images import ImageReadError, read_image

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
_GLOB_CHARS = frozenset("*?[")


def is_video_file(path: str | os.PathLike[str]) -> bool:
    """True when the name ends with a known video extension (any case)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass
class SourceBatch:
    """Up to `batch_size` decoded images or video frames, and the files skipped since the previous batch.

    A batch may hold no image but skips (the last one, when the last files could not be read).
    """
    images: list[Tensor] = field(default_factory=list)      # (3, H, W) uint8 RGB each; sizes may differ
    names: list[str] = field(default_factory=list)          # "a.jpg", "sub/b.jpg", "clip.mp4#frame000012"
    kinds: list[str] = field(default_factory=list)          # "image" or "video"
    frames: list[int | None] = field(default_factory=list)  # frame index in its video; None for images
    fps: list[float | None] = field(default_factory=list)   # frames per second of its video; None for images
    paths: list[Path] = field(default_factory=list)         # the file each image came from
    skipped: list[str] = field(default_factory=list)        # "path: reason" per file that was not read

    def __len__(self) -> int:
        return len(self.images)

    def add(self, image: Tensor, path: Path, name: str, *, frame: int | None = None, fps: float | None = None) -> None:
        self.images.append(image)
        self.names.append(name if frame is None else f"{name}#frame{frame:06d}")
        self.kinds.append("image" if frame is None else "video")
        self.frames.append(frame)
        self.fps.append(fps)
        self.paths.append(path)


def source_root(source: str | os.PathLike[str]) -> Path:
    """The folder that names are relative to: the folder itself, a file's folder, or a glob's fixed prefix."""
    path = Path(source)
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    fixed = list(itertools.takewhile(lambda part: not _GLOB_CHARS & set(part), path.parts))
    return Path(*fixed) if fixed else Path(".")


def list_sources(source: str | os.PathLike[str]) -> list[Path]:
    """The files a source names: itself, a folder's visible files (sorted), or a glob's matches (sorted).

    Raises:
        FileNotFoundError: nothing exists at `source` and no file matches it as a pattern.
    """
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if _GLOB_CHARS & set(str(source)):
        matches = sorted(Path(p) for p in glob.glob(str(source), recursive=True))
        files = [p for p in matches if p.is_file() and not p.name.startswith(".")]
        if not files:
            raise FileNotFoundError(f"{source}: no file matches this pattern")
        return files
    raise FileNotFoundError(f"{source}: no such file or folder")


def iter_sources(source: str | os.PathLike[str], *, batch_size: int = 8, video_stride: int = 1) -> Iterator[SourceBatch]:
    """Decode a source in batches, in order.

    Args:
        source: an image file, a video file, a folder, or a glob pattern ("photos/*.jpg").
        batch_size: images per batch.
        video_stride: keep every this-many-th frame of videos (frames in between are skipped undecoded).

    Raises:
        FileNotFoundError: the source does not exist (see `list_sources`).
    """
    if batch_size < 1 or video_stride < 1:
        raise ValueError(f"batch_size and video_stride must be at least 1, got {batch_size} and {video_stride}")
    files, root = list_sources(source), source_root(source)
    explicit = len(files) == 1 and Path(source).is_file()  # a file named by the user is tried whatever its extension
    batch = SourceBatch()
    for path in files:
        video = is_video_file(path)
        if video and len(batch):
            yield batch
            batch = SourceBatch()
        for entry in _read(path, video=video, explicit=explicit, stride=video_stride):
            if isinstance(entry, str):
                batch.skipped.append(entry)
                continue
            image, frame, fps = entry
            batch.add(image, path, path.relative_to(root).as_posix(), frame=frame, fps=fps)
            if len(batch) == batch_size:
                yield batch
                batch = SourceBatch()
        if video and len(batch):
            yield batch
            batch = SourceBatch()
    if len(batch) or batch.skipped:
        yield batch


Decoded = tuple[Tensor, int | None, float | None]  # (image (3, H, W) uint8 RGB, frame index, fps)


def _read(path: Path, *, video: bool, explicit: bool, stride: int) -> Iterator[Decoded | str]:
    """The images of one file, or "path: reason" messages for what cannot be read."""
    if video:
        yield from _video_frames(path, stride)
    elif is_image_file(path) or explicit:
        try:
            yield read_image(path), None, None
        except ImageReadError as err:
            yield str(err)
    else:
        yield f"{path}: not an image or video file (extension {path.suffix or 'none'!r})"


def _video_frames(path: Path, stride: int) -> Iterator[Decoded | str]:
    """Every `stride`-th frame of a video, in order; frames in between are grabbed but not decoded."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        yield f"{path}: cannot open video (unknown format or codec, or not a video)"
        return
    fps = float(capture.get(cv2.CAP_PROP_FPS)) or None
    index, decoded = 0, 0
    try:
        while True:
            if index % stride:
                if not capture.grab():
                    break
            else:
                ok, frame = capture.read()                               # (H, W, 3) uint8 BGR
                if not ok:
                    break
                decoded += 1
                yield torch.from_numpy(frame[..., ::-1].copy()).permute(2, 0, 1).contiguous(), index, fps
            index += 1
    finally:
        capture.release()
    if decoded == 0:
        yield f"{path}: no frame could be decoded"


class VideoWriter:
    """Write RGB frames to a video file atomically: frames go to a temporary file in the same folder, which
    `close` renames to `path`; an error (or `discard`) leaves no file behind.

    The container follows the suffix (MP4 by default) with OpenCV's ``mp4v`` codec. MPEG-4 needs even frame
    sizes, so odd frames are padded with one black row or column. Every frame must have the `size` given, or
    that of the first frame.

    Example:
        >>> with VideoWriter("out/clip.mp4", fps=30.0) as writer:   # doctest: +SKIP
        ...     for frame in frames:
        ...         writer.write(frame)
    """

    def __init__(self, path: str | os.PathLike[str], *, fps: float, size: tuple[int, int] | None = None,
                 fourcc: str = "mp4v") -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path, self.fps, self.fourcc = Path(path), float(fps), fourcc
        self.size = None if size is None else (int(size[0]), int(size[1]))  # (width, height), as OpenCV counts
        self.count = 0
        self._tmp: Path | None = None
        self._writer: cv2.VideoWriter | None = None

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".tmp{self.path.suffix}", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*self.fourcc), self.fps,
                                       (width + width % 2, height + height % 2))
        if not self._writer.isOpened():
            self.discard()
            raise OSError(f"{self.path}: OpenCV cannot write {self.fourcc!r} video to this file type")

    def write(self, frame: Tensor) -> None:
        """Append one frame.

        Shape:
            - frame: (3, H, W) uint8 RGB, with (W, H) the writer's `size`.
        """
        if frame.dtype != torch.uint8 or frame.ndim != 3 or frame.shape[0] != 3:
            raise ValueError(f"{self.path}: frames must be uint8 (3, H, W), got {frame.dtype} {tuple(frame.shape)}")
        height, width = frame.shape[-2:]
        self.size = self.size or (width, height)
        if (width, height) != self.size:
            raise ValueError(f"{self.path}: frame {self.count} is {width}x{height}, "
                             f"but the video is {self.size[0]}x{self.size[1]}")
        if self._writer is None:
            self._open(width, height)
        bgr = frame.detach().cpu().permute(1, 2, 0).numpy()[..., ::-1]  # (H, W, 3) BGR
        if height % 2 or width % 2:
            bgr = np.pad(bgr, ((0, height % 2), (0, width % 2), (0, 0)))
        self._writer.write(np.ascontiguousarray(bgr))
        self.count += 1

    def close(self) -> Path | None:
        """Finish the file and move it into place. Returns the path, or None when no frame was written."""
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        os.replace(self._tmp, self.path)
        self._tmp = None
        return self.path

    def discard(self) -> None:
        """Stop writing and delete the temporary file; `path` is left as it was."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *args: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()
