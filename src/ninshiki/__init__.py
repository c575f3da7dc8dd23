"""ninshiki: image recognition end to end, deep and classical, under one API."""
from __future__ import annotations

from typing import Any

from ninshiki.registry import list_models, model_info

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "evaluate", "list_models", "model_info", "predict", "train"]

# Heavier entry points load on first use, so `import ninshiki` stays quick.
_LAZY = {
    "create_model": ("ninshiki.models.weights", "create_model"),
    "train": ("ninshiki.api.classify_train", "train"),
    "evaluate": ("ninshiki.api.classify_eval", "evaluate"),
    "predict": ("ninshiki.api.classify_predict", "predict"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'ninshiki' has no attribute {name!r}")
