"""Fixtures for model tests: torchvision reference networks saved as checkpoints, never downloaded."""
from __future__ import annotations

from collections.abc import Callable, Iterator
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


@pytest.fixture(autouse=True)
def _one_intra_op_thread() -> Iterator[None]:
    """Run model tests on one intra-op thread, then restore the setting.

    Batches of two gain nothing from threads, and on shared 2-vCPU machines OpenMP's spin-waiting at each
    parallel region made forward passes 10-100x slower (GoogLeNet at 64 px, eval + train: 6.7 s with two
    threads, 0.07 s with one; OMP_WAIT_POLICY=passive also cures it but must be set before torch loads).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
