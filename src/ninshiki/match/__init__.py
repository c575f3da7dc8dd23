"""Specific-object recognition with local features: SIFT / RootSIFT extraction, descriptor matching (ratio
test, mutual nearest neighbours), Hough voting over pose, RANSAC verification, and a saved database of
registered objects searched by `find` (Lowe, IJCV 2004)."""
from ninshiki.match.database import ObjectDatabase, Reference
from ninshiki.match.features import FeatureExtractor, LocalFeatures, as_gray, image_outline
from ninshiki.match.geometry import fit_transform, is_plausible, project, refit
from ninshiki.match.matching import match_descriptors
from ninshiki.match.recognize import Recognition, draw_matches, draw_recognitions, find
from ninshiki.match.sift import SiftExtractor
from ninshiki.match.voting import PoseCluster, hough_clusters, predict_poses

__all__ = [
    "FeatureExtractor", "LocalFeatures", "ObjectDatabase", "PoseCluster", "Recognition", "Reference",
    "SiftExtractor", "as_gray", "draw_matches", "draw_recognitions", "find", "fit_transform", "hough_clusters",
    "image_outline", "is_plausible", "match_descriptors", "predict_poses", "project", "refit",
]
