"""Classification: logits in, class labels out; cross-entropy with optional auxiliary heads."""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from ninshiki.structures import ClassifierOutput, split_logits


class ClassifyTask:
    """Binds a classifier's raw output to its loss and metric.

    GoogLeNet-style auxiliary classifiers add `aux_weight` times their cross-entropy to the loss in
    training, as in Szegedy et al. 2014 (0.3 there).
    """

    name = "classify"

    def __init__(self, *, label_smoothing: float = 0.0, aux_weight: float = 0.3) -> None:
        self.label_smoothing = label_smoothing
        self.aux_weight = aux_weight

    def loss(self, raw: Tensor | ClassifierOutput, labels: Tensor) -> dict[str, Tensor]:
        logits, aux = split_logits(raw)
        main = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        losses = {"loss": main, "ce": main.detach()}
        if aux:
            aux_loss = sum(F.cross_entropy(a.float(), labels, label_smoothing=self.label_smoothing) for a in aux)
            losses["loss"] = main + self.aux_weight * aux_loss
            losses["aux"] = aux_loss.detach()
        return losses

    @staticmethod
    def logits(raw: Tensor | ClassifierOutput) -> Tensor:
        return split_logits(raw)[0]

    @staticmethod
    def metric(num_classes: int, class_names: Sequence[str]):  # -> ClassificationMetric
        from ninshiki.metrics.classification import ClassificationMetric

        return ClassificationMetric(num_classes, class_names=class_names, topk=(1, 5))
