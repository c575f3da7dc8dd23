"""The per-epoch CSV log of a run."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ninshiki.io import write_text


def write_epoch_log(path: Path, history: list[dict[str, float]]) -> None:
    """Rewrite the whole (small) log each epoch, atomically, so it is never half-written."""
    columns: list[str] = []
    for row in history:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(path, buffer.getvalue())
