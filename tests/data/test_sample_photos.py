"""OpenCV's sample data: where it is looked for, what is said when it is missing, and reading videos."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ninshiki.data import sample_photos
from ninshiki.data.sample_photos import (
    FACE_PHOTOS,
    SAMPLE_DIR_ENV,
    face_photos,
    opencv_sample,
    opencv_sample_dir,
    pedestrian_frames,
    read_video_frames,
)


@pytest.fixture
def samples(tmp_path, monkeypatch) -> Path:
    """A sample folder of our own, named by the environment variable."""
    folder = tmp_path / "samples"
    folder.mkdir()
    (folder / "messi5.jpg").write_bytes(b"not looked at")
    monkeypatch.setenv(SAMPLE_DIR_ENV, str(folder))
    return folder


@pytest.fixture
def real_samples(monkeypatch) -> Path:
    """The installed opencv-doc folder (the environment variable is cleared), or a skip."""
    monkeypatch.delenv(SAMPLE_DIR_ENV, raising=False)
    if not sample_photos.DEFAULT_SAMPLE_DIR.is_dir():
        pytest.skip(f"OpenCV's sample data is not installed at {sample_photos.DEFAULT_SAMPLE_DIR} (opencv-doc)")
    return sample_photos.DEFAULT_SAMPLE_DIR


def write_video(path: Path, levels: list[int]) -> Path:
    """An MJPEG AVI of 32x24 frames, frame i flat red at levels[i] (written as BGR)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    assert writer.isOpened()
    for level in levels:
        frame = np.zeros((24, 32, 3), np.uint8)  # (H, W, 3) BGR
        frame[:, :, 2] = level
        writer.write(frame)
    writer.release()
    return path


def test_the_environment_variable_names_the_folder(samples):
    assert opencv_sample_dir() == samples
    assert opencv_sample("messi5.jpg") == samples / "messi5.jpg"
    with pytest.raises(FileNotFoundError, match=r"samples/vtest\.avi: no such sample file"):
        opencv_sample("vtest.avi")
    for bad in ("../messi5.jpg", "sub/messi5.jpg", "", ".."):
        with pytest.raises(ValueError, match="expected a file name"):
            opencv_sample(bad)


def test_a_missing_folder_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv(SAMPLE_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=rf"nowhere: no such folder \(named by {SAMPLE_DIR_ENV}\)"):
        opencv_sample_dir()
    monkeypatch.delenv(SAMPLE_DIR_ENV)
    monkeypatch.setattr(sample_photos, "DEFAULT_SAMPLE_DIR", tmp_path / "opencv-doc")
    with pytest.raises(FileNotFoundError) as error:
        opencv_sample("messi5.jpg")
    message = str(error.value)
    assert f"{tmp_path / 'opencv-doc'}" in message and "apt-get install opencv-doc" in message
    assert "dpkg-deb --fsys-tarfile opencv-doc_*.deb | tar -x ./usr/share/doc/opencv-doc/examples/data" in message


def test_read_video_frames_steps_and_gives_rgb(tmp_path):
    video = write_video(tmp_path / "clip.avi", [0, 40, 80, 120, 160, 200, 240])
    frames = read_video_frames(video, 3, step=2)
    assert [frame.shape for frame in frames] == [(24, 32, 3)] * 3 and frames[0].dtype == np.uint8
    reds = [float(frame[:, :, 0].mean()) for frame in frames]
    np.testing.assert_allclose(reds, [0, 80, 160], atol=3)  # frames 0, 2, 4; MJPEG is lossy
    assert max(float(frame[:, :, 1:].max()) for frame in frames) <= 3  # red stays in channel 0
    assert len(read_video_frames(video, 7)) == 7


def test_read_video_frames_names_the_file_it_cannot_read(tmp_path):
    video = write_video(tmp_path / "short.avi", [10, 20, 30])
    with pytest.raises(ValueError, match=r"short\.avi: could decode only 3 frame\(s\), so 2 of the 3"):
        read_video_frames(video, 3, step=2)
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"not a video" * 100)
    with pytest.raises(ValueError, match=r"garbage\.avi: OpenCV cannot open it as a video"):
        read_video_frames(garbage, 1)
    with pytest.raises(FileNotFoundError, match=r"missing\.avi: no such video file"):
        read_video_frames(tmp_path / "missing.avi", 1)
    for count, step in ((0, 1), (1, 0), (True, 1)):
        with pytest.raises(ValueError, match="must be a positive integer"):
            read_video_frames(video, count, step)


def test_face_photos_hold_faces_opencv_finds(real_samples):
    photos = face_photos()
    assert list(photos) == [*FACE_PHOTOS, "astronaut"]
    assert photos["messi5.jpg"].shape == (342, 548, 3) and photos["astronaut"].shape == (512, 512, 3)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    for name, photo in photos.items():
        assert photo.dtype == np.uint8 and photo.shape[2] == 3, name
        faces = cascade.detectMultiScale(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), 1.1, 5)
        assert len(faces) >= 1, name
    messi = cv2.imread(str(real_samples / "messi5.jpg"))  # (H, W, 3) BGR
    np.testing.assert_array_equal(photos["messi5.jpg"], messi[:, :, ::-1])


def test_pedestrian_frames_are_the_video_frames(real_samples):
    frames = pedestrian_frames(3, step=5)
    capture = cv2.VideoCapture(str(real_samples / "vtest.avi"))
    expected = [capture.read()[1][:, :, ::-1] for _ in range(11)][::5]  # frames 0, 5, 10 as RGB
    capture.release()
    assert [frame.shape for frame in frames] == [(576, 768, 3)] * 3
    for frame, reference in zip(frames, expected):
        np.testing.assert_array_equal(frame, reference)
