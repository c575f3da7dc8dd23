"""Background photos: the loaders' pixels without their downloads, and seeded random views."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ninshiki.data.synthetic.backgrounds import BACKGROUNDS, SKIMAGE_BACKGROUNDS, Backgrounds, load_backgrounds


def test_photos_are_the_pixels_the_library_loaders_return():
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = load_backgrounds()
    assert list(photos) == list(BACKGROUNDS)  # every listed photo ships with the pinned libraries
    for name in SKIMAGE_BACKGROUNDS:
        reference = getattr(skimage.data, name)()  # these files are in the package: no download
        reference = reference[0] if isinstance(reference, tuple) else reference
        expected = reference if reference.ndim == 3 else np.repeat(reference[:, :, None], 3, axis=2)
        np.testing.assert_array_equal(photos[name], expected, err_msg=name)
    sample = load_sample_images()
    for file, image in zip(sample.filenames, sample.images):
        np.testing.assert_array_equal(photos[Path(file).stem], image)


def test_a_photo_missing_from_the_installation_is_skipped_not_fetched(monkeypatch):
    monkeypatch.setitem(SKIMAGE_BACKGROUNDS, "astronaut", "not-shipped.png")
    assert list(load_backgrounds(["astronaut", "camera"])) == ["camera"]
    with pytest.raises(ValueError, match="none of the background photos"):
        load_backgrounds(["astronaut"])
    with pytest.raises(ValueError, match=r"unknown background\(s\) \['coins'\]"):
        load_backgrounds(["coins"])  # left out on purpose: coins look like the circle class


def test_photos_are_rgb_uint8():
    for name, photo in load_backgrounds(["camera", "moon", "astronaut", "china"]).items():
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3, name
        assert min(photo.shape[:2]) >= 300, name


def test_views_are_seeded_and_varied():
    views = Backgrounds()
    first, name = views.sample(96, np.random.default_rng(7))
    assert first.shape == (96, 96, 3) and first.dtype == np.uint8 and name in BACKGROUNDS
    again, same = views.sample(96, np.random.default_rng(7))
    np.testing.assert_array_equal(first, again)
    assert same == name
    others = [views.sample(96, np.random.default_rng(seed)) for seed in range(12)]
    assert len({view_name for _, view_name in others}) >= 5
    assert len({view.tobytes() for view, _ in others}) == len(others)  # every seed gives its own view


def test_grey_photos_stay_grey_at_any_size():
    views = Backgrounds(names=["camera"])
    for size in (32, 64, 700):  # 700 is larger than the 512 px photo
        view, name = views.sample(size, np.random.default_rng(size))
        assert name == "camera" and view.shape == (size, size, 3)
        assert (view[:, :, 0] == view[:, :, 1]).all() and (view[:, :, 1] == view[:, :, 2]).all()
        assert view.std() > 10  # a photo, not a flat fill
