"""Name -> factory lookup. A dict and a decorator; nothing else."""
from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

Factory = TypeVar("Factory", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelInfo:
    name: str
    task: str                                        # "classify", "detect", ...
    test_input: tuple[int, int, int] = (3, 64, 64)   # smallest (C, H, W) the contract test may use
    paper: str = ""                                  # the paper the architecture comes from
    torchvision: str | None = None                   # torchvision's builder of the same network, if any
    also_tasks: tuple[str, ...] = ()                 # other tasks the factory serves (its `task=` keyword picks)
    classical: bool = False                          # fit in closed form (ninshiki.classical.base), not by SGD

    @property
    def tasks(self) -> tuple[str, ...]:
        return (self.task, *self.also_tasks)


_FACTORIES: dict[str, Callable[..., nn.Module]] = {}
_INFO: dict[str, ModelInfo] = {}


def register(*, task: str, test_input: tuple[int, int, int] = (3, 64, 64), paper: str = "",
             torchvision: str | None = None, also_tasks: tuple[str, ...] = (),
             classical: bool = False) -> Callable[[Factory], Factory]:
    """Register a factory under its function name.

    `also_tasks`: further tasks the same name serves; the factory then takes a `task=` keyword (HOG + SVM
    detects and classifies). `classical`: the model is fit in closed form, not trained by gradient steps.
    """
    def wrap(factory: Factory) -> Factory:
        name = factory.__name__
        if name in _FACTORIES:
            raise KeyError(f"model {name!r} is already registered")
        _FACTORIES[name] = factory
        _INFO[name] = ModelInfo(name, task, test_input, paper, torchvision, tuple(also_tasks),
                                classical)
        return factory
    return wrap


def _ensure_loaded() -> None:
    # Model modules register themselves on import; import them lazily so `import ninshiki` stays fast.
    from ninshiki import models  # noqa: F401


def get_factory(name: str) -> Callable[..., nn.Module]:
    _ensure_loaded()
    if name not in _FACTORIES:
        close = difflib.get_close_matches(name, _FACTORIES, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else " See `ninshiki models`."
        raise KeyError(f"unknown model {name!r}.{hint}")
    return _FACTORIES[name]


def list_models(pattern: str = "*", task: str | None = None) -> list[str]:
    """Registered model names matching a glob `pattern`, optionally of one task."""
    _ensure_loaded()
    return sorted(n for n, info in _INFO.items()
                  if fnmatch.fnmatch(n, pattern) and (task is None or task in info.tasks))


def model_info(name: str) -> ModelInfo:
    get_factory(name)
    return _INFO[name]


def build(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model with no weights loaded. Keyword arguments go to the factory unchanged."""
    return get_factory(name)(**kwargs)
