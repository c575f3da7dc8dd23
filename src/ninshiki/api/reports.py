"""The files every classification `train` and `val` leaves: confusion matrix and per-class table."""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from ninshiki.io import write_text


def write_classification_report(out: Path, confusion: Tensor, class_names: Sequence[str]) -> None:
    """OUT/confusion.csv, confusion.png, per_class.csv and per_class.png from a (K, K) confusion matrix."""
    from ninshiki.metrics.classification import ClassificationMetric
    from ninshiki.viz.confusion import save_confusion_matrix_csv, save_confusion_matrix_png
    from ninshiki.viz.per_class import save_per_class_bars

    save_confusion_matrix_csv(confusion, class_names, out / "confusion.csv")
    save_confusion_matrix_png(confusion, class_names, out / "confusion.png")
    table = ClassificationMetric.from_confusion(confusion, class_names=class_names).per_class_table()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()} for row in table)
    write_text(out / "per_class.csv", buffer.getvalue())
    save_per_class_bars(table, out / "per_class.png")
