"""A torchvision state dict loads into our model unchanged and gives exactly torchvision's outputs.

Our ImageNet models are torchvision's classes with the backbone contract added, so with the same weights
they run the same kernels in the same order: outputs are compared bit for bit (atol=0, rtol=0).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from ninshiki.models import create_model
from ninshiki.registry import list_models, model_info
from ninshiki.structures import ClassifierOutput

# The other VGGs take 5 s each (two 130M-parameter builds and a 0.5 GB checkpoint): slow.
FAST = ("alexnet", "vgg11", "vgg16_bn", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
WITH_TORCHVISION = [n for n in list_models(task="classify") if model_info(n).torchvision and n != "googlenet"]
CASES = [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in WITH_TORCHVISION]

Checkpoint = Callable[..., tuple[nn.Module, Path]]


def test_every_fast_case_has_a_torchvision_counterpart() -> None:
    assert set(FAST) <= set(WITH_TORCHVISION)


@pytest.mark.parametrize("name", CASES)
def test_torchvision_weights_give_torchvision_outputs(name: str, torchvision_checkpoint: Checkpoint) -> None:
    reference, path = torchvision_checkpoint(model_info(name).torchvision)
    ours = create_model(name, num_classes=1000, weights=path).eval()
    x = torch.rand(2, 3, 64, 64)                            # the smallest size every network accepts
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=0, rtol=0)


@pytest.mark.parametrize("transform_input", [False, True])
def test_googlenet_matches_torchvision_in_eval_and_training(transform_input: bool,
                                                            torchvision_checkpoint: Checkpoint) -> None:
    reference, path = torchvision_checkpoint("googlenet", transform_input=transform_input)
    ours = create_model("googlenet", num_classes=1000, weights=path, transform_input=transform_input).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = ours(x)
        assert isinstance(out, ClassifierOutput) and out.aux_logits == ()
        torch.testing.assert_close(out.logits, reference(x), atol=0, rtol=0)

        # Training mode: same dropout draws in the same order, so the aux heads match too. torchvision
        # returns (logits, aux2, aux1); ours returns (logits, (aux1, aux2)).
        ours.train(), reference.train()
        torch.manual_seed(1)
        out = ours(x)
        torch.manual_seed(1)
        logits, aux2, aux1 = reference(x)
    torch.testing.assert_close(out.logits, logits, atol=0, rtol=0)
    torch.testing.assert_close(out.aux_logits[0], aux1, atol=0, rtol=0)
    torch.testing.assert_close(out.aux_logits[1], aux2, atol=0, rtol=0)
