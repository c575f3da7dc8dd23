"""`ninshiki match eval`: local features on image pairs with known homographies (HPatches-style).

Per pair: keypoints and descriptors of both images, matches by nearest neighbours (Lowe's ratio test and,
by default, mutual nearest neighbours), a homography estimated from them by RANSAC, and every measure of
`ninshiki.metrics.local_matching` against the true homography. The time per pair covers describing both
images, matching and estimating. Writes OUT/metrics.json (the `MatchingMetric` keys and the pair count),
OUT/pairs.csv (one row per pair), OUT/matches/<pair>.png for the first pairs (matches, and the estimated
outline of a in b) and OUT/config.yaml.
"""
from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ninshiki.config import to_yaml
from ninshiki.config_detect import require
from ninshiki.config_match import MatchEvalConfig
from ninshiki.data.formats.homography_pairs import HomographyPair, opencv_doc_pairs, read_homography_pairs
from ninshiki.io import write_json, write_text
from ninshiki.match.extractors import make_extractor
from ninshiki.match.features import FeatureExtractor, as_gray, image_outline
from ninshiki.match.geometry import fit_transform, project
from ninshiki.match.matching import match_descriptors
from ninshiki.match.recognize import draw_matches
from ninshiki.metrics.local_matching import MatchingMetric

OPENCV_DOC = "opencv-doc"


def load_pairs(source: str) -> list[HomographyPair]:
    """A folder of homography pairs, or "opencv-doc" for the Oxford pairs in OpenCV's sample data."""
    if source != OPENCV_DOC:
        return read_homography_pairs(source)
    pairs = opencv_doc_pairs()
    if not pairs:
        from ninshiki.data.sample_photos import opencv_sample_dir

        opencv_sample_dir()   # raises with how to install the sample data when the folder is missing
        raise FileNotFoundError("OpenCV's sample data lacks graf1.png, graf3.png or H1to3p.xml")
    return pairs


def evaluate_pair(extractor: FeatureExtractor, pair: HomographyPair, metric: MatchingMetric, *, ratio: float,
                  mutual: bool, ransac_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Describe, match and estimate on one pair, adding it to `metric`.

    Returns:
        The matched points in a and in b, the estimated homography (None when RANSAC found none), and the
        outline of a mapped into b by it (None without an estimate).

    Shape:
        - Output: (M, 2) float32, (M, 2) float32, (3, 3) float64 or None, (4, 2) float64 or None.
    """
    a, b = as_gray(pair.a_path), as_gray(pair.b_path)
    start = time.perf_counter()
    features_a, features_b = extractor.extract(a), extractor.extract(b)
    matches, _ = match_descriptors(features_a.descriptors, features_b.descriptors, ratio=ratio, mutual=mutual)
    xy_a, xy_b = features_a.xy[matches[:, 0]], features_b.xy[matches[:, 1]]          # (M, 2) each
    estimate, _ = fit_transform(xy_a, xy_b, model="homography", threshold=ransac_threshold)
    seconds = time.perf_counter() - start
    metric.update(keypoints_a=features_a.xy, keypoints_b=features_b.xy, matches_a=xy_a, matches_b=xy_b, H=pair.H,
                  shape_a=a.shape, shape_b=b.shape, H_est=estimate, seconds=seconds, name=pair.name)
    outline = None if estimate is None else project(estimate, image_outline(*a.shape))
    return xy_a, xy_b, estimate, outline


def evaluate(config: MatchEvalConfig, *, progress: bool = True) -> dict[str, float]:
    """Run `config`; returns the metrics written to metrics.json."""
    require(config, "pairs")
    pairs = load_pairs(config.pairs)
    extractor = make_extractor(config.model, weights=config.weights, max_features=config.max_features)
    metric = MatchingMetric(threshold=config.threshold)
    out = Path(config.out)
    for index, pair in enumerate(tqdm(pairs, desc="pairs", unit="pair", disable=not progress or None,
                                      dynamic_ncols=True)):
        xy_a, xy_b, _, outline = evaluate_pair(extractor, pair, metric, ratio=config.ratio, mutual=config.mutual,
                                             ransac_threshold=config.ransac_threshold)
        if index < config.pictures:
            draw_matches(pair.a_path, pair.b_path, xy_a, xy_b, out / "matches" / f"{pair.name}.png", outline=outline)
    metrics = {**metric.compute(), "pairs": len(pairs)}
    write_text(out / "config.yaml", to_yaml(config))
    write_json(out / "metrics.json", metrics)
    write_text(out / "pairs.csv", _csv(metric.rows))
    print(_table(config.model, metrics), file=sys.stderr, flush=True)
    return metrics


def _csv(rows: list[dict[str, float | int | str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _table(model: str, metrics: dict[str, float]) -> str:
    return f"{model} on {int(metrics['pairs'])} pair(s): " + ", ".join(
        f"{key} {value:.4g}" for key, value in metrics.items() if key != "pairs")
