"""Run configurations of `ninshiki match register|find|eval|train|pairs` (see config.py for how fields become
flags)."""
from __future__ import annotations

from dataclasses import dataclass

from ninshiki.config import _check_choice, _check_positive, parse_model_kwargs
from ninshiki.match.extractors import EXTRACTORS


def _check_ratio(ratio: float) -> None:
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio (Lowe's ratio test) must be in (0, 1], got {ratio}")


def _check_features(max_features: int | None) -> None:
    if max_features is not None:
        _check_positive(max_features=max_features)


@dataclass
class MatchRegisterConfig:
    """`ninshiki match register`."""
    model: str = "sift"                  # sift | rootsift | lift
    weights: str | None = None           # lift: weights written by `ninshiki match train`
    source: str = ""                     # a folder: each image is an object (its file stem), each subfolder one
                                         # object seen in several views (its name); or a single image file
    out: str = "objects.db"              # the object database written (safetensors)
    max_features: int | None = 2000      # keypoints kept per reference image, the strongest
    min_features: int = 10               # a reference with fewer keypoints is skipped (blank or tiny image)

    def __post_init__(self) -> None:
        _check_choice("model", self.model, EXTRACTORS)
        _check_features(self.max_features)
        _check_positive(min_features=self.min_features)


@dataclass
class MatchFindConfig:
    """`ninshiki match find`."""
    db: str = ""                         # written by `ninshiki match register`
    source: str = ""                     # a scene image, a folder of them, or a glob
    out: str = "runs/found"
    weights: str | None = None           # lift: use these weights instead of the path recorded in the database
    max_features: int | None = None      # keypoints per scene; None = as the database was registered
    ratio: float = 0.8                   # Lowe's ratio test
    min_inliers: int = 10                # fewest verified matches of a recognised object
    threshold: float = 4.0               # RANSAC reprojection threshold in scene pixels
    transform: str = "homography"        # homography | affine
    draw_matches: bool = False           # also draw each recognised object's inlier matches

    def __post_init__(self) -> None:
        _check_ratio(self.ratio)
        _check_features(self.max_features)
        _check_choice("transform", self.transform, ("homography", "affine"))
        _check_positive(min_inliers=self.min_inliers, threshold=self.threshold)


@dataclass
class MatchEvalConfig:
    """`ninshiki match eval`."""
    model: str = "sift"                  # sift | rootsift | lift
    weights: str | None = None           # lift: weights written by `ninshiki match train`
    pairs: str = ""                      # a folder of homography pairs, or "opencv-doc" (OpenCV's Oxford pairs)
    out: str = "runs/match-eval"
    max_features: int | None = 2000      # keypoints per image, the strongest
    ratio: float = 0.8                   # Lowe's ratio test
    mutual: bool = True                  # also require mutual nearest neighbours
    threshold: float = 3.0               # pixels: matching precision and repeatability
    ransac_threshold: float = 3.0        # pixels: RANSAC's reprojection threshold for the estimated homography
    pictures: int = 4                    # draw the matches of this many first pairs

    def __post_init__(self) -> None:
        _check_choice("model", self.model, EXTRACTORS)
        _check_features(self.max_features)
        _check_ratio(self.ratio)
        _check_positive(threshold=self.threshold, ransac_threshold=self.ransac_threshold)
        if self.pictures < 0:
            raise ValueError(f"pictures must be 0 or more, got {self.pictures}")


@dataclass
class MatchTrainConfig:
    """`ninshiki match train` (LIFT by homographic self-supervision on real photos)."""
    model: str = "lift"
    data: str = ""                       # a folder of photos (or one photo); empty = scikit-image's and OpenCV's
    val_data: str | None = None          # photos of the held-out LIFT-vs-SIFT check; None = OpenCV's held-out ones
    val_check: bool = True               # run the held-out check at the end
    out: str = "runs/lift"
    time_limit: float | None = None      # seconds over the three stages; None = LIFT's default (600)
    steps: int | None = None             # optimiser steps over the three stages; training stops at the first limit
    batch_size: int | None = None        # corresponding keypoint pairs per step; None = LIFT's default (128)
    patch_size: int | None = None        # ORI's and DESC's patch side; None = LIFT's default (32)
    lr: float | None = None              # Adam's learning rate; None = LIFT's default
    margin: float | None = None          # the triplet loss's margin; None = LIFT's default
    model_kwargs: str | None = None      # further `lift` factory options as a YAML mapping, e.g. "{det_kernel: 11}"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_choice("model", self.model, ("lift",))
        for name in ("time_limit", "steps", "batch_size", "patch_size", "lr", "margin"):
            if getattr(self, name) is not None:
                _check_positive(**{name: getattr(self, name)})
        parse_model_kwargs(self.model_kwargs)


@dataclass
class MatchPairsConfig:
    """`ninshiki match pairs`: homography pairs from real photos, for `match eval`."""
    photos: str = ""                     # a folder of photos, or one photo
    out: str = "homography_pairs"
    count: int = 20                      # pairs written, cycling through the photos
    max_side: int | None = 640           # photos are shrunk to this longest side first
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive(count=self.count)
        if self.max_side is not None:
            _check_positive(max_side=self.max_side)
