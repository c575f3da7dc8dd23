import numpy as np
import pytest
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
