"""OpenCV's Haar cascade XML files, read into `HaarCascade` and written back, so `cv2.CascadeClassifier` and ninshiki
run each other's cascades (Viola & Jones, CVPR 2001; the file format of OpenCV's `opencv_traincascade`).

Two layouts exist. The current one (`<cascade type_id="opencv-cascade-classifier">`, written by traincascade
and shipped in `cv2.data.haarcascades`): `stageType` BOOST, `featureType` HAAR, `width`/`height`, `stages` of
`weakClassifiers` whose `internalNodes` are "left right featureIdx threshold" per node and `leafValues` the
leaves (a stump is "0 -1 f t" with leaves [left, right]), and `features` of `rects` rows "x y w h weight" with
an optional `tilted`. The legacy one (`type_id="opencv-haar-classifier"`, `<size>`, `<trees>` of nodes with
`left_val`/`right_val`) holds the same numbers; OpenCV converts it field by field (cascadedetect_convert.cpp)
and so does `read_cascade_xml`. Only stumps are supported: trees (`maxDepth` > 1, e.g.
haarcascade_frontalface_alt_tree.xml), LBP and HOG cascades are refused with a message naming the file.

Values are kept as written (float64); OpenCV rounds them to float32 when it loads a file, and `detect` does too.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ninshiki.classical.haar.cascade import HaarCascade, HaarFeature, Stage, Stump
from ninshiki.io import write_text


class _Reader:
    """Typed access to one file's XML elements; every error names the file and the element."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.path}: {what}")

    def child(self, node: ET.Element, tag: str, where: str) -> ET.Element:
        found = node.find(tag)
        if found is None:
            raise self.fail(f"{where} has no <{tag}>")
        return found

    def numbers(self, node: ET.Element, where: str) -> list[float]:
        try:
            return [float(token) for token in (node.text or "").split()]
        except ValueError:
            raise self.fail(f"{where}: expected numbers, got {(node.text or '').strip()[:60]!r}") from None

    def number(self, node: ET.Element, tag: str, where: str) -> float:
        values = self.numbers(self.child(node, tag, where), f"{where} <{tag}>")
        if len(values) != 1:
            raise self.fail(f"{where} <{tag}>: expected one number, got {len(values)}")
        return values[0]

    def integer(self, value: float, where: str) -> int:
        if not float(value).is_integer():
            raise self.fail(f"{where}: expected an integer, got {value}")
        return int(value)

    def feature(self, node: ET.Element, where: str) -> HaarFeature:
        rows = [self.numbers(r, f"{where} rect {k}") for k, r in enumerate(self.child(node, "rects", where))]
        if not 1 <= len(rows) <= 3 or any(len(row) != 5 for row in rows):
            raise self.fail(f"{where}: expected 1 to 3 rects of 5 numbers (x y w h weight), got {rows}")
        tilted = node.find("tilted") is not None and bool(self.integer(self.number(node, "tilted", where), where))
        return HaarFeature(rects=np.array(rows, np.float64), tilted=tilted)


def read_cascade_xml(path: str | os.PathLike[str]) -> HaarCascade:
    """Read an OpenCV Haar cascade (current or legacy layout, stumps only).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not well-formed XML, not a Haar cascade, trees deeper than stumps, or inconsistent
            numbers; the message names the file and the stage, weak classifier or feature at fault.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such cascade file")
    reader = _Reader(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise reader.fail(f"not well-formed XML ({error})") from None
    top = root[0] if len(root) else None
    if top is None:
        raise reader.fail(f"<{root.tag}> is empty: no cascade in this file")
    if top.find("stageType") is not None:
        cascade = _read_current(reader, top)
    elif top.find("size") is not None and top.find("stages") is not None:
        cascade = _read_legacy(reader, top)
    else:
        raise reader.fail(f"<{top.tag}> is not an OpenCV cascade (no <stageType>, nor a legacy <size>)")
    _validate(cascade, reader.fail)
    return cascade


def _read_current(r: _Reader, top: ET.Element) -> HaarCascade:
    stage_type = (r.child(top, "stageType", "the cascade").text or "").strip()
    feature_type = (r.child(top, "featureType", "the cascade").text or "").strip()
    if stage_type != "BOOST":
        raise r.fail(f"stageType {stage_type!r} is not supported (only BOOST)")
    if feature_type != "HAAR":
        raise r.fail(f"featureType {feature_type!r} is not supported: only HAAR cascades can be read "
                     "(LBP and HOG cascades use other features)")
    window = tuple(r.integer(r.number(top, tag, "the cascade"), f"<{tag}>") for tag in ("width", "height"))
    params = top.find("featureParams")
    categories = params.find("maxCatCount") if params is not None else None
    if categories is not None and r.numbers(categories, "featureParams <maxCatCount>") != [0.0]:
        raise r.fail("featureParams maxCatCount > 0: categorical (LBP) splits are not Haar stumps")
    stages = []
    for i, node in enumerate(r.child(top, "stages", "the cascade")):
        stumps = [_read_weak(r, weak, f"stage {i} weak classifier {j}")
                  for j, weak in enumerate(r.child(node, "weakClassifiers", f"stage {i}"))]
        stages.append(Stage(stumps=stumps, threshold=r.number(node, "stageThreshold", f"stage {i}")))
    features = [r.feature(node, f"feature {k}") for k, node in enumerate(r.child(top, "features", "the cascade"))]
    return HaarCascade(window=window, features=features, stages=stages)


def _read_weak(r: _Reader, weak: ET.Element, where: str) -> Stump:
    nodes = r.numbers(r.child(weak, "internalNodes", where), f"{where} <internalNodes>")
    leaves = r.numbers(r.child(weak, "leafValues", where), f"{where} <leafValues>")
    if len(nodes) % 4 or not nodes:
        raise r.fail(f"{where}: <internalNodes> holds {len(nodes)} numbers, not groups of 4 "
                     "(left right featureIdx threshold)")
    if len(nodes) > 4:
        raise r.fail(f"{where} is a tree of {len(nodes) // 4} nodes: only stumps (maxDepth 1) are supported")
    left, right, feature = (r.integer(v, f"{where} <internalNodes>") for v in nodes[:3])
    if left > 0 or right > 0 or max(-left, -right) >= len(leaves) or len(leaves) != 2:
        raise r.fail(f"{where}: a stump needs two leaves referenced as 0 and -1, got internalNodes "
                     f"{nodes} and {len(leaves)} leafValues")
    return Stump(feature=feature, threshold=nodes[3], left=leaves[-left], right=leaves[-right])


def _read_legacy(r: _Reader, top: ET.Element) -> HaarCascade:
    size = r.numbers(r.child(top, "size", "the cascade"), "<size>")
    if len(size) != 2:
        raise r.fail(f"<size> should be 'width height', got {size}")
    features: list[HaarFeature] = []
    stages = []
    for i, node in enumerate(r.child(top, "stages", "the cascade")):
        parent, following = node.find("parent"), node.find("next")
        if (parent is not None and r.number(node, "parent", f"stage {i}") != i - 1) or \
                (following is not None and r.number(node, "next", f"stage {i}") != -1):
            raise r.fail(f"stage {i}: tree-structured cascades (<parent>/<next>) are not supported")
        stumps = []
        for j, tree in enumerate(r.child(node, "trees", f"stage {i}")):
            where = f"stage {i} tree {j}"
            if len(tree) != 1 or tree[0].find("left_val") is None or tree[0].find("right_val") is None:
                raise r.fail(f"{where} is a tree of {len(tree)} nodes: only stumps (maxDepth 1) are supported")
            stump_node = tree[0]
            features.append(r.feature(r.child(stump_node, "feature", where), f"{where} feature"))
            stumps.append(Stump(feature=len(features) - 1, threshold=r.number(stump_node, "threshold", where),
                                left=r.number(stump_node, "left_val", where),
                                right=r.number(stump_node, "right_val", where)))
        stages.append(Stage(stumps=stumps, threshold=r.number(node, "stage_threshold", f"stage {i}")))
    window = (r.integer(size[0], "<size>"), r.integer(size[1], "<size>"))
    return HaarCascade(window=window, features=features, stages=stages)


def _validate(cascade: HaarCascade, fail: Callable[[str], Exception]) -> None:
    """Checks shared by reading and writing: indices in range, integer rectangles inside the window."""
    w, h = cascade.window
    if w < 3 or h < 3:
        raise fail(f"window {w}x{h} is too small (the variance normalisation needs at least 3x3)")
    if not cascade.stages or any(not stage.stumps for stage in cascade.stages):
        raise fail("a cascade needs at least one stage and every stage at least one weak classifier")
    used = np.array([[i, j, s.feature] for i, stage in enumerate(cascade.stages) for j, s in enumerate(stage.stumps)])
    bad = np.flatnonzero((used[:, 2] < 0) | (used[:, 2] >= len(cascade.features)))
    if len(bad):
        i, j, k = used[bad[0]]
        raise fail(f"stage {i} weak classifier {j} uses feature {k}, but there are {len(cascade.features)} features")
    rects = np.zeros((len(cascade.features), 3, 5))   # (F, 3, 5); padding rows are zero, always valid
    for k, feature in enumerate(cascade.features):
        r = np.asarray(feature.rects, np.float64)
        if r.ndim != 2 or r.shape[1] != 5 or not 1 <= len(r) <= 3:
            raise fail(f"feature {k}: rects must be (R, 5) rows [x, y, w, h, weight] with R in 1..3, got shape "
                       f"{r.shape}")
        rects[k, :len(r)] = r
    x, y, rw, rh = rects[..., :4].transpose(2, 0, 1)
    tilted = np.array([f.tilted for f in cascade.features], bool)[:, None]
    inside = (rw >= 0) & (rh >= 0) & (y >= 0) & np.where(
        tilted, (x - rh >= 0) & (x + rw <= w) & (y + rw + rh <= h), (x >= 0) & (x + rw <= w) & (y + rh <= h))
    for ok, fault in (((rects[..., :4] == np.round(rects[..., :4])).all((1, 2)), "is not in whole pixels"),
                      (inside.all(1), f"leaves the {w}x{h} window")):
        if not ok.all():
            k = int(np.flatnonzero(~ok)[0])
            kind = "tilted " if cascade.features[k].tilted else ""
            raise fail(f"feature {k}: a {kind}rectangle of {np.asarray(cascade.features[k].rects)[:, :4].tolist()} "
                       f"{fault}")


def _real(value: float) -> str:
    return format(float(value), ".16e")   # 17 significant digits: reads back as the same double


def write_cascade_xml(cascade: HaarCascade, path: str | os.PathLike[str]) -> None:
    """Write `cascade` in OpenCV's current layout, atomically (temporary file, then rename).

    `cv2.CascadeClassifier(path)` loads the result and detects what ninshiki's `detect_multiscale` detects.
    """
    _validate(cascade, lambda what: ValueError(f"cannot write {path}: {what}"))
    w, h = cascade.window
    lines = ['<?xml version="1.0"?>', "<!-- Haar cascade written by ninshiki (stumps, OpenCV traincascade layout) -->",
             "<opencv_storage>", '<cascade type_id="opencv-cascade-classifier">',
             "  <stageType>BOOST</stageType>", "  <featureType>HAAR</featureType>",
             f"  <height>{h}</height>", f"  <width>{w}</width>",
             "  <stageParams>", "    <maxDepth>1</maxDepth>",
             f"    <maxWeakCount>{max(len(s.stumps) for s in cascade.stages)}</maxWeakCount></stageParams>",
             "  <featureParams>", "    <maxCatCount>0</maxCatCount>", "    <featSize>1</featSize></featureParams>",
             f"  <stageNum>{len(cascade.stages)}</stageNum>", "  <stages>"]
    for i, stage in enumerate(cascade.stages):
        lines += [f"    <!-- stage {i} -->", "    <_>", f"      <maxWeakCount>{len(stage.stumps)}</maxWeakCount>",
                  f"      <stageThreshold>{_real(stage.threshold)}</stageThreshold>", "      <weakClassifiers>"]
        for stump in stage.stumps:
            lines += ["        <_>",
                      f"          <internalNodes>0 -1 {int(stump.feature)} {_real(stump.threshold)}</internalNodes>",
                      f"          <leafValues>{_real(stump.left)} {_real(stump.right)}</leafValues></_>"]
        lines += ["        </weakClassifiers></_>"]
    lines += ["    </stages>", "  <features>"]
    for feature in cascade.features:
        rows = " ".join(f"<_>{int(x)} {int(y)} {int(rw)} {int(rh)} {_real(weight)}</_>"
                        for x, y, rw, rh, weight in np.asarray(feature.rects, np.float64))
        tilted = "<tilted>1</tilted>" if feature.tilted else ""
        lines.append(f"    <_><rects>{rows}</rects>{tilted}</_>")
    lines += ["    </features></cascade>", "</opencv_storage>", ""]
    write_text(path, "\n".join(lines))


def opencv_cascade_names() -> list[str]:
    """The Haar cascades shipped with OpenCV (`cv2.data.haarcascades`), without the ".xml"."""
    import cv2

    return sorted(p.stem for p in Path(cv2.data.haarcascades).glob("haarcascade_*.xml"))


def opencv_cascade_path(name: str) -> Path:
    """The file of one of OpenCV's cascades: "haarcascade_frontalface_default", with or without the
    "haarcascade_" prefix or the ".xml" suffix.

    Raises:
        FileNotFoundError: no such cascade; the message lists the available ones.
    """
    import cv2

    stem = name.removesuffix(".xml")
    stem = stem if stem.startswith("haarcascade_") else f"haarcascade_{stem}"
    path = Path(cv2.data.haarcascades) / f"{stem}.xml"
    if not path.is_file():
        raise FileNotFoundError(f"OpenCV has no cascade {name!r}; available: {', '.join(opencv_cascade_names())}")
    return path
