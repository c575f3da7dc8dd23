"""The detection epoch loop on a one-parameter detector: schedules, time limits, checkpoints, resume."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from ninshiki.config_detect import DetectTrainConfig
from ninshiki.engine import checkpoint
from ninshiki.engine.detect_loop import DetectStepContext
from ninshiki.engine.detect_trainer import DetectProgress, DetectSetup, fit, restore
from ninshiki.engine.optim import make_optimizer, make_scheduler
from ninshiki.engine.runtime import make_runtime
from ninshiki.structures import Detections

GT = torch.tensor([[4.0, 6.0, 20.0, 28.0]])


class OneBox(nn.Module):
    """Predicts one learned box per image; its loss pulls the box to the image's first target."""
    num_classes, input_size, nms_iou, max_detections, classifier_names = 1, 32, 0.5, 10, ()

    def __init__(self, *, sleep: float = 0.0) -> None:
        super().__init__()
        self.box = nn.Parameter(torch.tensor([0.0, 0.0, 8.0, 8.0]))
        self.score_threshold, self.sleep = 0.0, sleep

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None) -> Tensor:
        time.sleep(self.sleep)
        return self.box.expand(images.shape[0], 4) + 0 * images.mean()

    def loss(self, raw: Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        gt = torch.stack([t["boxes"][0] for t in targets])
        return {"loss": ((raw - gt) ** 2).mean()}

    def postprocess(self, raw: Tensor, sizes: list[tuple[int, int]] | None = None) -> list[Detections]:
        return [Detections(r[None], torch.ones(1), torch.zeros(1, dtype=torch.int64)) for r in raw]


class Identity:
    def to_original(self, boxes: Tensor) -> Tensor:
        return boxes

    def valid_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return size


@dataclass
class Batch:
    images: Tensor
    targets: list[dict[str, Tensor]]
    indices: list[int]
    letterboxes: list[Identity] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.indices)

    def to(self, device: torch.device) -> Batch:
        return self


def batches(n: int = 4) -> list[Batch]:
    return [Batch(torch.rand(2, 3, 32, 32), [{"boxes": GT, "labels": torch.zeros(1, dtype=torch.int64)}] * 2,
                  [2 * i, 2 * i + 1], [Identity(), Identity()]) for i in range(n)]


class MeanIoU:
    def __init__(self) -> None:
        self.ious: list[float] = []

    def update(self, predictions: list[Detections], targets: list[Tensor]) -> None:
        self.ious += [float(box_iou(p.boxes, t)[0, 0]) for p, t in zip(predictions, targets)]

    def compute(self) -> dict[str, float]:
        return {"map": sum(self.ious) / len(self.ious), "map50": 0.0}


def make_setup(tmp_path: Path, *, sleep: float = 0.0, **overrides) -> DetectSetup:
    torch.manual_seed(0)
    overrides.setdefault("epochs", 4)
    overrides.setdefault("warmup_epochs", 0.0)
    config = DetectTrainConfig(data="fake", lr=overrides.pop("lr", 0.5), optimizer="sgd", momentum=0.0,
                               clip_grad=None, out=str(tmp_path), **overrides)
    model = OneBox(sleep=sleep)
    optimizer = make_optimizer(model, name="sgd", lr=config.lr, weight_decay=0.0, momentum=0.0)
    ctx = DetectStepContext(model=model, bare=model, optimizer=optimizer,
                            scheduler=make_scheduler(optimizer, lambda step: 1.0), runtime=make_runtime(device="cpu"))
    fixed = batches()
    return DetectSetup(config, ctx.runtime, ctx, lambda epoch: fixed, lambda: fixed, len(fixed), MeanIoU,
                       [GT] * 8, {"model": "one_box", "task": "detect"})


def test_fit_learns_writes_and_keeps_the_best(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, epochs=10)
    progress = fit(setup, DetectProgress())
    assert progress.epoch == 10 and len(progress.history) == 10
    assert progress.best_map > 0.9, progress.history
    for name in ("last.safetensors", "best.safetensors", "train_state.safetensors", "log.csv"):
        assert (tmp_path / name).is_file()
    assert checkpoint.read_record(tmp_path / "best.safetensors")["epoch"] == progress.best_epoch
    assert setup.ctx.scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-9)   # cosine annealed to zero


def test_resume_ends_where_an_uninterrupted_run_ends(tmp_path: Path) -> None:
    whole = make_setup(tmp_path / "whole")
    fit(whole, DetectProgress())

    def interrupt(epoch: int, row: dict[str, float]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(make_setup(tmp_path / "split"), DetectProgress(), callbacks=[interrupt])
    resumed = make_setup(tmp_path / "split")
    progress = restore(resumed, tmp_path / "split")
    assert progress.epoch == 2
    fit(resumed, progress)
    assert progress.epoch == 4
    assert torch.equal(resumed.ctx.bare.box, whole.ctx.bare.box)


def test_time_limit_replans_the_epochs_and_stops(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, sleep=0.05, epochs=100, time_limit=0.9)   # ~0.2 s per 4-batch epoch
    start = time.perf_counter()
    progress = fit(setup, DetectProgress())
    assert progress.planned_epochs < 100
    assert progress.epoch <= progress.planned_epochs
    assert progress.train_seconds <= 0.9 + 0.3
    assert time.perf_counter() - start < 5
    assert setup.ctx.scheduler.get_last_lr()[0] < 0.5 * 0.2    # the schedule was stretched to the new plan
    assert "val_map" in progress.history[-1]                     # the last epoch is validated


def test_a_plan_that_shrinks_to_the_first_epoch_still_validates_it(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, sleep=0.05, epochs=100, time_limit=0.25, val_every=50)   # one epoch fits
    progress = fit(setup, DetectProgress())
    assert progress.epoch == 1 and progress.planned_epochs == 1
    assert "val_map" in progress.history[-1] and progress.best_epoch == 1


def test_patience_stops_early(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, epochs=50, lr=1e-9, patience=2)      # nothing improves after the first epoch
    progress = fit(setup, DetectProgress())
    assert progress.epoch == 3


def test_without_validation_data_the_lowest_training_loss_is_best(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, epochs=3)
    setup.val_loader = None                          # e.g. --val-fraction 0: losses far above 1 must still count
    setup.ctx.bare.box.data += 1000.0
    progress = fit(setup, DetectProgress())
    assert (tmp_path / "best.safetensors").is_file()
    losses = [row["train_loss"] for row in progress.history]
    assert min(losses) > 1 and progress.best_epoch == 1 + losses.index(min(losses))


def test_the_first_step_runs_at_the_warmups_starting_rate(tmp_path: Path) -> None:
    from ninshiki.engine.detect_trainer import set_schedule

    setup = make_setup(tmp_path, warmup_epochs=1.0)
    set_schedule(setup, 4)                       # what fit() does before the first step
    assert setup.ctx.optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * 0.01)
    for _ in range(len(batches())):              # one epoch of steps: the warmup is over
        setup.ctx.optimizer.step()
        setup.ctx.scheduler.step()
    set_schedule(setup, 2)                       # a time-limit re-plan: the next step follows the new plan
    assert setup.ctx.optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * 1.0)
