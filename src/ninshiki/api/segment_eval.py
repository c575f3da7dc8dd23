"""`ninshiki segment val`: mIoU, pixel accuracy, mean accuracy, frequency-weighted IoU and per-class IoU of
trained weights on a dataset split, at the images' original resolution, with pictures."""
from __future__ import annotations

import sys
from pathlib import Path

from tqdm.auto import tqdm

from ninshiki.api.segment_common import load_segmenter, test_time_model, write_segmentation_report
from ninshiki.config import to_yaml
from ninshiki.config_detect import require
from ninshiki.config_segment import SegmentEvalConfig
from ninshiki.engine.runtime import make_runtime
from ninshiki.engine.segment_loop import evaluate_segmenter
from ninshiki.io import write_text


def evaluate(config: SegmentEvalConfig) -> dict[str, float]:
    """Evaluate `config.weights` on the data's `config.split`; returns what OUT/metrics.json holds."""
    from ninshiki.api.segment_pictures import save_validation_samples
    from ninshiki.data.segmentation.dataset import SegmentationDataset, segmentation_loader
    from ninshiki.data.segmentation.transforms import eval_transform
    from ninshiki.data.segmentation_data import load_segmentation_data
    from ninshiki.metrics.segmentation import SegmentationMetric

    require(config, "data", "weights")
    runtime = make_runtime(device=config.device, amp="auto", channels_last="auto")
    trained = load_segmenter(config.weights, config.model, config.crf_iterations, add_crf=config.crf)
    data = load_segmentation_data(config.data, split_seed=config.seed, val_fraction=config.val_fraction)
    split = data.val if config.split == "val" else data.train
    if split is None or not split.items:
        raise ValueError(f"{config.data}: has no {config.split} images")
    if data.classes != trained.classes:
        raise ValueError(f"{config.weights} was trained on classes {trained.classes}, but {config.data} has "
                         f"{data.classes}")
    model = test_time_model(trained, tta=config.tta, tta_scales=config.tta_scales).to(runtime.device)
    max_size = config.max_size if config.max_size is not None else trained.max_size   # as validated in training
    dataset = SegmentationDataset(split, eval_transform(max_size=max_size), cache_images=False,
                                  keep_original_mask=True)
    loader = segmentation_loader(dataset, batch_size=config.batch_size, shuffle=False, workers=config.workers)
    metric = SegmentationMetric(data.classes, ignore_index=split.ignore_index)
    with tqdm(total=len(loader), desc="evaluating", unit="batch", disable=None, dynamic_ncols=True) as bar:
        result = evaluate_segmenter(model, loader, runtime, metric, keep=config.save_images, progress=bar)
    scores = {**metric.compute(), **{"loss" if k == "loss" else f"loss_{k}": v for k, v in result.losses.items()},
              "images": float(result.images), "images_per_s": result.images / max(result.seconds, 1e-9)}
    out = Path(config.out)
    write_text(out / "config.yaml", to_yaml(config))
    write_segmentation_report(out, metric, scores, data.classes)
    if config.save_images:
        save_validation_samples(out / "samples.png", split, result.predictions, data)
    if result.skipped:
        write_text(out / "skipped.txt", "\n".join(result.skipped) + "\n")
        print(f"skipped {len(result.skipped)} unreadable file(s); listed in {out / 'skipped.txt'}", file=sys.stderr)
    print(f"mIoU {scores['miou']:.4f}  pixel accuracy {scores['pixel_acc']:.4f}  mean accuracy "
          f"{scores['mean_acc']:.4f}  fwIoU {scores['fwiou']:.4f} on {result.images} images "
          f"({scores['images_per_s']:.1f} img/s); results in {out}", flush=True)
    return scores
