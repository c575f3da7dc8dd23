"""ROC figure: a readable PNG of the expected size, on log and linear FAR axes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ninshiki.metrics.verification import VerificationMetric
from ninshiki.viz.roc import save_roc


def curve(separation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    same = np.r_[np.ones(300, bool), np.zeros(3000, bool)]
    metric = VerificationMetric()
    metric.update(rng.normal(size=len(same)) + separation * same, same)
    far, tar, _ = metric.roc()
    return far, tar


@pytest.mark.parametrize("log_far", [True, False])
def test_writes_a_png(tmp_path: Path, open_png, log_far: bool) -> None:
    curves = {"triplet": curve(3.0, 0), "raw pixels": curve(1.0, 1)}
    path = save_roc(curves, tmp_path / "out" / "roc.png", log_far=log_far, title="open-set verification")
    image = open_png(path)
    assert image.mode == "RGB" and image.size == (600, 500)
    pixels = np.asarray(image)
    assert pixels.std() > 10                                    # drawn on the white background
    assert (np.abs(pixels.astype(int) - [255, 255, 255]).sum(-1) > 0).mean() > 0.02


def test_empty_and_bad_curves(tmp_path: Path, open_png) -> None:
    assert open_png(save_roc({}, tmp_path / "empty" / "roc.png")).size == (600, 500)
    with pytest.raises(ValueError, match="curve 'bad': FAR and TAR must not decrease"):
        save_roc({"bad": ([0.0, 0.5, 0.2], [0.0, 0.5, 1.0])}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="curve 'short': needs equal"):
        save_roc({"short": ([0.0, 1.0], [0.0])}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
