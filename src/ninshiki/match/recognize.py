"""Finding registered objects in a scene: Lowe, "Distinctive Image Features from Scale-Invariant Keypoints"
(IJCV 2004), section 7, with a homography as the final model.

1. Describe the scene with the database's kind of local features.
2. Match each scene descriptor to each reference separately (ratio test within the reference, so two views
   of one object, or two similar objects, do not make each other's matches ambiguous).
3. Vote the matches' predicted poses into a Hough histogram (`voting.py`); bins with >= 3 votes are
   candidate object instances, most votes first.
4. Verify each candidate: RANSAC on its matches, then every match of that reference the fit explains is
   gathered and the map refitted on all of them (Lowe's top-down step); the fit must be plausible
   (`geometry.is_plausible`) and have at least `min_inliers` inliers. Scene keypoints used by an accepted
   instance are not used again, so several instances of one object are found one after the other.

Matching is one-way (scene -> reference) by default: with mutual nearest neighbours a reference keypoint
could match only one of several instances of its object in the scene.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ninshiki.data.images import read_image, to_channels
from ninshiki.match.database import ObjectDatabase
from ninshiki.match.features import FeatureExtractor, ImageLike, LocalFeatures, as_gray
from ninshiki.match.geometry import MIN_POINTS, Model, fit_transform, is_plausible, project, refit
from ninshiki.match.matching import match_descriptors
from ninshiki.match.voting import hough_clusters, predict_poses
from ninshiki.viz._render import save_png
from ninshiki.viz.detections import class_color, default_font_size, default_line_width

DUPLICATE_IOU = 0.5   # an accepted instance overlapping an earlier one of the same object this much is the same


@dataclass(frozen=True)
class Recognition:
    """One instance of a registered object found in a scene.

    Attributes:
        name, label: the object.
        reference: index of the reference view that matched (into `ObjectDatabase.references`).
        outline: (4, 2) float64 the reference outline projected into the scene, in scene pixels.
        inliers: matches consistent with `homography`.
        score: inliers / reference keypoints that project inside the scene, in [0, 1].
        homography: (3, 3) float64 map from reference pixels to scene pixels.
        reference_xy, scene_xy: (inliers, 2) float32 the inlier matches' positions.
    """

    name: str
    label: int
    reference: int
    outline: np.ndarray
    inliers: int
    score: float
    homography: np.ndarray
    reference_xy: np.ndarray
    scene_xy: np.ndarray


@dataclass(frozen=True)
class _Matches:
    reference: np.ndarray   # (M,) int64 reference index
    ref_index: np.ndarray   # (M,) int64 keypoint index within that reference
    scene_index: np.ndarray  # (M,) int64 scene keypoint index


def find(database: ObjectDatabase, scene: ImageLike, *, extractor: FeatureExtractor, ratio: float = 0.8,
         min_inliers: int = 10, mutual: bool = False, model: Model = "homography", threshold: float = 4.0,
         max_scale_change: float = 8.0) -> list[Recognition]:
    """Recognise the registered objects in a scene, one result per instance found.

    Args:
        database: the registered objects.
        scene: an image file, an (H, W) grayscale array, or a (C, H, W) uint8 array/tensor.
        extractor: must give the database's kind of descriptors.
        ratio: Lowe's ratio test threshold.
        min_inliers: the fewest verified matches of an accepted instance.
        mutual: require mutual nearest neighbours (see the module docstring).
        model: "homography" or "affine".
        threshold: RANSAC's reprojection threshold in scene pixels.
        max_scale_change: the largest plausible scale change between reference and scene.

    Returns:
        The instances, most inliers first.
    """
    if database.descriptor is not None and extractor.name != database.descriptor:
        raise ValueError(f"the database holds {database.descriptor} descriptors; the extractor gives {extractor.name}")
    gray = as_gray(scene)
    features = extractor.extract(gray)
    matches = _match_all(database, features, ratio=ratio, mutual=mutual)
    if len(matches.scene_index) == 0:
        return []
    ref_xy, ref_scale, ref_angle = _reference_geometry(database, matches)
    centres = np.stack([r.centre for r in database.references])[matches.reference]        # (M, 2)
    poses = predict_poses(ref_xy, ref_scale, ref_angle, features.xy[matches.scene_index],
                          features.scale[matches.scene_index], features.angle[matches.scene_index], centres)
    sizes = np.array([max(r.size) for r in database.references], np.float64)             # (R,)
    clusters = hough_clusters(poses, matches.reference, sizes)
    scene_xy = features.xy[matches.scene_index].astype(np.float64)                        # (M, 2)
    used = np.zeros(len(features), bool)                                                  # scene keypoints taken
    found: list[Recognition] = []
    for cluster in clusters:
        members = cluster.matches[~used[matches.scene_index[cluster.matches]]]
        if len(members) < MIN_POINTS[model]:
            continue
        matrix, _ = fit_transform(ref_xy[members], scene_xy[members], model=model, threshold=threshold)
        if matrix is None:
            continue
        same = np.flatnonzero((matches.reference == cluster.reference) & ~used[matches.scene_index])
        matrix, inliers = refit(ref_xy[same], scene_xy[same], matrix, model=model, threshold=threshold)
        reference = database.references[cluster.reference]
        if inliers.sum() < min_inliers or not is_plausible(matrix, reference.outline,
                                                           max_scale_change=max_scale_change):
            continue
        chosen = same[inliers]
        used[matches.scene_index[chosen]] = True
        result = _recognition(database, cluster.reference, matrix, ref_xy[chosen], scene_xy[chosen], gray.shape)
        if not any(r.label == result.label and _iou(r.outline, result.outline) > DUPLICATE_IOU for r in found):
            found.append(result)
    return sorted(found, key=lambda r: -r.inliers)


def _match_all(database: ObjectDatabase, features: LocalFeatures, *, ratio: float, mutual: bool) -> _Matches:
    """Scene -> reference matches for every reference, concatenated."""
    parts = []
    for index, reference in enumerate(database.references):
        pairs, _ = match_descriptors(features.descriptors, reference.features.descriptors, ratio=ratio, mutual=mutual)
        parts.append(np.column_stack([np.full(len(pairs), index), pairs[:, 1], pairs[:, 0]]))   # (m, 3)
    stacked = np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, 3), np.int64)  # (M, 3)
    return _Matches(stacked[:, 0], stacked[:, 1], stacked[:, 2])


def _reference_geometry(database: ObjectDatabase, matches: _Matches) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Position (M, 2) float64, scale (M,) and angle (M,) of each match's reference keypoint."""
    xy = np.zeros((len(matches.reference), 2))
    scale, angle = np.zeros(len(xy)), np.zeros(len(xy))
    for index, reference in enumerate(database.references):
        rows = matches.reference == index
        keypoints = reference.features
        xy[rows] = keypoints.xy[matches.ref_index[rows]]
        scale[rows] = keypoints.scale[matches.ref_index[rows]]
        angle[rows] = keypoints.angle[matches.ref_index[rows]]
    return xy, scale, angle


def _recognition(database: ObjectDatabase, index: int, matrix: np.ndarray, ref_xy: np.ndarray, scene_xy: np.ndarray,
                 scene_shape: tuple[int, int]) -> Recognition:
    reference = database.references[index]
    projected = project(matrix, reference.features.xy)                                    # (N, 2)
    height, width = scene_shape
    visible = np.sum((projected[:, 0] >= -0.5) & (projected[:, 0] <= width - 0.5)
                     & (projected[:, 1] >= -0.5) & (projected[:, 1] <= height - 0.5))
    score = min(1.0, len(ref_xy) / max(int(visible), 1))
    return Recognition(database.names[reference.label], reference.label, index, project(matrix, reference.outline),
                       len(ref_xy), score, matrix, ref_xy.astype(np.float32), scene_xy.astype(np.float32))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two convex polygons."""
    a32, b32 = np.asarray(a, np.float32), np.asarray(b, np.float32)
    inter, _ = cv2.intersectConvexConvex(a32, b32)
    union = cv2.contourArea(a32) + cv2.contourArea(b32) - inter
    return float(inter / union) if union > 0 else 0.0


def draw_recognitions(scene: ImageLike, recognitions: list[Recognition],
                      path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """The scene with each recognised outline and "name (inliers)"; written as a PNG when `path` is given.

    Shape:
        - Output: (H, W, 3) uint8.
    """
    canvas = Image.fromarray(_as_rgb(scene))
    draw = ImageDraw.Draw(canvas)
    width = default_line_width(canvas.height, canvas.width) * 2
    font = ImageFont.load_default(size=default_font_size(canvas.height, canvas.width))
    for recognition in recognitions:
        colour = class_color(recognition.label)
        corners = [tuple(p) for p in recognition.outline.tolist()]
        draw.line(corners + corners[:1], fill=colour, width=width, joint="curve")
        x, y = recognition.outline[np.argmin(recognition.outline.sum(axis=1))]      # the top-left-most corner
        draw.text((float(x), float(y)), f"{recognition.name} ({recognition.inliers})", fill=colour, font=font,
                  anchor="lb", stroke_width=1, stroke_fill=(0, 0, 0))
    image = np.asarray(canvas).copy()                                                # (H, W, 3)
    if path is not None:
        save_png(image, path)
    return image


def draw_matches(reference: ImageLike, scene: ImageLike, reference_xy: np.ndarray, scene_xy: np.ndarray,
                 path: str | os.PathLike[str] | None = None, *, outline: np.ndarray | None = None,
                 max_lines: int = 300) -> np.ndarray:
    """Reference and scene side by side with a line per match (at most `max_lines`, evenly chosen), and the
    scene outline when given; written as a PNG when `path` is given.

    Shape:
        - reference_xy, scene_xy: (M, 2) positions in each image; outline: (K, 2) in scene pixels.
        - Output: (max(h, H), w + W, 3) uint8 for a reference of h x w and a scene of H x W.
    """
    left, right = _as_rgb(reference), _as_rgb(scene)
    height = max(left.shape[0], right.shape[0])
    canvas = np.zeros((height, left.shape[1] + right.shape[1], 3), np.uint8)            # (H, w + W, 3)
    canvas[:left.shape[0], :left.shape[1]] = left
    canvas[:right.shape[0], left.shape[1]:] = right
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    shift = np.array([left.shape[1], 0.0])
    reference_xy, scene_xy = np.asarray(reference_xy).reshape(-1, 2), np.asarray(scene_xy).reshape(-1, 2)
    chosen = np.unique(np.linspace(0, len(reference_xy) - 1, min(max_lines, len(reference_xy))).round().astype(int))
    for i in chosen:
        start, end = reference_xy[i], scene_xy[i] + shift
        draw.line([tuple(start.tolist()), tuple(end.tolist())], fill=class_color(int(i)), width=1)
    if outline is not None:
        corners = [tuple(p) for p in (np.asarray(outline) + shift).tolist()]
        draw.line(corners + corners[:1], fill=(0, 255, 0), width=default_line_width(*canvas.shape[:2]) * 2)
    image = np.asarray(picture).copy()
    if path is not None:
        save_png(image, path)
    return image


def _as_rgb(image: ImageLike) -> np.ndarray:
    """(H, W, 3) uint8 from the image forms `as_gray` accepts."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, channels=3).permute(1, 2, 0).numpy()
    tensor = torch.as_tensor(image)
    if tensor.dtype != torch.uint8 or tensor.ndim not in (2, 3) or (tensor.ndim == 3 and tensor.shape[0] not in (1, 3)):
        raise ValueError(f"expected an (H, W) or (C, H, W) uint8 image, got {tensor.dtype} {tuple(tensor.shape)}")
    tensor = tensor.cpu()[None] if tensor.ndim == 2 else tensor.cpu()
    return to_channels(tensor, 3).permute(1, 2, 0).contiguous().numpy()
