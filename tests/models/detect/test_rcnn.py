"""R-CNN: crop warping with context, the fine-tuning sampler, box targets, the proposal memo, heads and decoding.

The shared contract test (test_contract.py) covers the raw-output type, loss and postprocess shapes.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from ninshiki.models.detect import rcnn as rcnn_module
from ninshiki.models.detect.rcnn import RCNNOutput, rcnn
from ninshiki.models.detect.rcnn_regions import (
    ProposalMemo,
    RegionSample,
    context_boxes,
    decode_boxes,
    encode_boxes,
    sample_regions,
    warp_regions,
)
from ninshiki.registry import build

WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def _counting_search(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Replace the model's Selective Search by a counting wrapper around it; returns the calls' image shapes."""
    calls: list[tuple[int, ...]] = []
    real = rcnn_module.selective_search

    def counted(image: np.ndarray, **kwargs: object) -> np.ndarray:
        calls.append(image.shape)
        return real(image, **kwargs)
    monkeypatch.setattr(rcnn_module, "selective_search", counted)
    return calls


def test_context_padding_leaves_p_pixels_of_context_in_the_crop() -> None:
    box = torch.tensor([[28.0, 30.0, 52.0, 70.0]])
    dilated = context_boxes(box, crop_size=16, padding=2)          # the box must fill the central 12 of 16 px
    torch.testing.assert_close(dilated, torch.tensor([[24.0, 23.333334, 56.0, 76.666664]]))
    assert rcnn(num_classes=1, crop_size=227).config.padding == 16     # the paper's p at 227
    assert rcnn(num_classes=1).config.padding == 5                     # scaled to the 64 px default


def test_warp_is_a_crop_of_the_dilated_box_resized_bilinearly() -> None:
    torch.manual_seed(0)
    image = torch.rand(2, 3, 64, 80)
    rois = torch.tensor([[1.0, 28.0, 20.0, 52.0, 44.0]])           # of image 1, dilated by 16 / 12 to [24, 16, 56, 48]
    crops = warp_regions(image, rois, crop_size=16, padding=2)
    assert crops.shape == (1, 3, 16, 16)
    manual = F.interpolate(image[1:, :, 16:48, 24:56], size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(crops, manual)
    same_size = warp_regions(image, torch.tensor([[0.0, 10.0, 6.0, 26.0, 22.0]]), crop_size=16, padding=0)
    torch.testing.assert_close(same_size[0], image[0, :, 6:22, 10:26])


def test_warp_pads_beyond_the_image_with_zero_the_normalised_mean() -> None:
    image = torch.rand(1, 3, 64, 64) + 1.0
    crop = warp_regions(image, torch.tensor([[0.0, -32.0, 0.0, 32.0, 64.0]]), crop_size=16, padding=0)[0]
    assert (crop[:, :, :8] == 0).all() and (crop[:, :, 8:] >= 1.0).all()


def test_box_targets_are_the_papers_and_round_trip() -> None:
    proposal, gt = torch.tensor([[0.0, 0.0, 10.0, 20.0]]), torch.tensor([[5.0, 0.0, 25.0, 20.0]])
    torch.testing.assert_close(encode_boxes(proposal, gt, (1.0, 1.0, 1.0, 1.0)),
                               torch.tensor([[1.0, 0.0, float(np.log(2.0)), 0.0]]))   # dx = (15 - 5) / 10
    torch.manual_seed(1)
    corners = torch.rand(50, 2) * 100
    proposals = torch.cat([corners, corners + 5 + torch.rand(50, 2) * 60], dim=1)
    gts = proposals + torch.randn(50, 4) * 4
    gts[:, 2:] = torch.maximum(gts[:, 2:], gts[:, :2] + 2)
    deltas = encode_boxes(proposals, gts, WEIGHTS)
    torch.testing.assert_close(decode_boxes(deltas, proposals, WEIGHTS), gts, rtol=0, atol=1e-3)
    per_class = torch.stack([deltas, torch.zeros_like(deltas)], dim=1)          # (R, 2, 4)
    decoded = decode_boxes(per_class, proposals, WEIGHTS)
    torch.testing.assert_close(decoded[:, 0], gts, rtol=0, atol=1e-3)
    torch.testing.assert_close(decoded[:, 1], proposals, rtol=0, atol=1e-4)


def _sampler_inputs() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Image 0: one object (label 2) at [40, 40, 80, 80], 20 proposals overlapping it and 60 far away.
    Image 1: no objects, 70 proposals."""
    shifts = torch.arange(20, dtype=torch.float32).unsqueeze(1)                 # IoU 1.0 down to 0.29
    near = torch.tensor([[40.0, 40.0, 80.0, 80.0]]) + shifts * torch.tensor([[0.5, 0.5, 0.5, 0.5]]) * 1.4
    far = torch.tensor([[150.0, 150.0, 180.0, 190.0]]) + torch.arange(60.0).unsqueeze(1)
    other = torch.tensor([[0.0, 0.0, 30.0, 30.0]]) + torch.arange(70.0).unsqueeze(1)
    targets = [{"boxes": torch.tensor([[40.0, 40.0, 80.0, 80.0]]), "labels": torch.tensor([2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    return [torch.cat([near, far]), other], targets


def test_sampler_draws_the_papers_quarter_of_positives_with_their_labels() -> None:
    torch.manual_seed(0)
    proposals, targets = _sampler_inputs()
    sample = sample_regions(proposals, targets, positives=16, negatives=48, positive_iou=0.5, regress_iou=0.6,
                            weights=WEIGHTS)
    assert len(sample.labels) == 128 and (sample.labels > 0).sum() == 32   # 1:3 over the two-image batch
    assert set(sample.labels.tolist()) == {0, 3}                           # background and class 2 + 1
    gt = targets[0]["boxes"]
    iou = torch.cat([box_iou(sample.boxes[0], gt).squeeze(1), torch.zeros(len(sample.boxes[1]))])
    positive = sample.labels > 0
    assert (iou[positive] >= 0.5).all() and (iou[~positive] < 0.5).all()
    assert len(sample.boxes[0]) >= 32                                      # every positive comes from image 0
    assert torch.equal(sample.regress, positive & (iou >= 0.6))
    matched = decode_boxes(sample.box_targets[positive], torch.cat(sample.boxes)[positive], WEIGHTS)
    torch.testing.assert_close(matched, gt.expand(int(positive.sum()), 4), rtol=0, atol=1e-3)


def test_sampler_adds_ground_truth_as_positives_and_keeps_background_only_batches() -> None:
    torch.manual_seed(0)
    far = torch.tensor([[150.0, 150.0, 180.0, 190.0]]) + torch.arange(10.0).unsqueeze(1)
    target = {"boxes": torch.tensor([[10.0, 10.0, 50.0, 40.0]]), "labels": torch.tensor([0])}
    sample = sample_regions([far], [target], positives=16, negatives=48, positive_iou=0.5, regress_iou=0.6,
                            weights=WEIGHTS)
    positive = sample.labels == 1
    assert positive.sum() == 16 and (sample.labels == 0).sum() == 48      # drawn with replacement when short
    assert (sample.boxes[0][positive] == target["boxes"]).all() and (sample.box_targets[positive] == 0).all()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    background = sample_regions([far], [empty], positives=16, negatives=48, positive_iou=0.5, regress_iou=0.6,
                                weights=WEIGHTS)
    assert len(background.labels) == 48 and (background.labels == 0).all() and not background.regress.any()


def test_memo_runs_selective_search_once_per_image(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting_search(monkeypatch)
    torch.manual_seed(0)
    model = rcnn(num_classes=2, test_proposals=20, chunk_size=16)
    images = torch.rand(2, 3, 48, 48)
    first = model.propose(images)
    assert len(calls) == 2
    model.eval()
    with torch.no_grad():
        raw = model(images)
    second = model.propose(images)
    assert len(calls) == 2
    for a, b, rows in zip(first, second, raw.proposals):
        assert torch.equal(a, b) and torch.equal(rows, a[:20])
    model.propose(torch.flip(images[:1], dims=[3]))
    assert len(calls) == 3                                                   # new content, new search
    assert not any("memo" in key for key in model.state_dict())


def test_memo_forgets_the_least_recently_used() -> None:
    memo, computed = ProposalMemo(capacity=2), []

    def compute(image: np.ndarray) -> np.ndarray:
        computed.append(int(image[0, 0]))
        return np.zeros((0, 4), np.float32)
    images = [np.full((4, 4), value, np.uint8) for value in range(3)]
    for index in (0, 1, 0, 2, 0, 1):
        memo.get(images[index], compute)
    assert computed == [0, 1, 2, 1] and len(memo) == 2


def test_given_proposals_replace_selective_search(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting_search(monkeypatch)
    model = rcnn(num_classes=2, test_proposals=3).eval()
    given = [np.array([[0, 0, 20, 20], [5, 5, 30, 40], [10, 0, 40, 20], [1, 1, 9, 9]], np.float32),
             torch.zeros(0, 4)]
    with torch.no_grad():
        raw = model(torch.rand(2, 3, 48, 48), proposals=given)
    assert calls == [] and raw.class_logits.shape == (3, 3) and raw.box_deltas.shape == (3, 8)
    assert torch.equal(raw.proposals[0], torch.from_numpy(given[0][:3])) and raw.proposals[1].shape == (0, 4)
    detections = model.postprocess(raw)
    assert len(detections[1]) == 0


def test_a_batch_without_regions_trains_with_zero_loss() -> None:
    model = rcnn(num_classes=2).train()
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    raw = model(torch.rand(1, 3, 32, 32), empty, proposals=[torch.zeros(0, 4)])
    losses = model.loss(raw, empty)
    assert losses["loss"].item() == 0
    losses["loss"].backward()
    assert model.postprocess(raw)[0].boxes.shape == (0, 4)


def test_postprocess_applies_the_deltas_of_each_class() -> None:
    model = rcnn(num_classes=3)
    model.score_threshold = 0.5
    proposals = torch.tensor([[10.0, 10.0, 50.0, 40.0], [60.0, 60.0, 90.0, 100.0]])
    gts = torch.tensor([[14.0, 8.0, 54.0, 44.0], [55.0, 62.0, 95.0, 96.0]])
    logits = torch.full((2, 4), -10.0)
    logits[0, 2], logits[1, 3] = 10.0, 10.0                                     # classes 1 and 2
    deltas = torch.randn(2, 3, 4)                                               # wrong for the other classes
    deltas[0, 1], deltas[1, 2] = encode_boxes(proposals, gts, WEIGHTS)
    raw = RCNNOutput((proposals,), logits, deltas.view(2, 12), (120, 120))
    detections = model.postprocess(raw)[0]
    assert sorted(detections.labels.tolist()) == [1, 2]
    order = detections.labels.argsort()
    torch.testing.assert_close(detections.boxes[order], gts, rtol=0, atol=1e-3)


def test_loss_uses_the_labelled_class_deltas_for_regressed_regions_only() -> None:
    model = rcnn(num_classes=3)
    targets = torch.tensor([[0.5, -0.2, 0.1, 0.3], [9.0, 9.0, 9.0, 9.0]])
    sample = RegionSample((torch.zeros(2, 4),), torch.tensor([2, 0]), targets, torch.tensor([True, False]))
    logits = torch.tensor([[0.0, 1.0, 3.0, 0.0], [2.0, 0.0, 0.0, 1.0]], requires_grad=True)
    deltas = torch.randn(2, 3, 4)
    deltas[0, 1] = targets[0] + torch.tensor([0.1, 0.0, 0.0, -0.2])
    raw = RCNNOutput((torch.zeros(2, 4),), logits, deltas.view(2, 12), (64, 64), sample, logits, deltas.view(2, 12))
    losses = model.loss(raw, [{}])
    torch.testing.assert_close(losses["loss_cls"], F.cross_entropy(logits, sample.labels).detach())
    torch.testing.assert_close(losses["loss_box"], torch.tensor(0.05))        # 0.1^2 + 0.2^2 over one region
    with pytest.raises(ValueError, match="targets"):
        model.loss(raw._replace(sample=None), [{}])


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda m: m(torch.rand(1, 1, 32, 32)), ValueError, "images"),
    (lambda m: m(torch.rand(1, 3, 32, 32), [{"boxes": torch.zeros(1, 4), "labels": torch.tensor([5])}]),
     ValueError, "labels outside"),
    (lambda m: m(torch.rand(1, 3, 32, 32), []), ValueError, "targets"),
    (lambda m: m(torch.rand(1, 3, 32, 32), proposals=[torch.zeros(3)]), ValueError, "proposals"),
])
def test_bad_inputs_are_refused(call: Callable[[torch.nn.Module], object], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call(rcnn(num_classes=2))


def test_options_are_checked() -> None:
    with pytest.raises(TypeError, match="unknown option.*crop_size"):
        rcnn(num_classes=2, crop=32)
    with pytest.raises(ValueError, match="context_padding"):
        rcnn(num_classes=2, crop_size=16, context_padding=8)
    with pytest.raises(ValueError, match="one linear classifier layer"):
        rcnn(num_classes=2, backbone="googlenet_small")


def test_classifier_backbones_and_gray_input() -> None:
    torch.manual_seed(0)
    model = rcnn(num_classes=2, backbone="alexnet_small", crop_size=32).eval()
    assert isinstance(model.get_submodule(model.first_conv), torch.nn.Conv2d)
    assert model.config.padding == 2
    with torch.no_grad():
        raw = model(torch.rand(1, 3, 40, 40), proposals=[torch.tensor([[0.0, 0.0, 20.0, 30.0]] * 3)])
    assert raw.class_logits.shape == (3, 3) and torch.isfinite(raw.box_deltas).all()
    gray = rcnn(num_classes=2, in_channels=1, test_proposals=8).eval()
    with torch.no_grad():
        raw = gray(torch.rand(1, 1, 48, 48))
    assert raw.class_logits.shape == (len(raw.proposals[0]), 3) and 0 < len(raw.proposals[0]) <= 8


def test_backbone_weights_are_loaded_before_the_classifier_layer_goes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    pretrained = build("alexnet_small", num_classes=10)
    torch.save(pretrained.state_dict(), tmp_path / "alexnet_small.pth")
    model = rcnn(num_classes=2, backbone="alexnet_small", crop_size=32,
                 backbone_weights=str(tmp_path / "alexnet_small.pth"))
    torch.testing.assert_close(model.encoder.net.features[0].weight, pretrained.features[0].weight)
    torch.testing.assert_close(model.encoder.net.classifier[4].weight, pretrained.classifier[4].weight)
    assert isinstance(model.encoder.net.classifier[6], torch.nn.Identity)


def _scene(seed: int, objects: list[tuple[int, tuple[int, int, int, int]]]) -> tuple[torch.Tensor, dict]:
    """A 128 px image: a smooth colour gradient with noise, and filled rectangles (classes 0, 2) or disks (1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:128, 0:128] / 128
    background = np.stack([90 + 60 * xx, 110 + 40 * yy, 130 - 50 * xx], axis=-1) + rng.normal(0, 6, (128, 128, 3))
    image = np.clip(background, 0, 255).astype(np.uint8)
    for label, (x1, y1, x2, y2) in objects:
        colour = ((220, 40, 40), (40, 200, 60), (50, 60, 230))[label]
        if label == 1:
            cv2.ellipse(image, ((x1 + x2) // 2, (y1 + y2) // 2), ((x2 - x1) // 2, (y2 - y1) // 2), 0, 0, 360,
                        colour, -1)
        else:
            cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), colour, -1)
    target = {"boxes": torch.tensor([box for _, box in objects], dtype=torch.float32),
              "labels": torch.tensor([label for label, _ in objects])}
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255, target


@pytest.mark.slow
def test_overfits_two_images() -> None:
    torch.manual_seed(0)
    first = _scene(0, [(0, (10, 12, 50, 40)), (1, (70, 60, 110, 110)), (2, (20, 70, 50, 118))])
    second = _scene(1, [(2, (60, 10, 118, 44)), (0, (14, 60, 44, 120))])
    images, targets = torch.stack([first[0], second[0]]), [first[1], second[1]]
    model = rcnn(num_classes=3, dropout=0.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    for _ in range(100):
        losses = model.loss(model(images, targets), targets)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    model.eval()
    model.score_threshold = 0.3
    with torch.no_grad():
        detections = model.postprocess(model(images))
    for found, target in zip(detections, targets):
        assert len(found) == len(target["boxes"]), found                       # no confident false positives
        iou = box_iou(target["boxes"], found.boxes)                            # (N, D)
        same_class = target["labels"][:, None] == found.labels[None, :]
        assert ((iou > 0.5) & same_class).any(dim=1).all(), (iou, found.labels)
