"""DetectionDataset: decoding every image mode, EXIF orientation, unreadable files, crowd boxes, caching,
mosaic; collate_detection and detection_loader."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet, AnnotationError
from ninshiki.data.detection.dataset import (
    DetectionBatch,
    DetectionDataset,
    DetectionSample,
    collate_detection,
    detection_loader,
)
from ninshiki.data.detection.orientation import orient_boxes, upright_annotation
from ninshiki.data.detection.transforms import eval_transform, train_transform
from ninshiki.data.splits import Unreadable

BLOCK = [10.0, 5.0, 30.0, 15.0]  # xyxy of a white block on a black 64 x 48 image, in stored pixels


def block_image(path: Path, *, mode: str = "RGB", orientation: int = 1) -> Path:
    """A 64 x 48 black image with a white BLOCK, saved in PIL `mode` with an EXIF orientation tag."""
    array = np.zeros((48, 64, 3), dtype=np.uint8)
    x1, y1, x2, y2 = (int(v) for v in BLOCK)
    array[y1:y2, x1:x2] = 255
    image = Image.fromarray(array).convert(mode)
    if mode == "RGBA":   # grey 100 at alpha 128 around an opaque block: composited onto black, 50
        image = Image.fromarray(np.where(array == 255, 255, 100).astype(np.uint8))
        alpha = np.full((48, 64), 128, dtype=np.uint8)
        alpha[y1:y2, x1:x2] = 255
        image.putalpha(Image.fromarray(alpha))
    exif = image.getexif()
    if orientation != 1:
        exif[0x0112] = orientation
    image.save(path, exif=exif)
    return path


def record(name: str, boxes: list[list[float]], labels: list[int], *, size: tuple[int, int] = (64, 48),
           iscrowd: list[bool] | None = None) -> AnnotatedImage:
    return AnnotatedImage(Path(name), size[0], size[1], np.array(boxes, dtype=np.float64).reshape(-1, 4),
                          np.array(labels), iscrowd=None if iscrowd is None else np.array(iscrowd))


def white_extent(image: torch.Tensor) -> list[int]:
    ys, xs = torch.nonzero(image[0] > 0.5, as_tuple=True)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_every_mode_decodes_to_rgb_with_its_boxes(tmp_path: Path, mode: str) -> None:
    block_image(tmp_path / "a.png", mode=mode)
    data = DetectionDataset(AnnotatedSet(["block"], [record("a.png", [BLOCK], [0])], root=tmp_path), eval_transform(64))
    sample = data[0]
    assert isinstance(sample, DetectionSample) and sample.image.shape == (3, 64, 64)
    assert torch.equal(sample.image[0], sample.image[1]) and torch.equal(sample.image[1], sample.image[2])  # gray
    assert sample.target["boxes"].tolist() == [BLOCK] and sample.target["labels"].tolist() == [0]
    assert white_extent(sample.image) == [int(v) for v in BLOCK]   # the box is on the white block
    background = round(float(sample.image[0, 40, 40]) * 255)
    assert background == (50 if mode == "RGBA" else 0)
    assert sample.file == tmp_path / "a.png" and sample.index == 0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_rotated_boxes_follow_the_upright_pixels(tmp_path: Path, orientation: int) -> None:
    block_image(tmp_path / "r.png", orientation=orientation)
    data = DetectionDataset(AnnotatedSet(["block"], [record("r.png", [BLOCK], [0])], root=tmp_path),
                            eval_transform(64))
    image, target = data.load(0)
    assert image.shape[-2:] == ((64, 48) if orientation >= 5 else (48, 64))
    ys, xs = torch.nonzero(image[0] > 128, as_tuple=True)
    assert target["boxes"].tolist() == [[int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]]
    assert orient_boxes(torch.tensor([BLOCK]), orientation, (48, 64)).tolist() == target["boxes"].tolist()


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_upright_annotation_matches_what_the_dataset_uses(tmp_path: Path, orientation: int) -> None:
    path = block_image(tmp_path / "r.png", orientation=orientation)
    annotated = record("r.png", [BLOCK], [0])
    upright = upright_annotation(annotated, path)
    image, target = DetectionDataset(AnnotatedSet(["b"], [annotated], root=tmp_path), eval_transform(64)).load(0)
    assert upright.boxes.tolist() == target["boxes"].tolist()
    assert (upright.height, upright.width) == tuple(image.shape[-2:])
    assert annotated.boxes.tolist() == [BLOCK]                                   # the record is not modified
    assert upright_annotation(annotated, tmp_path / "missing.png") is annotated


def test_boxes_annotated_on_the_upright_image_are_kept(tmp_path: Path) -> None:
    block_image(tmp_path / "r.png", orientation=6)   # upright: 48 wide, 64 tall
    upright = [33.0, 10.0, 43.0, 30.0]
    data = DetectionDataset(AnnotatedSet(["b"], [record("r.png", [upright], [0], size=(48, 64))], root=tmp_path),
                            eval_transform(64))
    assert data.load(0)[1]["boxes"].tolist() == [upright]


def test_a_size_mismatch_names_the_file(tmp_path: Path) -> None:
    block_image(tmp_path / "a.png")
    data = DetectionDataset(AnnotatedSet(["b"], [record("a.png", [BLOCK], [0], size=(640, 480))], root=tmp_path),
                            eval_transform(64))
    with pytest.raises(AnnotationError, match=r"a\.png: annotated as 640x480 pixels but the image is 64x48"):
        data[0]


def test_a_corrupt_file_is_a_named_skip(tmp_path: Path) -> None:
    block_image(tmp_path / "good.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    annotated = AnnotatedSet(["b"], [record("good.png", [BLOCK], [0]), record("bad.jpg", [BLOCK], [0])], root=tmp_path)
    data = DetectionDataset(annotated, eval_transform(32))
    item = data[1]
    assert isinstance(item, Unreadable) and item.shape == (3, 32, 32) and "bad.jpg" in item.message
    batch = collate_detection([data[0], item])
    assert batch.images.shape == (1, 3, 32, 32) and batch.indices == [0] and len(batch) == 1
    assert len(batch.skipped) == 1 and str(tmp_path / "bad.jpg") in batch.skipped[0]
    empty = collate_detection([item])
    assert empty.images.shape == (0, 3, 32, 32) and empty.targets == [] and len(empty.skipped) == 1


def test_crowd_boxes_are_dropped_or_flagged(tmp_path: Path) -> None:
    block_image(tmp_path / "a.png")
    boxes = [BLOCK, [0.0, 20.0, 40.0, 48.0], [40.0, 0.0, 64.0, 30.0]]
    annotated = AnnotatedSet(["a", "b", "c"], [record("a.png", boxes, [0, 1, 2], iscrowd=[False, True, False])],
                             root=tmp_path)
    dropped = DetectionDataset(annotated, eval_transform(64))[0]
    assert dropped.target["labels"].tolist() == [0, 2] and "iscrowd" not in dropped.target
    kept = DetectionDataset(annotated, eval_transform(64), skip_crowd=False)[0]
    assert kept.target["labels"].tolist() == [0, 1, 2] and kept.target["iscrowd"].tolist() == [False, True, False]


def test_images_without_boxes(tmp_path: Path) -> None:
    block_image(tmp_path / "a.png")
    sample = DetectionDataset(AnnotatedSet(["b"], [record("a.png", [], [])], root=tmp_path), train_transform(32))[0]
    assert sample.target["boxes"].shape == (0, 4) and sample.target["labels"].shape == (0,)


def test_cache_keeps_decoded_images(tmp_path: Path) -> None:
    path = block_image(tmp_path / "a.png")
    annotated = AnnotatedSet(["b"], [record("a.png", [BLOCK], [0])], root=tmp_path)
    cached, uncached = DetectionDataset(annotated, eval_transform(64)), DetectionDataset(annotated, eval_transform(64),
                                                                                         cache_images=False)
    first = cached[0]
    assert isinstance(uncached[0], DetectionSample)
    path.unlink()
    assert torch.equal(cached[0].image, first.image) and torch.equal(cached[0].target["boxes"], first.target["boxes"])
    assert isinstance(uncached[0], Unreadable)


def mosaic_set(root: Path, count: int = 4) -> AnnotatedSet:
    images = []
    for k in range(count):
        height = 48 + 4 * k   # resized to 64 wide, every image is at least 51 tall: it fills its quadrant
        Image.fromarray(np.full((height, 60, 3), 50 * (k + 1), dtype=np.uint8)).save(root / f"{k}.png")
        images.append(record(f"{k}.png", [[0.0, 0.0, 60.0, height]], [k], size=(60, height)))
    return AnnotatedSet([str(k) for k in range(count)], images, root=root)


def test_mosaic_tiles_four_images(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = DetectionDataset(mosaic_set(tmp_path), train_transform(64, mode="none", mosaic=1.0))
    assert data.mosaic == 1.0
    for index in range(4):
        sample = data[index]
        assert sample.image.shape == (3, 64, 64) and len(sample.target["labels"]) == 4
        assert sample.target["labels"][0] == index                  # the item's own image is one of the four
        areas = (sample.target["boxes"][:, 2:] - sample.target["boxes"][:, :2]).prod(1)
        assert areas.sum() == pytest.approx(64 * 64, rel=0.02)      # the four quadrants tile the canvas
    assert DetectionDataset(mosaic_set(tmp_path), train_transform(64, mosaic=1.0), mosaic=0.0).mosaic == 0.0


def test_mosaic_needs_a_sized_transform(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mosaic needs a transform with a `size`"):
        DetectionDataset(mosaic_set(tmp_path), lambda image, target: (image, target, None), mosaic=0.5)


def test_collate_and_move(tmp_path: Path) -> None:
    data = DetectionDataset(mosaic_set(tmp_path, 3), eval_transform(48))
    batch = collate_detection([data[i] for i in range(3)])
    assert isinstance(batch, DetectionBatch) and batch.images.shape == (3, 3, 48, 48)
    assert batch.images.dtype == torch.float32 and batch.indices == [0, 1, 2] and batch.skipped == []
    assert [t["labels"].tolist() for t in batch.targets] == [[0], [1], [2]]
    assert [f.name for f in batch.files] == ["0.png", "1.png", "2.png"] and len(batch.letterboxes) == 3
    moved = batch.to("cpu")
    assert torch.equal(moved.images, batch.images) and moved.indices == batch.indices
    if torch.cuda.is_available():
        assert batch.pin_memory().images.is_pinned()


@pytest.mark.parametrize("workers", [0, 1])
def test_loader_yields_detection_batches(tmp_path: Path, workers: int) -> None:
    data = DetectionDataset(mosaic_set(tmp_path, 5), eval_transform(32))
    loader = detection_loader(data, batch_size=2, shuffle=True, workers=workers,
                              generator=torch.Generator().manual_seed(0), pin_memory=False)
    assert loader.persistent_workers == (workers > 0)
    batches = list(loader)
    assert [len(b) for b in batches] == [2, 2, 1]
    assert sorted(i for b in batches for i in b.indices) == [0, 1, 2, 3, 4]
    again = detection_loader(data, batch_size=2, shuffle=True, workers=0, generator=torch.Generator().manual_seed(0))
    assert [b.indices for b in again] == [b.indices for b in batches]   # the order follows the generator
