"""R-CNN's region operations (Girshick et al., CVPR 2014): warping with context padding, the fine-tuning sampler,
the bounding-box regression targets, and a memo of Selective Search proposals.

Pure functions on tensors, boxes `xyxy` in input pixels (x2, y2 exclusive); `ProposalMemo` is the one stateful
piece, owned by each model.
"""
from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou, roi_align

# Predicted log-scale changes are clamped before exp, as torchvision does, so that an untrained regressor cannot
# overflow: at most a 1000/16 = 62.5x change of width or height.
_MAX_LOG_SCALE = math.log(1000.0 / 16)


def context_boxes(boxes: Tensor, *, crop_size: int, padding: int) -> Tensor:
    """Boxes dilated about their centres so that, warped to crop_size x crop_size, the original box fills the
    central (crop_size - 2 padding) pixels: `padding` pixels of image context on every side (R-CNN: 16 at 227).

    Shape:
        - boxes: (R, 4) xyxy. Output: (R, 4) xyxy.
    """
    if not 0 <= 2 * padding < crop_size:
        raise ValueError(f"context padding {padding} leaves nothing of a {crop_size} px crop")
    scale = crop_size / (crop_size - 2 * padding)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2                                 # (R, 2)
    half = (boxes[:, 2:] - boxes[:, :2]) * (scale / 2)                          # (R, 2)
    return torch.cat([centres - half, centres + half], dim=1)


def warp_regions(images: Tensor, rois: Tensor, *, crop_size: int, padding: int) -> Tensor:
    """Each region with its context, warped (anisotropically, as R-CNN's best "warp" mode) to a square crop.

    Every crop pixel is one bilinear sample at the centre of its cell (`roi_align` with `aligned=True` and one
    sample per bin): R-CNN's bilinear `imresize` without anti-aliasing. Samples more than half a pixel outside
    the image are 0, which on normalised images is the mean colour R-CNN pads with.

    Shape:
        - images: (B, C, H, W), normalised.
        - rois: (R, 5) rows (batch index, x1, y1, x2, y2), xyxy input pixels.
        - Output: (R, C, crop_size, crop_size).
    """
    boxes = context_boxes(rois[:, 1:], crop_size=crop_size, padding=padding)   # (R, 4)
    return roi_align(images, torch.cat([rois[:, :1], boxes], dim=1).to(images.dtype), output_size=crop_size,
                     spatial_scale=1.0, sampling_ratio=1, aligned=True)


def encode_boxes(proposals: Tensor, gt: Tensor, weights: tuple[float, float, float, float]) -> Tensor:
    """R-CNN's regression targets t = (wx dx, wy dy, ww log(gw / pw), wh log(gh / ph)), dx = (gx - px) / pw.

    (px, py, pw, ph) are the proposal's centre and size, (gx, gy, gw, gh) the ground truth's.

    Shape:
        - proposals, gt: (R, 4) xyxy. Output: (R, 4).
    """
    p_size = (proposals[:, 2:] - proposals[:, :2]).clamp(min=1e-6)             # (R, 2)
    g_size = (gt[:, 2:] - gt[:, :2]).clamp(min=1e-6)                           # (R, 2)
    p_centre = proposals[:, :2] + p_size / 2
    g_centre = gt[:, :2] + g_size / 2
    w = proposals.new_tensor(weights)
    return torch.cat([(g_centre - p_centre) / p_size, torch.log(g_size / p_size)], dim=1) * w


def decode_boxes(deltas: Tensor, proposals: Tensor, weights: tuple[float, float, float, float]) -> Tensor:
    """The inverse of `encode_boxes`: boxes from proposals and (per-class) deltas.

    Shape:
        - deltas: (R, ..., 4), e.g. (R, K, 4) one per class.
        - proposals: (R, 4) xyxy.
        - Output: (R, ..., 4) xyxy.
    """
    shape = (proposals.shape[0],) + (1,) * (deltas.dim() - 2) + (2,)
    p_size = (proposals[:, 2:] - proposals[:, :2]).reshape(shape)              # (R, 1.., 2)
    p_centre = proposals[:, :2].reshape(shape) + p_size / 2
    d = deltas / deltas.new_tensor(weights)
    centre = p_centre + d[..., :2] * p_size
    size = torch.exp(d[..., 2:].clamp(max=_MAX_LOG_SCALE)) * p_size
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


class RegionSample(NamedTuple):
    """The regions of one fine-tuning mini-batch and what they should predict."""
    boxes: tuple[Tensor, ...]   # (S_i, 4) per image, xyxy: sampled proposals and ground-truth boxes
    labels: Tensor              # (S,) int64: 0 background, k + 1 for class k
    box_targets: Tensor         # (S, 4) encoded offsets to the best-overlapping ground truth
    regress: Tensor             # (S,) bool: an object region with IoU >= regress_iou, used by the box loss


def sample_regions(proposals: list[Tensor], targets: list[dict[str, Tensor]], *, positives: int, negatives: int,
                   positive_iou: float, regress_iou: float, weights: tuple[float, float, float, float]
                   ) -> RegionSample:
    """R-CNN's fine-tuning mini-batch over a batch of images.

    Each image's ground-truth boxes join its proposals. A region whose best IoU with a ground truth is at least
    `positive_iou` (0.5) is a positive of that box's class, every other region background. As in R-CNN's
    window-data layer, `positives` x B positives and `negatives` x B background regions are drawn uniformly from
    all images' regions together (the paper: 32 and 96 per 128 windows); without replacement when there
    are enough, with replacement when not, so the 1:3 split holds whenever the batch has any object.

    Shape:
        - proposals: one (P_i, 4) xyxy tensor per image.
        - targets: {"boxes": (N_i, 4) xyxy, "labels": (N_i,) int64 in [0, K)} per image.
    """
    device = proposals[0].device if proposals else torch.device("cpu")
    boxes, ious, labels, gts, owners = [], [], [], [], []
    for index, (props, target) in enumerate(zip(proposals, targets)):
        gt_boxes = target["boxes"].to(device=device, dtype=torch.float32)
        regions = torch.cat([props.float(), gt_boxes])                          # (P_i + N_i, 4)
        best_iou, label, matched = _assign(regions, gt_boxes, target["labels"].to(device), positive_iou)
        boxes.append(regions)
        ious.append(best_iou)
        labels.append(label)
        gts.append(matched)
        owners.append(torch.full((len(regions),), index, dtype=torch.int64, device=device))
    all_boxes, all_iou, all_labels, all_gts, all_owners = (torch.cat(x) for x in (boxes, ious, labels, gts, owners))
    batch = len(proposals)
    chosen = torch.cat([_draw((all_labels > 0).nonzero().flatten(), positives * batch),
                        _draw((all_labels == 0).nonzero().flatten(), negatives * batch)])
    chosen = chosen[torch.argsort(all_owners[chosen], stable=True)]             # (S,) grouped by image
    counts = torch.bincount(all_owners[chosen], minlength=batch).tolist()
    sampled_labels = all_labels[chosen]
    return RegionSample(
        boxes=tuple(all_boxes[chosen].split(counts)),
        labels=sampled_labels,
        box_targets=encode_boxes(all_boxes[chosen], all_gts[chosen], weights),
        regress=(sampled_labels > 0) & (all_iou[chosen] >= regress_iou),
    )


def _assign(regions: Tensor, gt_boxes: Tensor, gt_labels: Tensor, positive_iou: float
            ) -> tuple[Tensor, Tensor, Tensor]:
    """(best IoU, label with 0 = background, the best-overlapping ground-truth box) of each region."""
    if len(gt_boxes) == 0:
        zeros = regions.new_zeros(len(regions))
        return zeros, zeros.long(), regions.clone()
    iou = box_iou(regions, gt_boxes)                                            # (P, N)
    best_iou, best = iou.max(dim=1)
    label = torch.where(best_iou >= positive_iou, gt_labels[best] + 1, 0)       # (P,)
    return best_iou, label.long(), gt_boxes[best]


def _draw(pool: Tensor, count: int) -> Tensor:
    """`count` indices from `pool`, without replacement if it is large enough, else with replacement."""
    if len(pool) == 0 or count == 0:
        return pool[:0]
    if len(pool) >= count:
        return pool[torch.randperm(len(pool), device=pool.device)[:count]]
    return pool[torch.randint(len(pool), (count,), device=pool.device)]


class ProposalMemo:
    """A least-recently-used memo of proposals by image content, so that epochs over un-augmented images run
    Selective Search once per image. Keys are a BLAKE2 hash of the uint8 pixels and their shape.

    An attribute of each model, never saved with its weights.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, image: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The memoised proposals of `image`, computing (and remembering) them on a miss."""
        digest = hashlib.blake2b(image.tobytes(), digest_size=16)
        digest.update(repr(image.shape).encode())
        key = digest.digest()
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = compute(image)
        if self.capacity > 0:
            self._entries[key] = value
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self._entries.clear()
