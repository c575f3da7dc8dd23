"""`ninshiki segment predict`: a class for every pixel of an image, a folder, a glob or a video.

Writes OUT/masks/<name>.png (the class map as a VOC palette PNG: values are class indices, colours for
viewing), OUT/images/<name>.png (the image with the class colours laid over it and a legend; for a video, a
drawn video), OUT/predictions.json (per image: file, size and the pixel count of every class present) and
OUT/classes.json (index, name, colour).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ninshiki.api.detect_predict import drawn_name
from ninshiki.api.segment_common import load_segmenter, test_time_model
from ninshiki.config import to_yaml
from ninshiki.config_detect import require
from ninshiki.config_segment import SegmentPredictConfig
from ninshiki.engine.runtime import make_runtime
from ninshiki.engine.segment_loop import original_predictions
from ninshiki.io import write_json, write_text

STRIDE = 32   # inputs are padded to a multiple of the networks' largest stride


def _network_input(image: Tensor, max_size: int | None) -> Tensor:
    """uint8 (3, H, W) -> float (3, h, w) in [0, 1], scaled down when its longer side passes `max_size`."""
    x = image.float().div_(255)
    longer = max(image.shape[1:])
    if max_size and longer > max_size:
        scale = max_size / longer
        size = [max(1, round(image.shape[1] * scale)), max(1, round(image.shape[2] * scale))]
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return x


@torch.no_grad()
def segment_images(model: torch.nn.Module, images: list[Tensor], device: torch.device,
                   max_size: int | None = None) -> list[Tensor]:
    """Class maps (H, W) int64 of uint8 (3, H, W) images, at each image's own resolution."""
    inputs = [_network_input(image, max_size) for image in images]
    height = max(math.ceil(x.shape[1] / STRIDE) * STRIDE for x in inputs)
    width = max(math.ceil(x.shape[2] / STRIDE) * STRIDE for x in inputs)
    batch = torch.zeros(len(inputs), 3, height, width)                  # (B, 3, H, W) zero-padded bottom/right
    for i, x in enumerate(inputs):
        batch[i, :, :x.shape[1], :x.shape[2]] = x
    raw = model(batch.to(device))
    valid = [(x.shape[1], x.shape[2]) for x in inputs]
    original = [(image.shape[1], image.shape[2]) for image in images]
    return [labels.cpu() for labels in original_predictions(raw.logits, valid, original)]


def _record(labels: Tensor, name: str, classes: list[str]) -> dict[str, Any]:
    counts = torch.bincount(labels.flatten(), minlength=len(classes))
    return {"file_name": name, "height": int(labels.shape[0]), "width": int(labels.shape[1]),
            "pixels": {classes[k]: int(c) for k, c in enumerate(counts.tolist()) if c}}


def predict(config: SegmentPredictConfig) -> list[dict[str, Any]]:
    """Run `config.weights` on `config.source`; returns the per-image records written to predictions.json."""
    from ninshiki.data.detection.sources import iter_sources

    require(config, "source", "weights")
    runtime = make_runtime(device=config.device, amp="off", channels_last="off")
    trained = load_segmenter(config.weights, config.model, config.crf_iterations, add_crf=config.crf)
    model = test_time_model(trained, tta=config.tta, tta_scales=config.tta_scales).to(runtime.device)
    max_size = config.max_size if config.max_size is not None else trained.max_size   # as validated in training
    colours = _colours(trained)
    out = Path(config.out)
    records: list[dict[str, Any]] = []
    writers: dict[str, Any] = {}
    skipped: list[str] = []
    try:
        bar = tqdm(desc="segmenting", unit="img", disable=None, dynamic_ncols=True)
        for batch in iter_sources(config.source, batch_size=config.batch_size, video_stride=config.video_stride):
            skipped += batch.skipped
            if not batch.images:
                continue
            for offset, labels in enumerate(segment_images(model, batch.images, runtime.device, max_size)):
                name = batch.names[offset]
                records.append(_record(labels, name, trained.classes))
                _save_outputs(config, out, batch, offset, labels, trained.classes, colours, writers)
            bar.update(len(batch.images))
        bar.close()
    finally:
        for writer in writers.values():
            writer.close()
    write_text(out / "config.yaml", to_yaml(config))
    write_json(out / "predictions.json", records)
    write_json(out / "classes.json", [{"index": k, "name": n, "colour": list(colours[k])}
                                      for k, n in enumerate(trained.classes)])
    if skipped:
        write_text(out / "skipped.txt", "\n".join(skipped) + "\n")
        print(f"skipped {len(skipped)} unreadable file(s); listed in {out / 'skipped.txt'}", file=sys.stderr)
    print(f"segmented {len(records)} images; results in {out}", file=sys.stderr, flush=True)
    return records


def _colours(trained: Any) -> list[tuple[int, int, int]]:
    from ninshiki.data.formats.masks import voc_palette

    if trained.colours:
        return [tuple(c) for c in trained.colours]
    palette = voc_palette()
    return [tuple(palette[3 * k:3 * k + 3]) for k in range(len(trained.classes))]


def _save_outputs(config: SegmentPredictConfig, out: Path, batch: Any, offset: int, labels: Tensor,
                  classes: list[str], colours: list[tuple[int, int, int]], writers: dict[str, Any]) -> None:
    from ninshiki.data.detection.sources import VideoWriter
    from ninshiki.data.formats.masks import write_palette_mask
    from ninshiki.viz.segmentation import overlay, save_overlay

    name, image = batch.names[offset], batch.images[offset]
    video = batch.kinds[offset] == "video"
    if config.save_masks and not video and len(classes) <= 256:
        write_palette_mask(out / "masks" / drawn_name(name), labels.numpy())
    if not config.save_images:
        return
    if video:
        key = name.split("#", 1)[0]
        if key not in writers:
            writers[key] = VideoWriter(out / (Path(key).stem + "_segmented.mp4"), fps=batch.fps[offset] or 25.0,
                                       size=(int(image.shape[2]), int(image.shape[1])))
        drawn = overlay(image.permute(1, 2, 0).numpy(), labels.numpy(), colours)
        writers[key].write(torch.from_numpy(drawn).permute(2, 0, 1))
        return
    save_overlay(out / "images" / drawn_name(name), image.permute(1, 2, 0).numpy(), labels.numpy(), classes,
                 colours)
