"""LIFT's three training losses (Yi et al., ECCV 2016, section 3.3), one per stage, on a batch of corresponding
keypoints in pairs of views (`lift_train.PairBatch`).

- DESC: the paper used hard-negative mining on pairs (Simo-Serra et al., ICCV 2015); here the triplet margin
  loss with the hardest negative in the batch (Mishchuk et al., "Working hard to know your neighbor's margins",
  HardNet, NeurIPS 2017), which needs no mining pass: for each pair, the closest non-matching descriptor of
  either view is the negative.
- ORI: the paper's loss, the descriptor distance between the two views' patches re-sampled at the predicted
  orientations (DESC fixed). Deviation: a second term asks directly that the two predicted angles differ by the
  rotation H applies at the point (known here, unknown from SfM data), and view2's patches are turned by a
  random extra angle so that ORI learns all 360 degrees, not only the homographies' +-30.
- DET: the paper's pair term, DESC's loss on patches cut where DET's soft argmax puts the keypoint (ORI and
  DESC fixed, gradients through the spatial transformers into DET). Deviations, to use every pixel of the
  two views instead of one region per SfM point: DET scores both whole views (resized as one pyramid level),
  view 1's map is warped into view 2 by H, and each 16 x 16 window of view 2 gives one soft-argmax keypoint
  per map; the two must coincide (repeatability, Huber, in pixels) and match (DESC's hardest-negative loss),
  each window's descriptor loss weighted by a reliability, the sigmoid of its soft-max score, against a fixed
  cost (as R2D2, Revaud et al., NeurIPS 2019, does: the absolute score learns which windows match well,
  the role of the paper's classification term); and a peakiness term (the windows' softmax entropy) rules
  out flat maps, whose window centres would trivially coincide.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from ninshiki.models.match.lift import LIFT
from ninshiki.models.match.lift_nets import standardise
from ninshiki.models.match.lift_patches import Pyramid, sample_patches

if TYPE_CHECKING:
    from ninshiki.models.match.lift_train import PairBatch


def hardest_negative_loss(a: Tensor, b: Tensor, *, margin: float = 1.0, exclude: Tensor | None = None,
                          reduce: bool = True) -> Tensor:
    """Triplet margin loss with the hardest in-batch negative: mean of relu(margin + d(a_i, b_i) - n_i), n_i the
    smallest d(a_i, b_j) or d(a_j, b_i) over j != i not excluded.

    Args:
        a, b: descriptors of matching pairs, row i of each.
        margin: the required gap between the positive distance and the hardest negative.
        exclude: pairs (i, j) that must not serve as negatives (near-identical patches).
        reduce: the mean, else each pair's loss (0 for a pair without any negative).

    Shape:
        - a, b: (N, D), N >= 2; exclude: (N, N) bool. Output: scalar, or (N,) when not `reduce`.
    """
    distance = torch.cdist(a, b)                                                  # (N, N)
    positive = distance.diagonal()
    blocked = torch.eye(len(a), dtype=torch.bool, device=a.device)
    if exclude is not None:
        blocked = blocked | exclude | exclude.T
    masked = distance.masked_fill(blocked, float("inf"))
    negative = torch.minimum(masked.min(dim=1).values, masked.min(dim=0).values)   # (N,)
    valid = torch.isfinite(negative)
    losses = torch.where(valid, F.relu(margin + positive - negative.masked_fill(~valid, 0)), positive * 0)
    if not reduce:
        return losses
    return losses[valid].mean() if valid.any() else distance.sum() * 0


def describe_at(model: LIFT, pyramid: Pyramid, index: Tensor, xy: Tensor, diameter: Tensor,
                angle: Tensor) -> Tensor:
    """DESC of the patches at the given keypoints of a batch of images (`index`: the image of each).

    Shape:
        - index, diameter, angle: (N,); xy: (N, 2). Output: (N, D).
    """
    return model.describe(sample_patches(pyramid, xy, diameter, angle, patch_size=model.patch_size,
                                         image_index=index))


def orient_at(model: LIFT, pyramid: Pyramid, index: Tensor, xy: Tensor, diameter: Tensor,
              turn: Tensor | None = None) -> Tensor:
    """ORI's angles (degrees) of the patches at the given keypoints; `turn` rotates the content by that many
    degrees first (the patch ORI sees is sampled at angle -turn).

    Shape:
        - index, diameter, turn: (N,); xy: (N, 2). Output: (N,).
    """
    start = torch.zeros_like(diameter) if turn is None else -turn
    patches = sample_patches(pyramid, xy, diameter, start, patch_size=model.patch_size, image_index=index)
    vectors = model.orientation_vectors(patches)                                   # (N, 2)
    return torch.rad2deg(torch.atan2(vectors[:, 1], vectors[:, 0]))


def desc_loss(model: LIFT, batch: PairBatch, *, margin: float = 1.0) -> Tensor:
    """Stage 1: DESC on patches at SIFT's positions, scales and orientations carried into view 2 by H."""
    d1 = describe_at(model, batch.pyramid1, batch.index, batch.xy1, batch.diameter1, batch.angle1)
    d2 = describe_at(model, batch.pyramid2, batch.index, batch.xy2, batch.diameter2, batch.angle2)
    return hardest_negative_loss(d1, d2, margin=margin, exclude=batch.exclude)


def ori_loss(model: LIFT, batch: PairBatch, *, covariance_weight: float = 1.0) -> Tensor:
    """Stage 2: the descriptor distance after orienting each view's patch by ORI, plus the covariance term."""
    turn = (torch.rand(len(batch.xy1), device=batch.xy1.device) * 2 - 1) * 180    # (N,) extra rotation of view 2
    angle1 = orient_at(model, batch.pyramid1, batch.index, batch.xy1, batch.diameter1)
    angle2 = orient_at(model, batch.pyramid2, batch.index, batch.xy2, batch.diameter2, turn)   # turned frame
    d1 = describe_at(model, batch.pyramid1, batch.index, batch.xy1, batch.diameter1, angle1)
    d2 = describe_at(model, batch.pyramid2, batch.index, batch.xy2, batch.diameter2, angle2 - turn)  # unturned
    distance = (d1 - d2).norm(dim=1).mean()
    error = torch.deg2rad(angle2 - angle1 - batch.rotation - turn)
    return distance + covariance_weight * (1 - torch.cos(error)).mean()


def window_soft_argmax(scores: Tensor, window: int, beta: float) -> tuple[Tensor, Tensor, Tensor]:
    """The softmax(beta * score)-weighted mean position and score in each non-overlapping window x window tile.

    Returns:
        positions in map pixels (x, y), the soft maximum of the scores, and the tile each belongs to as
        (image, tile row, tile column).

    Shape:
        - scores: (B, 1, h, w). Output: (B * T, 2), (B * T,) float and (B * T, 3) int64,
          T = (h // window) * (w // window).
    """
    b, _, h, w = scores.shape
    rows, cols = h // window, w // window
    tiles = scores[:, 0, :rows * window, :cols * window].reshape(b, rows, window, cols, window)
    tiles = tiles.permute(0, 1, 3, 2, 4).reshape(b * rows * cols, window * window)   # (B * T, window^2)
    weights = torch.softmax(beta * tiles, dim=1).view(-1, window, window)
    offsets = torch.arange(window, dtype=scores.dtype, device=scores.device)
    inner = torch.stack([(weights.sum(1) * offsets).sum(1), (weights.sum(2) * offsets).sum(1)], dim=1)
    tile = torch.stack(torch.meshgrid(torch.arange(b), torch.arange(rows), torch.arange(cols), indexing="ij"),
                       dim=-1).reshape(-1, 3).to(scores.device)                  # (B * T, 3)
    flat = weights.view(len(tiles), -1)
    pooled = (flat * tiles).sum(1)                                               # (B * T,)
    entropy = -(flat * flat.clamp_min(1e-12).log()).sum(1)                      # (B * T,)
    return inner + tile[:, [2, 1]].to(scores.dtype) * window, pooled, entropy, tile


def _level_matrix(scale: float, device: torch.device) -> Tensor:
    """Image pixels -> pixels of the image resized by `scale` (pixel centres at integers)."""
    offset = 0.5 * scale - 0.5
    return torch.tensor([[scale, 0, offset], [0, scale, offset], [0, 0, 1]], dtype=torch.float32, device=device)


def _apply(matrix: Tensor, xy: Tensor) -> Tensor:
    """Homographies applied to points: one (3, 3) for all, or (N, 3, 3) one each; xy (N, 2) -> (N, 2)."""
    matrix = matrix.expand(len(xy), 3, 3)
    mapped = torch.einsum("nij,nj->ni", matrix, F.pad(xy, (0, 1), value=1.0))   # (N, 3)
    return mapped[:, :2] / mapped[:, 2:]


def det_loss(model: LIFT, batch: PairBatch, *, scale: float = 1.0, window: int = 16, beta: float = 10.0,
             margin: float = 1.0, repeat_weight: float = 1.0, reliability_cost: float = 0.5, peak_weight: float = 1.0, max_windows: int = 128,
             max_pairs: int = 3) -> Tensor:
    """Stage 3: DET's soft-argmax keypoint in each window of view 2, of its own map and of view 1's map warped
    by H, must coincide (repeatability, in pixels, Huber) and give matching descriptors (DESC's hardest-negative
    loss, patches oriented by ORI). Both views are resized by `scale`, as for one level of the pyramid.

    Shape:
        - Output: scalar.
    """
    device = batch.view1.device
    size = (round(batch.view1.shape[-2] * scale), round(batch.view1.shape[-1] * scale))
    views = [v[:max_pairs] for v in (batch.view1, batch.view2)]                   # DET's cost grows with the area
    if scale != 1:
        views = [F.interpolate(v, size=size, mode="bilinear", antialias=True, align_corners=False) for v in views]
    level = _level_matrix(size[1] / batch.view1.shape[-1], device)
    homography = level @ batch.homography[:max_pairs] @ torch.linalg.inv(level)  # (B, 3, 3) at this level
    score1, score2 = (model.detector(standardise(v)) for v in views)             # (B, 1, h, w) each
    warped1, valid = _warp_scores(score1, homography, views[1])                  # view 1's map in view 2's frame
    xy2, pooled2, entropy2, tile = window_soft_argmax(score2, window, beta)      # (B * T, 2) level pixels
    xy1_in_2, pooled1, entropy1, _ = window_soft_argmax(warped1, window, beta)
    usable = _full_tiles(valid, window)[tile[:, 0], tile[:, 1], tile[:, 2]]       # (B * T,)
    chosen = torch.nonzero(usable).squeeze(1)
    chosen = chosen[torch.randperm(len(chosen), device=device)[:max_windows]]
    if len(chosen) < 2:
        return score1.sum() * 0 + score2.sum() * 0
    index = tile[chosen, 0]
    xy1_in_2 = xy1_in_2[chosen]                                                  # (N, 2) view 2, level pixels
    xy1_level = _apply(torch.linalg.inv(homography)[index], xy1_in_2)           # (N, 2) view 1, level pixels
    repeat = F.huber_loss(xy1_in_2, xy2[chosen], delta=1.0)
    to_image = torch.linalg.inv(level)
    xy1, xy2_image = _apply(to_image, xy1_level), _apply(to_image, xy2[chosen])   # (N, 2) image pixels
    diameter = torch.full((len(chosen),), model.patch_size * batch.view1.shape[-1] / size[1], device=device)
    d1 = describe_at(model, batch.pyramid1, index, xy1, diameter,
                     orient_at(model, batch.pyramid1, index, xy1, diameter))
    d2 = describe_at(model, batch.pyramid2, index, xy2_image, diameter,
                     orient_at(model, batch.pyramid2, index, xy2_image, diameter))
    matching = hardest_negative_loss(d1, d2, margin=margin, reduce=False)        # (N,)
    reliability = torch.sigmoid((pooled1[chosen] + pooled2[chosen]) / 2)         # (N,) in (0, 1)
    weighted = reliability * matching + (1 - reliability) * reliability_cost
    peaky = (entropy1[chosen] + entropy2[chosen]).mean() / (2 * math.log(window * window))   # 1 when flat
    return weighted.mean() + repeat_weight * repeat + peak_weight * peaky


def _warp_scores(scores: Tensor, homography: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Score maps of view 1 resampled in view 2's pixels, and where that is defined (inside view 1).

    Shape:
        - scores: (B, 1, h, w); homography: (B, 3, 3) view 1 -> view 2 level pixels; target: (B, 1, h2, w2).
        - Output: (B, 1, h2, w2) and (B, h2, w2) bool.
    """
    b, _, h, w = scores.shape
    h2, w2 = target.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h2, dtype=scores.dtype), torch.arange(w2, dtype=scores.dtype),
                            indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).view(1, -1, 3).to(scores.device)  # (1, h2 w2, 3)
    source = points @ torch.linalg.inv(homography).transpose(1, 2)               # (B, h2 w2, 3)
    source = source[..., :2] / source[..., 2:]
    valid = ((source[..., 0] >= 0) & (source[..., 0] <= w - 1) & (source[..., 1] >= 0) & (source[..., 1] <= h - 1))
    grid = (source + 0.5) / source.new_tensor([w, h]) * 2 - 1
    warped = F.grid_sample(scores, grid.view(b, h2, w2, 2), mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    return warped, valid.view(b, h2, w2)


def _full_tiles(valid: Tensor, window: int) -> Tensor:
    """(B, rows, cols) True for the tiles whose every pixel is valid."""
    b, h, w = valid.shape
    rows, cols = h // window, w // window
    tiles = valid[:, :rows * window, :cols * window].reshape(b, rows, window, cols, window)
    return tiles.all(dim=4).all(dim=2)
