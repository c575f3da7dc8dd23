"""Data hygiene: what is in a class folder or CSV list, and what in it will cause trouble.

`check_dataset` opens every listed file read-only (nothing is modified), and reports counts per class,
the class imbalance, and every file that is unreadable, in an unusual mode, EXIF-rotated, a
decompression bomb, a byte-for-byte duplicate of another, or ignored for its extension.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ninshiki.data.files import find_split_folders
from ninshiki.data.formats.csvlist import read_csv_list
from ninshiki.data.formats.imagefolder import scan_image_folder
from ninshiki.data.images import MAX_PIXELS, ImageInfo, inspect_image

_WORKERS = max(1, min(4, os.cpu_count() or 1))


@dataclass
class FileIssue:
    path: str
    detail: str   # the reason ("truncated image file") or the mode issue ("16-bit")


@dataclass
class DataReport:
    """The findings of `check_dataset`; paths are shown relative to the checked source where possible."""

    source: str
    num_files: int
    class_counts: dict[str, int]                     # all splits together
    split_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # only for train/ + val/ layouts
    unreadable: list[FileIssue] = field(default_factory=list)
    unusual_modes: list[FileIssue] = field(default_factory=list)
    exif_rotated: list[str] = field(default_factory=list)
    bombs: list[str] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)  # groups of files with identical bytes
    ignored: list[str] = field(default_factory=list)           # files without an image extension

    @property
    def imbalance(self) -> float:
        """Largest class count / smallest class count (1.0 = balanced)."""
        counts = [c for c in self.class_counts.values() if c > 0]
        return max(counts) / min(counts) if counts else 1.0

    @property
    def ok(self) -> bool:
        """True when every listed file can be read (no unreadable files and no decompression bombs)."""
        return not self.unreadable and not self.bombs

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dictionary, including `imbalance` and `ok`."""
        return {**asdict(self), "imbalance": self.imbalance, "ok": self.ok}


def _list_files(source: Path) -> tuple[list[Path], list[str], dict[str, dict[str, int]], list[Path]]:
    """(paths, class name per path, per-split counts, ignored files) for a folder or CSV list."""
    if source.is_file():
        paths, names = read_csv_list(source)
        return paths, names, {}, []
    layout = find_split_folders(source)
    roots = {"": source} if layout is None else {p.name: p for p in layout[:2]}
    paths: list[Path] = []
    names: list[str] = []
    # loose files beside train/ and val/ (scan_image_folder reports those inside each root)
    loose = [] if layout is None else [p for p in source.iterdir() if p.is_file() and not p.name.startswith(".")]
    ignored = sorted(loose)
    splits: dict[str, dict[str, int]] = {}
    for split, root in roots.items():
        listing = scan_image_folder(root)
        split_names = [listing.classes[i] for i in listing.labels]
        paths += listing.paths
        names += split_names
        ignored += listing.ignored
        if split:
            splits[split] = dict(sorted(Counter(split_names).items()))
    return paths, names, splits, ignored


def _digest(path: Path) -> str | None:
    digest = hashlib.blake2b()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def find_duplicates(paths: list[Path]) -> list[list[Path]]:
    """Groups of files with identical bytes: grouped by size first, so only same-size files are hashed."""
    by_size: dict[int, list[Path]] = defaultdict(list)
    for path in paths:
        if path.is_file() and path.stat().st_size > 0:  # empty files are reported as unreadable
            by_size[path.stat().st_size].append(path)
    by_hash: dict[str, list[Path]] = defaultdict(list)
    for group in (g for g in by_size.values() if len(g) > 1):
        for path in group:
            digest = _digest(path)
            if digest is not None:
                by_hash[digest].append(path)
    return sorted((sorted(g) for g in by_hash.values() if len(g) > 1), key=lambda g: g[0])


def _shown(path: Path, base: Path) -> str:
    """`path` relative to the checked source when it lies inside it, else as given."""
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


def _record(report: DataReport, info: ImageInfo, shown: str) -> None:
    if info.error is not None and "decompression bomb" in info.issues:
        report.bombs.append(shown)
    elif info.error is not None:
        report.unreadable.append(FileIssue(shown, info.error))
    if "exif-rotated" in info.issues:
        report.exif_rotated.append(shown)
    modes = [i for i in info.issues if i not in ("exif-rotated", "decompression bomb") and i != info.error]
    if modes:
        report.unusual_modes.append(FileIssue(shown, ", ".join(modes)))


def check_dataset(source: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> DataReport:
    """Check a class folder (optionally with train/ and val/ or test/) or a ``path,label`` CSV list.

    Raises:
        FileNotFoundError: `source` does not exist.
        ValueError: the layout is malformed (no class folders, a bad CSV line, ...).
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    paths, names, splits, ignored = _list_files(source)
    base = source.parent if source.is_file() else source
    show = partial(_shown, base=base)
    report = DataReport(source=str(source), num_files=len(paths), class_counts=dict(sorted(Counter(names).items())),
                        split_counts=splits, ignored=[show(p) for p in ignored])
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        infos = pool.map(lambda p: inspect_image(p, max_pixels=max_pixels), paths)
        for path, info in tqdm(zip(paths, infos), total=len(paths), desc="checking", unit="file",
                               disable=None, leave=False):
            _record(report, info, show(path))
    report.duplicates = [[show(p) for p in group] for group in find_duplicates(paths)]
    return report


def _listing(title: str, lines: list[str], limit: int) -> list[str]:
    if not lines:
        return []
    shown = [f"  {line}" for line in lines[:limit]]
    more = [f"  ... and {len(lines) - limit} more"] if len(lines) > limit else []
    return [f"{title} ({len(lines)}):", *shown, *more]


def format_report(report: DataReport, *, max_files: int = 10) -> str:
    """A plain-text summary: a counts table, then each kind of issue with up to `max_files` names."""
    width = max([len("class"), *map(len, report.class_counts)])
    splits = list(report.split_counts)
    header = f"{'class':<{width}}  " + "".join(f"{s:>8}" for s in splits) + f"{'total':>8}"
    rows = [f"{name:<{width}}  " + "".join(f"{report.split_counts[s].get(name, 0):>8}" for s in splits)
            + f"{count:>8}" for name, count in report.class_counts.items()]
    lines = [f"{report.source}: {report.num_files} image files, {len(report.class_counts)} classes, "
             f"imbalance {report.imbalance:.2f} (largest/smallest class)", "", header, *rows, ""]
    sections = [
        ("unreadable", [f"{i.path}: {i.detail}" for i in report.unreadable]),
        ("decompression bombs", report.bombs),
        ("unusual modes (converted when read)", [f"{i.path}: {i.detail}" for i in report.unusual_modes]),
        ("EXIF-rotated (turned upright when read)", report.exif_rotated),
        ("duplicate files (identical bytes)", [" = ".join(group) for group in report.duplicates]),
        ("ignored (not an image extension)", report.ignored),
    ]
    for title, items in sections:
        lines += _listing(title, items, max_files)
    lines.append("OK: every image can be read." if report.ok else "NOT OK: some files cannot be read.")
    return "\n".join(lines)
