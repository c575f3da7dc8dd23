"""Confusion matrix PNG and CSV."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ninshiki.viz.confusion import row_normalize, save_confusion_matrix_csv, save_confusion_matrix_png


def test_png_of_three_classes(tmp_path: Path, open_png) -> None:
    confusion = torch.tensor([[5, 1, 0], [2, 7, 1], [0, 0, 0]])   # last class has no samples
    path = save_confusion_matrix_png(confusion, ["cat", "dog", "a rather long bird name"], tmp_path / "cm.png",
                                     title="val")
    image = open_png(path)
    assert image.mode == "RGB" and image.size == (650, 500)       # (5 + 1.5) x 5 inches at 100 dpi


@pytest.mark.parametrize("k, normalize", [(1, True), (25, False), (70, True)])
def test_png_sizes_for_any_k(tmp_path: Path, open_png, k: int, normalize: bool) -> None:
    counts = np.random.default_rng(k).integers(0, 9, (k, k))
    path = save_confusion_matrix_png(counts, None, tmp_path / "cm.png", normalize=normalize)
    side = min(4 + 0.5 * -(-k // 2), 20)
    assert open_png(path).size == (round((side + 1.5) * 100), round(side * 100))


def test_row_normalize_leaves_empty_rows_zero() -> None:
    rates = row_normalize(np.array([[1, 3], [0, 0]]))
    np.testing.assert_array_equal(rates, [[0.25, 0.75], [0.0, 0.0]])


def test_csv_has_names_on_both_axes(tmp_path: Path) -> None:
    path = save_confusion_matrix_csv(torch.tensor([[3, 1], [0, 4]]), ["cat", "dog, big"], tmp_path / "cm.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.csv"]
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows == [["true\\predicted", "cat", "dog, big"], ["cat", "3", "1"], ["dog, big", "0", "4"]]


def test_csv_keeps_float_precision(tmp_path: Path) -> None:
    path = save_confusion_matrix_csv(np.array([[1 / 3, 2 / 3], [0.0, 1.0]]), None, tmp_path / "cm.csv")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true\\predicted", "0", "1"] and float(rows[1][1]) == 1 / 3


@pytest.mark.parametrize("bad, message", [(np.zeros((2, 3)), "square"), (np.zeros((0, 0)), "square"),
                                          (np.array([[1, -1], [0, 0]]), "non-negative")])
def test_bad_matrices_are_rejected(tmp_path: Path, bad: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        save_confusion_matrix_png(bad, None, tmp_path / "cm.png")
    with pytest.raises(ValueError, match=message):
        save_confusion_matrix_csv(bad, None, tmp_path / "cm.csv")
    assert not any(tmp_path.iterdir())


def test_wrong_number_of_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3 class names for a 2 x 2"):
        save_confusion_matrix_png(np.eye(2, dtype=int), ["a", "b", "c"], tmp_path / "cm.png")


def test_importing_viz_leaves_pyplot_alone() -> None:
    code = "import sys, ninshiki.viz; assert 'matplotlib.pyplot' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
