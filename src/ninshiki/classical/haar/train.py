"""Training Viola and Jones's attentional cascade ("Rapid Object Detection using a Boosted Cascade of Simple
Features", CVPR 2001, section 4; "Robust Real-Time Face Detection", IJCV 2004), as `opencv_traincascade` does it.

Stage by stage, AdaBoost adds stumps until the stage keeps `min_hit_rate` of the positives while passing at most
`max_false_alarm` of the current negatives. The negatives are bootstrapped: the first stage's are background
windows, each later stage's are background windows that the cascade so far accepts (its false positives), so
every stage learns what the earlier ones let through. Positives a stage rejects are dropped from later stages
(as `traincascade` does), so the overall hit rate is about min_hit_rate ** stages and the false-positive rate
about max_false_alarm ** stages. Training stops after `num_stages` or when the backgrounds hold fewer than
`min_negatives` false positives.

Background windows are those the detector scans: every image at scales scale_factor ** k (resized with
INTER_LINEAR, like `CascadeClassifier.detectMultiScale`), every position on a `scan_step` grid, minus windows
overlapping an `exclude` box (objects in the backgrounds) by IoU > 0.3; windows OpenCV skips (inner standard
deviation <= 10) count as scanned and rejected. They are visited in one random order without repetition, so a
stage never holds two copies of a window, and features are computed with the detector's own arithmetic.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
from tqdm.auto import tqdm

from ninshiki.classical.haar.adaboost import BoostedStage, CascadeEvaluator, boost_stage, passing_threshold
from ninshiki.classical.haar.cascade import HaarCascade, HaarFeature, Stage, Stump
from ninshiki.classical.haar.features import (
    FeatureTable,
    compile_features,
    enumerate_features,
    feature_values,
    window_ok,
)

_LOG = logging.getLogger(__name__)
_EXCLUDE_IOU = 0.3


@dataclass
class CascadeTrainConfig:
    window: tuple[int, int] = (24, 24)     # (width, height)
    num_stages: int = 20
    min_hit_rate: float = 0.995            # per stage, on the positives that reach it
    max_false_alarm: float = 0.5           # per stage, on its bootstrapped negatives
    max_weak_per_stage: int = 100
    num_negatives: int = 2000              # per stage
    feature_step: int = 2                  # positions and cell sides on a 2-pixel grid: 12,372 features at 24 x 24
    feature_min_size: int = 1
    scale_factor: float = 1.2              # background scales scale_factor ** k
    scan_step: int = 1                     # background window positions
    min_negatives: int = 50                # stop when fewer false positives remain
    seed: int = 0


@dataclass
class StageReport:
    stage: int
    weak: int                  # stumps
    hit_rate: float            # on the positives that reached the stage
    false_alarm: float         # on its negatives
    positives: int
    negatives: int
    acceptance: float          # fraction of scanned background windows the cascade before this stage accepted
    seconds: float


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes (n, 4) and (m, 4) -> (n, m)."""
    lo, hi = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)                                             # (n, m)
    area_a, area_b = (a[:, 2:] - a[:, :2]).prod(1), (b[:, 2:] - b[:, :2]).prod(1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-12)


def _checked_background(i: int, image: np.ndarray, exclude: list[np.ndarray] | None) -> np.ndarray:
    """Validate background `i`; its excluded boxes, (M, 4) xyxy."""
    if not (isinstance(image, np.ndarray) and image.ndim == 2 and image.dtype == np.uint8):
        raise ValueError(f"BackgroundWindows: background {i} must be a gray (H, W) uint8 array, got "
                         f"{getattr(image, 'dtype', type(image))} {getattr(image, 'shape', '')}")
    boxes = np.zeros((0, 4)) if exclude is None else np.asarray(exclude[i], np.float64)
    if boxes.size and (boxes.ndim != 2 or boxes.shape[1] != 4):
        raise ValueError(f"BackgroundWindows: exclude[{i}] must be (M, 4) xyxy boxes, got shape {boxes.shape}")
    return boxes.reshape(-1, 4)


class BackgroundWindows:
    """The windows a detector scans over background images, visited in a fixed random order without repetition.

    All levels' integral images live in one flat atlas; a window is its top-left offset there and its level.
    Windows OpenCV skips (flat ones) are kept here and rejected by every cascade, as at detection time.
    """

    def __init__(self, backgrounds: list[np.ndarray], *, window: tuple[int, int],
                 exclude: list[np.ndarray] | None = None, scale_factor: float = 1.2, step: int = 1,
                 seed: int = 0) -> None:
        if exclude is not None and len(exclude) != len(backgrounds):
            raise ValueError(f"BackgroundWindows: {len(exclude)} exclude entries for {len(backgrounds)} backgrounds")
        self.window = window
        self.images: list[np.ndarray] = []                           # level images, for the patches
        self.sources: list[int] = []                                 # background of each level
        self.scales: list[float] = []                                # background pixels per level pixel
        self.bases, self.strides, sums, squares, offsets, levels = [], [], [], [], [], []
        base = 0
        for i, image in enumerate(backgrounds):
            boxes = _checked_background(i, image, exclude)
            for scale, level in self._levels(image, scale_factor):
                ii, sq = cv2.integral2(level, sdepth=cv2.CV_32S, sqdepth=cv2.CV_64F)
                local = self._level_windows(level.shape, scale, boxes, step)                # (n,) in this level
                sums.append(ii.ravel())                                   # exact: 8-bit sums fit int32 to 8.4 Mpx
                squares.append(sq.astype(np.int64).ravel())
                offsets.append(base + local)
                levels.append(np.full(len(local), len(self.images), np.int32))
                self.images.append(level)
                self.sources.append(i)
                self.scales.append(scale)
                self.bases.append(base)
                self.strides.append(level.shape[1] + 1)
                base += ii.size
        self.ii = np.concatenate(sums or [np.zeros(0, np.int32)])
        self.sq = np.concatenate(squares or [np.zeros(0, np.int64)])
        index = np.int32 if base < 2 ** 31 else np.int64
        self.offsets = np.concatenate(offsets or [np.zeros(0, np.int64)]).astype(index)  # (T,)
        self.levels = np.concatenate(levels or [np.zeros(0, np.int32)])                  # (T,)
        self.strides = np.asarray(self.strides, np.int64)
        self.order = np.random.default_rng(seed).permutation(len(self.offsets)).astype(index)
        self.alive = np.ones(len(self.offsets), bool)          # not yet rejected by the cascade being trained
        self.cursor = 0

    def __len__(self) -> int:
        return len(self.offsets)

    def _levels(self, image: np.ndarray, scale_factor: float):
        width, height = self.window
        scale = 1.0
        while True:
            size = (round(image.shape[1] / scale), round(image.shape[0] / scale))
            if size[0] < width + 1 or size[1] < height + 1:
                return
            yield scale, cv2.resize(image, size, interpolation=cv2.INTER_LINEAR) if scale != 1.0 else image
            scale *= scale_factor

    def _level_windows(self, shape: tuple[int, int], scale: float, boxes: np.ndarray, step: int) -> np.ndarray:
        """Flat offsets of a (H, W) level's windows that avoid the excluded boxes."""
        width, height = self.window
        ys, xs = np.arange(0, shape[0] - height + 1, step), np.arange(0, shape[1] - width + 1, step)
        local = (ys[:, None] * (shape[1] + 1) + xs[None, :]).ravel()                      # (n,)
        if len(boxes):
            y, x = np.divmod(local, shape[1] + 1)
            win = np.stack([x, y, x + width, y + height], 1) * scale                      # (n, 4) xyxy, image pixels
            local = local[~(_box_iou(win, boxes) > _EXCLUDE_IOU).any(1)]
        return local

    def scan(self, cascade: CascadeEvaluator, count: int, *, max_batch: int = 1 << 17) -> tuple[np.ndarray, float]:
        """The next windows, in the random order, that `cascade` accepts: at most `count`, each window at most once.

        A window a cascade rejects is rejected by every longer one, so rejected windows are dropped for good:
        each call's `cascade` must extend the previous call's (as training does), and late stages, which need
        millions of windows for a few false positives, scan only the few still alive.

        Returns:
            The windows' indices and the cascade's acceptance rate over all windows (exact when fewer than
            `count` were found: every window was then scanned).
        """
        live = self.alive[self.order]
        self.cursor, self.order = int(live[:self.cursor].sum()), self.order[live]
        found, scanned, total, num_live = [], 0, 0, len(self.order)
        while total < count and scanned < num_live:
            rate = max(total, 1) / max(scanned, 1)
            batch = int(min(max_batch, num_live - scanned, max(1024, 1.2 * (count - total) / rate)))
            take = self.order[(self.cursor + np.arange(batch)) % num_live]
            self.cursor = (self.cursor + batch) % num_live
            accepted = cascade.accepts(self.ii, self.sq, self.offsets[take], self.strides[self.levels[take]])
            self.alive[take[~accepted]] = False
            found.append(take[accepted])
            scanned += batch
            total += int(accepted.sum())
        acceptance = total / max(scanned, 1) * num_live / max(len(self), 1)
        return (np.concatenate(found) if found else np.zeros(0, np.int64))[:count], acceptance

    def patches(self, index: np.ndarray) -> np.ndarray:
        """(n, h, w) uint8 pixels of windows `index`."""
        width, height = self.window
        out = np.empty((len(index), height, width), np.uint8)
        for j, (level, offset) in enumerate(zip(self.levels[index], self.offsets[index])):
            y, x = divmod(int(offset - self.bases[level]), int(self.strides[level]))
            out[j] = self.images[level][y:y + height, x:x + width]
        return out


def _stage_passes(values: np.ndarray, stage: BoostedStage) -> np.ndarray:
    """(N,) whether samples pass `stage`, summed in stump order like the detector. Shape: values (F, N)."""
    total = np.zeros(values.shape[1])
    for s in stage.stumps:
        total += np.where(values[s.feature] < np.float32(s.threshold), np.float64(s.left), np.float64(s.right))
    return total >= passing_threshold(stage.threshold)


def _keep_passing(values: np.ndarray, order: np.ndarray, stage: BoostedStage) -> tuple[np.ndarray, np.ndarray]:
    """Drop the positives `stage` rejects from feature-major values (F, P) and their per-feature order (F, P)."""
    passes = _stage_passes(values, stage)
    if passes.all():
        return values, order
    rank = np.cumsum(passes) - 1                                                          # new sample indices
    return values[:, passes], rank[order[passes[order]]].reshape(len(order), -1)


@dataclass
class CascadeTrainer:
    """Trains a cascade and keeps a report per stage; `train_cascade` is the one-call form."""

    config: CascadeTrainConfig = field(default_factory=CascadeTrainConfig)
    reports: list[StageReport] = field(default_factory=list)
    false_positive_rate: float = 1.0      # of the whole cascade on background windows (estimated, see `train`)
    stop_reason: str = ""

    def train(self, positives: np.ndarray, backgrounds: list[np.ndarray], *, exclude: list[np.ndarray] | None = None,
              progress: bool = True) -> HaarCascade:
        """Train; see `train_cascade`. `false_positive_rate` is then the last scan's acceptance rate times the last
        stage's false-alarm rate, or exactly the acceptance rate when the backgrounds ran out of false positives."""
        cfg, start = self.config, time.perf_counter()
        features = enumerate_features(cfg.window, min_size=cfg.feature_min_size, step=cfg.feature_step)
        pool = compile_features(features, cfg.window)
        pos_values, pos_order, dropped = self._positives(positives, pool)
        windows = BackgroundWindows(backgrounds, window=cfg.window, exclude=exclude, scale_factor=cfg.scale_factor,
                                    step=cfg.scan_step, seed=cfg.seed)
        cascade, used, kept = HaarCascade(cfg.window), {}, pos_values.shape[1]
        self.reports, self.stop_reason = [], f"{cfg.num_stages} stages"
        _LOG.info("cascade: %d positives (%d flat dropped), %d features, %d background windows", kept, dropped,
                  len(pool), len(windows))
        bar = tqdm(range(cfg.num_stages), desc="cascade", unit="stage", disable=not progress)
        for k in bar:
            tic = time.perf_counter()
            found, acceptance = windows.scan(CascadeEvaluator(cascade), cfg.num_negatives)
            if len(found) < cfg.min_negatives:
                self.stop_reason = f"only {len(found)} false positives in {len(windows)} background windows"
                self.false_positive_rate = acceptance
                break
            values = np.concatenate([pos_values, feature_values(windows.patches(found), pool).T], 1).T   # (N, F)
            stage = boost_stage(values, np.arange(len(values)) < pos_values.shape[1], min_hit_rate=cfg.min_hit_rate,
                                max_false_alarm=cfg.max_false_alarm, max_weak=cfg.max_weak_per_stage,
                                prefix_order=pos_order, progress=progress, desc=f"stage {k + 1}")
            if not stage.stumps:
                self.stop_reason = "no stump separates positives from the false positives"
                break
            self._append(cascade, used, stage, features)
            self.false_positive_rate = acceptance * stage.false_alarm
            self.reports.append(StageReport(k + 1, len(stage.stumps), stage.hit_rate, stage.false_alarm,
                                            pos_values.shape[1], len(found), acceptance, time.perf_counter() - tic))
            pos_values, pos_order = _keep_passing(pos_values, pos_order, stage)
            bar.set_postfix(weak=len(stage.stumps), hit=f"{stage.hit_rate:.3f}", fa=f"{stage.false_alarm:.3f}",
                            accept=f"{acceptance:.1e}")
        bar.close()
        _LOG.info("cascade: %d stages in %.1f s (%s), hit rate on training positives %.3f, false-positive rate %.2e",
                  len(cascade.stages), time.perf_counter() - start, self.stop_reason, pos_values.shape[1] / kept,
                  self.false_positive_rate)
        return cascade

    def _positives(self, positives: np.ndarray, pool: FeatureTable) -> tuple[np.ndarray, np.ndarray, int]:
        """Feature-major values (F, P) of the positives OpenCV would evaluate, their per-feature order (F, P)
        (every stage's sort starts from it) and how many flat ones were dropped."""
        width, height = self.config.window
        positives = np.asarray(positives)
        if positives.ndim != 3 or positives.shape[1:] != (height, width) or positives.dtype != np.uint8:
            raise ValueError(f"train_cascade: positives must be (P, {height}, {width}) uint8 for a {width}x{height} "
                             f"window, got {positives.dtype} {positives.shape}")
        keep = window_ok(positives)                  # flat crops can never be detected: OpenCV skips them
        if not keep.any():
            raise ValueError("train_cascade: every positive is flat (inner standard deviation <= 10)")
        values = feature_values(positives[keep], pool).T                                  # (F, P)
        return values, np.argsort(values, axis=1), int((~keep).sum())

    @staticmethod
    def _append(cascade: HaarCascade, used: dict[int, int], stage: BoostedStage, features: list[HaarFeature]) -> None:
        """Add a boosted stage; its pool features become (deduplicated) cascade features."""
        stumps = []
        for s in stage.stumps:
            if s.feature not in used:
                used[s.feature] = len(cascade.features)
                cascade.features.append(HaarFeature(features[s.feature].rects.copy()))
            stumps.append(Stump(used[s.feature], s.threshold, s.left, s.right))
        cascade.stages.append(Stage(stumps, stage.threshold))


def train_cascade(positives: np.ndarray, backgrounds: list[np.ndarray], *, exclude: list[np.ndarray] | None = None,
                  config: CascadeTrainConfig | None = None, progress: bool = True) -> HaarCascade:
    """Train an attentional cascade of boosted Haar stumps with bootstrapped negatives.

    Args:
        positives: Object crops at the window size.
        backgrounds: Gray images without objects (or with them listed in `exclude`), the source of negatives.
        exclude: Per background, (M, 4) xyxy boxes of objects in it; windows overlapping one by IoU > 0.3 are
            never negatives.
        config: Hyper-parameters; `CascadeTrainConfig()` by default.
        progress: Show progress bars (stages; stumps of the current stage with its hit and false-alarm rates).

    Returns:
        The cascade, in OpenCV's terms (`HaarCascade`); `CascadeTrainer` also keeps a report per stage.

    Shape:
        positives: (P, h, w) uint8, (w, h) = config.window; backgrounds: each (H, W) uint8.
    """
    return CascadeTrainer(config or CascadeTrainConfig()).train(positives, backgrounds, exclude=exclude,
                                                                progress=progress)


def augment_positives(crops: np.ndarray, *, window: tuple[int, int] = (24, 24), per_crop: int = 12,
                      flip: bool = True, shift: float = 1.0, rotation: float = 5.0, scale: float = 0.06,
                      gamma: float = 0.25, seed: int = 0) -> np.ndarray:
    """More positives from few object crops: each crop and its mirror image resized to the window, plus
    `per_crop - 1` random similarity warps of each (shift in window pixels, rotation in degrees, log-scale) with
    a random gamma (the feature normalisation cancels brightness and contrast changes, not gamma).

    Shape:
        crops: (N, H, W) uint8 -> (N * per_crop * (1 + flip), h, w) uint8, crop-major.
    """
    crops = np.asarray(crops)
    if crops.ndim != 3 or crops.dtype != np.uint8 or per_crop < 1:
        raise ValueError(f"augment_positives: expected (N, H, W) uint8 crops and per_crop >= 1, got {crops.dtype} "
                         f"{crops.shape}, per_crop={per_crop}")
    rng = np.random.default_rng(seed)
    _, height, width = crops.shape
    ramp = np.arange(256) / 255.0
    out = []
    for crop in crops:
        for view in ([crop, crop[:, ::-1]] if flip else [crop]):
            for j in range(per_crop):
                angle, log_scale, dx, dy, log_gamma = (0.0,) * 5 if j == 0 else rng.uniform(
                    [-rotation, -scale, -shift, -shift, -gamma], [rotation, scale, shift, shift, gamma])
                # crop centre -> window centre (+ shift), rotated and scaled about it
                warp = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle,
                                               window[0] / width * np.exp(log_scale))
                warp[:, 2] += [(window[0] - width) / 2 + dx, (window[1] - height) / 2 + dy]
                warped = cv2.warpAffine(np.ascontiguousarray(view), warp, window, flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_REFLECT)
                out.append(np.round(255 * ramp ** np.exp(log_gamma)).astype(np.uint8)[warped])
    return np.stack(out)                                                                  # (M, h, w)
