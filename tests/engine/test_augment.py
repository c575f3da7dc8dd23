import torch

from ninshiki.engine.augment import augment_batch, random_crop, random_flip


def _crop_by_hand(image: torch.Tensor, padding: int, top: int, left: int) -> torch.Tensor:
    padded = torch.nn.functional.pad(image, (padding,) * 4)
    return padded[:, top:top + image.shape[1], left:left + image.shape[2]]


def test_random_crop_is_a_per_sample_window_of_the_zero_padded_image() -> None:
    images = torch.randint(0, 255, (6, 2, 9, 7), dtype=torch.uint8)
    out = random_crop(images, 2, torch.Generator().manual_seed(3))
    offsets = torch.randint(0, 5, (2, 6), generator=torch.Generator().manual_seed(3))
    for i in range(6):
        expected = _crop_by_hand(images[i], 2, int(offsets[0, i]), int(offsets[1, i]))
        assert torch.equal(out[i], expected)
    assert len({tuple(o) for o in offsets.T.tolist()}) > 1    # not one window for the whole batch


def test_random_flip_mirrors_about_half_and_keeps_the_rest() -> None:
    images = torch.randint(0, 255, (200, 1, 4, 5), dtype=torch.uint8)
    out = random_flip(images, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images)]
    kept = [torch.equal(o, i) for o, i in zip(out, images)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 70 < sum(flipped) < 130


def test_same_generator_seed_gives_the_same_batch() -> None:
    images = torch.randint(0, 255, (8, 1, 28, 28), dtype=torch.uint8)
    a = augment_batch(images, "crop-flip", torch.Generator().manual_seed(5))
    b = augment_batch(images, "crop-flip", torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == images.shape
    assert torch.equal(augment_batch(images, "none", torch.Generator()), images)

