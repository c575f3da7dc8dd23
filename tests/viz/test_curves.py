"""Training curves from the CSV log."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ninshiki.viz.curves import read_log, save_training_curves


def test_full_log_with_gaps_and_extra_columns(tmp_path: Path, open_png) -> None:
    log = tmp_path / "log" / "log.csv"
    log.parent.mkdir()
    log.write_text("epoch,train_loss,val_loss,val_top1,val_top5,lr,seconds,note\n"
                   "1,2.30,2.10,0.30,0.70,0.1,12.5,a\n"
                   "2,1.50,,,,0.1,12.1,b\n"          # validation every other epoch
                   "3,1.00,1.20,0.60,0.90,0.01,12.0,c\n", encoding="utf-8")
    path = save_training_curves(log, tmp_path / "out" / "curves.png")
    image = open_png(path)
    assert image.mode == "RGB" and image.size == (1000, 400)


def test_minimal_log_and_a_header_only_log(tmp_path: Path, open_png) -> None:
    (tmp_path / "a.csv").write_text("epoch,train_loss\n0,1.0\n1,0.5\n")
    (tmp_path / "b.csv").write_text("epoch,train_loss,val_top1,lr\n")
    assert open_png(save_training_curves(tmp_path / "a.csv", tmp_path / "a" / "a.png")).size == (1000, 400)
    assert open_png(save_training_curves(tmp_path / "b.csv", tmp_path / "b" / "b.png")).size == (1000, 400)


def test_read_log_turns_empty_and_malformed_cells_into_nan(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text("epoch,val_loss\n1,0.5\n2,\n3,oops\n")
    log = read_log(tmp_path / "log.csv")
    np.testing.assert_array_equal(log["epoch"], [1, 2, 3])
    np.testing.assert_array_equal(log["val_loss"], [0.5, np.nan, np.nan])


def test_log_without_epoch_column_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text("step,train_loss\n1,0.5\n")
    with pytest.raises(ValueError, match="'epoch' column"):
        save_training_curves(tmp_path / "log.csv", tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()
