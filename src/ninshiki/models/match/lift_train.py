"""Training LIFT by homographic self-supervision on real photos, one network at a time as in the paper
(Yi et al., "LIFT: Learned Invariant Feature Transform", ECCV 2016, section 3.3): DESC first, then ORI with
DESC fixed, then DET with ORI and DESC fixed.

Each step draws photos, crops and warps them into pairs of views with a random homography and photometric
changes (`lift_pairs`), takes SIFT keypoints of the first view with their matches in the second (the paper
used SIFT points matched by structure from motion), and takes one Adam step on the stage's loss
(`lift_losses`). The budget (steps, seconds, or both: whichever ends first) is shared among the stages by
`stage_shares`. After DET's stage, the trained DET is kept only if it gives more correct matches on
validation pairs than the Hessian start did (in our CPU runs of minutes it gave fewer: see `lift_losses`).
The weights are saved as safetensors with a record (model, task, channels, model_kwargs, patch size, steps),
atomically; `log.csv` has the losses, and the held-out check at the end compares LIFT's matching precision
with SIFT's on warped pairs of photos that were not trained on (`lift_pairs.OPENCV_HELD_OUT_PHOTOS`).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ninshiki.engine.checkpoint import save_weights
from ninshiki.engine.logs import write_epoch_log
from ninshiki.io import write_json
from ninshiki.match.features import FeatureExtractor
from ninshiki.match.geometry import reprojection_errors
from ninshiki.match.matching import match_descriptors
from ninshiki.match.sift import SiftExtractor
from ninshiki.models.match.lift import LIFT, lift
from ninshiki.models.match.lift_extractor import LiftExtractor
from ninshiki.models.match.lift_losses import desc_loss, det_loss, ori_loss
from ninshiki.models.match.lift_pairs import ViewPair, correspondences, load_photos, make_pair
from ninshiki.models.match.lift_patches import Pyramid, build_pyramid
from ninshiki.models.weights import load_weights

STAGES = ("desc", "ori", "det")
DET_SCALES = (1.0, 2 ** -0.5, 0.5)   # DET trains on views resized to one of these (levels of the pyramid)


@dataclass
class LiftTrainConfig:
    """What `train_lift` does.

    Attributes:
        out: the run folder (weights, log.csv, metrics.json).
        photos: image files or a folder of them; None for scikit-image's photos and OpenCV's samples
            (`lift_pairs.load_photos`).
        val_photos: photos for the held-out check at the end (warped pairs, LIFT against SIFT); None for
            OpenCV's held-out samples when installed; [] skips the check.
        steps: total optimiser steps over the three stages (None: no step limit).
        time_limit: total seconds over the three stages (None: no time limit).
        stage_shares: the fractions of the budget given to DESC, ORI and DET.
        batch: corresponding keypoint pairs per step.
        view_size: (height, width) of the generated views.
        patch_size: P, the side of ORI's and DESC's patches.
        lr: Adam's learning rate.
        margin: the triplet loss's margin.
        seed: seeds numpy's and torch's generators.
        model_kwargs: further `lift` factory keywords (det_kernel, descriptor_dim, ...).
        init: weights to start from (a file `train_lift` wrote), e.g. to train the later stages only, with
            `stage_shares` such as (0, 1, 1).
    """

    out: str = "runs/lift"
    photos: str | list[str] | None = None
    val_photos: str | list[str] | None = None
    steps: int | None = None
    time_limit: float | None = 600.0
    stage_shares: tuple[float, float, float] = (0.6, 0.3, 0.1)
    batch: int = 128
    view_size: tuple[int, int] = (240, 320)
    patch_size: int = 32
    lr: float = 1e-3
    margin: float = 1.0
    seed: int = 0
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    init: str | None = None

    def __post_init__(self) -> None:
        if self.steps is None and self.time_limit is None:
            raise ValueError("LiftTrainConfig: give steps, time_limit or both (training stops at the first)")
        if (self.steps is not None and self.steps < 1) or (self.time_limit is not None and self.time_limit <= 0):
            raise ValueError(f"LiftTrainConfig: steps must be >= 1 and time_limit > 0, got {self.steps} and "
                             f"{self.time_limit}")
        if len(self.stage_shares) != 3 or min(self.stage_shares) < 0 or sum(self.stage_shares) <= 0:
            raise ValueError(f"LiftTrainConfig.stage_shares: three non-negative fractions, got {self.stage_shares}")
        if self.batch < 2:
            raise ValueError(f"LiftTrainConfig.batch must be >= 2 (negatives come from the batch), got {self.batch}")


@dataclass(frozen=True)
class PairBatch:
    """Corresponding keypoints in B pairs of views, as tensors.

    Shape:
        - view1, view2: (B, 1, h, w) float in [0, 1]; homography: (B, 3, 3) view1 -> view2.
        - index: (N,) int64 the pair of each keypoint; xy1, xy2: (N, 2); diameter1, diameter2, angle1, angle2,
          rotation: (N,) (degrees); exclude: (N, N) bool, pairs of keypoints too close to be negatives.
    """

    view1: Tensor
    view2: Tensor
    homography: Tensor
    pyramid1: Pyramid
    pyramid2: Pyramid
    index: Tensor
    xy1: Tensor
    diameter1: Tensor
    angle1: Tensor
    xy2: Tensor
    diameter2: Tensor
    angle2: Tensor
    rotation: Tensor
    exclude: Tensor


def sample_batch(photos: Sequence[np.ndarray], rng: np.random.Generator, *, batch: int, patch_size: int,
                 view_size: tuple[int, int] = (240, 320), per_pair: int = 64) -> PairBatch:
    """`batch` corresponding keypoints from as many random view pairs as it takes (`per_pair` from each).

    Raises:
        ValueError: the photos give too few keypoints (blank or tiny images).
    """
    pairs: list[ViewPair] = []
    found = []
    total = 0
    for _ in range(max(50, 4 * batch // per_pair)):
        pair = make_pair(photos[int(rng.integers(len(photos)))], rng, size=view_size)
        points = correspondences(pair, patch_size=patch_size, max_points=min(per_pair, batch - total), rng=rng)
        if len(points):
            pairs.append(pair)
            found.append(points)
            total += len(points)
        if total >= batch:
            break
    else:
        raise ValueError(f"the photos gave only {total} usable keypoints in 50+ view pairs, fewer than a batch of "
                         f"{batch}: are they blank, or smaller than the {view_size} views?")
    views = [torch.from_numpy(np.stack([getattr(p, name) for p in pairs])).float().div(255)[:, None]
             for name in ("view1", "view2")]                                      # 2 x (B, 1, h, w)
    fields = {name: torch.from_numpy(np.concatenate([getattr(c, name) for c in found])) for name in
              ("xy1", "diameter1", "angle1", "xy2", "diameter2", "angle2", "rotation")}
    index = torch.cat([torch.full((len(c),), i, dtype=torch.long) for i, c in enumerate(found)])
    same = index[:, None] == index[None]
    near = torch.cdist(fields["xy1"], fields["xy1"]) < 0.5 * fields["diameter1"][None]
    largest = float(max(fields["diameter1"].max(), fields["diameter2"].max()))
    return PairBatch(views[0], views[1], torch.from_numpy(np.stack([p.homography for p in pairs])).float(),
                     build_pyramid(views[0], max_diameter=largest, patch_size=patch_size),
                     build_pyramid(views[1], max_diameter=largest, patch_size=patch_size),
                     index, exclude=same & near, **fields)


def train_lift(config: LiftTrainConfig, *, progress: bool = True) -> dict[str, float]:
    """Train DESC, ORI and DET in turn, save `best.safetensors` and `last.safetensors` (the same final weights),
    `log.csv` and `metrics.json` in `config.out`, and return the metrics.

    Returns:
        The last logged loss of each stage (`desc_loss`, `ori_loss`, `det_loss`), `steps`, `seconds`; after DET's
        stage, `det_val_correct_before` / `_after` and `det_kept` (1 when the trained DET was kept, see
        `_keep_better_detector`); and, unless the held-out check is skipped, `lift_precision`, `sift_precision`
        (correct matches at 3 px over all matches) and `lift_correct`, `sift_correct` (correct matches per pair).
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    photos = load_photos(config.photos)
    model = lift(patch_size=config.patch_size, **config.model_kwargs)
    if config.init is not None:
        load_weights(model, config.init)
    losses: dict[str, Callable[[LIFT, PairBatch], Tensor]] = {
        "desc": lambda m, b: desc_loss(m, b, margin=config.margin),
        "ori": lambda m, b: ori_loss(m, b),
        "det": lambda m, b: det_loss(m, b, margin=config.margin, scale=DET_SCALES[int(rng.integers(len(DET_SCALES)))])}
    modules = {"desc": model.descriptor, "ori": model.orientation, "det": model.detector}
    history: list[dict[str, float]] = []
    metrics: dict[str, float] = {}
    shares = np.asarray(config.stage_shares, np.float64) / sum(config.stage_shares)
    out = Path(config.out)
    started, done = time.perf_counter(), 0
    for stage, share in zip(STAGES, shares):
        steps = None if config.steps is None else round(config.steps * share)
        seconds = None if config.time_limit is None else config.time_limit * share
        if steps == 0 or seconds == 0:
            continue
        before = {k: v.clone() for k, v in modules[stage].state_dict().items()}
        metrics[f"{stage}_loss"] = _train_stage(model, modules[stage], losses[stage], photos, rng, config, stage=stage,
                                                steps=steps, seconds=seconds, history=history, first_step=done,
                                                progress=progress)
        if stage == "det":
            metrics.update(_keep_better_detector(model, before, photos, config, progress=progress))
        done = int(history[-1]["step"]) if history else done
        write_epoch_log(out / "log.csv", history)
    metrics.update(steps=float(done), seconds=time.perf_counter() - started)
    model.eval()
    record = {"model": "lift", "task": "match", "channels": 1, "model_kwargs": model.model_kwargs(),
              "patch_size": config.patch_size, "steps": done, "config": _jsonable(asdict(config))}
    for name in ("best.safetensors", "last.safetensors"):   # save_weights writes atomically
        save_weights(out / name, model.state_dict(), record)
    metrics.update(_held_out_check(model, config, progress=progress))
    write_json(out / "metrics.json", metrics)
    return metrics


def _train_stage(model: LIFT, module: torch.nn.Module, loss_fn: Callable[[LIFT, PairBatch], Tensor],
                 photos: Sequence[np.ndarray], rng: np.random.Generator, config: LiftTrainConfig, *, stage: str,
                 steps: int | None, seconds: float | None, history: list[dict[str, float]], first_step: int,
                 progress: bool) -> float:
    """One stage: Adam on `module` only (the others frozen); returns the mean loss of its last 20 steps."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in module.parameters():
        parameter.requires_grad_(True)
    model.train()
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    recent: list[float] = []
    started = time.perf_counter()
    bar = tqdm(total=steps, desc=f"lift {stage}", disable=not progress, leave=False)
    step = 0
    while (steps is None or step < steps) and (seconds is None or time.perf_counter() - started < seconds):
        batch = sample_batch(photos, rng, batch=config.batch, patch_size=config.patch_size, view_size=config.view_size)
        loss = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        recent = (recent + [float(loss.detach())])[-20:]
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(recent):.4f}")
        if step % 10 == 0 or (steps is not None and step == steps):
            history.append({"stage": stage, "step": first_step + step, "loss": float(np.mean(recent)),
                            "seconds": time.perf_counter() - started})
    bar.close()
    if not history or history[-1]["step"] != first_step + step:
        history.append({"stage": stage, "step": first_step + step, "loss": float(np.mean(recent or [np.nan])),
                        "seconds": time.perf_counter() - started})
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return float(np.mean(recent)) if recent else float("nan")


def _keep_better_detector(model: LIFT, before: dict[str, Tensor], photos: Sequence[np.ndarray],
                          config: LiftTrainConfig, *, progress: bool, count: int = 8) -> dict[str, float]:
    """Keep DET's weights from before its stage unless training gave more correct matches per pair on validation
    pairs (new crops and homographies of the training photos, never the held-out ones).

    DET's stage trades keypoint count for precision and, in short CPU runs, usually loses correct matches against
    the Hessian start (see `lift_nets`); this check makes the stage safe to run with any budget.
    """
    rng = np.random.default_rng(config.seed + 2)
    pairs = [make_pair(photos[int(rng.integers(len(photos)))], rng, size=config.view_size) for _ in range(count)]
    model.eval()
    trained = {k: v.clone() for k, v in model.detector.state_dict().items()}
    scores = {}
    for name, state in (("before", before), ("after", trained)):
        model.detector.load_state_dict(state)
        scores[name] = pair_scores(LiftExtractor(model, max_features=500),
                                   tqdm(pairs, desc=f"det {name}", disable=not progress, leave=False))["correct"]
    kept = scores["after"] > scores["before"]
    model.detector.load_state_dict(trained if kept else before)
    return {"det_val_correct_before": scores["before"], "det_val_correct_after": scores["after"],
            "det_kept": float(kept)}


def pair_scores(extractor: FeatureExtractor, pairs: Sequence[ViewPair], *, threshold: float = 3.0,
                ratio: float = 0.8) -> dict[str, float]:
    """Matching precision (correct / all matches, pooled) and correct matches per pair, matches by the ratio test
    and mutual nearest neighbours, correct when H maps view1's point within `threshold` pixels of view2's."""
    correct = total = 0
    for pair in pairs:
        a, b = extractor.extract(pair.view1), extractor.extract(pair.view2)
        matches, _ = match_descriptors(a.descriptors, b.descriptors, ratio=ratio)
        errors = reprojection_errors(pair.homography, a.xy[matches[:, 0]], b.xy[matches[:, 1]])
        correct += int((errors < threshold).sum())
        total += len(matches)
    return {"precision": correct / total if total else 0.0, "correct": correct / max(len(pairs), 1)}


def _held_out_check(model: LIFT, config: LiftTrainConfig, *, progress: bool, count: int = 6) -> dict[str, float]:
    if config.val_photos is not None and len(config.val_photos) == 0:
        return {}
    try:
        photos = load_photos(config.val_photos) if config.val_photos is not None else _default_val_photos()
    except FileNotFoundError:
        return {}
    rng = np.random.default_rng(config.seed + 1)
    pairs = [make_pair(photos[i % len(photos)], rng, size=config.view_size) for i in range(count)]
    result = {}
    for name, extractor in (("lift", LiftExtractor(model, max_features=500)), ("sift", SiftExtractor(max_features=500))):
        scores = pair_scores(extractor, tqdm(pairs, desc=f"check {name}", disable=not progress, leave=False))
        result.update({f"{name}_precision": scores["precision"], f"{name}_correct": scores["correct"]})
    return result


def _default_val_photos() -> list[np.ndarray]:
    from ninshiki.data.sample_photos import opencv_sample_dir
    from ninshiki.models.match.lift_pairs import OPENCV_HELD_OUT_PHOTOS

    folder = opencv_sample_dir()
    return load_photos([folder / name for name in OPENCV_HELD_OUT_PHOTOS if (folder / name).is_file()])


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return str(value) if isinstance(value, os.PathLike) else value
