"""The local-feature network contract over every registered `match` model (LIFT): detector -> orientation ->
descriptor shapes and ranges, a training gradient to every parameter, weights round trip through the registry."""
from __future__ import annotations

import pytest
import torch

import ninshiki
from ninshiki.io import save_safetensors
from ninshiki.models.weights import create_model
from ninshiki.registry import model_info

MATCHERS = ninshiki.list_models(task="match")


def test_lift_is_registered() -> None:
    assert "lift" in MATCHERS and all(model_info(n).paper for n in MATCHERS)


@pytest.mark.parametrize("name", MATCHERS)
def test_detector_orientation_descriptor_contract(name: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=0, in_channels=1)
    size = model_info(name).test_input[1:]
    images = torch.rand(2, 1, *size)
    patches = torch.rand(5, 1, model.patch_size, model.patch_size)
    scores = model.score_map(images)
    assert scores.shape == (2, 1, *size) and torch.isfinite(scores).all()
    angles = model.orient(patches)
    assert angles.shape == (5,) and ((angles >= 0) & (angles < 360)).all()
    descriptors = model.describe(patches)
    assert descriptors.shape == (5, model.descriptor_dim)
    assert torch.allclose(descriptors.norm(dim=1), torch.ones(5), atol=1e-5)
    (scores.mean() + model.orientation_vectors(patches).sum() + descriptors.sum()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    save_safetensors(model.state_dict(), tmp_path / "w.safetensors")
    loaded = create_model(name, num_classes=0, in_channels=1, weights=tmp_path / "w.safetensors").eval()
    model.eval()
    assert torch.equal(loaded.describe(patches), model.describe(patches))
