"""Instance masks through the detection data path: rasterised from COCO segmentations, turned upright with
EXIF orientation, moved with their boxes by the letterbox, every augmentation mode and the mosaic, and mapped
back to the original image by `Letterbox.masks_to_original`."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet, AnnotationError
from ninshiki.data.detection.dataset import DetectionDataset, collate_detection
from ninshiki.data.detection.orientation import upright_annotation
from ninshiki.data.detection.transforms import Letterbox, eval_transform, train_transform
from ninshiki.data.formats.masks import mask_to_polygons
from ninshiki.data.formats.rle import decode_segmentation, encode_mask

WIDTH, HEIGHT = 64, 48


def scene(seed: int, count: int = 3) -> np.ndarray:
    """(count, 48, 64) bool masks of separate objects: rectangles and discs, one per column band."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((count, HEIGHT, WIDTH), bool)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    band = WIDTH // count
    for k in range(count):
        x0 = k * band + int(rng.integers(0, 4))
        w, h = int(rng.integers(10, band - 3)), int(rng.integers(10, 30))
        y0 = int(rng.integers(0, HEIGHT - h))
        if k % 2:
            masks[k] = (xx - x0 - w / 2 + 0.5) ** 2 / (w / 2) ** 2 + (yy - y0 - h / 2 + 0.5) ** 2 / (h / 2) ** 2 <= 1
        else:
            masks[k, y0:y0 + h, x0:x0 + w] = True
    return masks


def tight_boxes(masks: np.ndarray | torch.Tensor) -> np.ndarray:
    """(N, 4) xyxy extents of (N, H, W) masks (NaN for empty ones)."""
    out = np.full((len(masks), 4), np.nan)
    for k, m in enumerate(np.asarray(masks, dtype=bool)):
        ys, xs = np.nonzero(m)
        if len(xs):
            out[k] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    return out


def write_scene(path: Path, masks: np.ndarray, *, orientation: int = 1) -> Path:
    """A black image with the objects white, saved with an EXIF orientation tag (pixels as stored)."""
    pixels = np.repeat((masks.any(0) * 255).astype(np.uint8)[..., None], 3, axis=2)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    if orientation != 1:
        exif[0x0112] = orientation
    image.save(path, exif=exif)
    return path


def scene_record(name: str, masks: np.ndarray, *, rle: bool = False, crowd: list[bool] | None = None
                 ) -> AnnotatedImage:
    """The objects as a record: boxes from the masks, polygons (or RLEs) that rasterise to the very pixels."""
    segmentations = [encode_mask(m) if rle else mask_to_polygons(m) for m in masks]
    height, width = masks.shape[-2:]
    return AnnotatedImage(Path(name), width, height, tight_boxes(masks), np.arange(len(masks)) % 2,
                          iscrowd=None if crowd is None else np.array(crowd), segmentations=segmentations)


def check_aligned(image: torch.Tensor, target: dict[str, torch.Tensor], *, tolerance: float) -> None:
    """Masks match their boxes (tight box within `tolerance` pixels) and lie on the white objects."""
    boxes, masks = target["boxes"], target["masks"]
    assert masks.dtype == torch.uint8 and masks.shape == (len(boxes), *image.shape[-2:])
    assert len(target["labels"]) == len(boxes)
    for box, mask in zip(boxes.tolist(), masks):
        if min(box[2] - box[0], box[3] - box[1]) < 4:
            continue                                     # a sliver at a crop's edge may hold no whole pixel
        tight = tight_boxes(mask[None])[0]
        assert np.abs(tight - np.array(box)).max() <= tolerance, (tight, box)
        inner = F.max_pool2d(-mask[None, None].float(), 3, stride=1, padding=1)[0, 0] == -1   # eroded by 1
        assert bool((image[0][inner] > 0.5).all())       # on the white object (its rim is blurred by resizes)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("rle", [False, True])
def test_masks_follow_the_exif_orientation_like_the_pixels(tmp_path: Path, orientation: int, rle: bool) -> None:
    masks = scene(orientation)
    path = write_scene(tmp_path / "r.png", masks, orientation=orientation)
    record = scene_record("r.png", masks, rle=rle)
    data = DetectionDataset(AnnotatedSet(["a", "b"], [record], root=tmp_path), eval_transform(64), with_masks=True)
    image, target = data.load(0)
    assert target["masks"].shape == (3, *image.shape[-2:])
    assert torch.equal(target["masks"].bool().any(0), image[0] > 128)        # the white pixels, exactly
    assert np.array_equal(tight_boxes(target["masks"]), target["boxes"].numpy())
    upright = upright_annotation(record, path)                               # what the metric's ground truth uses
    for k, segmentation in enumerate(upright.segmentations):
        assert np.array_equal(decode_segmentation(segmentation, upright.height, upright.width),
                              target["masks"][k].numpy().astype(bool))


def test_masks_annotated_on_the_upright_image_are_kept(tmp_path: Path) -> None:
    masks = scene(3)
    write_scene(tmp_path / "r.png", masks, orientation=6)                    # upright: 48 wide, 64 tall
    upright = np.rot90(masks, -1, axes=(1, 2)).copy()                         # turned clockwise, as PIL does
    data = DetectionDataset(AnnotatedSet(["a", "b"], [scene_record("r.png", upright)], root=tmp_path),
                            eval_transform(64), with_masks=True)
    image, target = data.load(0)
    assert torch.equal(target["masks"].bool(), torch.from_numpy(upright))
    assert torch.equal(target["masks"].bool().any(0), image[0] > 128)


def test_letterboxed_masks_stay_on_their_boxes_and_are_built_per_sample(tmp_path: Path) -> None:
    write_scene(tmp_path / "a.png", scene(0))
    write_scene(tmp_path / "b.png", scene(1))
    annotated = AnnotatedSet(["a", "b"], [scene_record("a.png", scene(0)), scene_record("b.png", scene(1))],
                             root=tmp_path)
    data = DetectionDataset(annotated, eval_transform(40), with_masks=True)   # scale 0.625
    samples = [data[0], data[1]]
    for sample in samples:
        assert sample.target["masks"].shape == (3, 40, 40)
        check_aligned(sample.image, sample.target, tolerance=1.0)
    batch = collate_detection(samples)
    assert [t["masks"].shape for t in batch.targets] == [(3, 40, 40)] * 2
    first, again = data.load(0)[1]["masks"], data.load(0)[1]["masks"]
    assert torch.equal(first, again) and first is not again                  # rasterised anew each time
    assert all("masks" not in cached[1] for cached in data._cache if cached is not None)  # not kept in memory


@pytest.mark.parametrize("mode", ["ssd", "yolo", "basic"])
def test_augmentations_move_masks_with_boxes(tmp_path: Path, mode: str) -> None:
    images = []
    for k in range(3):
        write_scene(tmp_path / f"{k}.png", scene(10 + k))
        images.append(scene_record(f"{k}.png", scene(10 + k)))
    transform = train_transform(48, mode=mode, hflip=0.5, photometric=False)
    data = DetectionDataset(AnnotatedSet(["a", "b"], images, root=tmp_path), transform, with_masks=True)
    torch.manual_seed(0)
    seen = 0
    for _ in range(4):
        for index in range(len(data)):
            sample = data[index]
            check_aligned(sample.image, sample.target, tolerance=1.5)
            seen += len(sample.target["boxes"])
    assert seen > 10


def test_mosaic_moves_masks_with_boxes(tmp_path: Path) -> None:
    images = []
    for k in range(4):
        write_scene(tmp_path / f"{k}.png", scene(20 + k))
        images.append(scene_record(f"{k}.png", scene(20 + k)))
    data = DetectionDataset(AnnotatedSet(["a", "b"], images, root=tmp_path),
                            train_transform(64, mode="basic", mosaic=1.0, photometric=False), with_masks=True)
    torch.manual_seed(1)
    for index in range(len(data)):
        sample = data[index]
        assert len(sample.target["boxes"]) > 3                                 # objects of several images
        check_aligned(sample.image, sample.target, tolerance=1.5)


def test_crowd_masks_follow_the_crowd_boxes(tmp_path: Path) -> None:
    masks = scene(5)
    write_scene(tmp_path / "a.png", masks)
    record = scene_record("a.png", masks, crowd=[False, True, False])
    crowd_rle = encode_mask(masks[1])                                         # crowd regions come as RLE
    record.segmentations[1] = {"size": crowd_rle["size"], "counts": _uncompressed(masks[1])}
    annotated = AnnotatedSet(["a", "b"], [record], root=tmp_path)
    kept = DetectionDataset(annotated, eval_transform(64), with_masks=True, skip_crowd=False).load(0)[1]
    assert kept["iscrowd"].tolist() == [False, True, False]
    assert torch.equal(kept["masks"].bool(), torch.from_numpy(masks))
    skipped = DetectionDataset(annotated, eval_transform(64), with_masks=True).load(0)[1]
    assert torch.equal(skipped["masks"].bool(), torch.from_numpy(masks[[0, 2]]))
    assert skipped["boxes"].tolist() == tight_boxes(masks[[0, 2]]).tolist()


def _uncompressed(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE counts: run lengths down the columns, starting with background."""
    flat = mask.T.ravel().astype(np.int8)
    changes = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))
    return np.diff(np.r_[0, changes]).tolist()


def test_objects_without_a_usable_segmentation_are_named(tmp_path: Path) -> None:
    masks = scene(6)
    write_scene(tmp_path / "a.png", masks)
    record = scene_record("a.png", masks)
    record.segmentations[1] = None
    data = DetectionDataset(AnnotatedSet(["a", "b"], [record], root=tmp_path), eval_transform(32), with_masks=True)
    with pytest.raises(AnnotationError, match=r"a\.png: object 1 has no segmentation"):
        data[0]
    assert len(DetectionDataset(AnnotatedSet(["a", "b"], [record], root=tmp_path), eval_transform(32))[0].target[
        "boxes"]) == 3                                                        # boxes alone need no masks
    record.segmentations = None
    with pytest.raises(AnnotationError, match=r"a\.png: object 0 has no segmentation"):
        data[0]
    record.segmentations = [encode_mask(m[:40]) for m in masks]               # RLEs of another size
    with pytest.raises(AnnotationError, match=r"a\.png: object 0: malformed segmentation .*\[40, 64\]"):
        data[0]


@pytest.mark.parametrize(("size", "side"), [((40, 60), 30), ((40, 60), 120), ((33, 12), 66)])
def test_masks_to_original_is_interpolate_where_the_scale_is_exact(size: tuple[int, int], side: int) -> None:
    box = Letterbox.fit(size, side)                    # scales 0.5, 2 and 2: the resized size is exact
    res_h, res_w = box.resized
    probs = torch.rand(4, side, side, generator=torch.Generator().manual_seed(0))
    crop = probs[None, :, :res_h, :res_w]
    bilinear = F.interpolate(crop, size=size, mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(box.masks_to_original(probs, threshold=None), bilinear, rtol=0, atol=1e-6)
    assert torch.equal(box.masks_to_original(probs), bilinear >= 0.5)
    nearest = F.interpolate((crop > 0.5).float(), size=size, mode="nearest-exact")[0].bool()
    assert torch.equal(box.masks_to_original(probs > 0.5), nearest)
    valid = box.valid_size(side)                       # the region a postprocess crops its masks to
    assert torch.equal(box.masks_to_original(probs[:, :valid[0], :valid[1]] > 0.5), nearest)


def _dilate(masks: torch.Tensor, radius: int) -> torch.Tensor:
    return F.max_pool2d(masks[None].float(), 2 * radius + 1, stride=1, padding=radius)[0].bool()


@pytest.mark.parametrize(("size", "side"), [((48, 64), 40), ((48, 64), 128), ((37, 23), 29), ((90, 31), 64),
                                            ((24, 32), 64), ((200, 150), 37), ((61, 47), 50), ((20, 30), 45)])
def test_a_letterboxed_mask_maps_back_to_itself_up_to_the_resize(size: tuple[int, int], side: int) -> None:
    """Bound: the letterbox gives input pixel i the original pixel nearest its centre at the size ratio
    H0 / h (within 0.5 / scale of the exact scale's place), the way back reads the input pixel holding each
    original pixel's centre; so a pixel's value comes from fewer than 1.5 / scale + 0.5 pixels away along
    each axis (far-edge pixels included), and every pixel that changes lies that close to a pixel of the
    other value. With an integer scale both ways meet exactly: the round trip is the identity."""
    height, width = size
    rows, cols = np.arange(height) * HEIGHT // height, np.arange(width) * WIDTH // width
    masks = torch.from_numpy(np.stack([scene(s, 1)[0][rows][:, cols] for s in range(4)]))   # (4, H0, W0) blobs
    target = {"boxes": torch.from_numpy(tight_boxes(masks)).float(), "labels": torch.zeros(4, dtype=torch.int64),
              "masks": masks.to(torch.uint8)}
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    _, moved, box = eval_transform(side)(image, target)
    assert moved["masks"].shape == (4, side, side)
    back = box.masks_to_original(moved["masks"].bool())                      # (4, H0, W0) bool
    assert back.shape == (4, height, width)
    radius = math.ceil(1.5 / box.scale + 0.5) - 1
    assert not (back & ~_dilate(masks, radius)).any()                        # nothing appears far from the mask
    assert not (~back & ~_dilate(~masks, radius)).any()                      # nothing vanishes far from its edge
    if box.scale == int(box.scale):
        assert torch.equal(back, masks)


def test_masks_to_original_rejects_masks_that_do_not_cover_the_image() -> None:
    box = Letterbox.fit((48, 64), 32)                  # the image fills 24 x 32 input pixels
    assert box.masks_to_original(torch.zeros(2, 24, 32, dtype=torch.bool)).shape == (2, 48, 64)
    with pytest.raises(ValueError, match="do not cover the image"):
        box.masks_to_original(torch.zeros(2, 23, 32, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"must be \(N, h, w\)"):
        box.masks_to_original(torch.zeros(24, 32, dtype=torch.bool))
    assert box.masks_to_original(torch.zeros(0, 32, 32)).shape == (0, 48, 64)
