"""Typed values that cross module boundaries."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from torch import Tensor


@dataclass(frozen=True)
class FeatureInfo:
    """One feature map a backbone exposes to heads."""
    channels: int     # channels of this feature map
    stride: int       # input pixels per feature-map pixel
    name: str         # module path that produces it, e.g. "layer3"


class ClassifierOutput(NamedTuple):
    """Raw output of classifiers with auxiliary heads (GoogLeNet), the same type in train and eval.

    Plain classifiers return their logits tensor directly; `split_logits` accepts both.
    """
    logits: Tensor                       # (B, K)
    aux_logits: tuple[Tensor, ...] = ()  # (B, K) each; computed in training mode only


def split_logits(raw: Tensor | ClassifierOutput) -> tuple[Tensor, tuple[Tensor, ...]]:
    """(main logits, auxiliary logits) of any classifier's raw output."""
    if isinstance(raw, ClassifierOutput):
        return raw.logits, raw.aux_logits
    return raw, ()
