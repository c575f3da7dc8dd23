"""SSD: default boxes, torchvision parity, matching, the MultiBox loss against a loop reference, postprocess."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou

from ninshiki.models import load_weights
from ninshiki.models.detect.ssd import SSD, SSDOutput, ssd300_vgg16, ssd_lite
from ninshiki.models.detect.ssd_loss import MultiBoxLoss, hard_negatives, match_default_boxes

K = 3   # object classes in these tests; the networks have K + 1 outputs with the background


@pytest.fixture(scope="module")
def ssd300() -> SSD:
    torch.manual_seed(0)
    return ssd300_vgg16(num_classes=K, max_detections=200).eval()


@pytest.fixture(scope="module")
def tv_ssd300(ssd300: SSD) -> torch.nn.Module:
    """torchvision's SSD300 holding our weights.

    Built on the meta device and then allocated: initialising the VGG-16 classifier that SSD discards (120M
    parameters) would take seconds. Loading our state dict strictly checks that both have the same keys and shapes.
    """
    with torch.device("meta"):
        model = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None, num_classes=K + 1)
    model.to_empty(device="cpu")
    model.load_state_dict(ssd300.state_dict(), strict=True)
    return model.eval()


def _grids(size: int = 300) -> list[torch.Tensor]:
    # Stand-ins for SSD300's six feature maps at `size` = 300: only their shapes are read.
    return [torch.empty(1, 1, s, s) for s in (38, 19, 10, 5, 3, 1)]


def test_ssd300_default_boxes(ssd300: SSD) -> None:
    boxes = ssd300.default_boxes((300, 300), _grids())                         # (A, 4) xyxy
    per_map = [38 * 38 * 4, 19 * 19 * 6, 10 * 10 * 6, 5 * 5 * 6, 3 * 3 * 4, 1 * 4]
    assert boxes.shape == (sum(per_map), 4) == (8732, 4)
    # Location-major: the first four boxes are conv4_3's at cell (0, 0), centre (4, 4) = step 8 / 2, with sides
    # s = 0.07 * 300, s' = sqrt(0.07 * 0.15) * 300, then aspect ratio 2 and 1/2 (clipped to the image).
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = boxes[:, 2:] - boxes[:, :2]
    torch.testing.assert_close(centre[:4], torch.full((4, 2), 4.0))
    s, s_prime, r = 21.0, math.sqrt(0.07 * 0.15) * 300, math.sqrt(2)
    expected = torch.tensor([[s, s], [s_prime, s_prime], [s * r, s / r], [s / r, s * r]])
    torch.testing.assert_close(size[:4], expected)
    torch.testing.assert_close(centre[4], torch.tensor([12.0, 4.0]))          # next cell along x
    last_map = centre[-4:]                                                   # conv11_2: one cell, the centre
    torch.testing.assert_close(last_map, torch.full((4, 2), 150.0))
    # Cached per size: the same tensor comes back, another size gets its own.
    assert ssd300.default_boxes((300, 300), _grids()) is boxes
    assert ssd300.default_boxes((301, 300), _grids()) is not boxes


def test_torchvision_state_dict_loads_and_heads_match(tv_ssd300: torch.nn.Module, ssd300: SSD) -> None:
    ssd300.load_state_dict(tv_ssd300.state_dict(), strict=True)    # same names and shapes both ways (fixture)
    # torchvision resizes and normalises in its GeneralizedRCNNTransform; compare after it, at the heads.
    torch.manual_seed(2)
    images = torch.rand(1, 3, 300, 300)
    with torch.no_grad():
        ours = ssd300(images)
        normalised, _ = tv_ssd300.transform(list(images))
        features = list(tv_ssd300.backbone(normalised.tensors).values())
        theirs = tv_ssd300.head(features)
        anchors = tv_ssd300.anchor_generator(ImageList(normalised.tensors, [(300, 300)]), features)[0]
    assert ours.cls_logits.shape == (1, 8732, K + 1) and ours.box_regression.shape == (1, 8732, 4)
    torch.testing.assert_close(ours.cls_logits, theirs["cls_logits"], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.box_regression, theirs["bbox_regression"], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.anchors, anchors, atol=1e-5, rtol=0)
    assert ours.image_size == (300, 300)


def test_loads_torchvision_checkpoint_with_other_class_count(tv_ssd300: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "ssd300.pth"
    torch.save(tv_ssd300.state_dict(), path)
    model = ssd300_vgg16(num_classes=K + 2)
    report = load_weights(model, path)
    heads = {f"head.classification_head.module_list.{i}.{p}" for i in range(6) for p in ("weight", "bias")}
    assert set(report.reinitialised) == heads
    assert len(report.loaded) == len(model.state_dict()) - len(heads)


def _random_head(batch: int, anchors: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, anchors, K + 1, generator=g) * 2, torch.randn(batch, anchors, 4, generator=g)


def test_postprocess_matches_torchvision(tv_ssd300: torch.nn.Module, ssd300: SSD) -> None:
    anchors = ssd300.default_boxes((300, 300), _grids())
    cls_logits, box_regression = _random_head(2, 8732, seed=3)
    for threshold in (0.01, 0.6):
        ssd300.score_threshold, tv_ssd300.score_thresh = threshold, threshold
        ours = ssd300.postprocess(SSDOutput(cls_logits, box_regression, anchors, (300, 300)))
        theirs = tv_ssd300.postprocess_detections({"cls_logits": cls_logits, "bbox_regression": box_regression},
                                                  [anchors, anchors], [(300, 300)] * 2)
        for mine, reference in zip(ours, theirs):
            assert 0 < len(mine) <= 200
            torch.testing.assert_close(mine.boxes, reference["boxes"])
            torch.testing.assert_close(mine.scores, reference["scores"])
            assert torch.equal(mine.labels + 1, reference["labels"])   # ours 0-based, torchvision's background 0
    ssd300.score_threshold = 0.01


def test_postprocess_clips_to_sizes_and_can_be_empty(ssd300: SSD) -> None:
    anchors = ssd300.default_boxes((300, 300), _grids())
    raw = SSDOutput(*_random_head(2, 8732, seed=4), anchors, (300, 300))
    small, full = ssd300.postprocess(raw, [(100, 150), (300, 300)])
    assert small.boxes[:, 0::2].max() <= 150 and small.boxes[:, 1::2].max() <= 100 and small.boxes.min() >= 0
    assert full.boxes.max() > 150
    ssd300.score_threshold = 1.0
    try:
        empty = ssd300.postprocess(raw)
    finally:
        ssd300.score_threshold = 0.01
    assert [len(d) for d in empty] == [0, 0] and empty[0].boxes.shape == (0, 4)


def _targets() -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.tensor([[10.0, 20, 100, 120], [150, 50, 290, 250], [30, 200, 60, 230]]),
             "labels": torch.tensor([0, 2, 1])},
            {"boxes": torch.tensor([[0.0, 0, 300, 300]]), "labels": torch.tensor([1])},
            {"boxes": torch.tensor([[5.0, 5, 40, 60], [100, 100, 140, 180]]), "labels": torch.tensor([2, 2])}]


def test_loss_matches_torchvision(tv_ssd300: torch.nn.Module, ssd300: SSD) -> None:
    # Where no two ground truths share a best default box, our matching is torchvision's SSDMatcher and the
    # loss its compute_loss (smooth L1; hard negatives 3:1; both divided by the positives).
    anchors = ssd300.default_boxes((300, 300), _grids())
    cls_logits, box_regression = _random_head(3, 8732, seed=5)
    targets = _targets()
    matched = [tv_ssd300.proposal_matcher(box_iou(t["boxes"], anchors)) for t in targets]
    for target, theirs in zip(targets, matched):
        assert torch.equal(match_default_boxes(target["boxes"], anchors), theirs)
    shifted = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
    reference = tv_ssd300.compute_loss(shifted, {"cls_logits": cls_logits, "bbox_regression": box_regression},
                                       [anchors] * 3, matched)
    ours = ssd300.loss(SSDOutput(cls_logits, box_regression, anchors, (300, 300)), targets)
    torch.testing.assert_close(ours["classification"], reference["classification"])
    torch.testing.assert_close(ours["box_regression"], reference["bbox_regression"])
    torch.testing.assert_close(ours["loss"], reference["classification"] + reference["bbox_regression"])


def test_encode_decode_round_trip_of_matched_boxes(ssd300: SSD) -> None:
    anchors = ssd300.default_boxes((300, 300), _grids())
    boxes = torch.cat([t["boxes"] for t in _targets()])
    matches = match_default_boxes(boxes, anchors)
    matched = matches >= 0
    coder = det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    codes = coder.encode_single(boxes[matches[matched]], anchors[matched])    # (P, 4)
    decoded = coder.decode_single(codes, anchors[matched])
    torch.testing.assert_close(decoded, boxes[matches[matched]], atol=1e-4, rtol=0)


def test_matching_gives_every_ground_truth_a_default_box() -> None:
    anchors = torch.tensor([[0.0, 0, 10, 10], [10, 0, 20, 10], [0, 10, 10, 20], [40, 40, 60, 60]])
    # Both small boxes have their best overlap with anchor 0, under 0.5: torchvision's SSDMatcher keeps only
    # the second; the bipartite matching gives the first anchor 0 (the higher IoU) and the second anchor 1.
    gts = torch.tensor([[1.0, 1, 8, 8], [3, 2, 12, 6], [41, 41, 59, 59]])
    matches = match_default_boxes(gts, anchors)
    assert matches.tolist() == [0, 1, -1, 2]
    assert len(set(det_utils.SSDMatcher(0.5)(box_iou(gts, anchors)).tolist()) - {-1}) == 2   # one gt lost
    # Threshold matches: every box with IoU >= 0.5 joins its best ground truth, besides the forced ones.
    many = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11], [30, 30, 40, 40]])
    assert match_default_boxes(torch.tensor([[0.0, 0, 10, 10]]), many).tolist() == [0, 0, 0, -1]
    assert match_default_boxes(torch.zeros(0, 4), many).tolist() == [-1] * 4


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _reference_loss(cls_logits: torch.Tensor, box_regression: torch.Tensor, anchors: torch.Tensor,
                    targets: list[dict[str, torch.Tensor]], min_negatives: int = 0) -> tuple[float, float]:
    """The paper's section 2.2 in plain Python: (L_conf / N, L_loc / N), with Caffe's bipartite matching."""
    anchor_list, conf, loc, num_positive = anchors.tolist(), 0.0, 0.0, 0
    for logits, offsets, target in zip(cls_logits.tolist(), box_regression.tolist(), targets):
        gts, labels = target["boxes"].tolist(), target["labels"].tolist()
        match = [-1] * len(anchor_list)
        for a, anchor in enumerate(anchor_list):
            overlaps = [_iou(gt, anchor) for gt in gts]
            if overlaps and max(overlaps) >= 0.5:
                match[a] = overlaps.index(max(overlaps))
        pairs = sorted(((_iou(gt, anchor), g, a) for g, gt in enumerate(gts) for a, anchor in enumerate(anchor_list)),
                       reverse=True)
        used_gt, used_anchor = set(), set()
        for _, g, a in pairs:
            if g not in used_gt and a not in used_anchor:
                match[a] = g
                used_gt.add(g)
                used_anchor.add(a)
        negatives = []
        for a, anchor in enumerate(anchor_list):
            log_sum = math.log(sum(math.exp(v) for v in logits[a]))
            if match[a] < 0:
                negatives.append(log_sum - logits[a][0])
                continue
            num_positive += 1
            conf += log_sum - logits[a][labels[match[a]] + 1]
            gt = gts[match[a]]
            aw, ah = anchor[2] - anchor[0], anchor[3] - anchor[1]
            gw, gh = gt[2] - gt[0], gt[3] - gt[1]
            encoded = [((gt[0] + gw / 2) - (anchor[0] + aw / 2)) / aw / 0.1,
                       ((gt[1] + gh / 2) - (anchor[1] + ah / 2)) / ah / 0.1,
                       math.log(gw / aw) / 0.2, math.log(gh / ah) / 0.2]
            for d in (p - e for p, e in zip(offsets[a], encoded)):
                loc += 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5
        positives_here = sum(m >= 0 for m in match)
        hardest = sorted(negatives, reverse=True)[:max(int(3 * positives_here), min_negatives)]
        conf += sum(hardest)
    n = max(num_positive, 1)
    return conf / n, loc / n


def _loop_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(6)
    xy = torch.rand(40, 2, generator=g) * 80
    anchors = torch.cat([xy, xy + 10 + torch.rand(40, 2, generator=g) * 30], 1)          # (40, 4) xyxy

    def jitter(boxes: torch.Tensor) -> torch.Tensor:
        return boxes + torch.rand(boxes.shape, generator=g) * 2

    targets = [
        # two ground truths near anchor 5 share it as their best box; a third anywhere
        {"boxes": torch.cat([jitter(anchors[[5, 5]]), torch.tensor([[20.0, 30, 70, 60]])]),
         "labels": torch.tensor([0, 1, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},     # background only
        # 14 positives want 42 negatives, more than the 26 left: all of them are taken
        {"boxes": jitter(anchors[:14]), "labels": torch.arange(14) % K},
    ]
    cls_logits = torch.randn(3, 40, K + 1, generator=g)
    box_regression = torch.randn(3, 40, 4, generator=g)
    return cls_logits, box_regression, anchors, targets


@pytest.mark.parametrize("min_negatives", [0, 5])
def test_loss_equals_loop_reference(min_negatives: int) -> None:
    cls_logits, box_regression, anchors, targets = _loop_case()
    assert len(set(box_iou(targets[0]["boxes"], anchors).argmax(1)[:2].tolist())) == 1   # the shared best box
    losses = MultiBoxLoss(min_negatives=min_negatives)(cls_logits, box_regression, anchors, targets)
    conf, loc = _reference_loss(cls_logits, box_regression, anchors, targets, min_negatives)
    torch.testing.assert_close(losses["classification"], torch.tensor(conf), rtol=1e-5, atol=0)
    torch.testing.assert_close(losses["box_regression"], torch.tensor(loc), rtol=1e-5, atol=0)
    torch.testing.assert_close(losses["loss"], torch.tensor(conf + loc), rtol=1e-5, atol=0)


def test_hard_negatives_are_the_highest_losses_disjoint_from_positives() -> None:
    loss = torch.tensor([[0.5, 0.9, 0.1, 0.7, 0.3, 0.8], [0.2, 0.6, 0.4, 0.9, 0.1, 0.3]])
    positive = torch.tensor([[False, True, False, False, False, False], [True, True, False, True, False, False]])
    negative = hard_negatives(loss, positive, neg_pos_ratio=2.0)
    # one positive -> the two hardest others (0.8, 0.7); three want six, only three negatives exist
    assert negative.tolist() == [[False, False, False, True, False, True], [False, False, True, False, True, True]]
    negative = hard_negatives(loss, torch.zeros_like(positive), neg_pos_ratio=2.0, min_negatives=1)
    assert negative.tolist() == [[False, True, False, False, False, False], [False, False, False, True, False, False]]


def test_empty_targets() -> None:
    cls_logits, box_regression, anchors, _ = _loop_case()
    cls_logits.requires_grad_(True)
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 3
    losses = MultiBoxLoss()(cls_logits, box_regression, anchors, empty)
    assert losses["loss"].item() == 0.0 and losses["box_regression"].item() == 0.0   # the paper: N = 0 -> 0
    losses["loss"].backward()
    assert cls_logits.grad is not None and cls_logits.grad.abs().sum() == 0
    # With min_negatives, background images train the background class: the 5 hardest per image, over N = 1.
    losses = MultiBoxLoss(min_negatives=5)(cls_logits, box_regression, anchors, empty)
    background = torch.nn.functional.cross_entropy(cls_logits.detach().flatten(0, 1),
                                                   torch.zeros(120, dtype=torch.int64), reduction="none")
    expected = background.view(3, 40).topk(5, dim=1).values.sum()
    torch.testing.assert_close(losses["loss"], expected)


def test_bad_targets_name_the_image() -> None:
    cls_logits, box_regression, anchors, targets = _loop_case()
    loss = MultiBoxLoss()
    flat = [dict(t) for t in targets]
    flat[2] = {"boxes": torch.tensor([[5.0, 5, 5, 9]]), "labels": torch.tensor([0])}
    with pytest.raises(ValueError, match=r"target 2: boxes must be .* x2 > x1"):
        loss(cls_logits, box_regression, anchors, flat)
    flat[2] = {"boxes": torch.tensor([[5.0, 5, 9, 9]]), "labels": torch.tensor([K])}
    with pytest.raises(ValueError, match=r"target 2: labels must be in \[0, 3\)"):
        loss(cls_logits, box_regression, anchors, flat)


def test_ssd_lite_layout_and_options() -> None:
    torch.manual_seed(0)
    model = ssd_lite(num_classes=K)
    assert model.input_size == 320
    assert [info.stride for info in model.backbone.feature_info] == [8, 16, 32, 64, 128]
    images = torch.rand(1, 3, 320, 320)
    model.eval()
    with torch.no_grad():
        raw = model(images)
    per_map = [40 * 40 * 4, 20 * 20 * 6, 10 * 10 * 6, 5 * 5 * 6, 3 * 3 * 4]
    assert raw.cls_logits.shape == (1, sum(per_map), K + 1) and raw.anchors.shape == (sum(per_map), 4)
    # The first default box: stride-8 cell (0, 0), centre (4, 4), side 0.075 * 320 = 24 px (not clipped).
    torch.testing.assert_close(raw.anchors[0], torch.tensor([-8.0, -8, 16, 16]))
    for name in model.classifier_names:
        assert model.get_submodule(name).out_channels % (K + 1) == 0
    # Configurable: one extra map fewer, other aspect ratios and scales, gray input.
    small = ssd_lite(num_classes=2, in_channels=1, extra=(64,), aspect_ratios=[[2]] * 4,
                     scales=[0.1, 0.2, 0.4, 0.6, 0.8], score_threshold=0.2, max_detections=7)
    assert small.get_submodule(small.first_conv).in_channels == 1
    assert (small.score_threshold, small.max_detections) == (0.2, 7)
    with torch.no_grad():
        raw = small.eval()(torch.rand(1, 1, 320, 320))
    assert raw.anchors.shape == ((1600 + 400 + 100 + 25) * 4, 4)
    with pytest.raises(ValueError, match="aspect_ratios has one list per map"):
        ssd_lite(num_classes=2, aspect_ratios=[[2]] * 3, scales=[0.1, 0.2, 0.4, 0.6])
    with pytest.raises(TypeError, match="unexpected keyword arguments"):
        ssd_lite(num_classes=2, anchor_sizes=[32])


def _scene(index: int, size: int = 160) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Noise with coloured rectangles (classes 0 red, 2 blue) and green disks (class 1), boxes known."""
    g = torch.Generator().manual_seed(index)
    image = torch.rand(3, size, size, generator=g) * 0.3
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    colours = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.2, 0.95]])
    objects = [[(15, 20, 70, 90, 0), (92, 30, 148, 86, 1), (40, 100, 110, 150, 2)],
               [(100, 95, 150, 150, 0), (10, 10, 80, 60, 2), (20, 90, 70, 140, 1)]][index]
    for x1, y1, x2, y2, label in objects:
        if label == 1:
            inside = (xx - (x1 + x2) / 2) ** 2 + (yy - (y1 + y2) / 2) ** 2 <= ((x2 - x1) / 2) ** 2
        else:
            inside = (xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2)
        image[:, inside] = colours[label].view(3, 1)
    boxes = torch.tensor([o[:4] for o in objects], dtype=torch.float32)
    return image, {"boxes": boxes, "labels": torch.tensor([o[4] for o in objects])}


@pytest.mark.slow
def test_ssd_lite_overfits_two_images() -> None:
    torch.manual_seed(0)
    (a, ta), (b, tb) = _scene(0), _scene(1)
    images, targets = torch.stack([a, b]), [ta, tb]
    model = ssd_lite(num_classes=K)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(150):
        model.train()
        losses = model.loss(model(images, targets), targets)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        detections = model.postprocess(model(images))
    for found, target in zip(detections, targets):
        found = found[found.scores > 0.5]
        assert len(found) == len(target["boxes"]), (found, target)
        iou = box_iou(target["boxes"], found.boxes)                      # (G, D)
        best = iou.argmax(dim=1)
        assert (iou.max(dim=1).values > 0.5).all(), iou
        assert torch.equal(found.labels[best], target["labels"])
