"""`ninshiki match train` (LIFT by homographic self-supervision, `ninshiki.models.match.lift_train`) and
`ninshiki match pairs` (homography pairs from real photos, for `match eval`)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ninshiki.config import parse_model_kwargs
from ninshiki.config_detect import require
from ninshiki.config_match import MatchPairsConfig, MatchTrainConfig
from ninshiki.data.formats.homography_pairs import HomographyPair, write_warped_pairs
from ninshiki.data.formats.imagefolder import is_image_file

if TYPE_CHECKING:
    from ninshiki.models.match.lift_train import LiftTrainConfig


def lift_train_config(config: MatchTrainConfig) -> LiftTrainConfig:
    """The `LiftTrainConfig` for `config`: the fields given, LIFT's own defaults for the rest."""
    from ninshiki.models.match.lift_train import LiftTrainConfig

    given = {"photos": config.data or None, "val_photos": config.val_data if config.val_check else [],
             "steps": config.steps, "time_limit": config.time_limit, "batch": config.batch_size,
             "patch_size": config.patch_size, "lr": config.lr, "margin": config.margin,
             "model_kwargs": parse_model_kwargs(config.model_kwargs) or None}
    return LiftTrainConfig(out=config.out, seed=config.seed, **{k: v for k, v in given.items() if v is not None})


def train(config: MatchTrainConfig, *, progress: bool = True) -> dict[str, float]:
    """Train LIFT as `config` says; returns the training summary of `train_lift`."""
    from ninshiki.models.match.lift_train import train_lift

    if config.data and not Path(config.data).exists():
        raise FileNotFoundError(f"{config.data}: no such folder or file of photos")
    result = train_lift(lift_train_config(config), progress=progress)
    summary = ", ".join(f"{key} {value:.4g}" for key, value in result.items())
    print(f"LIFT weights in {Path(config.out) / 'best.safetensors'}; {summary}", file=sys.stderr, flush=True)
    return result


def photo_files(source: str | Path) -> list[Path]:
    """A single photo, or the image files of a folder (recursively, sorted, hidden ones left out).

    Raises:
        FileNotFoundError: nothing at `source`.
        ValueError: a folder without image files.
    """
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such photo or folder of photos")
    photos = sorted(p for p in source.rglob("*") if p.is_file() and is_image_file(p)
                    and not any(part.startswith(".") for part in p.relative_to(source).parts))
    if not photos:
        raise ValueError(f"{source}: no image files in this folder")
    return photos


def make_pairs(config: MatchPairsConfig) -> list[HomographyPair]:
    """Write `config.count` homography pairs warped from the photos of `config.photos`."""
    require(config, "photos")
    photos = photo_files(config.photos)
    pairs = write_warped_pairs(photos, config.out, count=config.count, seed=config.seed, max_side=config.max_side)
    print(f"wrote {len(pairs)} homography pairs from {len(photos)} photo(s) in {config.out} "
          f"(evaluate with `ninshiki match eval --pairs {config.out}`)")
    return pairs
