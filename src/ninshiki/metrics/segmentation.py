"""Semantic segmentation metrics: mean IU, pixel accuracy, mean accuracy and frequency weighted IU.

The definitions are those of the FCN paper (Long, Shelhamer and Darrell, "Fully Convolutional Networks for
Semantic Segmentation", CVPR 2015, section 5). With n_ij the number of pixels of class i predicted to belong
to class j, t_i = sum_j n_ij the pixels of class i and n_cl the number of classes:

    pixel accuracy       sum_i n_ii / sum_i t_i
    mean accuracy        (1 / n_cl) sum_i n_ii / t_i
    mean IU              (1 / n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)
    frequency weighted   (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)

Everything is derived from one (K, K) int64 confusion matrix accumulated with `torch.bincount` on the
tensors' device, so the numbers are exact and independent of batching, and summable across processes.
"""
from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from ninshiki.io import write_text

LabelMaps = Tensor | np.ndarray | Sequence[Tensor | np.ndarray]


def _tensor(values: Tensor | np.ndarray) -> Tensor:
    if isinstance(values, np.ndarray) and not values.flags.writeable:
        values = values.copy()   # torch warns on read-only arrays (e.g. masks read by PIL)
    return torch.as_tensor(values)


def _as_maps(values: LabelMaps, what: str) -> list[Tensor]:
    """A (B, H, W) tensor or a sequence of (H, W) maps as a list of (H, W) integer tensors."""
    if isinstance(values, (Tensor, np.ndarray)):
        batch = _tensor(values)
        if batch.ndim != 3:
            raise ValueError(f"{what} must be a (B, H, W) tensor or a list of (H, W) maps, got shape "
                             f"{tuple(batch.shape)}")
        maps = list(batch.unbind(0))
    else:
        maps = [_tensor(m) for m in values]
    for i, m in enumerate(maps):
        if m.ndim != 2:
            raise ValueError(f"{what}[{i}] must be an (H, W) map, got shape {tuple(m.shape)}")
        if m.dtype.is_floating_point or m.dtype.is_complex or m.dtype == torch.bool:
            raise TypeError(f"{what}[{i}] must hold class indices of an integer dtype, got {m.dtype}")
    return maps


class SegmentationMetric:
    """Confusion-matrix metrics of a K-class semantic segmenter over a dataset.

    Conventions (those of mmsegmentation's `IoUMetric` and of torchmetrics with ``ignore_index``):
        - Pixels whose target is `ignore_index` are not counted, whatever was predicted there.
        - A class with neither ground-truth nor predicted pixels has NaN IoU and is left out of ``miou``
          (it says nothing about the model); a class predicted but absent from the ground truth has IoU 0
          and counts.
        - The accuracy (recall) of a class without ground-truth pixels is NaN and left out of ``mean_acc``.

    Call `update` once per batch, then (in data-parallel evaluation) `all_reduce` once on every rank, then
    `compute`.

    Args:
        classes: the K class names (background included); the keys ``iou/<name>`` and ``acc/<name>``.
        ignore_index: target value of unlabelled pixels (VOC's 255 borders).
        device: where the counts live; None: the device of the first `update`'s tensors.
    """

    def __init__(self, classes: list[str], *, ignore_index: int = 255,
                 device: torch.device | str | None = None) -> None:
        names = [str(c) for c in classes]
        if not names:
            raise ValueError("classes is empty")
        if len(set(names)) != len(names):
            raise ValueError("class names must be unique: they become the keys of compute()")
        if 0 <= ignore_index < len(names):
            raise ValueError(f"ignore_index {ignore_index} is one of the {len(names)} class indices")
        self.classes: tuple[str, ...] = tuple(names)
        self.num_classes = len(names)
        self.ignore_index = ignore_index
        self.device = None if device is None else torch.device(device)
        self.reset()

    def reset(self) -> None:
        """Forget every pixel seen so far."""
        k = self.num_classes
        self._confusion = torch.zeros(k, k, dtype=torch.int64, device=self.device)  # (K, K) rows: truth

    @torch.no_grad()
    def update(self, predictions: LabelMaps, targets: LabelMaps) -> None:
        """Add a batch of predicted class maps and their ground truth.

        Args:
            predictions: predicted class indices in [0, K), e.g. `predict_classes(raw, sizes)`.
            targets: true class indices in [0, K), or `ignore_index` for unlabelled pixels.

        Shape:
            - predictions, targets: (B, H, W), or B maps of shapes (H_i, W_i) each, equal pairwise.

        Raises:
            ValueError: shapes differ, or a prediction is outside [0, K), or a target is neither in
                [0, K) nor `ignore_index` (it would silently land in another class's cell).
        """
        preds, truths = _as_maps(predictions, "predictions"), _as_maps(targets, "targets")
        if len(preds) != len(truths):
            raise ValueError(f"got {len(preds)} prediction maps for {len(truths)} target maps")
        for i, (p, t) in enumerate(zip(preds, truths)):
            if p.shape != t.shape:
                raise ValueError(f"predictions[{i}] has shape {tuple(p.shape)} but targets[{i}] has {tuple(t.shape)}")
        if not preds:
            return
        device = preds[0].device if self.device is None else self.device
        pred = torch.cat([p.reshape(-1).to(device, torch.int64) for p in preds])   # (P,) all pixels
        truth = torch.cat([t.reshape(-1).to(device, torch.int64) for t in truths])  # (P,)
        self._check(pred, truth)
        labelled = truth != self.ignore_index                                      # (P,)
        k = self.num_classes
        counts = torch.bincount(truth[labelled] * k + pred[labelled], minlength=k * k).view(k, k)  # (K, K)
        self._confusion = self._confusion.to(device) + counts

    def _check(self, pred: Tensor, truth: Tensor) -> None:
        if pred.numel() == 0:
            return
        k = self.num_classes
        bad_target = ((truth < 0) | (truth >= k)) & (truth != self.ignore_index)
        # One host sync for both checks.
        pred_bad, truth_bad = torch.stack([((pred < 0) | (pred >= k)).any(), bad_target.any()]).tolist()
        if pred_bad:
            raise ValueError(f"predictions must lie in [0, {k}), got min {pred.min().item()} max {pred.max().item()}")
        if truth_bad:
            values = torch.unique(truth[bad_target])[:10].tolist()
            raise ValueError(f"targets hold values {values} outside the {k} classes (0..{k - 1}) and "
                             f"ignore_index {self.ignore_index}")

    @property
    def confusion_matrix(self) -> np.ndarray:
        """(K, K) int64 pixel counts, rows = ground-truth class, columns = predicted class (a copy)."""
        return self._confusion.cpu().numpy().copy()

    @property
    def pixel_count(self) -> int:
        """Labelled pixels seen (on this rank, or on all ranks after `all_reduce`)."""
        return int(self._confusion.sum())

    def state(self) -> dict[str, Tensor]:
        """The counts, to save or to sum with other processes' before `load_state`."""
        return {"confusion": self._confusion.clone()}

    def load_state(self, state: dict[str, Tensor]) -> None:
        """Replace the counts by `state["confusion"]` (e.g. the sum of several processes' `state()`)."""
        confusion = torch.as_tensor(state["confusion"])
        k = self.num_classes
        if confusion.shape != (k, k) or confusion.dtype.is_floating_point or bool((confusion < 0).any()):
            raise ValueError(f"state['confusion'] must be a ({k}, {k}) matrix of non-negative integer counts, "
                             f"got {confusion.dtype} {tuple(confusion.shape)}")
        self._confusion = confusion.to(self._confusion.device, torch.int64).clone()

    def all_reduce(self) -> None:
        """Sum the counts over all ranks in place; a no-op unless torch.distributed is initialised.

        A collective: call it exactly once per evaluation, on every rank, after the last `update`.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return
        counts = self._confusion.clone()
        home = counts.device
        if dist.get_backend() == "nccl" and home.type != "cuda":  # a rank that saw no batch is still on the CPU
            counts = counts.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
        self._confusion = counts.to(home)

    def per_class(self) -> dict[str, np.ndarray]:
        """Per-class float64 arrays: ``iou``, ``acc`` (NaN as in the class docstring), ``gt``, ``predicted``."""
        confusion = self._confusion.cpu().double().numpy()
        tp = np.diag(confusion)
        gt = confusion.sum(1)         # t_i
        predicted = confusion.sum(0)  # sum_j n_ji
        union = gt + predicted - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
            acc = np.where(gt > 0, tp / gt, np.nan)
        return {"iou": iou, "acc": acc, "gt": gt, "predicted": predicted}

    def compute(self) -> dict[str, float]:
        """``miou``, ``pixel_acc``, ``mean_acc``, ``fwiou`` (fractions in [0, 1]), then ``iou/<name>`` and
        ``acc/<name>`` for every class.

        Raises:
            RuntimeError: if no labelled pixel was seen (an empty loader is a bug, not a score of 0).
        """
        total = self.pixel_count
        if total == 0:
            raise RuntimeError("SegmentationMetric.compute() called with no labelled pixels; call update() first")
        stats = self.per_class()
        iou, acc, gt = stats["iou"], stats["acc"], stats["gt"]
        out = {
            "miou": float(np.nanmean(iou)),   # at least one class has pixels, so not all NaN
            "pixel_acc": float(np.diag(self._confusion.cpu().numpy()).sum() / total),
            "mean_acc": float(np.nanmean(acc)),
            "fwiou": float((gt[gt > 0] * iou[gt > 0]).sum() / total),
        }
        out.update({f"iou/{name}": float(v) for name, v in zip(self.classes, iou)})
        out.update({f"acc/{name}": float(v) for name, v in zip(self.classes, acc)})
        return out


def per_class_table(metric: SegmentationMetric) -> list[dict[str, str | int | float]]:
    """One row per class, in class order: ``class``, ``iou``, ``acc`` (NaN where undefined), ``gt_pixels``,
    ``predicted_pixels``."""
    stats = metric.per_class()
    columns = zip(metric.classes, stats["iou"].tolist(), stats["acc"].tolist(), stats["gt"].tolist(),
                  stats["predicted"].tolist())
    return [{"class": c, "iou": i, "acc": a, "gt_pixels": int(g), "predicted_pixels": int(p)}
            for c, i, a, g, p in columns]


def _text(value: object, digits: int, nan: str) -> str:
    if isinstance(value, float):
        return nan if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _nanmean(values: list[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else math.nan


def write_per_class_iou(directory: str | os.PathLike[str],
                        rows: SegmentationMetric | Sequence[dict[str, str | int | float]]) -> tuple[Path, Path]:
    """Write `per_class_table` rows (of a metric, or given) as DIRECTORY/per_class_iou.csv and per_class_iou.md,
    atomically.

    The CSV keeps six decimals and writes NaN as ``nan`` (read back as NaN by pandas and NumPy); the
    Markdown table shows three decimals, ``n/a`` for NaN, and a last row with the means over the defined
    values (equal to ``miou`` and ``mean_acc``).

    Returns:
        The paths of the CSV and the Markdown file.
    """
    if isinstance(rows, SegmentationMetric):
        rows = per_class_table(rows)
    if not rows:
        raise ValueError("rows is empty")
    out = Path(directory)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _text(v, 6, "nan") for k, v in row.items()} for row in rows)
    csv_path, md_path = out / "per_class_iou.csv", out / "per_class_iou.md"
    write_text(csv_path, buffer.getvalue())
    lines = ["| class | IoU | accuracy | GT pixels | predicted pixels |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['class']} | {_text(r['iou'], 3, 'n/a')} | {_text(r['acc'], 3, 'n/a')} | {r['gt_pixels']} | "
              f"{r['predicted_pixels']} |" for r in rows]
    means = [_nanmean([float(r[key]) for r in rows]) for key in ("iou", "acc")]
    totals = [sum(int(r[key]) for r in rows) for key in ("gt_pixels", "predicted_pixels")]
    lines.append(f"| **mean** | {_text(means[0], 3, 'n/a')} | {_text(means[1], 3, 'n/a')} | {totals[0]} | {totals[1]} |")
    write_text(md_path, "\n".join(lines) + "\n")
    return csv_path, md_path
