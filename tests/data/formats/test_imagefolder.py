"""scan_image_folder: the ImageFolder layout, hidden and non-image files, and the errors that name folders."""
from __future__ import annotations

from pathlib import Path

import pytest

from ninshiki.data.formats.imagefolder import is_image_file, scan_image_folder


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_classes_sorted_files_recursive_case_insensitive(tmp_path: Path) -> None:
    _touch(tmp_path, "zebra/b.JPG", "zebra/a.png", "ant/deep/er/c.jpeg", "ant/d.WebP", "ant/readme.txt",
           "ant/.hidden.png", ".git/x.png", "ant/.thumbs/e.png", "labels.csv", "__MACOSX/ant/f.png")
    listing = scan_image_folder(tmp_path)
    assert listing.classes == ["ant", "zebra"]
    assert [p.relative_to(tmp_path).as_posix() for p in listing.paths] == [
        "ant/d.WebP", "ant/deep/er/c.jpeg", "zebra/a.png", "zebra/b.JPG"]
    assert listing.labels == [0, 0, 1, 1]
    assert sorted(p.name for p in listing.ignored) == ["labels.csv", "readme.txt"]


def test_is_image_file() -> None:
    assert is_image_file("a.TIFF") and is_image_file("dir/b.jpg") and not is_image_file("c.txt")


def test_missing_root_and_no_class_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere: no such folder"):
        scan_image_folder(tmp_path / "nowhere")
    _touch(tmp_path, "loose.png")
    with pytest.raises(ValueError, match="no class folders found"):
        scan_image_folder(tmp_path)
    with pytest.raises(NotADirectoryError):
        scan_image_folder(tmp_path / "loose.png")


def test_class_folders_without_images_are_all_named(tmp_path: Path) -> None:
    _touch(tmp_path, "cat/a.png", "dog/notes.txt", "eel/.hidden.png")
    (tmp_path / "fox").mkdir()
    with pytest.raises(ValueError, match="without image files: dog, eel, fox"):
        scan_image_folder(tmp_path)
