"""The model contracts of DESIGN.md as typing Protocols, for annotations and `isinstance` checks."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from ninshiki.structures import ClassifierOutput, FeatureInfo


@runtime_checkable
class Backbone(Protocol):
    """A network that exposes multi-scale feature maps to task heads.

    `feature_info[i]` describes `forward_features(x)[i]`: its channels, its stride (input pixels per
    feature-map pixel) and the module that produces it. Heads read channels from it, never hard-code them.
    """

    feature_info: list[FeatureInfo]

    def forward_features(self, x: Tensor) -> list[Tensor]: ...


@runtime_checkable
class Classifier(Backbone, Protocol):
    """A backbone with a classification head.

    Calling it returns the logits (B, K), or a `ClassifierOutput` for networks with auxiliary heads; the
    type is the same in training and evaluation mode. `classifier_names` are the modules whose shapes
    depend on the number of classes, which `load_weights` re-initialises when the class count changes.
    """

    classifier_names: tuple[str, ...]

    def __call__(self, x: Tensor) -> Tensor | ClassifierOutput: ...
