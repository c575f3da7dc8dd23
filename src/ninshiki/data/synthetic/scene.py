"""One generated image: objects pasted onto a background, with exact instance masks.

Objects are pasted bottom to top. A pixel belongs to the topmost object covering at least half of it
(`shapes.draw_object`'s mask), so each instance's mask is what stays visible after the objects drawn later,
and its box is the tight box of that visible mask.

Occlusion rule: an object is only placed where it leaves every earlier object at least `min_visible` (30%)
of its own drawn area; otherwise another position is drawn, and after `PLACEMENT_TRIES` the object is
skipped. So every written object is at least 30% visible and nothing hidden is ever annotated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ninshiki.data.synthetic.shapes import Pose, draw_object

PLACEMENT_TRIES = 8
COLOUR_TRIES = 12
MIN_CONTRAST = 100.0  # Euclidean RGB distance between an object's colour and the mean colour under it
MIN_SIDE_PX = 8.0      # objects are never drawn smaller than this, whatever the image size


@dataclass(frozen=True)
class SceneConfig:
    """What a scene may hold: object sizes as fractions of the image side (log-uniform between them),
    aspect ratios (log-uniform in [1 / max_aspect, max_aspect]) and the least visible fraction.

    Sizes reach 0.65 so that every class has COCO-large objects (mask area > 96^2 at 320 px): a star or a
    letter covers only about a third of its box, and at 0.45 they never did. At 320 px the objects are
    about 35% small, 50% medium and 15% large.
    """
    max_objects: int = 6
    min_size: float = 0.06
    max_size: float = 0.65
    max_aspect: float = 1.25
    min_visible: float = 0.3


@dataclass
class Scene:
    """A generated image and its objects, bottom to top."""
    image: np.ndarray      # (H, W, 3) uint8
    instances: np.ndarray  # (H, W) uint16: 0 = background, k = the k-th object (1-based) of `labels`
    labels: np.ndarray     # (N,) int64 class indices
    drawn_areas: np.ndarray  # (N,) int64 mask pixels of each object as drawn, before later objects hid parts

    def masks(self) -> np.ndarray:
        """(N, H, W) bool visible masks, in the order of `labels`."""
        return self.instances[None] == np.arange(1, len(self.labels) + 1, dtype=np.uint16)[:, None, None]

    def areas(self) -> np.ndarray:
        """(N,) int64 visible mask pixels."""
        return np.bincount(self.instances.ravel(), minlength=len(self.labels) + 1)[1:].astype(np.int64)

    def boxes(self) -> np.ndarray:
        """(N, 4) float64 xyxy tight boxes of the visible masks, on pixel edges (a lone pixel (x, y) is
        [x, y, x + 1, y + 1]), as COCO's bbox of a mask."""
        boxes = np.zeros((len(self.labels), 4))
        for k, mask in enumerate(self.masks()):
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            boxes[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        return boxes


def _pose(image_size: int, config: SceneConfig, rng: np.random.Generator) -> Pose:
    fraction = math.exp(rng.uniform(math.log(config.min_size), math.log(config.max_size)))
    aspect = math.exp(rng.uniform(-math.log(config.max_aspect), math.log(config.max_aspect)))
    return Pose(size=max(MIN_SIDE_PX, fraction * image_size), angle=float(rng.uniform(0, 360)), aspect=aspect)


def _find_place(mask: np.ndarray, instances: np.ndarray, visible: np.ndarray, needed: np.ndarray,
                rng: np.random.Generator) -> tuple[int, int] | None:
    """Top-left corner where `mask` leaves each earlier object its `needed` pixels visible, or None.

    Shape:
        visible, needed: (N + 1,) pixels per instance id (id 0, the background, is never checked).
    """
    height, width = instances.shape
    h, w = mask.shape
    for _ in range(PLACEMENT_TRIES):
        y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        hidden = np.bincount(instances[y:y + h, x:x + w][mask], minlength=len(visible))  # (N + 1,)
        if np.all((visible - hidden)[1:] >= needed[1:]):
            return y, x
    return None


def _colour(under: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random saturated-to-grey colour far enough from the mean colour under the object to stand out."""
    mean = under.reshape(-1, 3).mean(0)
    best, best_distance = np.zeros(3), -1.0
    for _ in range(COLOUR_TRIES):
        colour = rng.uniform(0, 255, 3)
        if rng.random() < 0.15:  # some grey, black and white objects too
            colour = np.full(3, colour[0])
        distance = float(np.linalg.norm(colour - mean))
        if distance >= MIN_CONTRAST:
            return colour
        if distance > best_distance:
            best, best_distance = colour, distance
    return best


def _paint(canvas: np.ndarray, coverage: np.ndarray, colour: np.ndarray, y: int, x: int,
           rng: np.random.Generator) -> None:
    """Alpha-composite a shaded, slightly noisy fill of `colour` into `canvas` (float32, in place)."""
    h, w = coverage.shape
    theta = rng.uniform(0, 2 * math.pi)
    across = np.linspace(-0.5, 0.5, w, dtype=np.float32) * np.float32(math.cos(theta))  # (w,)
    down = np.linspace(-0.5, 0.5, h, dtype=np.float32) * np.float32(math.sin(theta))    # (h,)
    shade = 1.0 + np.float32(rng.uniform(0.0, 0.35)) * (down[:, None] + across[None, :])  # (h, w) soft light
    noise = rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(4.0)
    fill = np.clip(colour.astype(np.float32) * shade[:, :, None] + noise, 0, 255)  # (h, w, 3)
    alpha = coverage[:, :, None]
    region = canvas[y:y + h, x:x + w]
    region += alpha * (fill - region)


def compose_scene(background: np.ndarray, class_names: list[str], config: SceneConfig,
                  rng: np.random.Generator) -> Scene:
    """Paste 0..max_objects random objects onto `background`, keeping the occlusion rule.

    Args:
        background: (H, W, 3) uint8.
        class_names: the classes, drawn uniformly (what `draw_object` draws); labels index this list.
        config: sizes, aspects, counts and the least visible fraction.
        rng: the image's own generator (the scene depends on nothing else).
    """
    height, width = background.shape[:2]
    canvas = background.astype(np.float32)  # (H, W, 3)
    instances = np.zeros((height, width), np.uint16)
    labels: list[int] = []
    drawn: list[int] = []
    visible = np.array([height * width], dtype=np.int64)  # pixels per instance id, background first
    needed = np.zeros(1, dtype=np.int64)                  # the least each must keep visible
    for _ in range(int(rng.integers(0, config.max_objects + 1))):
        label = int(rng.integers(len(class_names)))
        coverage = draw_object(class_names[label], _pose(min(height, width), config, rng))  # (h, w)
        mask = coverage >= 0.5
        if not mask.any() or mask.shape[0] > height or mask.shape[1] > width:
            continue
        place = _find_place(mask, instances, visible, needed, rng)
        if place is None:
            continue
        y, x = place
        h, w = mask.shape
        _paint(canvas, coverage, _colour(canvas[y:y + h, x:x + w][mask], rng), y, x, rng)
        visible -= np.bincount(instances[y:y + h, x:x + w][mask], minlength=len(visible))
        instances[y:y + h, x:x + w][mask] = len(labels) + 1
        area = int(mask.sum())
        visible, needed = np.append(visible, area), np.append(needed, math.ceil(config.min_visible * area))
        labels.append(label)
        drawn.append(area)
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    return Scene(image=image, instances=instances, labels=np.asarray(labels, dtype=np.int64),
                 drawn_areas=np.asarray(drawn, dtype=np.int64))
