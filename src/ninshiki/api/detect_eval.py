"""`ninshiki detect val` (and `instance val`): COCO and VOC mAP of trained weights on a dataset split, with
curves and tables; for instance segmenters, mask AP as well."""
from __future__ import annotations

import sys
from pathlib import Path

from tqdm.auto import tqdm

from ninshiki.api.detect_common import coco_results, ground_truth, load_detector, write_detection_report
from ninshiki.config import to_yaml
from ninshiki.config_detect import DetectEvalConfig, require
from ninshiki.engine.detect_loop import evaluate_detector
from ninshiki.engine.runtime import make_runtime
from ninshiki.io import write_json, write_text


def evaluate(config: DetectEvalConfig, *, task: str = "detect") -> dict[str, float]:
    """Evaluate `config.weights` on the data's `config.split`; returns what OUT/metrics.json holds."""
    from ninshiki.data.detection_data import load_detection_data

    require(config, "data", "weights")
    runtime = make_runtime(device=config.device, amp="auto", channels_last="auto")
    trained = load_detector(config.weights, config.model, config.image_size, task=task)
    data = load_detection_data(config.data, split_seed=config.seed, val_fraction=config.val_fraction)
    split = data.val if config.split == "val" else data.train
    if split is None or not split.images:
        raise ValueError(f"{config.data}: has no {config.split} images")
    if data.classes != trained.classes:
        raise ValueError(f"{config.weights} was trained on classes {trained.classes}, but {config.data} has "
                         f"{data.classes}")
    model = trained.model.to(runtime.device)
    model.score_threshold, model.max_detections = config.score_threshold, config.max_detections
    if config.nms_iou is not None:
        model.nms_iou = config.nms_iou
    scores, result, metric = evaluate_split(model, split, data.classes, trained.image_size, runtime,
                                            batch_size=config.batch_size, workers=config.workers, task=task)
    out = Path(config.out)
    write_text(out / "config.yaml", to_yaml(config))
    write_detection_report(out, metric, scores, data.classes)
    image_ids = [img.image_id if img.image_id is not None else i + 1 for i, img in enumerate(split.images)]
    category_ids = split.category_ids or list(range(1, len(data.classes) + 1))
    write_json(out / "predictions.json", coco_results(result.detections, image_ids, category_ids,
                                                      rles=result.rles or None))
    if result.skipped:
        write_text(out / "skipped.txt", "\n".join(result.skipped) + "\n")
        print(f"skipped {len(result.skipped)} unreadable file(s); listed in {out / 'skipped.txt'}", file=sys.stderr)
    print(f"mAP@[.5:.95] {scores['map']:.4f}  mAP@.5 {scores['map50']:.4f}  VOC07 {scores['voc07_map50']:.4f}  "
          f"on {int(scores['images'])} images ({scores['images_per_s']:.1f} img/s); results in {out}", flush=True)
    if "mask_map" in scores:
        print(f"mask mAP@[.5:.95] {scores['mask_map']:.4f}  mask mAP@.5 {scores['mask_map50']:.4f}", flush=True)
    return scores


def evaluate_split(model, split, classes: list[str], image_size: int, runtime, *, batch_size: int, workers: int,
                   task: str = "detect"):
    """(scores, the evaluation result, the filled metric) of `model` on an `AnnotatedSet` split, letterboxed to
    `image_size`. Classical detectors have no loss; networks report their validation losses too."""
    from ninshiki.api.detect_train import new_metric
    from ninshiki.data.detection import DetectionDataset, detection_loader, eval_transform

    masks = task == "instance"
    loader = detection_loader(DetectionDataset(split, eval_transform(image_size), with_masks=masks),
                              batch_size=batch_size, shuffle=False, workers=workers)
    with tqdm(total=len(loader), desc="evaluating", unit="batch", disable=None, dynamic_ncols=True) as bar:
        result = evaluate_detector(model, loader, runtime, progress=bar,
                                   with_loss=not getattr(model, "classical", False))
    metric = new_metric(task, classes, split.category_ids)
    indices = sorted(result.detections)
    truth = ground_truth(split, with_masks=masks)
    metric.update([result.detections[i] for i in indices], [truth[i] for i in indices],
                  **({"rles": [result.rles.get(i, []) for i in indices]} if masks else {}))
    scores = {**metric.compute(), **{"loss" if k == "loss" else f"loss_{k}": v for k, v in result.losses.items()},
              "images": float(len(indices)), "images_per_s": len(indices) / max(result.seconds, 1e-9)}
    return scores, result, metric
