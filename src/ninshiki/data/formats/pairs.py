"""Verification pairs files: LFW's ``pairs.txt`` and a simple ``path_a path_b 0|1`` list.

LFW format (Huang et al., "Labeled Faces in the Wild", 2007): a header line of one or two integers, then
the pairs. ``10\\t300`` means 10 folds of 300 same-identity and 300 different-identity pairs each (View 2);
a single integer ``n`` (``pairsDevTrain.txt``) means one fold of n same and n different pairs. Pairs are
``name\\tn1\\tn2`` (same identity) or ``name1\\tn1\\tname2\\tn2`` (different identities), naming the image
``<root>/<name>/<name>_<n:04d>.jpg``; the k-th block of 2 x n lines is fold k. Fields may be separated by
tabs or spaces.

Simple format: one ``path_a path_b same [fold]`` line per pair, ``same`` 1 or 0, ``fold`` an optional
non-negative integer (0 when absent), paths relative to the pairs file's folder. Fields are split on tabs
when the line has one (paths may then hold spaces), on whitespace otherwise. Blank lines and lines
starting with ``#`` are skipped.

Every image file is checked to exist, so a typo fails at once, naming the file and line, not an hour into
an evaluation.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ninshiki.io import write_text

LFW_NAME = re.compile(r"^(?P<name>[^/\\]+)_(?P<number>\d{4,})$")  # the stem of an LFW image file


@dataclass(frozen=True, eq=False)  # arrays inside: compare fields explicitly
class PairsSet:
    """Image pairs labelled same / different identity, with their evaluation fold.

    Shape:
        - same: (P,) bool.
        - fold: (P,) int64, 0-based.
    """

    a: tuple[Path, ...]
    b: tuple[Path, ...]
    same: np.ndarray
    fold: np.ndarray

    def __post_init__(self) -> None:
        same = np.asarray(self.same, dtype=bool).reshape(-1)
        fold = np.asarray(self.fold, dtype=np.int64).reshape(-1)
        if not len(self.a) == len(self.b) == len(same) == len(fold):
            raise ValueError(f"pairs need equal lengths, got a={len(self.a)} b={len(self.b)} same={len(same)} "
                             f"fold={len(fold)}")
        if (fold < 0).any():
            raise ValueError("folds must be non-negative")
        object.__setattr__(self, "a", tuple(Path(p) for p in self.a))
        object.__setattr__(self, "b", tuple(Path(p) for p in self.b))
        object.__setattr__(self, "same", same)
        object.__setattr__(self, "fold", fold)

    def __len__(self) -> int:
        return len(self.same)

    @property
    def num_folds(self) -> int:
        return int(self.fold.max()) + 1 if len(self) else 0

    def index(self) -> tuple[list[Path], np.ndarray, np.ndarray]:
        """Each distinct image once, so it is embedded once: ``files[ia[i]], files[ib[i]]`` is pair i.

        Shape:
            - ia, ib: (P,) int64 indices into `files` (sorted paths).
        """
        files = sorted(set(self.a) | set(self.b))
        position = {path: i for i, path in enumerate(files)}
        ia = np.array([position[p] for p in self.a], dtype=np.int64)  # (P,)
        ib = np.array([position[p] for p in self.b], dtype=np.int64)  # (P,)
        return files, ia, ib


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of the non-blank, non-comment lines."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            fields = [f.strip() for f in line.split("\t")] if "\t" in line else line.split()
            out.append((number, fields))
    return out


def _lfw_header(fields: list[str]) -> tuple[int, int] | None:
    """(folds, pairs per fold) when `fields` is an LFW header line, else None."""
    if len(fields) not in (1, 2) or not all(f.isdigit() for f in fields):
        return None
    folds, per_fold = (1, int(fields[0])) if len(fields) == 1 else (int(fields[0]), int(fields[1]))
    return (folds, per_fold) if folds > 0 and per_fold > 0 else None


def _lfw_image(root: Path, name: str, number: str, where: str, extension: str) -> Path:
    if not number.isdigit() or int(number) < 1:
        raise ValueError(f"{where}: image number {number!r} is not a positive integer")
    folder = root / name
    if not folder.is_dir():
        raise ValueError(f"{where}: unknown identity {name!r} (no folder {folder})")
    file = folder / f"{name}_{int(number):04d}{extension}"
    if not file.is_file():
        raise ValueError(f"{where}: no image file {file}")
    return file


def _read_lfw(path: Path, header: tuple[int, int], lines: list[tuple[int, list[str]]], root: Path,
              extension: str) -> PairsSet:
    folds, per_fold = header
    if len(lines) != 2 * folds * per_fold:
        raise ValueError(f"{path}: the header (line {lines[0][0] if lines else 1}) announces {folds} fold(s) of "
                         f"{per_fold} same + {per_fold} different pairs = {2 * folds * per_fold} lines, "
                         f"found {len(lines)}")
    a, b, same = [], [], []
    for number, fields in lines:
        where = f"{path}, line {number}"
        if len(fields) == 3:
            a.append(_lfw_image(root, fields[0], fields[1], where, extension))
            b.append(_lfw_image(root, fields[0], fields[2], where, extension))
        elif len(fields) == 4:
            a.append(_lfw_image(root, fields[0], fields[1], where, extension))
            b.append(_lfw_image(root, fields[2], fields[3], where, extension))
        else:
            raise ValueError(f"{where}: expected 'name n1 n2' (same) or 'name1 n1 name2 n2' (different), "
                             f"got {len(fields)} fields: {' '.join(fields)!r}")
        same.append(len(fields) == 3)
    fold = np.arange(len(lines)) // (2 * per_fold)  # (P,)
    same_array = np.array(same, dtype=bool)
    for k in range(folds):
        in_fold = same_array[fold == k]
        if in_fold.sum() != per_fold:
            first, last = lines[2 * per_fold * k][0], lines[2 * per_fold * (k + 1) - 1][0]
            raise ValueError(f"{path}, lines {first}-{last}: fold {k + 1} has {int(in_fold.sum())} same and "
                             f"{int((~in_fold).sum())} different pairs, the header announces {per_fold} of each")
    return PairsSet(tuple(a), tuple(b), same_array, fold)


def _read_simple(path: Path, lines: list[tuple[int, list[str]]]) -> PairsSet:
    a, b, same, fold = [], [], [], []
    for number, fields in lines:
        where = f"{path}, line {number}"
        if len(fields) not in (3, 4):
            raise ValueError(f"{where}: expected 'path_a path_b same [fold]', got {len(fields)} fields: "
                             f"{' '.join(fields)!r}")
        if fields[2] not in ("0", "1"):
            raise ValueError(f"{where}: 'same' must be 1 (same identity) or 0 (different), got {fields[2]!r}")
        if len(fields) == 4 and not fields[3].isdigit():
            raise ValueError(f"{where}: fold {fields[3]!r} is not a non-negative integer")
        files = [Path(os.path.normpath(path.parent / f)) for f in fields[:2]]  # "../x" written by write_pairs
        for file in files:
            if not file.is_file():
                raise ValueError(f"{where}: no image file {file}")
        a.append(files[0])
        b.append(files[1])
        same.append(fields[2] == "1")
        fold.append(int(fields[3]) if len(fields) == 4 else 0)
    return PairsSet(tuple(a), tuple(b), np.array(same, dtype=bool), np.array(fold, dtype=np.int64))


def read_pairs(path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None,
               extension: str = ".jpg") -> PairsSet:
    """Read a pairs file in LFW's format or the simple format (told apart by LFW's integer header).

    Args:
        path: the pairs file.
        root: the identity folders an LFW-format file names (default: the pairs file's folder); unused by
            the simple format, whose paths are relative to the pairs file.
        extension: the image files' extension in the LFW format.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: a bad line (wrong field count, non-integer image number, unknown identity, missing
            image file; the message names the file and line), fold sizes that disagree with the header,
            or a file without pairs.
    """
    path = Path(path)
    lines = _lines(path)
    if not lines:
        raise ValueError(f"{path}: no pairs")
    header = _lfw_header(lines[0][1])
    if header is not None:
        return _read_lfw(path, header, lines[1:], path.parent if root is None else Path(root), extension)
    return _read_simple(path, lines)


def _lfw_entry(path: Path, root: Path, extension: str) -> tuple[str, int] | None:
    """(name, number) when `path` is ``root/<name>/<name>_<number>.ext`` as LFW names files, else None."""
    match = LFW_NAME.match(path.stem)
    if (match is None or path.suffix != extension or path.parent.name != match["name"]
            or os.path.abspath(path.parent.parent) != os.path.abspath(root)
            or f"{int(match['number']):04d}" != match["number"] or int(match["number"]) < 1):
        return None
    return match["name"], int(match["number"])


def _lfw_text(pairs: PairsSet, root: Path, extension: str) -> str | None:
    """The LFW-format text of `pairs`, or None when they do not fit it."""
    if not len(pairs):
        return None
    per_fold = int(pairs.same.sum()) // pairs.num_folds
    fold_ids = np.arange(pairs.num_folds)
    same_counts = np.bincount(pairs.fold[pairs.same], minlength=pairs.num_folds)
    diff_counts = np.bincount(pairs.fold[~pairs.same], minlength=pairs.num_folds)
    if per_fold == 0 or not ((same_counts == per_fold) & (diff_counts == per_fold)).all():
        return None
    lines = [f"{pairs.num_folds}\t{per_fold}"]
    for k in fold_ids:
        for want_same in (True, False):  # LFW lists a fold's same pairs, then its different pairs
            for i in np.flatnonzero((pairs.fold == k) & (pairs.same == want_same)):
                ea, eb = _lfw_entry(pairs.a[i], root, extension), _lfw_entry(pairs.b[i], root, extension)
                if ea is None or eb is None or (ea[0] == eb[0]) != want_same:
                    return None
                lines.append(f"{ea[0]}\t{ea[1]}\t{eb[1]}" if want_same else f"{ea[0]}\t{ea[1]}\t{eb[0]}\t{eb[1]}")
    return "\n".join(lines) + "\n"


def _relative(path: Path, folder: Path) -> str:
    text = os.path.relpath(path, folder)
    if "\t" in text or "\n" in text or text != text.strip():
        raise ValueError(f"{path}: a path holding a tab, a newline or leading / trailing spaces cannot be "
                         "written to a pairs file")
    return f"./{text}" if text.startswith("#") else text  # a leading '#' would read as a comment


def _simple_text(pairs: PairsSet, folder: Path) -> str:
    a = [_relative(p, folder) for p in pairs.a]
    b = [_relative(p, folder) for p in pairs.b]
    sep = "\t" if any(len(p.split()) > 1 for p in a + b) else " "  # tabs let paths hold spaces
    rows = [sep.join([pa, pb, str(int(s)), str(int(f))]) for pa, pb, s, f in zip(a, b, pairs.same, pairs.fold)]
    return "# path_a path_b same fold (paths relative to this file)\n" + "\n".join(rows) + "\n"


def write_pairs(path: str | os.PathLike[str], pairs: PairsSet, *, fmt: Literal["auto", "lfw", "simple"] = "auto",
                root: str | os.PathLike[str] | None = None, extension: str = ".jpg") -> Literal["lfw", "simple"]:
    """Write pairs atomically, in LFW's format when they fit it, else the simple format (``fmt="auto"``).

    They fit LFW's format when every image is ``root/<name>/<name>_<nnnn><extension>``, same pairs are of
    one name and different pairs of two, and every fold holds n same and n different pairs for one n.

    Args:
        path: the file to write.
        pairs: the pairs; `read_pairs` reads back the same pairs (paths, labels and folds).
        fmt: "lfw" raises when the pairs do not fit LFW's format; "simple" always writes the simple one.
        root: the identity folders for the LFW format (default: the pairs file's folder).
        extension: the image files' extension in the LFW format.

    Returns:
        The format written.
    """
    path = Path(path)
    if fmt not in ("auto", "lfw", "simple"):
        raise ValueError(f"fmt must be 'auto', 'lfw' or 'simple', got {fmt!r}")
    if not len(pairs):
        raise ValueError(f"{path}: no pairs to write")
    text = None if fmt == "simple" else _lfw_text(pairs, path.parent if root is None else Path(root), extension)
    if text is None and fmt == "lfw":
        raise ValueError(f"{path}: these pairs do not fit LFW's format (root/<name>/<name>_<nnnn>{extension} "
                         f"images and n same + n different pairs in every fold); write them with fmt='simple'")
    write_text(path, text if text is not None else _simple_text(pairs, path.parent))
    return "lfw" if text is not None else "simple"
