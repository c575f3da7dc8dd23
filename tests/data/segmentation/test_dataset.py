"""SegmentationDataset: samples, EXIF-rotated masks, unreadable images, wrong masks, caching;
collate_segmentation and segmentation_loader."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import ninshiki.data.segmentation.dataset as dataset_module
from ninshiki.data.annotations import AnnotationError
from ninshiki.data.formats.masks import write_index_mask
from ninshiki.data.segmentation.dataset import (
    SegmentationBatch,
    SegmentationDataset,
    SegmentationSample,
    collate_segmentation,
    segmentation_loader,
)
from ninshiki.data.segmentation.transforms import IGNORE_INDEX, eval_transform, train_transform
from ninshiki.data.segmentation.types import SegmentationSet, SegmentedImage
from ninshiki.data.splits import Unreadable

CLASSES = ["background", "block"]


def block_pair(root: Path, name: str, *, size: tuple[int, int] = (48, 64), orientation: int = 1,
               suffix: str = ".png") -> tuple[SegmentedImage, np.ndarray]:
    """An image of `size` = (h, w) as stored, white block at its top-left quarter (EXIF-tagged when asked),
    and its index mask (block = 1) in the stored frame. Returns the item and the stored mask."""
    height, width = size
    mask = np.zeros(size, dtype=np.uint8)
    mask[: height // 2, : width // 4] = 1
    image = Image.fromarray(np.repeat(mask[..., None] * 255, 3, axis=2))
    exif = image.getexif()
    if orientation != 1:
        exif[0x0112] = orientation
    image.save(root / f"{name}{suffix}", exif=exif, quality=95)
    write_index_mask(root / f"{name}_mask.png", mask)
    return SegmentedImage(Path(f"{name}{suffix}"), Path(f"{name}_mask.png")), mask


def make_set(root: Path, items: list[SegmentedImage]) -> SegmentationSet:
    return SegmentationSet(list(CLASSES), items, root=root)


def test_eval_sample_is_the_image_and_its_mask(tmp_path: Path) -> None:
    item, mask = block_pair(tmp_path, "a")
    sample = SegmentationDataset(make_set(tmp_path, [item]), eval_transform())[0]
    assert isinstance(sample, SegmentationSample)
    assert sample.image.shape == (3, 48, 64) and sample.image.dtype == torch.float32
    assert torch.equal(sample.image[0] > 0.5, torch.from_numpy(mask == 1))
    assert sample.mask.dtype == torch.int64 and torch.equal(sample.mask, torch.from_numpy(mask).long())
    assert sample.valid_size == (48, 64) and sample.original_size == (48, 64)
    assert sample.index == 0 and sample.file == tmp_path / "a.png" and sample.original_mask is None


def test_original_mask_comes_with_scaled_samples(tmp_path: Path) -> None:
    item, mask = block_pair(tmp_path, "a")
    data = SegmentationDataset(make_set(tmp_path, [item]), eval_transform(max_size=32), keep_original_mask=True)
    sample = data[0]
    assert sample.mask.shape == (24, 32) and sample.valid_size == (24, 32) and sample.original_size == (48, 64)
    assert sample.original_mask.dtype == torch.uint8 and torch.equal(sample.original_mask, torch.from_numpy(mask))
    batch = collate_segmentation([sample])
    assert torch.equal(batch.original_masks[0], torch.from_numpy(mask))


def test_collate_pads_to_a_multiple_of_32_with_zero_and_ignore(tmp_path: Path) -> None:
    (a, _), (b, _) = block_pair(tmp_path, "a"), block_pair(tmp_path, "b", size=(20, 33))
    data = SegmentationDataset(make_set(tmp_path, [a, b]), eval_transform())
    first, second = data[0], data[1]
    batch = collate_segmentation([first, second])
    assert isinstance(batch, SegmentationBatch) and len(batch) == 2
    assert batch.images.shape == (2, 3, 64, 64) and batch.targets.shape == (2, 64, 64)
    assert batch.targets.dtype == torch.int64 and batch.valid_sizes == [(48, 64), (20, 33)]
    assert batch.original_sizes == [(48, 64), (20, 33)] and batch.indices == [0, 1]
    assert batch.files == [tmp_path / "a.png", tmp_path / "b.png"] and batch.skipped == []
    assert torch.equal(batch.images[1, :, :20, :33], second.image)
    assert torch.equal(batch.targets[1, :20, :33], second.mask)
    assert bool((batch.images[1, :, 20:] == 0).all()) and bool((batch.images[1, :, :, 33:] == 0).all())
    assert bool((batch.targets[1, 20:] == IGNORE_INDEX).all()) and bool((batch.targets[1, :, 33:] == IGNORE_INDEX).all())
    assert bool((batch.targets[0, 48:] == IGNORE_INDEX).all()) and bool((batch.targets[0, :48] != IGNORE_INDEX).all())
    assert collate_segmentation([first, second], multiple=16).images.shape == (2, 3, 48, 64)


def test_train_batches_are_square_crops(tmp_path: Path) -> None:
    torch.manual_seed(0)
    items = [block_pair(tmp_path, "a")[0], block_pair(tmp_path, "b", size=(20, 33))[0]]
    batch = collate_segmentation([s for s in SegmentationDataset(make_set(tmp_path, items), train_transform(32))])
    assert batch.images.shape == (2, 3, 32, 32) and batch.targets.shape == (2, 32, 32)
    assert set(batch.targets.unique().tolist()) <= {0, 1, IGNORE_INDEX}


def test_an_undecodable_image_is_a_named_skip(tmp_path: Path) -> None:
    good, _ = block_pair(tmp_path, "good")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    bad = SegmentedImage(Path("bad.jpg"), Path("missing_mask.png"))   # the image fails first: a skip, no error
    data = SegmentationDataset(make_set(tmp_path, [good, bad]), train_transform(32))
    item = data[1]
    assert isinstance(item, Unreadable) and item.shape == (3, 32, 32) and "bad.jpg" in item.message
    batch = collate_segmentation([data[0], item])
    assert batch.images.shape == (1, 3, 32, 32) and batch.indices == [0] and len(batch) == 1
    assert len(batch.skipped) == 1 and str(tmp_path / "bad.jpg") in batch.skipped[0]
    empty = collate_segmentation([item])
    assert empty.images.shape == (0, 3, 32, 32) and empty.targets.shape == (0, 32, 32) and len(empty.skipped) == 1
    eval_item = SegmentationDataset(make_set(tmp_path, [bad]), eval_transform())[0]
    assert isinstance(eval_item, Unreadable) and collate_segmentation([eval_item]).images.shape == (0, 3, 0, 0)


def test_wrong_masks_raise_naming_the_mask_file(tmp_path: Path) -> None:
    item, mask = block_pair(tmp_path, "a")
    write_index_mask(tmp_path / "values.png", np.where(mask == 1, 7, 0).astype(np.uint8))
    write_index_mask(tmp_path / "small.png", mask[:40])
    cases = {"values.png": r"values\.png: mask values \[7\] are outside the 2 classes",
             "small.png": r"small\.png: mask is 64x40 \(WxH\) but its image is 64x48",
             "nowhere.png": r"nowhere\.png: cannot read the mask"}
    for name, message in cases.items():
        data = SegmentationDataset(make_set(tmp_path, [SegmentedImage(item.file, Path(name))]), eval_transform())
        with pytest.raises(AnnotationError, match=message):
            data[0]


def test_exif_rotated_jpeg_gets_its_stored_frame_mask_turned(tmp_path: Path) -> None:
    item, stored = block_pair(tmp_path, "phone", orientation=6, suffix=".jpg")
    image, mask = SegmentationDataset(make_set(tmp_path, [item]), eval_transform()).load(0)
    assert image.shape == (3, 64, 48) and mask.shape == (64, 48)          # upright: 48 wide, 64 tall
    assert torch.equal(mask, torch.from_numpy(np.ascontiguousarray(np.rot90(stored, -1))))
    assert torch.equal(image[0] > 128, mask == 1)                          # on the upright pixels
    write_index_mask(tmp_path / "upright.png", np.rot90(stored, -1))       # drawn on the displayed photo
    upright = SegmentationDataset(make_set(tmp_path, [SegmentedImage(item.file, Path("upright.png"))]),
                                  eval_transform()).load(0)[1]
    assert torch.equal(upright, mask)
    write_index_mask(tmp_path / "other.png", np.zeros((30, 40), np.uint8))
    other = SegmentationDataset(make_set(tmp_path, [SegmentedImage(item.file, Path("other.png"))]), eval_transform())
    with pytest.raises(AnnotationError, match=r"other\.png: .* 48x64 \(64x48 as stored, EXIF orientation 6\)"):
        other[0]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_keeps_mask_and_pixels_together(tmp_path: Path, orientation: int) -> None:
    item, stored = block_pair(tmp_path, "r", orientation=orientation)
    image, mask = SegmentationDataset(make_set(tmp_path, [item]), eval_transform()).load(0)
    if orientation in (2, 3, 4):   # stored and upright sizes agree: the mask is taken as drawn upright
        assert torch.equal(mask, torch.from_numpy(stored))
    else:
        assert torch.equal(image[0] > 128, mask == 1)


def test_a_cache_hit_reads_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    item, _ = block_pair(tmp_path, "a")
    calls = SimpleNamespace(images=0, masks=0)
    read_image, load_label_mask = dataset_module.read_image, dataset_module.load_label_mask

    def counting_read(*args: object, **kwargs: object) -> torch.Tensor:
        calls.images += 1
        return read_image(*args, **kwargs)

    def counting_mask(*args: object, **kwargs: object) -> np.ndarray:
        calls.masks += 1
        return load_label_mask(*args, **kwargs)

    monkeypatch.setattr(dataset_module, "read_image", counting_read)
    monkeypatch.setattr(dataset_module, "load_label_mask", counting_mask)
    cached = SegmentationDataset(make_set(tmp_path, [item]), eval_transform())
    first = cached[0]
    (tmp_path / "a.png").unlink()
    second = cached[0]
    assert (calls.images, calls.masks) == (1, 1)
    assert torch.equal(first.image, second.image) and torch.equal(first.mask, second.mask)
    block_pair(tmp_path, "a")
    uncached = SegmentationDataset(make_set(tmp_path, [item]), eval_transform(), cache_images=False)
    assert all(isinstance(uncached[0], SegmentationSample) for _ in range(2))
    assert (calls.images, calls.masks) == (3, 3)


def test_batch_to_moves_every_tensor(tmp_path: Path) -> None:
    item, _ = block_pair(tmp_path, "a")
    data = SegmentationDataset(make_set(tmp_path, [item]), eval_transform(), keep_original_mask=True)
    moved = collate_segmentation([data[0]]).to("meta")
    assert moved.images.device.type == "meta" and moved.targets.device.type == "meta"
    assert moved.original_masks[0].device.type == "meta" and moved.files == [tmp_path / "a.png"]


@pytest.mark.parametrize("workers", [0, 1])
def test_loader_pads_to_the_transform_multiple(tmp_path: Path, workers: int) -> None:
    items = [block_pair(tmp_path, "a")[0], block_pair(tmp_path, "b", size=(20, 33))[0]]
    data = SegmentationDataset(make_set(tmp_path, items), eval_transform(multiple=16))
    batches = list(segmentation_loader(data, batch_size=2, shuffle=False, workers=workers))
    assert len(batches) == 1 and batches[0].images.shape == (2, 3, 48, 64) and batches[0].indices == [0, 1]
