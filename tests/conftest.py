from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture
def tiny_folder(tmp_path_factory):
    """A learnable 3-class ImageFolder of 16x16 RGB PNGs (12 per class) plus one corrupt file."""
    root = tmp_path_factory.mktemp("tiny") / "shapes"
    rng = np.random.default_rng(0)
    colours = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 60, 230)}
    for name, colour in colours.items():
        (root / name).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 60, (16, 16, 3)).astype(np.uint8) + (np.array(colour) * 0.7).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    (root / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root


@pytest.fixture(autouse=True)
def _one_intra_op_thread() -> Iterator[None]:
    """Run every test on one intra-op thread, then restore the setting.

    Test batches gain little from threads, and CI runs two pytest workers on two cores: with two threads
    each, OpenMP's spin-waiting at every parallel region made forward passes 10-100x slower (GoogLeNet at
    64 px, eval + train: 6.7 s with two threads, 0.07 s with one).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
