"""Pairs files: LFW's pairs.txt and the simple 'path_a path_b same [fold]' list, their bad lines, and writing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ninshiki.data.formats.pairs import PairsSet, read_pairs, write_pairs

PEOPLE = {"Ann_Lee": 3, "Bo_Kim": 2, "Cy_Ng": 1, "Di_Roy": 2}


@pytest.fixture
def lfw(tmp_path: Path) -> Path:
    """LFW-named identity folders: lfw/<name>/<name>_0001.jpg ..."""
    root = tmp_path / "lfw"
    for name, count in PEOPLE.items():
        (root / name).mkdir(parents=True)
        for n in range(1, count + 1):
            Image.new("RGB", (8, 8), (n * 40, 0, 0)).save(root / name / f"{name}_{n:04d}.jpg")
    return root


LFW_TEXT = """2\t2
Ann_Lee\t1\t2
Bo_Kim\t1\t2
Ann_Lee\t3\tCy_Ng\t1
Bo_Kim\t2\tDi_Roy\t1
Di_Roy\t1\t2
Ann_Lee\t1\t3
Cy_Ng\t1\tDi_Roy\t2
Ann_Lee\t2\tBo_Kim\t1
"""


def image(root: Path, name: str, n: int) -> Path:
    return root / name / f"{name}_{n:04d}.jpg"


def test_reads_lfw_folds(lfw: Path) -> None:
    (lfw / "pairs.txt").write_text(LFW_TEXT)
    pairs = read_pairs(lfw / "pairs.txt")
    assert len(pairs) == 8 and pairs.num_folds == 2
    np.testing.assert_array_equal(pairs.same, [1, 1, 0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(pairs.fold, [0, 0, 0, 0, 1, 1, 1, 1])
    assert pairs.a[2] == image(lfw, "Ann_Lee", 3) and pairs.b[2] == image(lfw, "Cy_Ng", 1)
    assert pairs.a[4] == image(lfw, "Di_Roy", 1) and pairs.b[4] == image(lfw, "Di_Roy", 2)
    files, ia, ib = pairs.index()
    assert len(files) == len(set(pairs.a) | set(pairs.b)) == 8
    assert [files[i] for i in ia] == list(pairs.a) and [files[i] for i in ib] == list(pairs.b)


def test_reads_dev_train_header_spaces_and_root(lfw: Path, tmp_path: Path) -> None:
    """pairsDevTrain.txt's single-number header is one fold; fields may be spaces; images under `root`."""
    elsewhere = tmp_path / "lists" / "pairsDevTrain.txt"
    elsewhere.parent.mkdir()
    elsewhere.write_text("1\nAnn_Lee 1 3\nCy_Ng 1 Ann_Lee 2\n")
    pairs = read_pairs(elsewhere, root=lfw)
    assert pairs.a == (image(lfw, "Ann_Lee", 1), image(lfw, "Cy_Ng", 1)) and pairs.num_folds == 1
    with pytest.raises(ValueError, match="unknown identity 'Ann_Lee'"):
        read_pairs(elsewhere)           # the default root is the pairs file's folder


@pytest.mark.parametrize("line,message", [
    ("Ann_Lee\t1", r"line 3: expected 'name n1 n2' \(same\) or 'name1 n1 name2 n2' \(different\), got 2 fields"),
    ("Ann_Lee\t1\t2\t3\t4", "line 3: expected .* got 5 fields"),
    ("Ann_Lee\tone\t2", "line 3: image number 'one' is not a positive integer"),
    ("Ann_Lee\t0\t2", "line 3: image number '0' is not a positive integer"),
    ("Ann_Lee\t1\tBo_Kim\t-1", "line 3: image number '-1' is not a positive integer"),
    ("Zed_Who\t1\t2", "line 3: unknown identity 'Zed_Who'"),
    ("Ann_Lee\t1\t7", "line 3: no image file .*Ann_Lee_0007.jpg"),
])
def test_bad_lfw_lines_name_file_and_line(lfw: Path, line: str, message: str) -> None:
    path = lfw / "pairs.txt"
    path.write_text(f"1\t1\nBo_Kim\t1\t2\n{line}\n")
    with pytest.raises(ValueError, match=rf"pairs\.txt, {message}"):
        read_pairs(path)


def test_lfw_counts_must_match_the_header(lfw: Path) -> None:
    path = lfw / "pairs.txt"
    path.write_text("\n".join(LFW_TEXT.splitlines()[:-1]) + "\n")
    with pytest.raises(ValueError, match=r"2 fold\(s\) of 2 same \+ 2 different pairs = 8 lines, found 7"):
        read_pairs(path)
    lines = LFW_TEXT.splitlines()
    lines[3], lines[6] = lines[6], lines[3]                     # fold 1 gets 3 same pairs, fold 2 one
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="lines 2-5: fold 1 has 3 same and 1 different pairs"):
        read_pairs(path)


def test_reads_simple_format(tmp_path: Path) -> None:
    folder = tmp_path / "my images"
    folder.mkdir()
    for name in ("a.png", "b.png", "c d.png"):
        Image.new("L", (4, 4)).save(folder / name)
    path = tmp_path / "pairs.txt"
    path.write_text("# a comment\n\nmy images/a.png\tmy images/b.png\t1\t2\nmy images/a.png\tmy images/c d.png\t0\n")
    pairs = read_pairs(path)
    assert pairs.a == (folder / "a.png", folder / "a.png") and pairs.b == (folder / "b.png", folder / "c d.png")
    np.testing.assert_array_equal(pairs.same, [True, False])
    np.testing.assert_array_equal(pairs.fold, [2, 0])
    (folder / "x.txt").write_text("x.png y.png 1\n")
    with pytest.raises(ValueError, match="x.txt, line 1: no image file .*x.png"):
        read_pairs(folder / "x.txt")


@pytest.mark.parametrize("line,message", [
    ("a.png b.png", "expected 'path_a path_b same \\[fold\\]', got 2 fields"),
    ("a.png b.png 2", "'same' must be 1 .* or 0 .*, got '2'"),
    ("a.png b.png yes", "'same' must be 1"),
    ("a.png b.png 1 x", "fold 'x' is not a non-negative integer"),
    ("a.png b.png 1 -1", "fold '-1' is not a non-negative integer"),
    ("a.png missing.png 0", "no image file .*missing.png"),
])
def test_bad_simple_lines(tmp_path: Path, line: str, message: str) -> None:
    for name in ("a.png", "b.png"):
        Image.new("L", (4, 4)).save(tmp_path / name)
    path = tmp_path / "list.txt"
    path.write_text(f"a.png b.png 1\n# comment\n{line}\n")
    with pytest.raises(ValueError, match=rf"list\.txt, line 3: {message}"):
        read_pairs(path)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.txt: no such file"):
        read_pairs(tmp_path / "nothing.txt")
    (tmp_path / "empty.txt").write_text("\n# only a comment\n")
    with pytest.raises(ValueError, match="empty.txt: no pairs"):
        read_pairs(tmp_path / "empty.txt")


def assert_same_pairs(x: PairsSet, y: PairsSet) -> None:
    assert x.a == y.a and x.b == y.b
    np.testing.assert_array_equal(x.same, y.same)
    np.testing.assert_array_equal(x.fold, y.fold)


def test_lfw_round_trip(lfw: Path) -> None:
    (lfw / "pairs.txt").write_text(LFW_TEXT)
    pairs = read_pairs(lfw / "pairs.txt")
    assert write_pairs(lfw / "copy.txt", pairs) == "lfw"
    assert (lfw / "copy.txt").read_text() == LFW_TEXT
    assert write_pairs(lfw / "simple.txt", pairs, fmt="simple") == "simple"
    assert_same_pairs(read_pairs(lfw / "simple.txt"), pairs)


def test_unbalanced_or_foreign_pairs_write_the_simple_format(lfw: Path, tmp_path: Path) -> None:
    a, b = image(lfw, "Ann_Lee", 1), image(lfw, "Bo_Kim", 2)
    unbalanced = PairsSet((a, a, b), (image(lfw, "Ann_Lee", 2), b, image(lfw, "Bo_Kim", 1)),
                          np.array([True, False, True]), np.zeros(3, dtype=np.int64))
    out = tmp_path / "elsewhere" / "pairs.txt"
    assert write_pairs(out, unbalanced, root=lfw) == "simple"     # 2 same, 1 different in a fold
    assert_same_pairs(read_pairs(out), unbalanced)
    assert "../lfw/Ann_Lee/Ann_Lee_0001.jpg" in out.read_text()
    with pytest.raises(ValueError, match="do not fit LFW's format"):
        write_pairs(out, unbalanced, fmt="lfw", root=lfw)
    mislabelled = PairsSet((a, a), (image(lfw, "Ann_Lee", 2), b), np.array([False, True]), np.zeros(2, np.int64))
    assert write_pairs(tmp_path / "mislabelled.txt", mislabelled, root=lfw) == "simple"
    with pytest.raises(ValueError, match="no pairs to write"):
        write_pairs(out, PairsSet((), (), np.zeros(0, bool), np.zeros(0, np.int64)))
    assert sorted(p.name for p in out.parent.iterdir()) == ["pairs.txt"]   # atomic: no temporary file left


def test_pairs_set_checks_lengths() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        PairsSet((Path("a"),), (), np.zeros(1, bool), np.zeros(1, np.int64))
