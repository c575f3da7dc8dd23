"""Pieces shared by the detection commands: the augmentation recipe, COCO result records, the AP table."""
import math

import torch

from ninshiki.api.detect_common import augment_mode, coco_results, per_class_table
from ninshiki.structures import Detections


def test_auto_augmentation_is_the_papers_for_paper_models_and_flips_for_cpu_models() -> None:
    assert augment_mode("ssd300_vgg16", "auto") == "ssd"
    assert augment_mode("yolov1", "auto") == "yolo"
    assert augment_mode("faster_rcnn_resnet50_fpn", "auto") == "basic"
    assert augment_mode("rcnn", "auto") == "basic"
    for small in ("ssd_lite", "yolov1_small", "faster_rcnn_small"):
        assert augment_mode(small, "auto") == "basic"
    assert augment_mode("ssd_lite", "ssd") == "ssd"            # an explicit choice wins


def test_coco_results_are_xywh_with_the_datasets_ids() -> None:
    det = Detections(torch.tensor([[10.0, 20.0, 40.0, 60.0]]), torch.tensor([0.75]), torch.tensor([1]))
    records = coco_results({0: det, 1: Detections.empty()}, image_ids=[42, 43], category_ids=[3, 17])
    assert records == [{"image_id": 42, "category_id": 17, "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.75}]


def test_per_class_table_reads_the_flat_metrics() -> None:
    rows = per_class_table({"ap/cat": 0.5, "ap50/cat": 0.8, "voc12_ap50/cat": 0.7}, ["cat", "dog"])
    assert rows[0] == {"class": "cat", "ap": 0.5, "ap50": 0.8, "voc12_ap50": 0.7}
    assert rows[1]["class"] == "dog" and math.isnan(rows[1]["ap"])
