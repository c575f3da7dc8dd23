"""Local-feature extractors by name ("sift", "rootsift", "lift"), and the record that rebuilds one.

An object database remembers which extractor described its references (`extractor_record`), so that
`match find` describes scenes the same way: the same SIFT settings, or the same LIFT weights file.
LIFT (Yi et al., "LIFT: Learned Invariant Feature Transform", ECCV 2016) comes from trained weights written
by `ninshiki match train`, whose record names the model and its constructor keywords.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from ninshiki.match.features import FeatureExtractor
from ninshiki.match.sift import SiftExtractor

EXTRACTORS = ("sift", "rootsift", "lift")


def make_extractor(name: str, *, weights: str | os.PathLike[str] | None = None,
                   max_features: int | None = 2000) -> FeatureExtractor:
    """A feature extractor by name.

    Args:
        name: "sift", "rootsift" (OpenCV's SIFT) or "lift" (needs `weights`).
        weights: a LIFT weights file written by `ninshiki match train`; SIFT takes none.
        max_features: keep at most this many keypoints, the strongest; None keeps all.

    Raises:
        ValueError: an unknown name, weights given to SIFT or missing for LIFT, or weights of another model.
        FileNotFoundError: the weights file does not exist.
    """
    if name not in EXTRACTORS:
        raise ValueError(f"unknown feature extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")
    if name in ("sift", "rootsift"):
        if weights is not None:
            raise ValueError(f"{name} is OpenCV's hand-designed SIFT and takes no weights (got {weights})")
        return SiftExtractor(max_features=max_features, root=name == "rootsift")
    if weights is None:
        raise ValueError("lift needs --weights: a file written by `ninshiki match train --model lift`")
    return _lift(weights, max_features=max_features or 2000)


def _lift(weights: str | os.PathLike[str], **options: Any) -> FeatureExtractor:
    from ninshiki.models.match.lift_extractor import LiftExtractor

    return LiftExtractor.from_weights(weights, **options)


def _keywords(cls: type) -> set[str]:
    """The keyword-only constructor arguments of an extractor class (its settings)."""
    return {name for name, p in inspect.signature(cls.__init__).parameters.items() if p.kind is p.KEYWORD_ONLY}


def extractor_record(name: str, extractor: FeatureExtractor, *, weights: str | os.PathLike[str] | None = None,
                     max_features: int | None = 2000) -> dict[str, Any]:
    """What `extractor_from_record` needs to rebuild `extractor` (JSON-able): its name, weights (absolute
    path) and feature cap, plus the extractor's own settings when it reports them."""
    config = getattr(extractor, "config", None)
    settings = dict(config()) if callable(config) else {}
    return {**settings, "extractor": name, "weights": str(Path(weights).resolve()) if weights else None,
            "max_features": max_features}


def extractor_from_record(descriptor: str | None, record: dict[str, Any], *,
                          weights: str | os.PathLike[str] | None = None,
                          max_features: int | None = None) -> FeatureExtractor:
    """Rebuild the extractor a database was described with.

    Args:
        descriptor: the database's descriptor kind (`ObjectDatabase.descriptor`).
        record: its `extractor_config`: written by `extractor_record`, or `SiftExtractor.config()` for a
            database registered from Python.
        weights: LIFT weights to use instead of the recorded path (e.g. after moving the run folder).
        max_features: overrides the recorded feature cap when given.
    """
    name = record.get("extractor", descriptor)
    if name not in EXTRACTORS:
        raise ValueError(f"the database was described by {name!r}, which this ninshiki cannot rebuild "
                         f"(known: {', '.join(EXTRACTORS)})")
    cap = max_features if max_features is not None else record.get("max_features", 2000)
    if name == "lift":
        from ninshiki.models.match.lift_extractor import LiftExtractor

        weights = weights or record.get("weights")
        if not weights:
            raise ValueError("the database records no LIFT weights file; pass --weights")
        if not Path(weights).is_file():
            raise FileNotFoundError(f"the LIFT weights the database was registered with are gone: {weights}; "
                                    f"pass --weights with their new place")
        options = {k: v for k, v in record.items() if k in _keywords(LiftExtractor)}   # scales, NMS radius, ...
        return _lift(weights, **{**options, "max_features": cap or 2000})
    if weights:
        raise ValueError(f"the database holds {name} descriptors, which take no weights (got {weights})")
    settings = {k: v for k, v in record.items() if k in _keywords(SiftExtractor)}   # the same DoG settings
    return SiftExtractor(**{**settings, "max_features": cap, "root": name == "rootsift"})
