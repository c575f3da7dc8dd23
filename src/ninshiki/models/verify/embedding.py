"""Embedding networks for verification: Schroff, Kalenichenko and Philbin, "FaceNet: A Unified Embedding for
Face Recognition and Clustering" (CVPR 2015, arXiv:1503.03832).

A classification backbone's last feature map, global-average pooled, goes through a projection head and is
L2-normalised, so that the embeddings lie on the unit hypersphere and a distance threshold decides whether
two images show the same identity. The network trains with the triplet loss on P x K batches (the miners are
FaceNet's semi-hard and Hermans et al.'s batch-hard) or with the contrastive loss as a baseline; the choice
and its margin are attributes of the model that its `loss` method (and the trainer) read.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ninshiki.models.classify.resnet import resnet18
from ninshiki.models.classify.resnet_cifar import resnet20
from ninshiki.models.verify.losses import METRICS, contrastive_loss, triplet_loss
from ninshiki.models.verify.mining import MINING_STRATEGIES
from ninshiki.registry import register
from ninshiki.structures import FeatureInfo

_PAPER = "Schroff et al., FaceNet: A unified embedding for face recognition and clustering, CVPR 2015"
LOSSES: tuple[str, ...] = ("triplet", "contrastive")
_DEFAULT_MARGIN = {"triplet": 0.2, "contrastive": 1.0}   # FaceNet's 0.2; see contrastive_loss for 1.0


class EmbeddingNet(nn.Module):
    """A classifier's trunk, global average pooling, a projection head and L2 normalisation.

    The trunk's classifier layers (its `classifier_names`) are replaced by `nn.Identity`: they are never
    used, and parameters without gradients would only cost memory (a trunk whose head has more layers than
    those, AlexNet's fc6 / fc7 or GoogLeNet's auxiliary classifiers, keeps them unused). The head is
    Linear -> BatchNorm -> ReLU -> Linear at the trunk's width ("mlp") or a single Linear ("linear",
    FaceNet's embedding layer).
    Inputs are normalised as for the trunk's classifier (the engine's normaliser, not the model).

    Args:
        trunk: A classifier with the backbone contract (`forward_features`, `feature_info`,
            `classifier_names`, `first_conv`).
        embedding_dim: D, the embedding size (FaceNet: 128).
        head: "mlp" or "linear".
        loss: "triplet" or "contrastive".
        mining: Triplet selection: "batch_hard", "semi_hard" or "batch_all" (see `mining`).
        margin: The loss's margin; None for 0.2 (triplet, FaceNet's) or 1.0 (contrastive).
        metric: Distance the loss uses: "euclidean", "sqeuclidean" or "cosine".

    Shape:
        - Input: (B, C, H, W) as the trunk takes it; B >= 2 in training mode (batch norm in the head).
        - Output: (B, embedding_dim) unit vectors, in training and evaluation mode alike.
    """

    feature_info: list[FeatureInfo]

    def __init__(self, *, trunk: nn.Module, embedding_dim: int = 128, head: str = "mlp", loss: str = "triplet",
                 mining: str = "batch_hard", margin: float | None = None, metric: str = "euclidean") -> None:
        super().__init__()
        _check_options(embedding_dim, head, loss, mining, metric)
        self.trunk = trunk
        self.trunk_classifier_names = tuple(trunk.classifier_names)
        for name in self.trunk_classifier_names:
            parent, _, leaf = name.rpartition(".")
            setattr(trunk.get_submodule(parent) if parent else trunk, leaf, nn.Identity())
        width = trunk.feature_info[-1].channels
        if head == "mlp":
            self.head = nn.Sequential(nn.Linear(width, width, bias=False), nn.BatchNorm1d(width),
                                      nn.ReLU(inplace=True), nn.Linear(width, embedding_dim))
        else:
            self.head = nn.Sequential(nn.Linear(width, embedding_dim))
        self.classifier_names = (f"head.{len(self.head) - 1}",)    # the layer whose shape depends on D
        self.first_conv = f"trunk.{trunk.first_conv}"
        self.feature_info = [FeatureInfo(i.channels, i.stride, f"trunk.{i.name}") for i in trunk.feature_info]
        self.embedding_dim = embedding_dim
        self.loss_name, self.mining, self.metric = loss, mining, metric
        self.margin = float(_DEFAULT_MARGIN[loss] if margin is None else margin)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        return self.trunk.forward_features(x)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.forward_features(x)[-1].mean(dim=(2, 3))           # (B, C)
        return F.normalize(self.head(pooled), dim=1)                     # (B, D)

    def loss(self, embeddings: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """The configured loss of a batch's embeddings: "loss" plus detached statistics (see `losses`).

        Shape:
            - embeddings: (B, D) from `forward`; labels: (B,) integer identities, a P x K batch.
        """
        if self.loss_name == "contrastive":
            return contrastive_loss(embeddings, labels, margin=self.margin, metric=self.metric)
        return triplet_loss(embeddings, labels, margin=self.margin, mining=self.mining, metric=self.metric)

    def load_trunk_state(self, state: Mapping[str, Tensor]) -> tuple[str, ...]:
        """Load a classifier's state dict (e.g. torchvision's ImageNet ResNet-18) into the trunk, in place.

        The classifier's own layers are skipped, and a first-convolution weight trained on RGB is summed
        into one channel for gray input (or spread from gray over RGB); everything else must match exactly.

        Returns:
            The keys skipped (the classifier layers').

        Raises:
            RuntimeError: keys missing, unexpected or of another shape (from `load_state_dict`).
        """
        skipped = tuple(k for k in state if any(k.startswith(f"{n}.") for n in self.trunk_classifier_names))
        trunk_state = {k: v for k, v in state.items() if k not in skipped}
        conv = f"{self.trunk.first_conv}.weight"
        mine = self.trunk.get_submodule(self.trunk.first_conv).weight
        if conv in trunk_state and trunk_state[conv].shape != mine.shape:
            trunk_state[conv] = _adapt_channels(trunk_state[conv], mine.shape[1])
        self.trunk.load_state_dict(trunk_state, strict=True)
        return skipped

    def load_trunk_weights(self, path: str | os.PathLike[str]) -> tuple[str, ...]:
        """`load_trunk_state` from a weights file (.safetensors, .pth, ...; see `read_state_dict`)."""
        from ninshiki.models.weights import read_state_dict

        return self.load_trunk_state(read_state_dict(path))


def _adapt_channels(weight: Tensor, channels: int) -> Tensor:
    # A gray image replicated to RGB gives the same response as the summed filter (and the reverse).
    if (weight.shape[1], channels) == (3, 1):
        return weight.sum(dim=1, keepdim=True)
    if (weight.shape[1], channels) == (1, 3):
        return weight.repeat(1, 3, 1, 1) / 3
    return weight   # load_state_dict reports the mismatch


def _check_options(embedding_dim: int, head: str, loss: str, mining: str, metric: str) -> None:
    options = {"head": (head, ("mlp", "linear")), "loss": (loss, LOSSES), "mining": (mining, MINING_STRATEGIES),
               "metric": (metric, METRICS)}
    for name, (value, allowed) in options.items():
        if value not in allowed:
            raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(allowed)}")
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be >= 1; got {embedding_dim}")


@register(task="verify", test_input=(3, 64, 64), paper=_PAPER)
def triplet_resnet18(*, num_classes: int = 0, in_channels: int = 3, embedding_dim: int = 128,
                     **kwargs: Any) -> EmbeddingNet:
    """ResNet-18 trunk (torchvision's layout: `load_trunk_weights` takes its ImageNet weights) with a
    128-d embedding. `num_classes` is accepted for the common factory signature and ignored: an embedding
    has no classes. kwargs: `head`, `loss`, `mining`, `margin`, `metric` (see `EmbeddingNet`)."""
    del num_classes
    trunk = resnet18(num_classes=1, in_channels=in_channels)   # its classifier is dropped: 1 class is cheapest
    return EmbeddingNet(trunk=trunk, embedding_dim=embedding_dim, **kwargs)


@register(task="verify", test_input=(1, 28, 28), paper=_PAPER)
def triplet_resnet20(*, num_classes: int = 0, in_channels: int = 3, embedding_dim: int = 128,
                     **kwargs: Any) -> EmbeddingNet:
    """The 0.27M-parameter CIFAR ResNet-20 trunk for 28-64 px images (Fashion-MNIST, face crops) with a
    128-d embedding. `num_classes` is accepted for the common factory signature and ignored. kwargs: `head`,
    `loss`, `mining`, `margin`, `metric` (see `EmbeddingNet`)."""
    del num_classes
    trunk = resnet20(num_classes=1, in_channels=in_channels)
    return EmbeddingNet(trunk=trunk, embedding_dim=embedding_dim, **kwargs)


def embed(model: nn.Module, images: Tensor, *, batch_size: int = 256) -> Tensor:
    """Embeddings of many images in evaluation mode, without gradients, in batches.

    The model's training mode is restored afterwards.

    Shape:
        - images: (N, C, H, W), normalised as the model takes them.
        - Output: (N, D) on the images' device.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            parts = [model(images[i:i + batch_size]) for i in range(0, images.shape[0], batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else images.new_zeros(0, getattr(model, "embedding_dim", 0))
