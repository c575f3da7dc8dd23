"""The object classes of the generated "shapes" data set, each drawn as a coverage (alpha) patch.

Geometric shapes are polygons computed in closed form (a circle is a 96-gon), glyphs are rendered with the
font Pillow bundles (``ImageFont.load_default(size=...)``, Pillow >= 10.1, no font file needed), made bolder
with a stroke. Every object is drawn at `SUPERSAMPLE` times its size and box-averaged down, so the patch
holds anti-aliased coverage in [0, 1]; the object's mask is ``coverage >= 0.5`` (a pixel belongs to the
object when the object covers most of it), the rule the generator uses for masks and boxes alike.

`size` is the longer side of the upright object before its aspect change and rotation, in pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SUPERSAMPLE = 5  # odd: a pixel's coverage (k / 25) is never exactly the 0.5 threshold
DEFAULT_CLASSES: tuple[str, ...] = ("circle", "ring", "triangle", "square", "hexagon", "star",
                                    "letter_A", "letter_T")
GLYPH_PREFIXES = ("letter_", "digit_")
RING_INNER = 0.55  # inner radius of a ring over its outer one
STAR_INNER = 0.45  # inner radius of the five-pointed star over its outer one
PIL_POLYGON_SPREAD = 0.31  # measured: ImageDraw.polygon fills 0.31 px x perimeter more than the exact area


def _regular(n: int, *, radius: float = 1.0, phase: float = -math.pi / 2) -> np.ndarray:
    """(n, 2) vertices of a regular n-gon around the origin, the first at `phase` (upwards by default)."""
    angles = phase + 2 * math.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star() -> np.ndarray:
    outer, inner = _regular(5), _regular(5, radius=STAR_INNER, phase=-math.pi / 2 + math.pi / 5)
    return np.stack([outer, inner], axis=1).reshape(10, 2)  # alternate tips and notches


def _unit_outlines(name: str) -> list[tuple[np.ndarray, int]]:
    """The outlines of a geometric class as (vertices, fill) layers, painted in order (0 cuts a hole)."""
    circle = _regular(96)
    layers = {
        "circle": [(circle, 255)],
        "ring": [(circle, 255), (circle * RING_INNER, 0)],
        "triangle": [(_regular(3), 255)],
        "square": [(_regular(4, phase=-math.pi / 4), 255)],
        "hexagon": [(_regular(6), 255)],
        "star": [(_star(), 255)],
    }
    return layers[name]


def glyph_of(name: str) -> str | None:
    """The character a glyph class draws ("letter_A" -> "A", "digit_7" -> "7"), or None for a shape."""
    for prefix in GLYPH_PREFIXES:
        if name.startswith(prefix) and len(name) == len(prefix) + 1 and not name[-1].isspace():
            return name[-1] if prefix != "digit_" or name[-1].isdigit() else None
    return None


def check_classes(classes: list[str] | tuple[str, ...]) -> list[str]:
    """Validate class names: geometric shapes, or ``letter_X`` / ``digit_N`` glyphs; no duplicates."""
    shapes = ("circle", "ring", "triangle", "square", "hexagon", "star")
    classes = list(classes)
    if not classes:
        raise ValueError("at least one class is needed")
    for name in classes:
        if name not in shapes and glyph_of(name) is None:
            raise ValueError(f"unknown class {name!r}: choose among {', '.join(shapes)}, or a glyph such as "
                             "'letter_A' or 'digit_7'")
    if len(set(classes)) != len(classes):
        raise ValueError(f"duplicate class names in {classes}")
    return classes


@dataclass(frozen=True)
class Pose:
    """How one object is drawn: its size in pixels, rotation in degrees (counter-clockwise), and aspect
    (width over height, applied before the rotation)."""
    size: float
    angle: float
    aspect: float


def _place(points: np.ndarray, reference: np.ndarray, pose: Pose, extent: float, centre: float) -> np.ndarray:
    """Map unit outline points to canvas pixels: scale so the `reference` outline's longer upright side is
    `extent`, stretch by the aspect, rotate, centre. Layers share the reference so a hole stays in place."""
    low, high = reference.min(0), reference.max(0)
    points = (points - (low + high) / 2) * (extent / (high - low).max())
    points = points * np.array([math.sqrt(pose.aspect), 1 / math.sqrt(pose.aspect)])
    theta = math.radians(pose.angle)
    rotation = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])  # y is down
    return points @ rotation.T + centre


def _canvas_side(pose: Pose) -> int:
    """A supersampled square that holds the object at any rotation, rounded to a multiple of SUPERSAMPLE."""
    stretch = max(math.sqrt(pose.aspect), 1 / math.sqrt(pose.aspect))
    side = math.ceil(pose.size * stretch * math.sqrt(2) + 4)
    return side * SUPERSAMPLE


def _inset(points: np.ndarray, distance: float) -> np.ndarray:
    """Move every edge of a simple polygon `distance` inwards (mitred corners).

    Shape:
        points: (P, 2) xy vertices, either winding; returns (P, 2).
    """
    x, y = points[:, 0], points[:, 1]
    winding = np.sign(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))  # +1: counter-clockwise in x-right, y-up
    edges = np.roll(points, -1, axis=0) - points                          # (P, 2) edge i runs from vertex i
    normals = winding * np.stack([-edges[:, 1], edges[:, 0]], axis=1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)             # (P, 2) unit, pointing inside
    before, after = np.roll(normals, 1, axis=0), normals                  # the two edges meeting at each vertex
    mitre = (before + after) / (1.0 + (before * after).sum(1, keepdims=True))
    return points + distance * mitre


def _draw_shape(name: str, pose: Pose) -> Image.Image:
    side = _canvas_side(pose)
    canvas = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(canvas)
    layers = _unit_outlines(name)
    for points, fill in layers:
        placed = _place(points, layers[0][0], pose, pose.size * SUPERSAMPLE, side / 2)  # (P, 2) xy
        # PIL's filled polygon paints its outline too, widening it (a hole, when erasing) by about a third
        # of a pixel of the supersampled canvas: move the edges in by as much
        placed = _inset(placed, PIL_POLYGON_SPREAD) - 0.5  # PIL puts pixel centres, not corners, at integers
        draw.polygon([tuple(p) for p in placed.tolist()], fill=fill)
    return canvas


def _draw_glyph(char: str, pose: Pose) -> Image.Image:
    font_size = max(8, round(pose.size * SUPERSAMPLE * 1.4))  # about the final scale: nearest resampling is fine
    font = ImageFont.load_default(size=font_size)
    stroke = max(1, round(font_size * 0.035))  # the bundled face is light: embolden it
    left, top, right, bottom = font.getbbox(char, stroke_width=stroke)
    glyph = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(glyph).text((-left, -top), char, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
    # forward map, glyph pixel p -> canvas pixel q: q = R S (p - g) + c, R counter-clockwise with y down
    scale = pose.size * SUPERSAMPLE / max(glyph.size)
    sx, sy = scale * math.sqrt(pose.aspect), scale / math.sqrt(pose.aspect)
    theta = math.radians(pose.angle)
    cos, sin = math.cos(theta), math.sin(theta)
    forward = np.array([[cos * sx, sin * sy], [-sin * sx, cos * sy]])
    g = np.array(glyph.size, dtype=np.float64) / 2
    corners = (np.array([[0, 0], [1, 0], [0, 1], [1, 1]]) * 2 - 1) * g  # (4, 2) glyph box about its centre
    reach = np.abs(corners @ forward.T).max(0)                           # (2,) half extent on the canvas
    size = [(math.ceil(2 * r / SUPERSAMPLE) + 2) * SUPERSAMPLE for r in reach]  # whole output pixels, a margin
    inverse = np.linalg.inv(forward)
    shift = g - inverse @ (np.array(size, dtype=np.float64) / 2)
    coeffs = (*inverse[0], shift[0], *inverse[1], shift[1])  # PIL wants canvas -> glyph
    return glyph.transform(tuple(size), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.NEAREST)


def draw_object(name: str, pose: Pose) -> np.ndarray:
    """The coverage of one object, cropped to where it is non-zero.

    Args:
        name: a class name accepted by `check_classes`.
        pose: size (pixels), rotation and aspect.

    Returns:
        (h, w) float32 coverage in [0, 1]; the object's mask is ``coverage >= 0.5``.
    """
    char = glyph_of(name)
    canvas = _draw_glyph(char, pose) if char is not None else _draw_shape(name, pose)
    coverage = np.asarray(canvas.reduce(SUPERSAMPLE), dtype=np.float32) / 255.0  # (h, w) before cropping
    rows, cols = np.flatnonzero(coverage.any(1)), np.flatnonzero(coverage.any(0))
    if rows.size == 0:
        return np.zeros((0, 0), np.float32)
    return np.ascontiguousarray(coverage[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
