"""The generated data set's folder: built beside its target, then put in place by renames.

A run writes everything into a hidden sibling folder and renames it to `out` at the end, so a killed run
never leaves a half data set at `out` (only a ``.<name>.partial-*`` folder beside it, which a failed but
living run removes itself). `out` may be missing, empty, or a previous output of the generator,
recognised by its manifest (`MANIFEST`, which lists every file the generator wrote there). A previous output
is replaced only when it holds nothing but those files; any other file is the user's, and the run refuses
before generating anything rather than delete or mix with it.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

MANIFEST = "synth.json"
GENERATOR = "ninshiki.data.synthetic.synth_detect"


def _files_under(folder: Path) -> set[str]:
    """Every file (or link) below `folder`, as POSIX paths relative to it."""
    found = set()
    for parent, _, names in os.walk(folder):
        for name in names:
            found.add((Path(parent) / name).relative_to(folder).as_posix())
    return found


def _previous_files(out: Path) -> set[str] | None:
    """The files a previous run wrote into `out` according to its manifest, or None if it has no valid one."""
    try:
        record = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("generator") != GENERATOR or not isinstance(record.get("files"),
                                                                                             list):
        return None
    return {str(name) for name in record["files"]} | {MANIFEST}


def check_target(out: Path) -> None:
    """Raise unless `out` may receive a new data set: missing, empty, or only a previous output's files.

    Raises:
        NotADirectoryError: `out` is a file.
        FileExistsError: `out` holds files this generator did not write (one is named).
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder")
    present = _files_under(out)
    if not present:
        return
    ours = _previous_files(out)
    if ours is None:
        raise FileExistsError(f"{out}: the folder is not empty and is not a generated data set (no valid "
                              f"{MANIFEST}); choose a new or empty folder")
    foreign = sorted(present - ours)
    if foreign:
        raise FileExistsError(f"{out}: holds {len(foreign)} file(s) the generator did not write, e.g. "
                              f"{out / foreign[0]}; move them away or choose another folder (nothing was deleted)")


def staging_folder(out: Path) -> Path:
    """A new hidden folder beside `out` to build the data set in (same file system, so renames work).

    Made with `os.mkdir`, unlike `tempfile.mkdtemp`, so it gets the user's usual permissions (it becomes `out`).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        staging = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
        try:
            staging.mkdir()
            return staging
        except FileExistsError:
            continue
    raise FileExistsError(f"{out.parent}: cannot create a staging folder for {out.name}")


def write_manifest(staging: Path, record: dict) -> None:
    """Write the manifest listing every file in `staging` (last, so only a complete data set has one)."""
    files = sorted(_files_under(staging))
    text = json.dumps({"generator": GENERATOR, **record, "files": files}, indent=1) + "\n"
    (staging / MANIFEST).write_text(text, encoding="utf-8")


def install(staging: Path, out: Path) -> None:
    """Put the finished `staging` folder at `out`, replacing an empty folder or a previous output.

    The target is checked again first; a previous output is renamed aside before the new one takes its
    place, then removed (it holds only files the generator wrote, as just checked).
    """
    check_target(out)
    if not out.exists():
        os.replace(staging, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, old / "data")
    os.replace(staging, out)
    shutil.rmtree(old)


def discard(staging: Path) -> None:
    """Remove a staging folder after a failed run (it holds only what this run wrote)."""
    shutil.rmtree(staging, ignore_errors=True)
