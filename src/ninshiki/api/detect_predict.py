"""`ninshiki detect predict` (and `instance predict`): detect objects in an image, a folder, a glob or a video;
draw and write them.

Writes OUT/predictions.json in COCO's result format (one record per box: image_id, category_id, bbox as
x, y, width, height, score; plus the file name; for instance segmenters also "segmentation", the object's
mask as compressed RLE), OUT/images.json mapping image ids to files (and video frames), the drawn images
under OUT/ and, for a video, the drawn video.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ninshiki.api.detect_common import load_detector
from ninshiki.config import to_yaml
from ninshiki.config_detect import DetectPredictConfig, require
from ninshiki.engine.runtime import make_runtime
from ninshiki.io import atomic_path, write_json, write_text
from ninshiki.structures import Detections


@torch.no_grad()
def detect_images(model: torch.nn.Module, images: list[torch.Tensor], size: int,
                  device: torch.device) -> list[Detections]:
    """Detections of uint8 (3, H, W) images, letterboxed to `size`, in each image's own pixels."""
    from ninshiki.data.detection.transforms import letterbox

    boxed = [letterbox(image, size) for image in images]
    batch = torch.stack([b[0] for b in boxed]).to(device).float().div_(255)
    sizes = [info.valid_size((size, size)) for _, info in boxed]
    results = model.postprocess(model(batch), sizes)
    return [Detections(info.to_original(det.boxes.float().cpu()), det.scores.float().cpu(), det.labels.cpu(),
                       info.masks_to_original(det.masks.cpu()) if det.masks is not None else None)
            for (_, info), det in zip(boxed, results)]


def _records(det: Detections, image_id: int, name: str, category_ids: list[int]) -> list[dict[str, Any]]:
    from ninshiki.metrics.instance import encode_masks

    out = []
    for (x1, y1, x2, y2), score, label in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist()):
        out.append({"image_id": image_id, "file_name": name, "category_id": category_ids[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    if det.masks is not None:
        for record, rle in zip(out, encode_masks(det.masks)):
            record["segmentation"] = rle
    return out


def drawn_name(name: str) -> Path:
    """sub/photo.jpg -> sub/photo.png (names are relative to the source folder): PNG keeps the drawing crisp."""
    parts = [part for part in Path(name).parts if part not in ("..", "/", "")]
    return Path(*parts).with_suffix(".png")


def predict(config: DetectPredictConfig, *, task: str = "detect") -> list[dict[str, Any]]:
    """Run `config.weights` on `config.source`; returns the COCO-format records written to predictions.json."""
    from ninshiki.data.detection.sources import iter_sources
    from ninshiki.viz.detections import draw_detections

    require(config, "source", "weights")
    runtime = make_runtime(device=config.device, amp="off", channels_last="off")
    trained = load_detector(config.weights, config.model, config.image_size, task=task)
    model = trained.model.to(runtime.device)
    model.score_threshold, model.max_detections = config.score_threshold, config.max_detections
    if config.nms_iou is not None:
        model.nms_iou = config.nms_iou
    category_ids = trained.category_ids or list(range(1, len(trained.classes) + 1))
    out = Path(config.out)
    records: list[dict[str, Any]] = []
    images_index: list[dict[str, Any]] = []
    writers: dict[str, Any] = {}
    skipped: list[str] = []
    try:
        bar = tqdm(desc="detecting", unit="img", disable=None, dynamic_ncols=True)
        for batch in iter_sources(config.source, batch_size=config.batch_size, video_stride=config.video_stride):
            skipped += batch.skipped
            if not batch.images:
                continue
            detections = detect_images(model, batch.images, trained.image_size, runtime.device)
            for offset, (image, name, det) in enumerate(zip(batch.images, batch.names, detections)):
                image_id = len(images_index) + 1
                images_index.append({"id": image_id, "file_name": name, "width": int(image.shape[2]),
                                     "height": int(image.shape[1])})
                records += _records(det, image_id, name, category_ids)
                if config.save_images:
                    drawn = draw_detections(image, det, trained.classes, score_threshold=config.score_threshold)
                    _save_drawn(out, drawn, batch, offset, name, writers)
            bar.update(len(batch.images))
        bar.close()
    finally:
        for writer in writers.values():
            writer.close()
    write_text(out / "config.yaml", to_yaml(config))
    write_json(out / "predictions.json", records)
    write_json(out / "images.json", images_index)
    if skipped:
        write_text(out / "skipped.txt", "\n".join(skipped) + "\n")
        print(f"skipped {len(skipped)} unreadable file(s); listed in {out / 'skipped.txt'}", file=sys.stderr)
    print(f"{len(records)} objects in {len(images_index)} images; results in {out}", file=sys.stderr, flush=True)
    return records


def _save_drawn(out: Path, drawn: torch.Tensor, batch: Any, offset: int, name: str, writers: dict[str, Any]) -> None:
    from PIL import Image

    from ninshiki.data.detection.sources import VideoWriter

    if batch.kinds[offset] == "video":
        video = name.split("#", 1)[0]
        if video not in writers:
            fps = batch.fps[offset] or 25.0
            writers[video] = VideoWriter(out / (Path(video).stem + "_detections.mp4"), fps=fps,
                                         size=(int(drawn.shape[2]), int(drawn.shape[1])))
        writers[video].write(drawn)
        return
    with atomic_path(out / "images" / drawn_name(name)) as tmp:
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(tmp, format="PNG")
