"""Faster R-CNN: parity with torchvision's `fasterrcnn_resnet50_fpn` (proposals, box-head outputs, losses,
detections, checkpoints), the paper's VGG-16 variant, sampling edge cases, input checks, and an overfitting run
of `faster_rcnn_small`."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN
from torchvision.models.detection import fasterrcnn_resnet50_fpn
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.resnet import resnet50
from torchvision.ops import FrozenBatchNorm2d, box_iou

from ninshiki.models.detect.faster_rcnn import faster_rcnn_resnet50_fpn, faster_rcnn_small, faster_rcnn_vgg16
from ninshiki.models.detect.faster_rcnn_config import FasterRCNNConfig
from ninshiki.models.detect.faster_rcnn_model import FasterRCNN, FasterRCNNOutput
from ninshiki.models.detect.faster_rcnn_parts import SingleLevelRoIPool
from ninshiki.models.weights import load_weights

NUM_CLASSES = 3
SIZE = 96
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def _targets(size: int = SIZE) -> list[dict[str, Tensor]]:
    """One image with two objects (dataset labels 0 and 2) and one background image."""
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.4, 0.35, 0.9, 0.8]]) * size
    return [{"boxes": boxes, "labels": torch.tensor([0, 2])},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]


def _torchvision_targets(targets: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
    return [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]   # 0 is background there


@pytest.fixture(scope="module")
def reference() -> tuple[nn.Module, dict[str, Tensor]]:
    """torchvision's detector, random weights (seeded, no download), eval mode, and its state dict."""
    torch.manual_seed(0)
    # 128 RoIs sampled per image instead of 512 keeps the loss test short; it is a setting, not the algorithm.
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1,
                                    box_batch_size_per_image=128).eval()
    return model, {k: v.clone() for k, v in model.state_dict().items()}


def _ours(state: dict[str, Tensor], **kwargs) -> FasterRCNN:
    model = faster_rcnn_resnet50_fpn(num_classes=NUM_CLASSES, **kwargs)
    model.load_state_dict(state, strict=True)   # the same parameter names as torchvision's
    return model.eval()


def _torchvision_features(model: nn.Module, images: Tensor) -> tuple[dict[str, Tensor], ImageList]:
    """torchvision's backbone on the same normalised, same-size batch (its resizing transform bypassed)."""
    normalised = (images - MEAN) / STD
    return model.backbone(normalised), ImageList(normalised, [tuple(images.shape[-2:])] * len(images))


# ------------------------------------------------------------------------------------- torchvision parity

def test_proposals_box_head_and_detections_match_torchvision(reference) -> None:
    tv, state = reference
    tv.load_state_dict(state)
    ours = _ours(state)
    torch.manual_seed(1)
    images = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        raw = ours(images)
        features, image_list = _torchvision_features(tv, images)
        proposals, _ = tv.rpn(image_list, features)
        pooled = tv.roi_heads.box_roi_pool(features, proposals, image_list.image_sizes)
        class_logits, box_regression = tv.roi_heads.box_predictor(tv.roi_heads.box_head(pooled))
        expected = tv.roi_heads.postprocess_detections(class_logits, box_regression, proposals,
                                                       image_list.image_sizes)
    assert isinstance(raw, FasterRCNNOutput) and raw.sample_labels is None and raw.rpn_labels is None
    for mine, theirs in zip(raw.proposals, proposals):
        assert mine.shape == theirs.shape and len(mine) > 100
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=0)
    assert all(torch.equal(a, b) for a, b in zip(raw.roi_boxes, raw.proposals))
    torch.testing.assert_close(raw.class_logits, class_logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(raw.box_regression, box_regression, atol=1e-4, rtol=0)
    detections = ours.postprocess(raw)       # torchvision's defaults: score 0.05, NMS 0.5, 100 per image
    assert sum(len(d) for d in detections) > 0
    for det, boxes, scores, labels in zip(detections, *expected):
        torch.testing.assert_close(det.boxes, boxes, atol=1e-4, rtol=0)
        torch.testing.assert_close(det.scores, scores, atol=1e-5, rtol=0)
        assert torch.equal(det.labels, labels - 1)


def test_losses_match_torchvision_for_the_same_samples(reference) -> None:
    # Same seed, same random calls in the same order (RPN anchors, then RoI proposals): the same samples.
    tv, state = reference
    tv.load_state_dict(state)
    ours = _ours(state, roi_batch_size=128).train()
    tv.train()
    images, targets = torch.rand(2, 3, SIZE, SIZE), _targets()
    torch.manual_seed(7)
    features, image_list = _torchvision_features(tv, images)
    proposals, rpn_losses = tv.rpn(image_list, features, _torchvision_targets(targets))
    _, roi_losses = tv.roi_heads(features, proposals, image_list.image_sizes, _torchvision_targets(targets))
    torch.manual_seed(7)
    raw = ours(images, targets)
    losses = ours.loss(raw, targets)
    tv.eval()
    expected = {"rpn_objectness": rpn_losses["loss_objectness"], "rpn_box": rpn_losses["loss_rpn_box_reg"],
                "roi_classifier": roi_losses["loss_classifier"], "roi_box": roi_losses["loss_box_reg"]}
    for name, value in expected.items():
        torch.testing.assert_close(losses[name], value, rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(losses["loss"], sum(expected.values()), rtol=1e-5, atol=1e-6)
    assert expected["rpn_box"] > 0 and expected["roi_box"] > 0
    # Training mode with targets scores the samples: 128 per image, the ground truth among them.
    assert raw.roi_boxes is raw.sample_boxes and [len(b) for b in raw.sample_boxes] == [128, 128]
    assert 0 < int((raw.sample_labels > 0).sum()) <= 32 and set(raw.sample_labels.tolist()) <= {0, 1, 3}
    assert ((raw.rpn_labels >= 0).sum(dim=1) == 256).all()


def test_torchvision_checkpoint_loads_through_load_weights(reference, tmp_path: Path) -> None:
    _, state = reference
    path = tmp_path / "fasterrcnn.pth"
    # torchvision's pretrained detectors have frozen batch norms, whose state lacks num_batches_tracked.
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)
    model = faster_rcnn_resnet50_fpn(num_classes=NUM_CLASSES)
    report = load_weights(model, path)
    assert set(report.loaded) == {k for k in state if not k.endswith("num_batches_tracked")}
    assert not report.reinitialised
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, state[key]), key
    # Another class count and gray images: the predictor keeps its fresh initialisation, conv1 is summed over RGB.
    other = faster_rcnn_resnet50_fpn(num_classes=NUM_CLASSES + 5, in_channels=1)
    report = load_weights(other, path)
    assert set(report.reinitialised) == {f"{name}.{p}" for name in other.classifier_names for p in ("weight", "bias")}
    assert report.adapted == ("backbone.body.conv1.weight",)
    assert other.roi_heads.box_predictor.cls_score.out_features == NUM_CLASSES + 6


def test_frozen_batchnorm_matches_torchvision_fine_tuning_setup(reference) -> None:
    # torchvision's pretrained recipe: FrozenBatchNorm2d and the last 3 stages trainable.
    _, state = reference
    torch.manual_seed(0)
    tv = TorchvisionFasterRCNN(_resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3), NUM_CLASSES + 1)
    tv.load_state_dict(state)
    ours = _ours(state, frozen_batchnorm=True, trainable_backbone_layers=3).train()
    images = torch.rand(2, 3, 64, 64)
    running_mean = ours.backbone.body.bn1.running_mean.clone()
    with torch.no_grad():
        mine = ours.backbone(ours.normalizer(images))
        theirs, _ = _torchvision_features(tv.train(), images)
    for name in theirs:
        torch.testing.assert_close(mine[name], theirs[name], atol=1e-4, rtol=1e-4)
    assert torch.equal(ours.backbone.body.bn1.running_mean, running_mean) and not ours.backbone.body.bn1.training
    trainable = {n.split(".")[2] for n, p in ours.named_parameters() if p.requires_grad and n.startswith("backbone.body")}
    assert trainable == {"layer2", "layer3", "layer4"}
    # FrozenBatchNorm2d holds its affine terms as buffers; ours are frozen parameters.
    norms = {f"{m}.{p}" for m, module in ours.named_modules() if isinstance(module, nn.BatchNorm2d)
             for p in ("weight", "bias")}
    frozen = {n for n, p in ours.named_parameters() if not p.requires_grad}
    assert norms <= frozen and frozen - norms == {n for n, p in tv.named_parameters() if not p.requires_grad}


# ----------------------------------------------------------------------------------- the flow of one pass

@pytest.fixture
def small() -> FasterRCNN:
    torch.manual_seed(0)
    return faster_rcnn_small(num_classes=NUM_CLASSES)


def test_images_without_objects(small: FasterRCNN) -> None:
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    raw = small.train()(torch.rand(2, 3, SIZE, SIZE), empty)
    losses = small.loss(raw, empty)
    assert set(raw.rpn_labels.unique().tolist()) == {-1.0, 0.0} and (raw.sample_labels == 0).all()
    assert losses["rpn_box"] == 0 and losses["roi_box"] == 0 and losses["loss"] > 0
    losses["loss"].backward()
    assert small.rpn.head.cls_logits.weight.grad.abs().sum() > 0
    assert small.roi_heads.box_predictor.cls_score.weight.grad.abs().sum() > 0


def test_evaluation_with_targets_detects_from_all_proposals(small: FasterRCNN) -> None:
    # One pass gives a validation loss and detections, and the detections do not see the ground truth.
    small.eval()
    images, targets = torch.rand(2, 3, SIZE, SIZE), _targets()
    with torch.no_grad():
        with_targets, without = small(images, targets), small(images)
    assert all(torch.equal(a, b) for a, b in zip(with_targets.roi_boxes, with_targets.proposals))
    torch.testing.assert_close(with_targets.class_logits, without.class_logits)
    # Samples come from all proposals and the ground truth: roi_batch_size (128) per image when there are enough.
    assert [len(b) for b in with_targets.sample_boxes] == [
        min(128, len(p) + len(t["boxes"])) for p, t in zip(with_targets.proposals, targets)]
    assert torch.isfinite(small.loss(with_targets, targets)["loss"])
    assert all(0 < len(p) <= 300 for p in without.proposals)      # rpn_post_nms_top_n_test
    with pytest.raises(ValueError, match="without targets"):
        small.loss(without, targets)


def test_boxes_stay_float32_under_autocast(small: FasterRCNN) -> None:
    images, targets = torch.rand(2, 3, SIZE, SIZE), _targets()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        raw = small.train()(images, targets)
        losses = small.loss(raw, targets)
    assert raw.class_logits.dtype == torch.bfloat16     # the network ran in bfloat16 ...
    assert all(t.dtype == torch.float32 for t in (*raw.anchors, *raw.proposals, raw.rpn_regression_targets))
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in losses.values())
    losses["loss"].backward()


def test_postprocess_clips_to_sizes_and_keeps_the_best(small: FasterRCNN) -> None:
    small.eval()
    with torch.no_grad():
        raw = small(torch.rand(2, 3, SIZE, SIZE))
    small.score_threshold, small.max_detections = 0.0, 7
    detections = small.postprocess(raw, [(SIZE, SIZE), (40, 60)])
    assert [len(d) for d in detections] == [7, 7]
    assert detections[1].boxes[:, 2].max() <= 60 and detections[1].boxes[:, 3].max() <= 40
    assert (detections[1].boxes[:, 2:] - detections[1].boxes[:, :2] >= 1e-2).all()
    with pytest.raises(ValueError, match="2 images"):
        small.postprocess(raw, [(SIZE, SIZE)])


@pytest.mark.parametrize(("targets", "message"), [
    ([{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([3])}], r"labels must be in \[0, 3\)"),
    ([{"boxes": torch.tensor([[5.0, 0, 5, 10]]), "labels": torch.tensor([1])}], r"target 0: box 0 .* x2 > x1"),
    ([{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1.0])}], "labels must be integers"),
    ([{"boxes": torch.zeros(0, 4)}], "needs 'boxes' and 'labels'"),
    ([], "got 0 targets for a batch of 1"),
])
def test_bad_targets_are_named(small: FasterRCNN, targets: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small(torch.rand(1, 3, 64, 64), targets)


def test_bad_images_are_named(small: FasterRCNN) -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        small(torch.rand(1, 1, 64, 64))


# --------------------------------------------------------------------------------------- configuration

def test_factory_kwargs_reach_the_parts() -> None:
    model = faster_rcnn_small(num_classes=2, in_channels=1, rpn_batch_size=64, roi_batch_size=32,
                              rpn_post_nms_top_n_test=50, aspect_ratios=[1.0], anchor_sizes=[[20], [40], [80], [160]],
                              score_threshold=0.3, fpn_channels=32, input_size=256)
    assert model.rpn.fg_bg_sampler.batch_size_per_image == 64
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == 32
    assert model.rpn.anchor_generator.num_anchors_per_location() == [1, 1, 1, 1]
    assert (model.score_threshold, model.nms_iou, model.max_detections, model.input_size) == (0.3, 0.5, 100, 256)
    assert isinstance(model.get_submodule(model.first_conv), nn.Conv2d)
    assert model.get_submodule(model.first_conv).in_channels == 1
    model.eval()
    with torch.no_grad():
        raw = model(torch.rand(1, 1, 64, 64))
    assert len(raw.proposals[0]) <= 50 and raw.class_logits.shape[1] == 3
    # Default anchors scale with the input size: 320 px sizes at 160 px.
    half = faster_rcnn_small(num_classes=2, input_size=160)
    assert half.config.anchor_sizes == ((8, 12), (16, 24), (32, 48), (64, 96))


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"rpn_bg_iou": 0.8}, ValueError, "rpn_bg_iou <= rpn_fg_iou"),
    ({"roi_batch_size": 0}, ValueError, "roi_batch_size must be a positive integer"),
    ({"anchor_sizes": ((32,), (64,))}, ValueError, "anchor_sizes gives 2 levels but the backbone has 4"),
    ({"anchor_sizes": ((32,), (64, 96), (128,), (256,))}, ValueError, "same number of sizes"),
    ({"anchor_size": ((32,),)}, TypeError, "anchor_size"),
])
def test_bad_settings_are_named(kwargs: dict, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        faster_rcnn_small(num_classes=2, **kwargs)


def test_config_defaults_are_torchvisions() -> None:
    theirs = inspect.signature(TorchvisionFasterRCNN.__init__).parameters
    names = {"rpn_fg_iou": "rpn_fg_iou_thresh", "rpn_bg_iou": "rpn_bg_iou_thresh", "rpn_nms_iou": "rpn_nms_thresh",
             "rpn_batch_size": "rpn_batch_size_per_image", "rpn_positive_fraction": "rpn_positive_fraction",
             "rpn_pre_nms_top_n_train": "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test": "rpn_pre_nms_top_n_test",
             "rpn_post_nms_top_n_train": "rpn_post_nms_top_n_train",
             "rpn_post_nms_top_n_test": "rpn_post_nms_top_n_test", "rpn_score_threshold": "rpn_score_thresh",
             "roi_fg_iou": "box_fg_iou_thresh", "roi_bg_iou": "box_bg_iou_thresh",
             "roi_batch_size": "box_batch_size_per_image", "roi_positive_fraction": "box_positive_fraction",
             "score_threshold": "box_score_thresh", "nms_iou": "box_nms_thresh", "max_detections": "box_detections_per_img"}
    config = FasterRCNNConfig()
    assert {ours: getattr(config, ours) for ours in names} == {ours: theirs[tv].default for ours, tv in names.items()}
    assert config.box_coder_weights == (10.0, 10.0, 5.0, 5.0) and config.aspect_ratios == (0.5, 1.0, 2.0)
    assert config.anchor_sizes == ((32,), (64,), (128,), (256,), (512,))    # torchvision's _default_anchorgen


# ------------------------------------------------------------------------------------ the paper's VGG-16

def test_vgg16_is_the_papers_network() -> None:
    with torch.device("meta"):    # shapes only: skips initialising 137M parameters
        model = faster_rcnn_vgg16(num_classes=20)
    body = model.backbone.body
    assert len([m for m in body if isinstance(m, nn.Conv2d)]) == 13 and isinstance(body[-1], nn.ReLU)
    assert len([m for m in body if isinstance(m, nn.MaxPool2d)]) == 4 and model.backbone.strides == [16]
    assert model.rpn.anchor_generator.sizes == ((128.0, 256.0, 512.0),)
    assert model.rpn.anchor_generator.num_anchors_per_location() == [9]
    assert model.roi_heads.box_head.fc6.in_features == 512 * 7 * 7 and model.roi_heads.box_head.fc7.out_features == 4096
    assert model.roi_heads.box_roi_pool.kind == "pool" and model.roi_heads.fg_bg_sampler.batch_size_per_image == 128
    assert (model.config.rpn_pre_nms_top_n_test, model.config.rpn_post_nms_top_n_test) == (6000, 300)
    assert model.roi_heads.box_predictor.cls_score.out_features == 21


@pytest.mark.parametrize("roi_pool", ["pool", "align"])
def test_vgg16_runs_with_both_roi_pools(roi_pool: str) -> None:
    torch.manual_seed(0)
    model = faster_rcnn_vgg16(num_classes=NUM_CLASSES, roi_pool=roi_pool, representation_size=32, input_size=300,
                              freeze_conv1_conv2=True)
    assert model.config.anchor_sizes == ((64.0, 128.0, 256.0),)
    assert not any(p.requires_grad for p in model.backbone.body[:10].parameters())
    assert all(p.requires_grad for p in model.backbone.body[10:].parameters())
    images, targets = torch.rand(2, 3, 96, 96), _targets(96)
    raw = model.train()(images, targets)
    assert [len(a) for a in raw.anchors] == [6 * 6 * 9] * 2
    model.loss(raw, targets)["loss"].backward()
    assert model.roi_heads.box_head.fc6.weight.grad.abs().sum() > 0


def test_roi_pool_reads_the_stride() -> None:
    features = {"0": torch.arange(16.0).view(1, 1, 4, 4)}
    box = [torch.tensor([[0.0, 0.0, 20.0, 20.0]])]      # RoIPool rounds 20 / 16 to cell 1: cells 0..1
    assert SingleLevelRoIPool(kind="pool", output_size=1, stride=16)(features, box, [(64, 64)]).item() == 5.0
    align = SingleLevelRoIPool(kind="align", output_size=1, stride=16, sampling_ratio=1)(features, box, [(64, 64)])
    # One bilinear sample at the box centre, 10 / 16 px in cell units, less the half-pixel shift: (0.125, 0.125).
    assert align.item() == pytest.approx(4 * 0.125 + 0.125)
    with pytest.raises(ValueError, match="'pool'"):
        SingleLevelRoIPool(kind="max", output_size=7, stride=16)


# ------------------------------------------------------------------------------------------- overfitting

def _scene(seed: int, size: int) -> tuple[Tensor, dict[str, Tensor]]:
    """Noise with a red rectangle (class 0), a green disk (class 1) and maybe a blue rectangle (class 2)."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(3, size, size, generator=generator) * 0.3
    colours = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.85, 0.1], [0.15, 0.2, 0.95]])
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    layouts = {0: [(0, (10, 12, 70, 60)), (1, (90, 80, 150, 140)), (2, (20, 100, 60, 150))],
               1: [(1, (16, 20, 66, 70)), (0, (80, 30, 150, 80))]}
    boxes, labels = [], []
    for label, (x1, y1, x2, y2) in layouts[seed]:
        if label == 1:
            cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2
            mask = (xs - cx) ** 2 + (ys - cy) ** 2 <= r ** 2
        else:
            mask = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
        image[:, mask] = colours[label][:, None]
        boxes.append([x1, y1, x2, y2])
        labels.append(label)
    return image, {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)}


@pytest.mark.slow
def test_small_overfits_two_images() -> None:
    torch.manual_seed(0)
    size = 160
    scenes = [_scene(seed, size) for seed in (0, 1)]
    images, targets = torch.stack([s[0] for s in scenes]), [s[1] for s in scenes]
    model = faster_rcnn_small(num_classes=3, input_size=size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[120], gamma=0.1)
    model.train()
    for _ in range(150):      # about 0.2 s a step on one core
        losses = model.loss(model(images, targets), targets)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        scheduler.step()
    model.eval()
    model.score_threshold = 0.5
    with torch.no_grad():
        detections = model.postprocess(model(images))
    for det, target in zip(detections, targets):
        iou = box_iou(target["boxes"], det.boxes)                                 # (N, D)
        same_class = target["labels"][:, None] == det.labels[None, :]
        assert ((iou > 0.5) & same_class).any(dim=1).all(), (det, target, losses)
