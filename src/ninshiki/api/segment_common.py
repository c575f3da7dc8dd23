"""What `segment train`, `val` and `predict` share: building a segmenter (with CRF-as-RNN on top or not),
the record every weights file carries, and the reports."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ninshiki.io import write_json


@dataclass
class TrainedSegmenter:
    model: nn.Module
    name: str
    classes: list[str]
    colours: list[tuple[int, int, int]] | None
    image_size: int
    crf: bool
    max_size: int | None = None   # training's validation max_size: val and predict default to it


def segmenter_record(*, model: str, model_kwargs: dict[str, Any], classes: list[str],
                     colours: list[tuple[int, int, int]] | None, image_size: int, ignore_index: int,
                     crf: bool, crf_iterations: int, max_size: int | None = None) -> dict[str, Any]:
    """What every segmentation weights file says about itself, so val and predict need nothing else
    (`max_size`: the longer side images were scaled down to for validation, which val and predict reuse)."""
    return {"max_size": int(max_size) if max_size else None, "model": model, "model_kwargs": model_kwargs, "task": "segment", "classes": list(classes),
            "colours": [list(map(int, c)) for c in colours] if colours else None, "image_size": int(image_size),
            "ignore_index": int(ignore_index), "crf": bool(crf), "crf_iterations": int(crf_iterations)}


def build_segmenter(name: str, *, num_classes: int, model_kwargs: dict[str, Any], crf: bool = False,
                    crf_iterations: int = 5, weights: str | None = None) -> nn.Module:
    """A registered segmenter, wrapped in CRF-as-RNN when `crf`, with `weights` loaded.

    Weights of a CRF model load into the wrapper (`base.*`, `crf.*`); weights of a plain segmenter (or a
    torchvision backbone checkpoint) load into the base, so a trained FCN can start a CRF-as-RNN run, as
    the paper trains it.
    """
    from ninshiki.api.detect_train import check_task
    from ninshiki.engine import checkpoint
    from ninshiki.models.segment.crf_rnn import with_crf
    from ninshiki.models.weights import create_model, load_weights

    check_task(name, "segment")   # a detector or classifier would fail deep inside the training step
    weights_have_crf = bool(weights and str(weights).endswith(".safetensors")
                            and checkpoint.read_record(weights).get("crf"))
    base = create_model(name, num_classes=num_classes, weights=None if weights_have_crf else weights,
                        **model_kwargs)
    if not crf:
        if weights_have_crf:
            raise ValueError(f"{weights}: holds a CRF-as-RNN model; add --crf to use it")
        return base
    model = with_crf(base, iterations=crf_iterations)
    if weights_have_crf:
        load_weights(model, weights)
    return model


def load_segmenter(weights: str, model: str | None = None, crf_iterations: int | None = None, *,
                   add_crf: bool = False) -> TrainedSegmenter:
    """Trained weights with their record. `add_crf` puts CRF-as-RNN at its initial parameters (the dense CRF's
    usual settings) on top of a plain segmenter, as test-time post-processing; weights trained with the CRF
    keep their own."""
    from ninshiki.api.weights_record import read_task_record

    record = read_task_record(weights, task="segment", model=model)
    crf = bool(record.get("crf")) or add_crf
    net = build_segmenter(record["model"], num_classes=len(record["classes"]),
                          model_kwargs=record.get("model_kwargs", {}), crf=crf,
                          crf_iterations=int(record.get("crf_iterations", 5)), weights=weights)
    if crf and crf_iterations is not None:
        net.crf.eval_iterations = crf_iterations
    colours = [tuple(c) for c in record["colours"]] if record.get("colours") else None
    return TrainedSegmenter(net.eval(), record["model"], list(record["classes"]), colours,
                            int(record["image_size"]), crf, record.get("max_size"))


def test_time_model(trained: TrainedSegmenter, *, tta: bool, tta_scales: str) -> nn.Module:
    """The trained model, or with `tta` the same averaged over mirrored and rescaled inputs (under its CRF)."""
    from ninshiki.config_segment import parse_scales
    from ninshiki.models.segment.tta import with_test_time_augmentation

    return with_test_time_augmentation(trained.model, scales=parse_scales(tta_scales)) if tta else trained.model


def write_segmentation_report(out: Path, metric: Any, scores: dict[str, float], classes: list[str]) -> None:
    """metrics.json, the per-class IoU table (CSV and Markdown) and the per-class IoU bars."""
    from ninshiki.metrics.segmentation import write_per_class_iou
    from ninshiki.viz.segmentation import save_class_iou_bars

    write_json(out / "metrics.json", {k: float(v) for k, v in scores.items()})
    write_per_class_iou(out, metric)
    save_class_iou_bars(out / "class_iou.png", {name: scores.get(f"iou/{name}", float("nan")) for name in classes})
