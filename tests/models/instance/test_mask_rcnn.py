"""Mask R-CNN: parity with torchvision's `maskrcnn_resnet50_fpn` (detections and masks, the five losses,
checkpoints), mask targets, images without objects, input checks, and an overfitting run of `mask_rcnn_small`."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torchvision.models.detection import maskrcnn_resnet50_fpn
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou

from ninshiki.models.instance.mask_rcnn import mask_rcnn_resnet50_fpn, mask_rcnn_small
from ninshiki.models.instance.mask_rcnn_model import MaskRCNN, MaskRCNNOutput, positive_mask_targets
from ninshiki.models.weights import load_weights

NUM_CLASSES = 3
SIZE = 96
DETECTIONS = 10     # per image in the parity test: each detection costs a pass of the 256-wide mask head
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def _masks(boxes: Tensor, size: int) -> Tensor:
    """(N, size, size) uint8: the first box filled, the others the ellipses inscribed in them."""
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    masks = []
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        rectangle = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
        ellipse = ((2 * xs - x1 - x2) / (x2 - x1)) ** 2 + ((2 * ys - y1 - y2) / (y2 - y1)) ** 2 <= 1
        masks.append(rectangle if i == 0 else ellipse)
    return torch.stack(masks).to(torch.uint8) if masks else torch.zeros(0, size, size, dtype=torch.uint8)


def _targets(size: int = SIZE) -> list[dict[str, Tensor]]:
    """One image with two objects (dataset labels 0 and 2) and one background image."""
    boxes = torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.4, 0.35, 0.9, 0.8]]) * size
    return [{"boxes": boxes, "labels": torch.tensor([0, 2]), "masks": _masks(boxes, size)},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "masks": _masks(boxes[:0], size)}]


def _torchvision_targets(targets: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
    return [{**t, "labels": t["labels"] + 1} for t in targets]   # 0 is background there


@pytest.fixture(scope="module")
def reference() -> tuple[nn.Module, dict[str, Tensor]]:
    """torchvision's Mask R-CNN, random weights (seeded, no download), eval mode, and its state dict.

    Its resizing transform is the identity at SIZE (min = max = SIZE, a multiple of 32), so its whole
    forward pass, postprocessing included, can be compared. 128 RoIs per image instead of 512 keep the
    loss test short: a setting, not the algorithm.
    """
    torch.manual_seed(0)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1,
                                  box_batch_size_per_image=128, box_detections_per_img=DETECTIONS,
                                  min_size=SIZE, max_size=SIZE).eval()
    return model, {k: v.clone() for k, v in model.state_dict().items()}


def _ours(state: dict[str, Tensor], **kwargs) -> MaskRCNN:
    model = mask_rcnn_resnet50_fpn(num_classes=NUM_CLASSES, max_detections=DETECTIONS, **kwargs)
    model.load_state_dict(state, strict=True)   # the same parameter names as torchvision's
    return model.eval()


# ------------------------------------------------------------------------------------- torchvision parity

def test_detections_and_masks_match_torchvision(reference) -> None:
    tv, state = reference
    tv.load_state_dict(state)
    ours = _ours(state)
    torch.manual_seed(1)
    images = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        raw = ours(images)
        detections = ours.postprocess(raw)
        probabilities = ours.mask_probabilities(raw, detections, [(SIZE, SIZE)] * 2)
        expected = tv(list(images))       # boxes, labels, scores and pasted mask probabilities (N, 1, H, W)
    assert isinstance(raw, MaskRCNNOutput) and raw.mask_logits is None
    assert [len(d) for d in detections] == [DETECTIONS] * 2
    for det, probability, theirs in zip(detections, probabilities, expected):
        torch.testing.assert_close(det.boxes, theirs["boxes"], atol=1e-4, rtol=0)
        torch.testing.assert_close(det.scores, theirs["scores"], atol=1e-5, rtol=0)
        assert torch.equal(det.labels, theirs["labels"] - 1)
        torch.testing.assert_close(probability, theirs["masks"][:, 0], atol=1e-5, rtol=0)
        assert torch.equal(det.masks, probability > 0.5) and det.masks.any()


def test_losses_match_torchvision_for_the_same_samples(reference) -> None:
    # Same seed, same random calls in the same order (RPN anchors, then RoI proposals): the same samples.
    # torchvision's parts are called directly: its transform draws a random size in training mode.
    tv, state = reference
    tv.load_state_dict(state)
    ours = _ours(state, roi_batch_size=128).train()
    tv.train()
    images, targets = torch.rand(2, 3, SIZE, SIZE), _targets()
    torch.manual_seed(7)
    normalised = (images - MEAN) / STD
    features = tv.backbone(normalised)
    image_list = ImageList(normalised, [(SIZE, SIZE)] * 2)
    proposals, rpn_losses = tv.rpn(image_list, features, _torchvision_targets(targets))
    _, roi_losses = tv.roi_heads(features, proposals, image_list.image_sizes, _torchvision_targets(targets))
    torch.manual_seed(7)
    raw = ours(images, targets)
    losses = ours.loss(raw, targets)
    tv.eval()
    expected = {"rpn_objectness": rpn_losses["loss_objectness"], "rpn_box": rpn_losses["loss_rpn_box_reg"],
                "roi_classifier": roi_losses["loss_classifier"], "roi_box": roi_losses["loss_box_reg"],
                "mask": roi_losses["loss_mask"]}
    for name, value in expected.items():
        torch.testing.assert_close(losses[name], value, rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(losses["loss"], sum(expected.values()), rtol=1e-5, atol=1e-6)
    # The mask head saw the positive samples only, all in the first image, with their matched classes.
    positives = raw.detection.sample_labels[raw.detection.sample_labels > 0]
    assert torch.equal(raw.mask_labels, positives) and [len(b) for b in raw.mask_boxes] == [len(positives), 0]
    assert raw.mask_logits.shape == (len(positives), NUM_CLASSES + 1, 28, 28) and expected["mask"] > 0


def test_torchvision_checkpoint_loads_through_load_weights(reference, tmp_path: Path) -> None:
    _, state = reference
    path = tmp_path / "maskrcnn.pth"
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)
    model = mask_rcnn_resnet50_fpn(num_classes=NUM_CLASSES)
    report = load_weights(model, path)
    assert set(report.loaded) == {k for k in state if not k.endswith("num_batches_tracked")}
    assert not report.reinitialised and any(k.startswith("roi_heads.mask_head.") for k in report.loaded)
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, state[key]), key
    # Another class count: the box classifier, box regressor and per-class mask logits keep their fresh init.
    other = mask_rcnn_resnet50_fpn(num_classes=NUM_CLASSES + 5)
    report = load_weights(other, path)
    assert set(report.reinitialised) == {f"{name}.{p}" for name in other.classifier_names for p in ("weight", "bias")}
    assert "roi_heads.mask_predictor.mask_fcn_logits.weight" in report.reinitialised
    assert other.roi_heads.mask_predictor.mask_fcn_logits.out_channels == NUM_CLASSES + 6


def test_paper_head_shapes() -> None:
    with torch.device("meta"):
        model = mask_rcnn_resnet50_fpn(num_classes=80)
    heads = model.roi_heads
    assert [block[0].out_channels for block in heads.mask_head] == [256] * 4
    assert heads.mask_roi_pool.output_size == (14, 14) and heads.mask_roi_pool.featmap_names == ["0", "1", "2", "3"]
    assert heads.mask_predictor.conv5_mask.stride == (2, 2) and heads.mask_predictor.mask_fcn_logits.out_channels == 81


# ----------------------------------------------------------------------------------- the flow of one pass

@pytest.fixture
def small() -> MaskRCNN:
    torch.manual_seed(0)
    return mask_rcnn_small(num_classes=NUM_CLASSES)


def test_mask_targets_are_the_matched_ground_truth(small: MaskRCNN) -> None:
    targets = _targets()
    target = {**targets[0], "labels": targets[0]["labels"] + 1}
    rectangle, ellipse = target["boxes"]
    boxes = [torch.stack([ellipse, rectangle, torch.tensor([0.0, 0.0, 5.0, 5.0]), ellipse + 1])]
    labels = torch.tensor([3, 1, 0, 3])
    chosen, chosen_labels, masks = positive_mask_targets(small.roi_heads.proposal_matcher, boxes, labels, [target], 28)
    assert torch.equal(chosen[0], boxes[0][[0, 1, 3]]) and torch.equal(chosen_labels, torch.tensor([3, 1, 3]))
    assert masks.shape == (3, 28, 28) and masks.min() >= 0 and masks.max() <= 1
    # The rectangle fills its own box; torchvision's RoIAlign (aligned=False) blurs the border row and column.
    assert masks[1][1:-1, 1:-1].min() > 0.99 and masks[1].mean() > 0.95
    assert masks[0][0, 0] < 0.01 and masks[0][14, 14] > 0.99 and 0.7 < masks[0].mean() < 0.85   # pi / 4 of it
    empty = positive_mask_targets(small.roi_heads.proposal_matcher, boxes, torch.zeros(4, dtype=torch.int64),
                                  [target], 28)
    assert empty[0][0].shape == (0, 4) and empty[2].shape == (0, 28, 28)


def test_images_without_objects(small: MaskRCNN) -> None:
    empty = [_targets()[1]] * 2
    raw = small.train()(torch.rand(2, 3, SIZE, SIZE), empty)
    losses = small.loss(raw, empty)
    assert raw.mask_logits.shape == (0, NUM_CLASSES + 1, 28, 28) and raw.mask_targets.shape == (0, 28, 28)
    assert losses["mask"] == 0 and torch.isfinite(losses["loss"]) and losses["loss"] > 0
    losses["loss"].backward()
    assert small.roi_heads.box_predictor.cls_score.weight.grad.abs().sum() > 0
    assert small.roi_heads.mask_predictor.mask_fcn_logits.weight.grad.abs().sum() == 0


def test_evaluation_with_targets_detects_from_all_proposals(small: MaskRCNN) -> None:
    small.eval()
    images, targets = torch.rand(2, 3, SIZE, SIZE), _targets()
    with torch.no_grad():
        with_targets, without = small(images, targets), small(images)
        losses = small.loss(with_targets, targets)
        small.score_threshold = 0.0
        a, b = small.postprocess(with_targets), small.postprocess(without)
    detection = with_targets.detection
    assert all(torch.equal(r, p) for r, p in zip(detection.roi_boxes, detection.proposals))
    assert torch.isfinite(losses["loss"]) and losses["mask"] > 0 and len(with_targets.mask_labels) > 0
    assert all(torch.equal(x.boxes, y.boxes) and torch.equal(x.masks, y.masks) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="without targets"):
        small.loss(without, targets)


def test_postprocess_masks_cover_their_boxes_within_sizes(small: MaskRCNN) -> None:
    small.eval()
    with torch.no_grad():
        raw = small(torch.rand(2, 3, SIZE, SIZE))
    small.score_threshold, small.max_detections = 0.0, 5
    sizes = [(SIZE, SIZE), (40, 60)]
    small.mask_threshold = 0.0                          # every pasted pixel: the (padded) box
    full = small.postprocess(raw, sizes)
    small.mask_threshold = 1.0
    nothing = small.postprocess(raw, sizes)
    for det, none, (h, w) in zip(full, nothing, sizes):
        assert len(det) == 5 and det.masks.shape == (5, h, w) and not none.masks.any()
        for box, mask in zip(det.boxes.round().long().tolist(), det.masks):
            x1, y1, x2, y2 = box
            assert mask[y1 + 1:y2 - 1, x1 + 1:x2 - 1].all()
            assert mask.sum() <= (x2 - x1 + 4) * (y2 - y1 + 4)     # one pixel of padding a side, rounding
    empty = small.postprocess(raw._replace(detection=raw.detection._replace(
        roi_boxes=[b[:0] for b in raw.detection.roi_boxes], class_logits=raw.detection.class_logits[:0],
        box_regression=raw.detection.box_regression[:0])), sizes)
    assert [tuple(d.masks.shape) for d in empty] == [(0, SIZE, SIZE), (0, 40, 60)]


def test_autocast_keeps_the_mask_loss_in_float32(small: MaskRCNN) -> None:
    images, targets = torch.rand(2, 3, SIZE, SIZE), _targets()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        raw = small.train()(images, targets)
        losses = small.loss(raw, targets)
    assert raw.mask_logits.dtype == torch.bfloat16 and raw.mask_targets.dtype == torch.float32
    assert losses["mask"].dtype == torch.float32 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    small.score_threshold = 0.0
    detections = small.postprocess(raw)       # bfloat16 features, outside autocast
    assert detections[0].masks.dtype == torch.bool and len(detections[0]) > 0


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.pop("masks"), r"target 0 needs 'masks'"),
    (lambda t: t.update(masks=t["masks"][:1]), r"target 0: masks must be \(N, H, W\) = \(2, 96, 96\)"),
    (lambda t: t.update(masks=t["masks"].float()), "target 0: masks must be uint8 or bool"),
    (lambda t: t.update(masks=t["masks"] * 255), "target 0: masks must be 0 or 1, got values up to 255"),
])
def test_bad_mask_targets_are_named(small: MaskRCNN, change, message: str) -> None:
    targets = _targets()
    change(targets[0])
    with pytest.raises(ValueError, match=message):
        small(torch.rand(2, 3, SIZE, SIZE), targets)


def test_factory_options_reach_the_mask_branch() -> None:
    model = mask_rcnn_small(num_classes=2, fpn_channels=32, mask_threshold=0.3, score_threshold=0.2)
    assert [block[0].out_channels for block in model.roi_heads.mask_head] == [32, 32]
    assert model.roi_heads.mask_head[0][0].in_channels == 32 and model.roi_heads.mask_roi_pool.output_size == (14, 14)
    assert (model.mask_threshold, model.score_threshold) == (0.3, 0.2)
    wide = mask_rcnn_small(num_classes=2, mask_layers=[48, 48, 48])
    assert [block[0].out_channels for block in wide.roi_heads.mask_head] == [48] * 3
    assert wide.roi_heads.mask_predictor.conv5_mask.out_channels == 48
    with pytest.raises(ValueError, match="mask_threshold"):
        mask_rcnn_small(num_classes=2, mask_threshold=1.5)
    with pytest.raises(ValueError, match="mask_layers"):
        mask_rcnn_small(num_classes=2, mask_layers=())


# ------------------------------------------------------------------------------------------- overfitting

def _scene(seed: int, size: int) -> tuple[Tensor, dict[str, Tensor]]:
    """Noise with two objects: a disk (class 1) and a right triangle (class 0), or a disk and a ring (class 2)."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(3, size, size, generator=generator) * 0.3
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    colours = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.85, 0.1], [0.15, 0.2, 0.95]])
    shapes = {0: [(1, (12, 16, 60, 64)), (0, (70, 56, 118, 116))], 1: [(2, (60, 10, 116, 66)), (1, (14, 70, 54, 110))]}
    boxes, labels, masks = [], [], []
    for label, (x1, y1, x2, y2) in shapes[seed]:
        cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2
        disk = (xs - cx) ** 2 + (ys - cy) ** 2 <= r ** 2
        if label == 0:     # the lower-left half of the box
            mask = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2) & ((xs - x1) * (y2 - y1) <= (ys - y1) * (x2 - x1))
        else:
            mask = disk & ((xs - cx) ** 2 + (ys - cy) ** 2 >= (r / 2) ** 2) if label == 2 else disk
        image[:, mask] = colours[label][:, None]
        boxes.append([x1, y1, x2, y2])
        labels.append(label)
        masks.append(mask)
    return image, {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels),
                   "masks": torch.stack(masks).to(torch.uint8)}


@pytest.mark.slow
def test_small_overfits_two_images() -> None:
    torch.manual_seed(0)
    size = 128
    scenes = [_scene(seed, size) for seed in (0, 1)]
    images, targets = torch.stack([s[0] for s in scenes]), [s[1] for s in scenes]
    model = mask_rcnn_small(num_classes=3, input_size=size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[110], gamma=0.1)
    model.train()
    for _ in range(150):      # about 0.2 s a step on one core; mask IoUs reach ~0.95
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
        same_class = target["labels"][:, None] == det.labels[None, :]              # (N, D)
        iou = box_iou(target["boxes"], det.boxes) * same_class                     # (N, D)
        assert (iou.max(dim=1).values > 0.5).all(), (det, target, losses)
        best = det.masks[iou.argmax(dim=1)]                                         # (N, H, W)
        truth = target["masks"].bool()
        mask_iou = (best & truth).sum(dim=(1, 2)) / (best | truth).sum(dim=(1, 2))
        assert (mask_iou > 0.7).all(), (mask_iou, losses)
