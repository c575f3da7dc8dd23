"""read_csv_list: header, blank lines, relative paths, quoting, and errors naming file and line."""
from __future__ import annotations

from pathlib import Path

import pytest

from ninshiki.data.formats.csvlist import read_csv_list


def test_header_blank_lines_and_relative_paths(tmp_path: Path) -> None:
    csv = tmp_path / "lists" / "train.csv"
    csv.parent.mkdir()
    csv.write_text('path,label\n\nimgs/a.png, cat\n"imgs/b, c.png",dog\n\n/abs/c.png,cat\n')
    paths, labels = read_csv_list(csv)
    assert paths == [csv.parent / "imgs/a.png", csv.parent / "imgs/b, c.png", Path("/abs/c.png")]
    assert labels == ["cat", "dog", "cat"]


def test_without_header_and_with_bom(tmp_path: Path) -> None:
    csv = tmp_path / "l.csv"
    csv.write_bytes("\ufeffa.png,1\nb.png,2\n".encode())
    assert read_csv_list(csv) == ([tmp_path / "a.png", tmp_path / "b.png"], ["1", "2"])


@pytest.mark.parametrize("bad", ["just_a_path.png", "a.png,cat,extra", ",cat", "a.png,"])
def test_bad_line_names_file_and_line(tmp_path: Path, bad: str) -> None:
    csv = tmp_path / "file.csv"
    csv.write_text("path,label\na.png,cat\n\nb.png,dog\nc.png,cat\nd.png,dog\n" + bad + "\ne.png,cat\n")
    with pytest.raises(ValueError) as info:
        read_csv_list(csv)
    assert str(info.value) == f"{csv}, line 7: expected 'path,label', got {bad!r}"


def test_missing_empty_and_binary(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.csv: no such file"):
        read_csv_list(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("path,label\n\n")
    with pytest.raises(ValueError, match="empty.csv: no 'path,label' entries"):
        read_csv_list(tmp_path / "empty.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="bin.csv: not UTF-8"):
        read_csv_list(tmp_path / "bin.csv")
