"""ninshiki: image recognition end to end, deep and classical, under one API."""
from __future__ import annotations

from ninshiki.registry import list_models, model_info

__version__ = "0.1.0"
__all__ = ["__version__", "list_models", "model_info"]
