"""Multi-scale sliding-window detection with a Haar cascade (Viola & Jones, "Rapid object detection using a boosted
cascade of simple features", CVPR 2001), reproducing `cv2.CascadeClassifier.detectMultiScale` window for window.

OpenCV's procedure (modules/objdetect/src/cascadedetect.cpp), followed exactly:

* Scales: factor = 1, s, s^2, ... (double) while the window, rounded, fits the image, stored as float32; those whose
  window falls inside [min_size, max_size] are kept (when none is, the one closest to min_size). At scale f the
  image is resized to (round(W / f), round(H / f)) with INTER_LINEAR_EXACT (plain INTER_LINEAR finds other
  windows) and the cascade's own window slides
  over it in steps of 2 pixels (1 from f >= 2 on). Rows are cut into stripes as OpenCV's parallel loop does, which
  can leave out the last row of windows. Along a row, a window rejected by the first stage makes the scan skip the
  next one.
* A window (w, h) is normalised by its inner rectangle (1, 1, w - 2, h - 2) of area A, pixel sum s and square sum
  q: vnf = 1 / sqrt(A q - s^2). Windows with A vnf >= 0.1 (a standard deviation under about 10 grey levels) or
  A q - s^2 <= 0 are skipped. A feature's value is (w0 S0 + w1 S1 + w2 S2) vnf in float32 (S = the rectangles'
  pixel sums); a stump adds `left` if value < threshold else `right`; a stage passes when the sum (float64, in
  stump order) is >= its threshold minus 1e-5 (OpenCV's THRESHOLD_EPS). Scale is carried by resizing the image,
  never the features, so a feature's numbers are the same at every scale.
* A window that passes every stage gives the box (round(x f), round(y f), round(w f), round(h f)) in the image;
  boxes are grouped by `group_rectangles` with eps 0.2 (OpenCV's `groupRectangles`), then cut to the image (a
  window's rounded size can overhang the border by a pixel or more).

Vectorised: at each scale the first stage (and the next ones while over a quarter of the windows survive) runs on
every window of the grid at once, by strided slices of the integral image's difference tables; the survivors go
through the remaining stages together, by gathers, two look-ups per rectangle.

Scores (OpenCV has none): with n the number of raw windows grouped into a box and m the mean of their margins
over the last stage's threshold, score = t / (1 + t) with t = n + sigmoid(m). It lies in (0, 1), orders boxes by
n first and by m among equal n, and does not depend on the image.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ninshiki.classical.haar.cascade import HaarCascade
from ninshiki.classical.haar.integral import (
    difference_tables,
    integral_images,
    rect_corners,
    tilted_integral,
    window_grid_sums,
)

THRESHOLD_EPS = np.float32(1e-5)   # OpenCV subtracts it from every stage threshold when it loads a cascade
GROUP_EPS = 0.2                    # OpenCV's grouping tolerance in detectMultiScale
_GATHER_CHUNK = 1 << 16            # table look-ups per gather: small enough to stay in cache
_DENSE_FRACTION = 0.25             # run a stage on the whole grid while more windows than this survive


@dataclass(frozen=True)
class CompiledCascade:
    """A cascade as flat arrays, in the float32 precision OpenCV evaluates it in.

    Every rectangle sum is read as `A[plus] - A[minus]` from a difference table A of the integral image
    (`integral.difference_tables`): two look-ups instead of four. Row k of `tables` names table k.
    """
    window: tuple[int, int]        # (width, height)
    tables: np.ndarray             # (K, 2) int64 rows [tilted, width]: the difference tables the cascade reads
    table: np.ndarray              # (F, 3) int64: which table each rectangle reads
    points: np.ndarray             # (F, 3, 2, 2) int64: (x, y) of the plus and minus look-ups, window-relative
    weights: np.ndarray            # (F, 3) float32; 0 for absent rectangles
    feature: np.ndarray            # (S,) int64: the feature each stump reads
    threshold: np.ndarray          # (S,) float32
    left: np.ndarray               # (S,) float32: added when value < threshold
    right: np.ndarray              # (S,) float32
    bounds: np.ndarray             # (T + 1,) int64: stage t owns stumps bounds[t]:bounds[t + 1]
    stage_threshold: np.ndarray    # (T,) float32, THRESHOLD_EPS already subtracted


def compile_cascade(cascade: HaarCascade) -> CompiledCascade:
    """Flatten a `HaarCascade` for `detect_multiscale` (do it once per cascade, not per image)."""
    n = len(cascade.features)
    rects = np.zeros((n, 3, 5), np.float64)   # (F, 3, 5); absent rectangles stay zero (sum 0, weight 0)
    for k, feat in enumerate(cascade.features):
        rects[k, :len(feat.rects)] = feat.rects
    tilted = np.repeat(np.array([feat.tilted for feat in cascade.features], bool).reshape(n, 1), 3, 1)  # (F, 3)
    x, y, w, h = rects[..., :4].astype(np.int64).transpose(2, 0, 1)                                # (F, 3) each
    absent = ~rects.any(-1)   # padding: read any table of the feature at one point twice, giving 0
    x, y, h = (np.where(absent, 0, v) for v in (x, y, h))
    w, tilted = np.where(absent, w[:, :1], w), np.where(absent, tilted[:, :1], tilted)
    # upright: D_w[y + h, x] - D_w[y, x]; tilted: E_w[y, x] - E_w[y + h, x - h] (integral.difference_tables)
    plus = np.stack([x, np.where(tilted, y, y + h)], -1)                                              # (F, 3, 2)
    minus = np.stack([np.where(tilted, x - h, x), np.where(tilted, y + h, y)], -1)                   # (F, 3, 2)
    keys, table = np.unique(np.stack([tilted, w], -1).reshape(-1, 2), axis=0, return_inverse=True)
    stumps = [stump for stage in cascade.stages for stump in stage.stumps]
    sizes = [len(stage.stumps) for stage in cascade.stages]
    return CompiledCascade(
        window=(int(cascade.window[0]), int(cascade.window[1])), tables=keys.astype(np.int64),
        table=table.reshape(n, 3).astype(np.int64), points=np.stack([plus, minus], 2),
        weights=rects[..., 4].astype(np.float32),
        feature=np.array([s.feature for s in stumps], np.int64),
        threshold=np.array([s.threshold for s in stumps], np.float32),
        left=np.array([s.left for s in stumps], np.float32), right=np.array([s.right for s in stumps], np.float32),
        bounds=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        stage_threshold=np.array([s.threshold for s in cascade.stages], np.float32) - THRESHOLD_EPS)


def pyramid_scales(window: tuple[int, int], image_size: tuple[int, int], scale_factor: float,
                   min_size: tuple[int, int] = (0, 0), max_size: tuple[int, int] = (0, 0)) -> list[np.float32]:
    """OpenCV's scale factors for an image of `image_size` (width, height); sizes are (width, height), 0 = none."""
    if not scale_factor > 1:
        raise ValueError(f"scale_factor must be > 1, got {scale_factor}")
    (ww, wh), (iw, ih) = window, image_size
    if iw < ww or ih < wh:
        return []
    max_w, max_h = max_size if max_size[0] and max_size[1] else (iw, ih)
    every, factor = [], 1.0
    while round(ww * factor) <= iw and round(wh * factor) <= ih:   # round(): half to even, like cvRound
        every.append(np.float32(factor))
        factor *= scale_factor
    sizes = [(int(np.rint(np.float32(ww) * f)), int(np.rint(np.float32(wh) * f))) for f in every]
    chosen = []
    for f, (w, h) in zip(every, sizes):
        if w > max_w or h > max_h:
            break
        if w >= min_size[0] and h >= min_size[1]:
            chosen.append(f)
    if not chosen and every:   # OpenCV then scans the one scale closest to min_size
        distances = [(min_size[0] - w) ** 2 + (min_size[1] - h) ** 2 for w, h in sizes]
        chosen.append(every[int(np.argmin(distances))])
    return chosen


def detect_multiscale(cascade: HaarCascade | CompiledCascade, gray: np.ndarray, *, scale_factor: float = 1.1,
                      min_neighbors: int = 3, min_size: tuple[int, int] = (0, 0),
                      max_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detect objects at every scale, as `cv2.CascadeClassifier.detectMultiScale` with the same arguments.

    Args:
        cascade: the cascade (compile it with `compile_cascade` when detecting in many images).
        gray: the image; color images must be converted first (OpenCV: `cvtColor(..., COLOR_BGR2GRAY)`).
        scale_factor: ratio between consecutive scales (> 1).
        min_neighbors: a box needs more than this many grouped raw windows; 0 returns the raw windows.
        min_size, max_size: (width, height) limits of the boxes; None or (0, 0) = no upper limit.

    Returns:
        boxes (N, 4) int64 xywh in image pixels, neighbours (N,) int64 (raw windows grouped into each box) and
        scores (N,) float64 in (0, 1) (module docstring), highest score first.

    Shape:
        gray: (H, W) uint8.
    """
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"detect_multiscale needs a grayscale (H, W) uint8 image, got {gray.dtype} {gray.shape}")
    cc = cascade if isinstance(cascade, CompiledCascade) else compile_cascade(cascade)
    h, w = gray.shape
    scales = pyramid_scales(cc.window, (w, h), scale_factor, tuple(min_size), tuple(max_size or (0, 0)))
    raw, margins = _raw_windows(cc, gray, scales)
    boxes, neighbours, classes = group_rectangles(raw, min_neighbors, GROUP_EPS)
    sums = np.bincount(classes[classes >= 0], margins[classes >= 0], minlength=len(boxes))
    mean = sums / np.maximum(neighbours, 1)
    t = neighbours + 1.0 / (1.0 + np.exp(-mean))
    scores = t / (1.0 + t)
    lo = np.maximum(boxes[:, :2], 0)                                   # OpenCV's clipObjects: boxes & image
    hi = np.minimum(boxes[:, :2] + boxes[:, 2:], [w, h])
    keep = (hi > lo).all(1)
    boxes, neighbours, scores = np.concatenate([lo, hi - lo], 1)[keep], neighbours[keep], scores[keep]
    order = np.lexsort((boxes[:, 1], boxes[:, 0], -scores))   # ties (equal n and m) by position: deterministic
    return boxes[order], neighbours[order], scores[order]


def _raw_windows(cc: CompiledCascade, gray: np.ndarray, scales: list[np.float32]) -> tuple[np.ndarray, np.ndarray]:
    """Every window that passes all stages: boxes (N, 4) int64 xywh in image pixels, last-stage margins (N,)."""
    ww, wh = cc.window
    ih, iw = gray.shape
    levels = []
    for f in scales:
        size = (int(np.rint(np.float32(iw) / f)), int(np.rint(np.float32(ih) / f)))
        levels.append((f, size, 1 if f >= 2 else 2, max(size[0] + 1 - ww, 0), max(size[1] + 1 - wh, 0)))
    boxes, margins = [np.zeros((0, 4), np.int64)], [np.zeros(0)]
    stripes = int(np.ceil(levels[0][3] / 32.0)) if levels else 0   # OpenCV's parallel stripes, from scale 0
    for f, size, step, work_w, work_h in levels:
        if stripes == 0:
            break
        stripe = max((work_h // step + stripes - 1) // stripes, 1) * step
        rows = len(range(0, min(stripes * stripe, work_h), step))
        cols = len(range(0, work_w, step))
        if rows == 0 or cols == 0:
            continue
        level = gray if size == (iw, ih) else cv2.resize(gray, size, interpolation=cv2.INTER_LINEAR_EXACT)
        xs, ys, margin = _detect_level(cc, level, step, rows, cols)
        x0 = np.rint(xs.astype(np.float32) * f).astype(np.int64)
        y0 = np.rint(ys.astype(np.float32) * f).astype(np.int64)
        size_w, size_h = int(np.rint(np.float32(ww) * f)), int(np.rint(np.float32(wh) * f))
        boxes.append(np.stack([x0, y0, np.full_like(x0, size_w), np.full_like(x0, size_h)], 1))  # (n, 4)
        margins.append(margin)
    return np.concatenate(boxes), np.concatenate(margins)


def _detect_level(cc: CompiledCascade, level: np.ndarray, step: int, rows: int,
                  cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the cascade on the (rows, cols) window grid of one resized image.

    Returns:
        x (N,), y (N,) int64 of the accepted windows in this level's pixels, and their last-stage margins (N,).
    """
    ii, sq = integral_images(level)
    tables = difference_tables(ii, tilted_integral(level) if cc.tables[:, 0].any() else None, cc.tables)
    ww, wh = cc.window
    norm = rect_corners(1, 1, ww - 2, wh - 2)
    area = float((ww - 2) * (wh - 2))
    s = window_grid_sums(ii, norm, step, rows, cols).astype(np.float64)
    nf = area * window_grid_sums(sq, norm, step, rows, cols) - s * s   # exact: integers below 2^53
    vnf = np.ones(nf.shape, np.float32)                                   # (rows, cols)
    vnf[nf > 0] = (1.0 / np.sqrt(nf[nf > 0])).astype(np.float32)
    valid = (nf > 0) & (area * vnf.astype(np.float64) < 0.1)

    total = _dense_stage(cc, 0, tables, vnf, step, rows, cols)
    passed = total >= cc.stage_threshold[0]
    keep = _visited(valid & ~passed) & valid & passed
    t = 1
    while t < len(cc.stage_threshold) and keep.mean() > _DENSE_FRACTION:   # slices beat gathers while most pass
        total = _dense_stage(cc, t, tables, vnf, step, rows, cols)
        keep &= total >= cc.stage_threshold[t]
        t += 1
    gy, gx = np.nonzero(keep)
    xs, ys = gx * step, gy * step
    margin, vnf = total[keep] - cc.stage_threshold[t - 1], vnf[keep]

    _, th, tw = tables.shape
    points = cc.table[..., None] * (th * tw) + cc.points[..., 1] * tw + cc.points[..., 0]   # (F, 3, 2) flat
    flat = tables.reshape(-1)
    for stage in range(t, len(cc.stage_threshold)):
        if len(xs) == 0:
            break
        total = _gathered_stage(cc, stage, flat, points, ys * tw + xs, vnf)
        ok = total >= cc.stage_threshold[stage]
        xs, ys, vnf, margin = xs[ok], ys[ok], vnf[ok], total[ok] - cc.stage_threshold[stage]
    return xs, ys, margin


def _dense_stage(cc: CompiledCascade, t: int, tables: np.ndarray, vnf: np.ndarray, step: int, rows: int,
                 cols: int) -> np.ndarray:
    """Stage t's sum in every window of the grid, by strided slices of the difference tables.

    Shape:
        tables: (K, H + 1, W + 1); vnf: (rows, cols) float32.
        returns: (rows, cols) float64, accumulated in stump order like OpenCV.
    """
    def grid(k: int, point: np.ndarray) -> np.ndarray:   # table k at `point` of every grid window: (rows, cols)
        x, y = int(point[0]), int(point[1])
        return tables[k, y:y + step * (rows - 1) + 1:step, x:x + step * (cols - 1) + 1:step]

    total = np.zeros((rows, cols))   # (rows, cols)
    for k in range(cc.bounds[t], cc.bounds[t + 1]):
        f = cc.feature[k]
        value = np.zeros((rows, cols), np.float32)
        for r in np.flatnonzero(cc.weights[f]):
            sums = grid(cc.table[f, r], cc.points[f, r, 0]) - grid(cc.table[f, r], cc.points[f, r, 1])
            value = value + cc.weights[f, r] * sums.astype(np.float32)
        total += np.where(value * vnf < cc.threshold[k], cc.left[k], cc.right[k])
    return total


def _visited(rejected_first: np.ndarray) -> np.ndarray:
    """Which grid windows OpenCV evaluates: along a row, a window rejected by stage 0 makes it skip the next.

    In a run of consecutive stage-0 rejections the scan lands on every other window, starting with the first;
    the window right after a run is skipped when the run's last window was landed on.

    Shape:
        rejected_first: (rows, cols) bool, valid windows that stage 0 rejects.
        returns: (rows, cols) bool.
    """
    rows, cols = rejected_first.shape
    col = np.broadcast_to(np.arange(cols), (rows, cols))
    run_start = np.maximum.accumulate(np.where(rejected_first, -1, col), axis=1) + 1   # (rows, cols)
    landed_rejection = rejected_first & ((col - run_start) % 2 == 0)
    skipped = np.zeros_like(rejected_first)
    skipped[:, 1:] = landed_rejection[:, :-1]
    return np.where(rejected_first, landed_rejection, ~skipped)


def _gathered_stage(cc: CompiledCascade, t: int, flat: np.ndarray, points: np.ndarray, base: np.ndarray,
                    vnf: np.ndarray) -> np.ndarray:
    """Stage t's sum for the windows whose top-left index in a table is `base`.

    Arrays are stump-major, (k, n), so the sum over stumps reduces the outer axis: numpy adds the rows one after
    the other, in stump order like OpenCV (a contiguous inner axis would be summed pairwise).

    Shape:
        flat: (K * (H + 1) * (W + 1),) the difference tables; points: (F, 3, 2) int64 flat plus/minus indices;
        base, vnf: (N,).
        returns: (N,) float64.
    """
    stumps = np.arange(cc.bounds[t], cc.bounds[t + 1])
    feats = cc.feature[stumps]
    groups = [(rows, cc.weights[feats[rows]], points[feats[rows], :n_rects, :, None])   # two- and three-rectangle
              for n_rects, rows in ((2, np.flatnonzero(cc.weights[feats, 2] == 0)),
                                    (3, np.flatnonzero(cc.weights[feats, 2] != 0))) if len(rows)]
    threshold, left, right = (a[stumps, None] for a in (cc.threshold, cc.left, cc.right))   # (k, 1) each
    chunk = max(1, _GATHER_CHUNK // (len(stumps) * 6))
    out = np.empty(len(base))
    for i in range(0, len(base), chunk):
        window = base[i:i + chunk]
        value = np.empty((len(stumps), len(window)), np.float32)              # (k, n)
        for rows, weights, ofs in groups:
            v = flat[ofs + window]                                             # (k', R, 2, n)
            sums = (v[:, :, 0] - v[:, :, 1]).astype(np.float32)                # (k', R, n) rectangle sums
            part = weights[:, 0, None] * sums[:, 0] + weights[:, 1, None] * sums[:, 1]
            value[rows] = part + weights[:, 2, None] * sums[:, 2] if ofs.shape[1] == 3 else part   # OpenCV's order
        leaves = np.where(value * vnf[i:i + chunk] < threshold, left, right)  # (k, n) float32
        out[i:i + chunk] = np.add.reduce(leaves, axis=0, dtype=np.float64)
    return out


def group_rectangles(rects: np.ndarray, group_threshold: int, eps: float = GROUP_EPS
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's `groupRectangles`: cluster similar boxes, average each cluster, drop the weak and the nested.

    Two boxes are similar when every side differs by at most eps * (min width + min height) / 2; clusters are the
    connected components of that relation. A cluster of n boxes becomes their mean (float32, rounded half to
    even, as OpenCV) and is kept when n > group_threshold, unless it lies inside a stronger cluster's box (grown
    by eps) with that cluster's n > max(3, own n) or own n < 3. group_threshold <= 0 returns the boxes unchanged.

    Returns:
        boxes (G, 4) int64 xywh, neighbours (G,) int64 (cluster sizes) and, for every input box, the index of
        the output box it went into, or -1.

    Shape:
        rects: (N, 4) int xywh.
    """
    rects = np.asarray(rects, np.int64).reshape(-1, 4)
    n = len(rects)
    if group_threshold <= 0 or n == 0:
        return rects.copy(), np.ones(n, np.int64), np.arange(n)
    labels = _partition(rects, eps)
    count = np.bincount(labels).astype(np.int64)                                        # (C,)
    sums = np.stack([np.bincount(labels, rects[:, i]) for i in range(4)], 1)            # (C, 4)
    inverse = np.float32(1) / count.astype(np.float32)
    mean = np.rint(sums.astype(np.float32) * inverse[:, None]).astype(np.int64)         # (C, 4)
    strong = count > group_threshold
    x, y, w, h = mean.T
    dx, dy = np.rint(w * eps).astype(np.int64), np.rint(h * eps).astype(np.int64)       # of the outer box
    inside = ((x[:, None] >= x - dx) & (y[:, None] >= y - dy) & (x[:, None] + w[:, None] <= x + w + dx)
              & (y[:, None] + h[:, None] <= y + h + dy))                                   # (C, C): i inside j
    dominated = inside & ((count > np.maximum(3, count[:, None])) | (count[:, None] < 3))
    dominated &= strong[None, :] & ~np.eye(len(count), dtype=bool)
    kept = strong & ~dominated.any(axis=1)
    index = np.full(len(count), -1, np.int64)
    index[kept] = np.arange(int(kept.sum()))
    return mean[kept], count[kept], index[labels]


def _partition(rects: np.ndarray, eps: float) -> np.ndarray:
    """Cluster label (0..C-1) of each box under OpenCV's SimilarRects relation, closed transitively."""
    n = len(rects)
    x1, y1, w, h = rects.T
    x2, y2 = x1 + w, y1 + h
    rows, cols = [], []
    block = max(1, (1 << 22) // n)
    for i in range(0, n, block):
        s = slice(i, i + block)
        delta = eps * (np.minimum(w[s, None], w) + np.minimum(h[s, None], h)) * 0.5      # (b, N)
        similar = ((np.abs(x1[s, None] - x1) <= delta) & (np.abs(y1[s, None] - y1) <= delta)
                   & (np.abs(x2[s, None] - x2) <= delta) & (np.abs(y2[s, None] - y2) <= delta))
        r, c = np.nonzero(similar)
        rows.append(r + i)
        cols.append(c)
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), np.int8), (r, c)), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)
