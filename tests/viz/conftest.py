from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image


@pytest.fixture
def open_png():
    """Open a written PNG, checking it is the only file in its folder (no temporary files left behind)."""
    def check(path: Path) -> Image.Image:
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
        with Image.open(path) as image:
            assert image.format == "PNG"
            image.load()
            return image
    return check
