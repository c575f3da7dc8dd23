"""Scene composition: exact visible masks, tight boxes, the occlusion rule, visible colours."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ninshiki.data.synthetic.scene import SceneConfig, compose_scene
from ninshiki.data.synthetic.shapes import DEFAULT_CLASSES

CLASSES = list(DEFAULT_CLASSES)


def flat(size: int = 128, value: int = 128) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


def scenes(count: int, config: SceneConfig, size: int = 128):
    for seed in range(count):
        background = flat(size, value=20 + 7 * seed % 215)
        yield background, compose_scene(background, CLASSES, config, np.random.default_rng(seed))


def test_instances_labels_and_tight_boxes():
    total = 0
    for _, scene in scenes(30, SceneConfig(max_objects=6)):
        n = len(scene.labels)
        total += n
        assert set(np.unique(scene.instances)) <= set(range(n + 1))
        assert scene.labels.dtype == np.int64 and ((0 <= scene.labels) & (scene.labels < len(CLASSES))).all()
        masks, areas, boxes = scene.masks(), scene.areas(), scene.boxes()
        assert masks.shape == (n, 128, 128) and (masks.sum((1, 2)) == areas).all() and (areas > 0).all()
        for mask, box in zip(masks, boxes):
            x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
            np.testing.assert_array_equal(box, [x, y, x + w, y + h])
    assert total > 60


def test_every_object_stays_at_least_30_percent_visible():
    occluded = 0
    for _, scene in scenes(60, SceneConfig(max_objects=10)):
        visible = scene.areas()
        assert (visible >= np.ceil(0.3 * scene.drawn_areas)).all()
        occluded += int((visible < scene.drawn_areas).sum())
    assert occluded >= 10  # the rule was exercised, not avoided


def test_no_occlusion_at_all_when_asked():
    for _, scene in scenes(20, SceneConfig(max_objects=8, min_visible=1.0)):
        np.testing.assert_array_equal(scene.areas(), scene.drawn_areas)


def test_paint_outside_the_masks_is_only_antialiasing():
    """Masks hold every pixel an object covers by half or more; its soft edge (and the faint sliver beyond a
    star's tip) fades out within two pixels of them, and nothing else of the background changes."""
    for background, scene in scenes(20, SceneConfig(max_objects=6)):
        near = cv2.dilate((scene.instances > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        np.testing.assert_array_equal(scene.image[~near], background[~near])


def test_objects_contrast_with_what_is_under_them():
    for background, scene in scenes(20, SceneConfig(max_objects=4, min_visible=1.0)):
        for mask in scene.masks():
            difference = scene.image[mask].astype(float) - background[mask].astype(float)  # (P, 3)
            assert np.linalg.norm(difference, axis=1).mean() > 60


def test_no_objects_leaves_the_background_untouched():
    background = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    scene = compose_scene(background, CLASSES, SceneConfig(max_objects=0), np.random.default_rng(0))
    np.testing.assert_array_equal(scene.image, background)
    assert len(scene.labels) == 0 and not scene.instances.any() and scene.boxes().shape == (0, 4)


@pytest.mark.parametrize("size", [32, 320])
def test_sizes_follow_the_image(size):
    sides = []
    for seed in range(15):
        scene = compose_scene(flat(size), CLASSES, SceneConfig(max_objects=6, min_visible=1.0),
                              np.random.default_rng(seed))
        boxes = scene.boxes()
        sides += list(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]))
    sides = np.array(sides) / size
    largest = SceneConfig().max_size * np.sqrt(1.25) * np.sqrt(2)  # stretched and turned 45 degrees
    assert sides.max() <= largest and sides.max() > 0.4
    assert sides.min() >= (0.05 if size == 320 else 0.2)            # never below 8 px
