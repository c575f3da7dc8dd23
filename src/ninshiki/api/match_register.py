"""`ninshiki match register`: describe reference images of objects and save them as an object database.

The source folder's layout names the objects: each image file directly inside is one object named by its
file stem, and each subfolder is one object, named by the folder, seen in the several views its images
show (found recursively). Files with one stem (``mug.jpg``, ``mug.png``) or a file and a folder of one name
are views of one object. A single image file is one object. Images that cannot be read or have too few
keypoints are skipped, each with its reason; the database is written only if some object is registered.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ninshiki.config_detect import require
from ninshiki.config_match import MatchRegisterConfig
from ninshiki.data.formats.imagefolder import is_image_file
from ninshiki.match.database import ObjectDatabase
from ninshiki.match.extractors import extractor_record, make_extractor


@dataclass
class ObjectViews:
    """The objects of a source folder: name -> view files, in order; and the files that are not images."""
    views: dict[str, list[Path]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)     # "path: reason"


def list_objects(source: str | os.PathLike[str]) -> ObjectViews:
    """Objects and their views from a folder (see the module docstring) or a single image file.

    Raises:
        FileNotFoundError: `source` does not exist.
    """
    source = Path(source)
    found = ObjectViews()
    if source.is_file():
        found.views[source.stem] = [source]
        return found
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such file or folder of object images")
    for entry in sorted(p for p in source.iterdir() if not p.name.startswith(".")):
        if entry.is_dir():
            files = sorted(p for p in entry.rglob("*") if p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(entry).parts))
            images = [p for p in files if is_image_file(p)]
            found.skipped += [f"{p}: not an image file (by its extension)" for p in files if not is_image_file(p)]
            if images:
                found.views.setdefault(entry.name, []).extend(images)
            else:
                found.skipped.append(f"{entry}: a folder without image files")
        elif is_image_file(entry):
            found.views.setdefault(entry.stem, []).append(entry)
        else:
            found.skipped.append(f"{entry}: not an image file (by its extension)")
    return found


def register(config: MatchRegisterConfig, *, progress: bool = True) -> ObjectDatabase:
    """Register every object of `config.source` and save the database to `config.out`; prints a summary."""
    require(config, "source")
    extractor = make_extractor(config.model, weights=config.weights, max_features=config.max_features)
    database = ObjectDatabase(descriptor=extractor.name, extractor_config=extractor_record(
        config.model, extractor, weights=config.weights, max_features=config.max_features))
    objects = list_objects(config.source)
    skipped = list(objects.skipped)
    total = sum(len(v) for v in objects.views.values())
    with tqdm(total=total, desc="registering", unit="img", disable=not progress or None, dynamic_ncols=True) as bar:
        for name, views in objects.views.items():
            for path in views:
                try:   # absolute, so `match find --draw-matches` finds the reference from anywhere
                    database.register(name, path.resolve(), extractor=extractor, min_features=config.min_features)
                except ValueError as error:   # unreadable (ImageReadError) or too few keypoints; names the file
                    skipped.append(str(error))
                bar.update(1)
    if not database.references:
        reasons = "".join(f"\n  {line}" for line in skipped)
        raise ValueError(f"{config.source}: no object registered ({total} image(s) found){reasons}")
    database.save(config.out)
    print(summary(database, skipped, config.out))
    return database


def summary(database: ObjectDatabase, skipped: list[str], out: str | os.PathLike[str]) -> str:
    """What was registered (features per view) and what was skipped, as printed by `register`."""
    width = max(len(name) for name in database.names)
    head = (f"registered {len(database.names)} object(s), {len(database.references)} view(s), "
            f"{database.descriptor} features, in {out}")
    lines = [head]
    for label, name in enumerate(database.names):
        counts = [len(r.features) for r in database.references if r.label == label]
        lines.append(f"  {name.ljust(width)}  {len(counts)} view(s), features {' + '.join(map(str, counts))}")
    if skipped:
        lines.append(f"skipped {len(skipped)}:")
        lines += [f"  {line}" for line in skipped]
    return "\n".join(lines)
