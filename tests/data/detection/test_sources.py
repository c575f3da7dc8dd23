"""Predict sources (image, folder, glob, video) and the atomic VideoWriter."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from ninshiki.data.detection.sources import SourceBatch, VideoWriter, iter_sources, list_sources


def flat_png(path: Path, value: int, size: tuple[int, int] = (20, 16)) -> Path:
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)
    return path


def write_video(path: Path, count: int, *, fps: float = 10.0, size: tuple[int, int] = (32, 24)) -> list[int]:
    """An mp4v video whose frame i is a flat grey of 20 + 30 i; returns those values."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    values = [20 + 30 * i for i in range(count)]
    for value in values:
        writer.write(np.full((size[1], size[0], 3), value, dtype=np.uint8))
    writer.release()
    return values


def gather(batches: list[SourceBatch]) -> SourceBatch:
    out = SourceBatch()
    for batch in batches:
        for field in ("images", "names", "kinds", "frames", "fps", "paths", "skipped"):
            getattr(out, field).extend(getattr(batch, field))
    return out


def test_folder_skips_and_names_what_is_not_an_image(tmp_path: Path) -> None:
    for i, name in enumerate(["b.png", "a.png", "c.jpg"]):
        flat_png(tmp_path / name, 40 * (i + 1))
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0")
    (tmp_path / "sub").mkdir()
    flat_png(tmp_path / "sub" / "deeper.png", 1)
    batches = list(iter_sources(tmp_path, batch_size=2))
    assert [len(b) for b in batches] == [2, 1]
    got = gather(batches)
    assert got.names == ["a.png", "b.png", "c.jpg"] and got.kinds == ["image"] * 3
    assert got.frames == [None] * 3 and got.fps == [None] * 3
    assert [int(image[0, 0, 0]) for image in got.images] == [80, 40, 120]
    assert all(image.shape == (3, 16, 20) and image.dtype == torch.uint8 for image in got.images)
    assert len(got.skipped) == 2
    assert any(s.startswith(str(tmp_path / "broken.png") + ": ") for s in got.skipped)
    assert any(s.startswith(str(tmp_path / "notes.txt") + ": not an image or video file") for s in got.skipped)
    assert not any(".DS_Store" in s or "deeper" in s for s in got.skipped)


def test_skips_after_the_last_image_come_in_a_last_batch(tmp_path: Path) -> None:
    flat_png(tmp_path / "a.png", 1)
    (tmp_path / "z.png").write_bytes(b"")
    batches = list(iter_sources(tmp_path, batch_size=1))
    assert [len(b) for b in batches] == [1, 0] and batches[1].skipped == [f"{tmp_path / 'z.png'}: empty file (0 bytes)"]


def test_glob_and_single_file(tmp_path: Path) -> None:
    for name in ["x1.png", "x2.png", "y.png"]:
        flat_png(tmp_path / name, 9)
    (tmp_path / "deep").mkdir()
    flat_png(tmp_path / "deep" / "x3.png", 9)
    assert gather(list(iter_sources(str(tmp_path / "x*.png")))).names == ["x1.png", "x2.png"]
    recursive = gather(list(iter_sources(str(tmp_path / "**" / "x*.png"))))
    assert recursive.names == ["deep/x3.png", "x1.png", "x2.png"]   # sorted by path, named relative to the pattern's folder
    assert recursive.paths[0] == tmp_path / "deep" / "x3.png"
    assert gather(list(iter_sources(tmp_path / "y.png"))).names == ["y.png"]
    with pytest.raises(FileNotFoundError, match="no file matches"):
        list_sources(tmp_path / "*.gif")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        list(iter_sources(tmp_path / "missing.png"))


def test_video_frames_in_order_with_names_and_fps(tmp_path: Path) -> None:
    values = write_video(tmp_path / "clip.mp4", 7)
    batches = list(iter_sources(tmp_path / "clip.mp4", batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 1]
    got = gather(batches)
    assert got.names == [f"clip.mp4#frame{i:06d}" for i in range(7)] and got.frames == list(range(7))
    assert got.kinds == ["video"] * 7 and got.fps == [10.0] * 7 and got.skipped == []
    assert all(image.shape == (3, 24, 32) and image.dtype == torch.uint8 for image in got.images)
    means = [float(image.float().mean()) for image in got.images]
    assert np.allclose(means, values, atol=6)   # lossy codec, but each frame is its own grey
    strided = gather(list(iter_sources(tmp_path / "clip.mp4", video_stride=3)))
    assert strided.frames == [0, 3, 6]
    assert np.allclose([float(i.float().mean()) for i in strided.images], values[::3], atol=6)


def test_video_colours_are_rgb(tmp_path: Path) -> None:
    writer = cv2.VideoWriter(str(tmp_path / "red.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (16, 16))
    writer.write(np.tile(np.array([0, 0, 230], dtype=np.uint8), (16, 16, 1)))   # BGR red
    writer.release()
    (frame,) = gather(list(iter_sources(tmp_path / "red.avi"))).images
    r, g, b = (float(frame[c].float().mean()) for c in range(3))
    assert r > 200 and g < 40 and b < 40


def test_folders_with_videos_never_mix_them_in_a_batch(tmp_path: Path) -> None:
    flat_png(tmp_path / "a.png", 1)
    write_video(tmp_path / "b.mp4", 3)
    flat_png(tmp_path / "c.png", 1)
    (tmp_path / "d.mp4").write_bytes(b"not a video")
    batches = list(iter_sources(tmp_path, batch_size=8))
    assert [b.kinds for b in batches] == [["image"], ["video"] * 3, ["image"], []]   # d.mp4 starts a batch
    assert len(batches[-1].skipped) == 1 and str(tmp_path / "d.mp4") in batches[-1].skipped[0]


def test_video_writer_writes_atomically_a_readable_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "drawn.mp4"
    frames = [torch.full((3, 25, 33), 30 * i, dtype=torch.uint8) for i in range(5)]   # odd size: padded
    with VideoWriter(target, fps=12.0, size=(33, 25)) as writer:
        for frame in frames:
            writer.write(frame)
        assert not target.exists()                               # only the temporary file so far
    assert sorted(p.name for p in target.parent.iterdir()) == ["drawn.mp4"]
    capture = cv2.VideoCapture(str(target))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    read = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        read.append(frame)
    capture.release()
    assert len(read) == 5 and read[0].shape == (26, 34, 3)
    assert np.allclose([f[:25, :33].mean() for f in read], [30 * i for i in range(5)], atol=6)


def test_video_writer_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "x.mp4"
    with pytest.raises(ValueError, match="frame 1 is 10x8, but the video is 12x8"), \
            VideoWriter(target, fps=5.0) as writer:
        writer.write(torch.zeros(3, 8, 12, dtype=torch.uint8))
        writer.write(torch.zeros(3, 8, 10, dtype=torch.uint8))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="frame 0 is 12x8, but the video is 8x12"):
        VideoWriter(target, fps=5.0, size=(8, 12)).write(torch.zeros(3, 8, 12, dtype=torch.uint8))
    assert list(tmp_path.iterdir()) == []
    assert VideoWriter(target, fps=5.0).close() is None and not target.exists()   # no frame, no file
    with pytest.raises(ValueError, match="uint8"):
        VideoWriter(target, fps=5.0).write(torch.zeros(3, 8, 8))
