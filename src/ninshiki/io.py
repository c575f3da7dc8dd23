"""Atomic writes: every output is written to a temporary file beside its target, then renamed over it,
so a killed run never leaves a half-written checkpoint, JSON or PNG behind."""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to `path` if the block succeeds.

    The temporary name keeps the target's suffix so libraries that infer a format from it
    (matplotlib, PIL) still do.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600 files; outputs get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Strict JSON: NaN (a class without ground truth has no AP) is written as null, which every parser reads."""
    write_text(path, json.dumps(_nan_to_none(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else obj   # +-inf has no JSON spelling either; json raises, as it should
    if isinstance(obj, dict):
        return {key: _nan_to_none(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(value) for value in obj]
    return obj


def save_safetensors(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike[str],
                     metadata: Mapping[str, str] | None = None) -> None:
    """Save tensors (made contiguous, on the CPU) as safetensors, atomically."""
    from safetensors.torch import save_file

    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=dict(metadata or {}))
