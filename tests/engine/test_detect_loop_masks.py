"""Instance masks through `evaluate_detector`: a detector's masks over the network input come back in the
original (upright) image's pixels as COCO RLEs, meet their ground truth in `InstanceMetric`, and the COCO
result file holds RLEs that pycocotools decodes to the same masks and scores to the same mask AP."""
from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from ninshiki.api.detect_common import coco_results, ground_truth
from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet
from ninshiki.data.detection import DetectionDataset, detection_loader, eval_transform
from ninshiki.data.formats.masks import mask_to_polygons
from ninshiki.engine.detect_loop import evaluate_detector
from ninshiki.engine.runtime import make_runtime
from ninshiki.metrics.coco_eval import STAT_NAMES
from ninshiki.metrics.instance import InstanceMetric
from ninshiki.structures import Detections

mask_api = pytest.importorskip("pycocotools.mask")
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools'

SIDE = 40   # network input


class ChannelSegmenter(nn.Module):
    """Finds object k in colour channel k: its mask is the channel (probabilities) or the channel > 0.5 (bool),
    over the valid region `postprocess` is given, as Mask R-CNN's postprocess returns them."""

    def __init__(self, *, probabilities: bool, with_masks: bool = True) -> None:
        super().__init__()
        self.probabilities, self.with_masks = probabilities, with_masks
        self.seen_target_masks: list[tuple[int, ...]] = []

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None) -> Tensor:
        return images

    def loss(self, raw: Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        self.seen_target_masks += [tuple(t["masks"].shape) for t in targets]
        return {"loss": raw.mean()}

    def postprocess(self, raw: Tensor, sizes: list[tuple[int, int]]) -> list[Detections]:
        out = []
        for image, (height, width) in zip(raw, sizes):
            probs = image[:, :height, :width]                                   # (3, h, w)
            keep = [k for k in range(3) if bool((probs[k] > 0.5).any())]
            boxes = []
            for k in keep:
                ys, xs = torch.nonzero(probs[k] > 0.5, as_tuple=True)
                boxes.append([float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1])
            masks = probs[keep] if self.probabilities else probs[keep] > 0.5
            out.append(Detections(torch.tensor(boxes).reshape(-1, 4), torch.tensor([0.9, 0.8, 0.7][:len(keep)]),
                                  torch.tensor(keep, dtype=torch.int64) % 2, masks if self.with_masks else None))
        return out


def _objects(height: int, width: int, seed: int) -> np.ndarray:
    """(3, H, W) bool: a rectangle, an ellipse and a rectangle, overlapping freely (one per channel)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    masks = np.zeros((3, height, width), bool)
    for k in range(3):
        x0, y0 = rng.integers(0, width // 2), rng.integers(0, height // 2)
        w, h = rng.integers(width // 4, width // 2), rng.integers(height // 4, height // 2)
        if k == 1:
            masks[k] = ((xx - x0 - w / 2) / (w / 2)) ** 2 + ((yy - y0 - h / 2) / (h / 2)) ** 2 <= 1
        else:
            masks[k, y0:y0 + h, x0:x0 + w] = True
    return masks


def _dataset(root: Path) -> tuple[AnnotatedSet, list[np.ndarray]]:
    """Two images, one stored sideways with EXIF orientation 6; returns the set and each upright (3, H, W)."""
    images, upright = [], []
    for name, (height, width), orientation in (("side.png", (48, 64), 6), ("flat.png", (30, 50), 1)):
        masks = _objects(height, width, seed=len(images))
        picture = Image.fromarray((masks.transpose(1, 2, 0) * 255).astype(np.uint8))
        exif = picture.getexif()
        if orientation != 1:
            exif[0x0112] = orientation
        picture.save(root / name, exif=exif)
        boxes = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] for ys, xs in (np.nonzero(m) for m in masks)]
        images.append(AnnotatedImage(Path(name), width, height, np.array(boxes, np.float64), np.arange(3) % 2,
                                     image_id=10 + len(images), segmentations=[mask_to_polygons(m) for m in masks]))
        upright.append(np.rot90(masks, -1, axes=(1, 2)) if orientation == 6 else masks)   # PIL's turn clockwise
    return AnnotatedSet(["even", "odd"], images, root=root), upright


def _decode(rle: dict) -> np.ndarray:
    return mask_api.decode(rle).astype(bool)


@pytest.mark.parametrize("probabilities", [False, True])
def test_masks_come_back_in_original_pixels_as_rles(tmp_path: Path, probabilities: bool) -> None:
    annotated, upright = _dataset(tmp_path)
    data = DetectionDataset(annotated, eval_transform(SIDE), with_masks=True)
    loader = detection_loader(data, batch_size=2, shuffle=False, pin_memory=False)
    model = ChannelSegmenter(probabilities=probabilities)
    result = evaluate_detector(model, loader, make_runtime(device="cpu"))
    assert model.seen_target_masks == [(3, SIDE, SIDE)] * 2                # the loss saw the targets' masks
    assert sorted(result.rles) == [0, 1] and all(d.masks is None for d in result.detections.values())
    for index, objects in enumerate(upright):
        decoded = np.stack([_decode(rle) for rle in result.rles[index]])
        assert decoded.shape == objects.shape                               # the upright original's (3, H0, W0)
        intersection, union = (decoded & objects).sum((1, 2)), (decoded | objects).sum((1, 2))
        assert (intersection / union).min() > 0.8, intersection / union    # the same objects, up to the resize
        sample = data[index]
        expected = sample.letterbox.masks_to_original(model.postprocess(sample.image[None], [
            sample.letterbox.valid_size(SIDE)])[0].masks)
        assert np.array_equal(decoded, expected.numpy())                    # exactly Letterbox.masks_to_original
    kept = evaluate_detector(model, loader, make_runtime(device="cpu"), with_loss=False, keep_masks=True)
    for index, det in kept.detections.items():
        assert det.masks.dtype == torch.bool
        assert np.array_equal(det.masks.numpy(), np.stack([_decode(rle) for rle in result.rles[index]]))


def test_results_file_and_metric_agree_with_pycocotools(tmp_path: Path) -> None:
    annotated, _ = _dataset(tmp_path)
    loader = detection_loader(DetectionDataset(annotated, eval_transform(SIDE), with_masks=True), batch_size=2,
                              shuffle=False, pin_memory=False)
    result = evaluate_detector(ChannelSegmenter(probabilities=True), loader, make_runtime(device="cpu"))
    truth = ground_truth(annotated, with_masks=True)
    metric = InstanceMetric(annotated.classes)
    indices = sorted(result.detections)
    metric.update([result.detections[i] for i in indices], [truth[i] for i in indices],
                  rles=[result.rles[i] for i in indices])
    scores = metric.compute()
    assert scores["mask_map50"] == pytest.approx(1.0, abs=1e-15) and scores["map50"] == pytest.approx(1.0, abs=1e-15)

    image_ids = [image.image_id for image in annotated.images]
    records = json.loads(json.dumps(coco_results(result.detections, image_ids, [1, 2], rles=result.rles)))
    flat = [rle for i in indices for rle in result.rles[i]]
    assert len(records) == len(flat) == 6
    for record, rle in zip(records, flat):
        assert isinstance(record["segmentation"]["counts"], str)
        assert np.array_equal(_decode(record["segmentation"]), _decode(rle))
    assert coco_results(result.detections, image_ids, [1, 2], rles=result.rles) == coco_results(
        evaluate_detector(ChannelSegmenter(probabilities=True), loader, make_runtime(device="cpu"),
                          keep_masks=True).detections, image_ids, [1, 2])  # from the masks: the same records

    gt = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "even"}, {"id": 2, "name": "odd"}]}
    for image, upright in zip(annotated.images, truth):
        gt["images"].append({"id": image.image_id, "height": upright.size[0], "width": upright.size[1]})
        for box, label, segmentation in zip(upright.boxes.tolist(), upright.labels.tolist(), upright.segmentations):
            rle = mask_api.merge(mask_api.frPyObjects(segmentation, *upright.size))
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image.image_id, "iscrowd": 0,
                                      "category_id": label + 1, "segmentation": segmentation,
                                      "area": float(mask_api.area(rle)),
                                      "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    segm = [{k: v for k, v in r.items() if k != "bbox"} for r in records]   # mask areas, as Detectron2 scores
    stats = _pycocotools_stats(gt, segm)
    np.testing.assert_array_equal([scores[f"mask_{name}"] for name in STAT_NAMES], stats, strict=True)


def _pycocotools_stats(gt: dict, results: list[dict]) -> list[float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [v if v > -1 else math.nan for v in evaluator.stats.tolist()]


def test_box_only_detectors_give_no_rles(tmp_path: Path) -> None:
    annotated, _ = _dataset(tmp_path)
    loader = detection_loader(DetectionDataset(annotated, eval_transform(SIDE)), batch_size=2, shuffle=False,
                              pin_memory=False)
    result = evaluate_detector(ChannelSegmenter(probabilities=False, with_masks=False), loader,
                               make_runtime(device="cpu"), with_loss=False)
    assert result.rles == {} and len(result.detections) == 2
    records = coco_results(result.detections, [10, 11], [1, 2])
    assert len(records) == 6 and all("segmentation" not in r for r in records)
    assert all(t.segmentations is None for t in ground_truth(annotated))     # box evaluation holds no masks
