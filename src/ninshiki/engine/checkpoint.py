"""Checkpoints as safetensors only: nothing a run writes or reads is ever unpickled.

Two kinds of file:
- weights (`best.safetensors`, `last.safetensors`): the model's state dict, plus a JSON record in the
  safetensors metadata (model name, classes, channels, input size, normalisation) so `val` and
  `predict` need nothing else;
- `train_state.safetensors`: everything `--resume` needs (raw model, optimizer, scheduler, EMA, RNG
  states, epoch, history). Nested optimizer/scheduler state is split into its tensors and a JSON
  skeleton that names them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ninshiki.io import save_safetensors

RECORD_KEY = "ninshiki"
FORMAT_VERSION = 1


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor], record: dict[str, Any]) -> None:
    record = {"format_version": FORMAT_VERSION, **record}
    save_safetensors(state_dict, path, metadata={RECORD_KEY: json.dumps(record)})


def read_record(path: str | Path) -> dict[str, Any]:
    """The JSON record a ninshiki weights file carries; {} for safetensors written by other tools."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix != ".safetensors":
        return {}
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for a bad header
        raise ValueError(f"{path}: not a readable safetensors file ({error})") from None
    text = metadata.get(RECORD_KEY)
    return json.loads(text) if text else {}


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested dict/list by {"__tensor__": key}, collecting the tensors."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[_flatten(k, f"{prefix}.k{i}", tensors), _flatten(v, f"{prefix}.{i}", tensors)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a checkpoint")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_train_state(path: str | Path, state: dict[str, Any]) -> None:
    """Save a nested dict of tensors and plain values (no objects) atomically."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "s", tensors)
    save_safetensors(tensors, path, metadata={"skeleton": json.dumps(skeleton)})


def load_train_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training state to resume from: {path} is missing")
    with safe_open(str(path), framework="pt") as f:
        skeleton = json.loads((f.metadata() or {})["skeleton"])
    return _unflatten(skeleton, load_file(str(path)))
