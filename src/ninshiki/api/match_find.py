"""`ninshiki match find`: recognise the objects of a database in scene images (Lowe, IJCV 2004).

Scenes are described by the extractor the database was registered with (rebuilt from its record). Writes
OUT/found.json (per scene: its file, size and the objects found, each with its name, outline corners in
scene pixels, inlier count and score), a drawing of the outlines per scene under OUT/images/ and, with
``--draw-matches``, each object's inlier matches under OUT/matches/.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ninshiki.api.detect_predict import drawn_name
from ninshiki.config import to_yaml
from ninshiki.config_detect import require
from ninshiki.config_match import MatchFindConfig
from ninshiki.io import write_json, write_text
from ninshiki.match.database import ObjectDatabase
from ninshiki.match.extractors import extractor_from_record
from ninshiki.match.recognize import Recognition, draw_matches, draw_recognitions, find


def recognition_record(recognition: Recognition, database: ObjectDatabase) -> dict[str, Any]:
    """One found object as JSON: name, label, outline corners (x, y), inliers, score, reference file."""
    return {"name": recognition.name, "label": recognition.label,
            "outline": [[round(x, 3), round(y, 3)] for x, y in recognition.outline.tolist()],
            "inliers": recognition.inliers, "score": round(recognition.score, 6),
            "reference": database.references[recognition.reference].source}


def find_objects(config: MatchFindConfig, *, progress: bool = True) -> list[dict[str, Any]]:
    """Run `config`: returns the per-scene records written to found.json."""
    from ninshiki.data.detection.sources import iter_sources

    require(config, "db", "source")
    database = ObjectDatabase.load(config.db)
    if not database.references:
        raise ValueError(f"{config.db}: the database holds no objects")
    extractor = extractor_from_record(database.descriptor, database.extractor_config, weights=config.weights,
                                      max_features=config.max_features)
    out = Path(config.out)
    scenes: list[dict[str, Any]] = []
    skipped: list[str] = []
    bar = tqdm(desc="finding", unit="img", disable=not progress or None, dynamic_ncols=True)
    for batch in iter_sources(config.source, batch_size=1):
        skipped += batch.skipped
        for image, name in zip(batch.images, batch.names):
            found = find(database, image, extractor=extractor, ratio=config.ratio, min_inliers=config.min_inliers,
                         model=config.transform, threshold=config.threshold)   # type: ignore[arg-type]
            scenes.append({"file": name, "height": int(image.shape[1]), "width": int(image.shape[2]),
                           "objects": [recognition_record(r, database) for r in found]})
            _draw(out, name, image, found, database, config.draw_matches)
            bar.update(1)
    bar.close()
    write_text(out / "config.yaml", to_yaml(config))
    write_json(out / "found.json", scenes)
    if skipped:
        write_text(out / "skipped.txt", "\n".join(skipped) + "\n")
        print(f"skipped {len(skipped)} file(s) that are not readable images; listed in {out / 'skipped.txt'}",
              file=sys.stderr)
    count = sum(len(s["objects"]) for s in scenes)
    print(f"found {count} object(s) in {len(scenes)} scene(s); results in {out}", file=sys.stderr, flush=True)
    return scenes


def _draw(out: Path, name: str, image: torch.Tensor, found: list[Recognition], database: ObjectDatabase,
          matches: bool) -> None:
    """The outlines over the scene, and each object's inlier matches beside its reference when asked."""
    picture = drawn_name(name.replace("#", "_"))    # video frames: clip.mp4#frame000012 -> clip.mp4_frame000012
    draw_recognitions(image, found, out / "images" / picture)
    if not matches:
        return
    for index, recognition in enumerate(found):
        source = database.references[recognition.reference].source
        if not source or not Path(source).is_file():   # registered from an array, or moved since
            continue
        target = out / "matches" / picture.with_name(f"{picture.stem}_{index}_{recognition.name}.png")
        draw_matches(source, image, recognition.reference_xy, recognition.scene_xy, target,
                     outline=recognition.outline)
