"""Fixtures for model tests: torchvision reference networks saved as checkpoints, never downloaded."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn


@pytest.fixture
def torchvision_checkpoint(tmp_path: Path) -> Callable[..., tuple[nn.Module, Path]]:
    """Build torchvision's `builder` (weights=None, seeded), save its state dict as .pth, return both.

    The reference model comes back in eval mode.
    """
    def make(builder: str, *, seed: int = 0, **kwargs: Any) -> tuple[nn.Module, Path]:
        torch.manual_seed(seed)
        if builder == "googlenet":
            kwargs.setdefault("init_weights", True)  # silences torchvision's FutureWarning; same init
        model = getattr(torchvision.models, builder)(weights=None, **kwargs).eval()
        path = tmp_path / f"{builder}.pth"
        torch.save(model.state_dict(), path)
        return model, path
    return make
