"""check_dataset: counts, imbalance and every kind of issue, without touching the user's files."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ninshiki.data.checks import check_dataset, find_duplicates, format_report


@pytest.fixture
def messy_folder(class_folder, bad_files, helpers) -> Path:
    root = class_folder("messy", per_class={"cat": 6, "dog": 2})
    shutil.copy(root / "cat" / "000.png", root / "dog" / "copy_of_cat.png")  # duplicate across classes
    shutil.copy(bad_files["truncated_jpeg"], root / "cat" / "cut.jpg")
    shutil.copy(bad_files["text"], root / "cat" / "text.png")
    (root / "dog" / "zero.jpg").touch()
    helpers.write_mode(root / "dog" / "deep.png", "I;16")
    helpers.write_mode(root / "dog" / "scan.jpg", "CMYK")
    helpers.write_mode(root / "dog" / "alpha.png", "RGBA")
    helpers.write_mode(root / "dog" / "pal.png", "P")
    helpers.write_exif_rotated(root / "dog" / "phone.jpg")
    helpers.png_header_only(root / "dog" / "bomb.png", 100_000, 100_000)
    (root / "dog" / "notes.txt").write_text("labelled by hand")
    return root


def test_every_issue_is_reported(messy_folder: Path, helpers) -> None:
    before = helpers.digest_tree(messy_folder)
    report = check_dataset(messy_folder)
    assert helpers.digest_tree(messy_folder) == before  # nothing modified, added or removed
    assert report.num_files == 18 and report.class_counts == {"cat": 8, "dog": 10}
    assert report.imbalance == pytest.approx(10 / 8)
    assert {(i.path, i.detail) for i in report.unreadable} == {
        ("cat/cut.jpg", "truncated image file"), ("cat/text.png", "not an image (format not recognised)"),
        ("dog/zero.jpg", "empty file (0 bytes)")}
    assert report.bombs == ["dog/bomb.png"] and not report.ok
    assert {(i.path, i.detail) for i in report.unusual_modes} == {
        ("dog/deep.png", "16-bit"), ("dog/scan.jpg", "CMYK"), ("dog/alpha.png", "RGBA"), ("dog/pal.png", "palette")}
    assert report.exif_rotated == ["dog/phone.jpg"]
    assert report.duplicates == [["cat/000.png", "dog/copy_of_cat.png"]]
    assert report.ignored == ["dog/notes.txt"]
    assert json.loads(json.dumps(report.to_dict()))["ok"] is False


def test_format_report_lists_and_truncates(messy_folder: Path) -> None:
    text = format_report(check_dataset(messy_folder), max_files=2)
    assert "messy: 18 image files, 2 classes, imbalance 1.25" in text
    assert "unreadable (3):" in text and "  ... and 1 more" in text
    assert "dog/bomb.png" in text and "cat/000.png = dog/copy_of_cat.png" in text
    assert text.splitlines()[-1] == "NOT OK: some files cannot be read."


def test_clean_split_folder_and_csv(class_folder, tmp_path: Path) -> None:
    class_folder("clean/train", per_class={"a": 3, "b": 1})
    class_folder("clean/val", per_class={"a": 1, "b": 1})
    report = check_dataset(tmp_path / "clean")
    assert report.ok and report.split_counts == {"train": {"a": 3, "b": 1}, "val": {"a": 1, "b": 1}}
    assert report.class_counts == {"a": 4, "b": 2} and report.imbalance == 2.0
    # same bytes across splits (the generator makes image i of class a identical in train and val)
    assert ["train/a/000.png", "val/a/000.png"] in report.duplicates
    assert format_report(report).splitlines()[-1] == "OK: every image can be read."
    (tmp_path / "l.csv").write_text("clean/train/a/000.png,a\nclean/missing.png,b\n")
    csv_report = check_dataset(tmp_path / "l.csv")
    assert csv_report.class_counts == {"a": 1, "b": 1}
    assert [(i.path, i.detail) for i in csv_report.unreadable] == [("clean/missing.png", "no such file")]


def test_find_duplicates_hashes_only_same_size(tmp_path: Path) -> None:
    for name, data in [("a", b"xyz"), ("b", b"xyz"), ("c", b"xyw"), ("d", b"long"), ("e", b"")]:
        (tmp_path / name).write_bytes(data)
    (tmp_path / "f").touch()
    assert find_duplicates(sorted(tmp_path.iterdir())) == [[tmp_path / "a", tmp_path / "b"]]


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope: no such file or folder"):
        check_dataset(tmp_path / "nope")
