"""Build registered models and load weights into them from safetensors files or PyTorch checkpoints.

Loading is strict, with two deliberate exceptions for fine-tuning: classifier layers whose class count
differs keep their fresh initialisation, and a first convolution trained on RGB is adapted to gray input
(or the reverse). Everything else that does not match is an error naming the file and the keys.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ninshiki.registry import build

logger = logging.getLogger(__name__)

_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_WRAPPER_KEYS = ("state_dict", "model")      # Lightning / torchvision-reference training checkpoints
_PREFIXES = ("module.", "_orig_mod.")        # DistributedDataParallel, torch.compile


@dataclass(frozen=True)
class LoadReport:
    """What `load_weights` did with each of the model's state-dict keys."""
    loaded: tuple[str, ...]          # copied from the checkpoint unchanged
    reinitialised: tuple[str, ...]   # classifier tensors whose class count differs; fresh init kept
    adapted: tuple[str, ...]         # first-convolution weight converted between 3 and 1 input channels


def create_model(name: str, *, num_classes: int = 1000, in_channels: int = 3,
                 weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model and optionally load weights into it.

    Args:
        name: Registered model name, e.g. "resnet50" (see `ninshiki.list_models()`).
        num_classes: Number of classes K of the classifier.
        in_channels: Input image channels (1 for gray, 3 for RGB).
        weights: A `.safetensors`, `.pth`, `.pt`, `.bin` or `.ckpt` file to load; see `load_weights`.
        **kwargs: Passed to the model's factory unchanged.
    """
    model = build(name, num_classes=num_classes, in_channels=in_channels, **kwargs)
    if weights is not None and getattr(model, "classical", False):
        model.load_state(read_state_dict(weights))   # learned state of any size (codebooks, cascades)
    elif weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> LoadReport:
    """Load a state dict from `path` into `model`, in place.

    Wrappers such as {"state_dict": ...} or {"model": ...} are unwrapped and "module." / "_orig_mod."
    prefixes stripped. Tensors under `model.classifier_names` whose class count differs are skipped (the
    layer keeps its fresh initialisation), and a first-convolution weight with 3 input channels is summed
    into 1 (or a 1-channel one spread over 3), each with a logged message.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file is unreadable or corrupt, or any other key is missing, unexpected or of
            another shape.
    """
    path = Path(path)
    own = model.state_dict()
    state = _strip_prefixes(read_state_dict(path), own.keys())
    classifiers = tuple(getattr(model, "classifier_names", ()))
    merged, report, problems = _merge(own, state, classifiers, f"{_first_conv_name(model)}.weight",
                                      getattr(model, "num_classes", None))
    if problems:
        raise ValueError(f"{path} does not fit {type(model).__name__}: {problems}")
    model.load_state_dict(merged, strict=True)
    _log_changes(state, own, report, classifiers)
    return report


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read the tensors of a weights file onto the CPU, unwrapping training-checkpoint wrappers.

    `.pth`, `.pt`, `.bin` and `.ckpt` files are read with `torch.load(weights_only=True)`, which refuses
    to unpickle anything but tensors and plain containers.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(path, device="cpu")
        except Exception as e:  # safetensors raises its own SafetensorError, and OSError
            raise ValueError(f"{path} is not a readable safetensors file: {_first_line(e)}") from e
    elif suffix in _TORCH_SUFFIXES:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # UnpicklingError (also for refused objects), RuntimeError (bad zip), EOFError
            raise ValueError(_torch_load_error(path, e)) from e
    else:
        raise ValueError(f"{path}: unknown weights format {suffix!r}; expected .safetensors, "
                         f"{', '.join(_TORCH_SUFFIXES)}")
    return _unwrap(obj, path)


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of parameter names to tensors)")
    return dict(obj)


def _strip_prefixes(state: dict[str, Tensor], own_keys: Collection[str]) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        name = key
        while name not in own_keys and name.startswith(_PREFIXES):
            name = name.split(".", 1)[1]
        out[name] = value
    return out


def _class_dims_differ(theirs: torch.Size, mine: torch.Size, num_classes: int | None) -> bool:
    """Whether two shapes of a class-dependent tensor differ only in class-count dimensions: dim 0 (K, K + 1
    with a background, 4 (K + 1) box deltas), and, when the model's `num_classes` is known, other dims of size
    K or K + 1 (FCN's learned (K, K, k, k) upsampling). A classifier whose input size differs is not one."""
    if len(theirs) != len(mine):
        return False
    differing = [i for i, (a, b) in enumerate(zip(theirs, mine)) if a != b]
    if num_classes is None:
        return differing == [0]
    return bool(differing) and all(i == 0 or mine[i] in (num_classes, num_classes + 1) for i in differing)


def _merge(own: Mapping[str, Tensor], state: Mapping[str, Tensor], classifiers: tuple[str, ...],
           first_conv: str, num_classes: int | None = None) -> tuple[dict[str, Tensor], LoadReport, str]:
    """The state dict to load, what was done to each key, and a description of what does not fit ("" if all)."""
    merged: dict[str, Tensor] = {}
    loaded: list[str] = []
    reinitialised: list[str] = []
    adapted: list[str] = []
    missing: list[str] = []
    mismatched: list[str] = []
    for key, mine in own.items():
        theirs = state.get(key)
        if theirs is None:
            if key.endswith("num_batches_tracked"):  # absent from old checkpoints; torch fills it in too
                merged[key] = mine
            else:
                missing.append(key)
        elif theirs.shape == mine.shape:
            merged[key] = theirs
            loaded.append(key)
        elif _owner(key, classifiers) and _class_dims_differ(theirs.shape, mine.shape, num_classes):
            merged[key] = mine
            reinitialised.append(key)
        elif key == first_conv and (converted := _adapt_first_conv(theirs.to(mine.dtype), mine.shape)) is not None:
            merged[key] = converted
            adapted.append(key)
        else:
            mismatched.append(f"{key} (file {tuple(theirs.shape)}, model {tuple(mine.shape)})")
    unexpected = [key for key in state if key not in own]
    problems = "; ".join(f"{label}: {_preview(keys)}" for label, keys in (
        ("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if keys)
    return merged, LoadReport(tuple(loaded), tuple(reinitialised), tuple(adapted)), problems


def _first_conv_name(model: nn.Module) -> str:
    name = getattr(model, "first_conv", None)
    if name is not None:
        return str(name)
    return next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), "")


def _owner(key: str, modules: tuple[str, ...]) -> str | None:
    return next((m for m in modules if key.startswith(f"{m}.")), None)


def _adapt_first_conv(weight: Tensor, shape: torch.Size) -> Tensor | None:
    """A (O, I, kh, kw) first-convolution weight converted to the model's input channels, or None."""
    if weight.shape[0] != shape[0] or weight.shape[2:] != shape[2:]:
        return None
    if (weight.shape[1], shape[1]) == (3, 1):
        return weight.sum(dim=1, keepdim=True)   # a gray image replicated to RGB gives the same response
    if (weight.shape[1], shape[1]) == (1, 3):
        return weight.repeat(1, 3, 1, 1) / 3     # the same, the other way round
    return None


def _log_changes(state: Mapping[str, Tensor], own: Mapping[str, Tensor], report: LoadReport,
                 classifiers: tuple[str, ...]) -> None:
    for module in dict.fromkeys(_owner(key, classifiers) for key in report.reinitialised):
        key = next(k for k in report.reinitialised if _owner(k, classifiers) == module)
        logger.info("%s: checkpoint has %d classes, model has %d; the classifier was re-initialised",
                    module, state[key].shape[0], own[key].shape[0])
    for key in report.adapted:
        have, want = state[key].shape[1], own[key].shape[1]
        how = "summed over input channels" if want == 1 else "spread evenly over the input channels"
        logger.info("%s: checkpoint has %d input channels, model has %d; the weights were %s",
                    key.rsplit(".", 1)[0], have, want, how)


def _preview(keys: list[str], limit: int = 8) -> str:
    more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _torch_load_error(path: Path, error: Exception) -> str:
    # torch's own message suggests weights_only=False, which would run code from the file; say what failed.
    text = str(error)
    if found := re.search(r"Unsupported global: GLOBAL (\S+)", text):
        return (f"{path} holds pickled Python objects besides tensors ({found[1]}), which are not unpickled "
                f"(torch.load with weights_only=True runs no code from the file); save the state dict alone, "
                f"with torch.save(model.state_dict(), path) or as safetensors")
    if "WeightsUnpickler error:" in text:
        detail = next((line.strip() for line in text.split("WeightsUnpickler error:", 1)[1].splitlines()
                       if line.strip()), "")
        return f"{path} is corrupt or not a PyTorch checkpoint ({detail})"
    line = text.strip().splitlines()[0] if text.strip() else ""
    return f"{path} is corrupt or not a PyTorch checkpoint ({type(error).__name__}{': ' if line else ''}{line})"


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
