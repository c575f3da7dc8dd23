"""`ninshiki classify filters`: the first-layer filters of a CNN as a picture (the survey's AlexNet figure)."""
from __future__ import annotations

from pathlib import Path

from ninshiki.engine import checkpoint


def save_filters(*, model: str | None, weights: str | None, out: str) -> Path:
    """Write OUT/filters.png for trained weights (or a freshly initialised `model` when no weights are given)."""
    from ninshiki.api.weights_record import load_classifier
    from ninshiki.models.weights import create_model
    from ninshiki.viz.filters import save_filter_grid

    if weights and checkpoint.read_record(weights):
        net = load_classifier(weights, model).model
    elif model:
        net = create_model(model, weights=weights)   # e.g. a torchvision checkpoint: ImageNet's 1000 classes
    else:
        raise ValueError("classify filters needs --model, --weights, or both")
    path = Path(out) / "filters.png"
    save_filter_grid(net, path)
    print(f"first-layer filters of {model or 'the model'}: {path}", flush=True)
    return path
