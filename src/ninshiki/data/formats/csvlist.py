"""A CSV list of labelled images: one ``path,label`` line per image, with an optional header row.

Relative paths are relative to the CSV file's folder, so a list and its images can move together.
Standard CSV quoting applies (a path containing a comma is written in double quotes). Blank lines
are skipped. The files themselves are not opened here: a missing image is reported when it is read.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

HEADER = ("path", "label")


def _parse_row(row: list[str], where: str, raw: str) -> tuple[str, str]:
    fields = [f.strip() for f in row]
    if len(fields) != 2 or not fields[0] or not fields[1]:
        raise ValueError(f"{where}: expected 'path,label', got {raw!r}")
    return fields[0], fields[1]


def read_csv_list(path: str | os.PathLike[str]) -> tuple[list[Path], list[str]]:
    """Read a ``path,label`` list.

    Args:
        path: the CSV file (UTF-8, a byte-order mark is accepted).

    Returns:
        The image paths (resolved against the CSV's folder) and their label names, in file order.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: a malformed line (the message names the file and line), undecodable text,
            or a list without entries.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    lines = text.splitlines()
    reader = csv.reader(lines, skipinitialspace=True)
    paths: list[Path] = []
    labels: list[str] = []
    try:
        for row in reader:
            line_no = reader.line_num
            if not row or all(not f.strip() for f in row):
                continue
            raw = "\n".join(lines[line_no - 1:line_no]) if line_no <= len(lines) else ",".join(row)
            file, label = _parse_row(row, f"{path}, line {line_no}", raw)
            if not paths and tuple(f.lower() for f in (file, label)) == HEADER:
                continue  # the optional header row
            paths.append(path.parent / file)
            labels.append(label)
    except csv.Error as err:
        raise ValueError(f"{path}, line {reader.line_num}: {err}") from None
    if not paths:
        raise ValueError(f"{path}: no 'path,label' entries")
    return paths, labels
