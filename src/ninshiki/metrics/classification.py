"""Classification metrics: top-k accuracy, confusion matrix, per-class precision / recall / F1.

Counts are accumulated as int64 tensors on the logits' device (exact over any number of batches, and
summable across ranks); rates are derived from them once, in float64, by `compute`. The numbers equal
scikit-learn's `accuracy_score`, `top_k_accuracy_score`, `precision_recall_fscore_support` and
`balanced_accuracy_score` (see tests/metrics/test_classification.py).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor


class ClassificationMetric:
    """Top-k accuracy and per-class precision, recall and F1 of a K-way classifier.

    Call `update` once per batch, then (in data-parallel evaluation) `all_reduce` once on every rank, then
    `compute`. Memory is the (K, K) int64 confusion matrix: 8 MB at K = 1000.

    Conventions:
        - Ties between logits go to the lower class index, as in `torch.argmax`: the prediction is
          `logits.argmax(1)`, and the true class is within the top k when fewer than k classes rank above
          it (a higher logit, or an equal logit at a lower index). `torch.topk` is not used because its
          order among equal values changes with k, K and the device, so top-1 would depend on whether
          top-5 was also asked for.
        - scikit-learn's ``zero_division=0``: the precision of a class never predicted, the recall of a
          class with no samples, and the F1 of a class with neither, are 0.
        - Macro averages run over the classes that occur in the labels or in the predictions, as
          scikit-learn does when not given ``labels=``; a class absent from both says nothing about the
          model. ``balanced_accuracy`` is the mean recall over the classes present in the labels.

    Args:
        num_classes: K, the number of classes.
        class_names: K unique names for the per-class keys; defaults to "0" .. "K-1".
        topk: the k of the top-k accuracies; a k larger than K is left out of `compute` (it is 1 by
            definition).
    """

    def __init__(self, num_classes: int, *, class_names: Sequence[str] | None = None,
                 topk: tuple[int, ...] = (1, 5)) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        names = [str(i) for i in range(num_classes)] if class_names is None else [str(n) for n in class_names]
        if len(names) != num_classes:
            raise ValueError(f"got {len(names)} class_names for {num_classes} classes")
        if len(set(names)) != num_classes:
            raise ValueError("class_names must be unique: they become the keys of compute()")
        if not topk or any(not isinstance(k, int) or k < 1 for k in topk):
            raise ValueError(f"topk must be positive integers, got {topk!r}")
        self.num_classes = num_classes
        self.class_names: tuple[str, ...] = tuple(names)
        self.topk: tuple[int, ...] = tuple(sorted(set(topk)))
        self.reset()

    @classmethod
    def from_confusion(cls, confusion: Tensor, *, class_names: Sequence[str] | None = None) -> ClassificationMetric:
        """A metric holding a finished confusion matrix, e.g. to rebuild reports from a saved one.

        Only top-1 can be recovered from a confusion matrix, so the metric reports ``top1`` and no other k.

        Shape:
            - confusion: (K, K) non-negative integer counts, rows = true class.
        """
        confusion = torch.as_tensor(confusion)
        if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
            raise ValueError(f"confusion must be a square (K, K) matrix, got shape {tuple(confusion.shape)}")
        if confusion.dtype.is_floating_point or confusion.dtype.is_complex or bool((confusion < 0).any()):
            raise ValueError("confusion must hold non-negative integer counts")
        metric = cls(confusion.shape[0], class_names=class_names, topk=(1,))
        metric._confusion = confusion.to(torch.int64).clone()
        metric._topk_correct = metric._confusion.diagonal().sum().reshape(1)  # top-1 hits are the diagonal
        return metric

    def reset(self) -> None:
        """Forget every sample seen so far."""
        k = self.num_classes
        self._confusion = torch.zeros(k, k, dtype=torch.int64)           # (K, K) rows: true, cols: predicted
        self._topk_correct = torch.zeros(len(self.topk), dtype=torch.int64)  # (len(topk),)

    @torch.no_grad()
    def update(self, logits: Tensor, labels: Tensor) -> None:
        """Add one batch.

        Args:
            logits: class scores (any monotone transform of them, e.g. probabilities, gives the same result).
            labels: true class indices in [0, K).

        Shape:
            - logits: (B, K), floating point, no NaN.
            - labels: (B,), integer.
        """
        labels = self._check(logits, labels)
        if labels.numel() == 0:
            return
        if self._confusion.device != logits.device:
            self._confusion = self._confusion.to(logits.device)
            self._topk_correct = self._topk_correct.to(logits.device)
        k = self.num_classes
        predicted = logits.argmax(dim=1)                                  # (B,) ties -> lowest index
        self._confusion += torch.bincount(labels * k + predicted, minlength=k * k).view(k, k)
        true_logit = logits.gather(1, labels[:, None])                    # (B, 1)
        lower_index = torch.arange(k, device=logits.device) < labels[:, None]  # (B, K)
        rank = (logits > true_logit).sum(1) + ((logits == true_logit) & lower_index).sum(1)  # (B,) 0 = top-1
        ks = torch.tensor(self.topk, device=logits.device)
        self._topk_correct += (rank[None, :] < ks[:, None]).sum(1)

    def _check(self, logits: Tensor, labels: Tensor) -> Tensor:
        k = self.num_classes
        if logits.ndim != 2 or logits.shape[1] != k:
            raise ValueError(f"logits must have shape (B, {k}), got {tuple(logits.shape)}")
        if labels.shape != (logits.shape[0],):
            raise ValueError(f"labels must have shape ({logits.shape[0]},) to match logits, got {tuple(labels.shape)}")
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise TypeError(f"labels must be class indices of an integer dtype, got {labels.dtype}")
        labels = labels.to(device=logits.device, dtype=torch.int64)
        if labels.numel():
            # One host sync for both checks: out-of-range labels would silently land in another cell.
            out_of_range, has_nan = torch.stack([((labels < 0) | (labels >= k)).any(), logits.isnan().any()]).tolist()
            if out_of_range:
                low, high = labels.min().item(), labels.max().item()
                raise ValueError(f"labels must lie in [0, {k}), got min {low} max {high}")
            if has_nan:
                raise ValueError("logits contain NaN")
        return labels

    @property
    def confusion(self) -> Tensor:
        """(K, K) int64 counts, rows = true class, columns = predicted class (a copy)."""
        return self._confusion.clone()

    @property
    def count(self) -> int:
        """Number of samples seen (on this rank, or on all ranks after `all_reduce`)."""
        return int(self._confusion.sum())

    def all_reduce(self) -> None:
        """Sum the counters over all ranks in place; a no-op unless torch.distributed is initialised.

        A collective: call it exactly once per evaluation, on every rank, after the last `update`
        (calling it twice would count every sample world-size times).
        """
        if not (dist.is_available() and dist.is_initialized()):
            return
        packed = torch.cat([self._confusion.flatten(), self._topk_correct])  # (K*K + len(topk),) one message
        home = packed.device
        if dist.get_backend() == "nccl" and home.type != "cuda":  # a rank that saw no batch is still on the CPU
            packed = packed.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(packed, op=dist.ReduceOp.SUM)
        packed = packed.to(home)
        k2 = self.num_classes ** 2
        self._confusion.copy_(packed[:k2].view_as(self._confusion))
        self._topk_correct.copy_(packed[k2:])

    def _per_class(self) -> dict[str, Tensor]:
        """Per-class counts and rates, float64 on the CPU, zero_division=0."""
        confusion = self._confusion.to("cpu", torch.float64)
        tp = confusion.diagonal()
        support = confusion.sum(1)        # samples of each true class
        predicted = confusion.sum(0)      # samples predicted as each class

        def ratio(num: Tensor, den: Tensor) -> Tensor:
            return torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(num))

        return {"tp": tp, "support": support, "predicted": predicted, "precision": ratio(tp, predicted),
                "recall": ratio(tp, support), "f1": ratio(2 * tp, support + predicted)}

    def compute(self) -> dict[str, float]:
        """Rates as fractions in [0, 1], in a flat dict.

        Keys: ``top{k}`` for each k <= K, ``precision_macro``, ``recall_macro``, ``f1_macro``,
        ``balanced_accuracy``, then ``precision/<name>`` and ``recall/<name>`` for every class.

        Raises:
            RuntimeError: if no sample was seen (an empty loader is a bug, not an accuracy of 0).
        """
        n = self.count
        if n == 0:
            raise RuntimeError("ClassificationMetric.compute() called with no samples; call update() first")
        stats = self._per_class()
        out = {f"top{k}": c / n for k, c in zip(self.topk, self._topk_correct.tolist()) if k <= self.num_classes}
        occurring = (stats["support"] + stats["predicted"]) > 0   # classes scikit-learn's macro average sees
        for name in ("precision", "recall", "f1"):
            out[f"{name}_macro"] = stats[name][occurring].mean().item()
        out["balanced_accuracy"] = stats["recall"][stats["support"] > 0].mean().item()
        for name in ("precision", "recall"):
            out.update({f"{name}/{cls}": v for cls, v in zip(self.class_names, stats[name].tolist())})
        return out

    def per_class_table(self) -> list[dict[str, str | int | float]]:
        """One row per class, in class order: class, support, precision, recall, f1 (for CSV writing)."""
        stats = self._per_class()
        columns = zip(self.class_names, stats["support"].tolist(), stats["precision"].tolist(),
                      stats["recall"].tolist(), stats["f1"].tolist())
        return [{"class": c, "support": int(s), "precision": p, "recall": r, "f1": f} for c, s, p, r, f in columns]


def topk_predictions(logits: Tensor, k: int,
                     class_names: Sequence[str] | None = None) -> list[list[tuple[str, float]]]:
    """The k most probable classes of every sample with their softmax probabilities.

    Ties go to the lower class index, as in `ClassificationMetric`, so the first entry is the class the
    metric counts as predicted.

    Args:
        logits: class scores.
        k: how many classes per sample; clipped to K.
        class_names: K names; defaults to "0" .. "K-1".

    Returns:
        For each sample, k (name, probability) pairs, most probable first.

    Shape:
        - logits: (B, K).
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (B, K), got {tuple(logits.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    num_classes = logits.shape[1]
    names = [str(i) for i in range(num_classes)] if class_names is None else list(class_names)
    if len(names) != num_classes:
        raise ValueError(f"got {len(names)} class_names for {num_classes} classes")
    scores = logits.detach().float()
    # Sort the logits, not the probabilities: softmax can round distinct logits to equal probabilities.
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]  # (B, min(k, K))
    probs = torch.softmax(scores, dim=1).gather(1, order)                            # (B, min(k, K))
    return [[(names[i], p) for i, p in zip(row_i, row_p)] for row_i, row_p in zip(order.tolist(), probs.tolist())]
