"""OpenCV cascade XML: reading OpenCV's own files (golden numbers copied from haarcascade_frontalface_default.xml
as shipped in cv2.data, OpenCV 4.x), the legacy layout, writing files `cv2.CascadeClassifier` runs identically,
and errors that name the file."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from ninshiki.classical.haar.cascade import HaarCascade, HaarFeature, Stage, Stump
from ninshiki.classical.haar.opencv_xml import (
    opencv_cascade_names,
    opencv_cascade_path,
    read_cascade_xml,
    write_cascade_xml,
)

# Weak classifiers deeper than stumps (not supported); every other cascade OpenCV ships is read.
TREES = {"haarcascade_eye_tree_eyeglasses", "haarcascade_frontalface_alt2", "haarcascade_lefteye_2splits",
         "haarcascade_righteye_2splits"}


def _gray(scale: float = 0.5) -> np.ndarray:
    gray = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _sorted(rects) -> list[tuple[int, ...]]:
    return sorted(map(tuple, np.asarray(rects).reshape(-1, 4).tolist()))


def _same(a: HaarCascade, b: HaarCascade) -> bool:
    return (a.window == b.window and len(a.features) == len(b.features) and a.stages == b.stages
            and all(f.tilted == g.tilted and np.array_equal(f.rects, g.rects) for f, g in zip(a.features, b.features)))


def test_reads_frontalface_default_numbers():
    cascade = read_cascade_xml(opencv_cascade_path("haarcascade_frontalface_default"))
    assert cascade.window == (24, 24)
    assert len(cascade.stages) == 25 and sum(len(s.stumps) for s in cascade.stages) == 2913
    assert [len(s.stumps) for s in cascade.stages[:3]] == [9, 16, 27]
    assert cascade.stages[0].threshold == -5.0425500869750977
    assert cascade.stages[0].stumps[0] == Stump(0, -3.1511999666690826e-02, 2.0875380039215088, -2.2172100543975830)
    np.testing.assert_array_equal(cascade.features[0].rects, [[6, 4, 12, 9, -1], [6, 7, 12, 3, 3]])
    assert not any(f.tilted for f in cascade.features)


def test_lists_opencv_cascades():
    names = opencv_cascade_names()
    assert "haarcascade_frontalface_default" in names and TREES <= set(names) and len(names) >= 15


@pytest.mark.parametrize("name", opencv_cascade_names())
def test_reads_every_stump_cascade_opencv_ships_and_refuses_trees(name):
    path = opencv_cascade_path(name)
    if name in TREES:
        with pytest.raises(ValueError, match="tree of .* nodes: only stumps") as error:
            read_cascade_xml(path)
        assert str(path) in str(error.value)
    else:
        cascade = read_cascade_xml(path)
        assert cascade.stages and cascade.features
        assert cascade.window == cv2.CascadeClassifier(str(path)).getOriginalWindowSize()
        if name == "haarcascade_fullbody":
            assert any(f.tilted for f in cascade.features)


@pytest.mark.parametrize("name", ["haarcascade_frontalface_default", "haarcascade_upperbody"])
def test_round_trip_opencv_runs_the_written_file_identically(tmp_path, name):
    source = opencv_cascade_path(name)
    cascade = read_cascade_xml(source)
    written = tmp_path / "out" / "cascade.xml"   # the folder is created
    write_cascade_xml(cascade, written)
    assert _same(read_cascade_xml(written), cascade)
    assert [p.name for p in written.parent.iterdir()] == ["cascade.xml"]   # no temporary file left behind
    gray = _gray()
    theirs, ours = cv2.CascadeClassifier(str(source)), cv2.CascadeClassifier(str(written))
    assert not ours.empty()
    raw = _sorted(theirs.detectMultiScale(gray, minNeighbors=0))
    assert len(raw) > 0   # upperbody (tilted features) has candidate windows on the astronaut too
    assert _sorted(ours.detectMultiScale(gray, minNeighbors=0)) == raw
    assert _sorted(ours.detectMultiScale(gray)) == _sorted(theirs.detectMultiScale(gray))


def _write_legacy(cascade: HaarCascade, path: Path) -> None:
    """The legacy (OpenCV 1.x `opencv-haar-classifier`) layout of a stump cascade, for the test."""
    lines = ['<?xml version="1.0"?>', "<opencv_storage>", '<eyes type_id="opencv-haar-classifier">',
             f"<size>{cascade.window[0]} {cascade.window[1]}</size>", "<stages>"]
    for i, stage in enumerate(cascade.stages):
        lines.append("<_><!-- a stage --><trees>")
        for s in stage.stumps:
            feature = cascade.features[s.feature]
            rects = "".join(f"<_>{int(x)} {int(y)} {int(w)} {int(h)} {float(v)!r}</_>"
                            for x, y, w, h, v in feature.rects)
            lines.append(f"<_><_><feature><rects>{rects}</rects><tilted>{int(feature.tilted)}</tilted></feature>"
                         f"<threshold>{s.threshold!r}</threshold><left_val>{s.left!r}</left_val>"
                         f"<right_val>{s.right!r}</right_val></_></_>")
        lines.append(f"</trees><stage_threshold>{stage.threshold!r}</stage_threshold><parent>{i - 1}</parent>"
                     "<next>-1</next></_>")
    lines += ["</stages>", "</eyes>", "</opencv_storage>"]
    path.write_text("\n".join(lines))


def test_reads_the_legacy_layout_as_opencv_does(tmp_path):
    source = read_cascade_xml(opencv_cascade_path("haarcascade_eye"))
    legacy = tmp_path / "legacy.xml"
    _write_legacy(source, legacy)
    assert _same(read_cascade_xml(legacy), source)   # one feature per stump, as in the shipped file
    gray = _gray()
    raw = _sorted(cv2.CascadeClassifier(str(legacy)).detectMultiScale(gray, minNeighbors=0))
    assert len(raw) > 0
    assert raw == _sorted(cv2.CascadeClassifier(str(opencv_cascade_path("eye"))).detectMultiScale(gray, minNeighbors=0))


def _tiny() -> HaarCascade:
    feature = HaarFeature(np.array([[0.0, 0, 4, 4, -1], [2, 0, 2, 4, 2]]))
    return HaarCascade((6, 6), [feature], [Stage([Stump(0, 0.1, -1.0, 1.0)], -0.5)])


_HAAR = "<opencv_storage><cascade><stageType>BOOST</stageType><featureType>HAAR</featureType><width>6</width>" \
        "<height>6</height>"
_RECTS = "<features><_><rects><_>0 0 4 4 -1.</_><_>2 0 2 4 2.</_></rects></_></features>"


def _one_stump(nodes: str) -> str:
    """A 6 x 6 cascade of one stage of one stump with `nodes` as its internalNodes."""
    return (f"{_HAAR}<stages><_><stageThreshold>0</stageThreshold><weakClassifiers><_><internalNodes>{nodes}"
            f"</internalNodes><leafValues>1 -1</leafValues></_></weakClassifiers></_></stages>{_RECTS}"
            "</cascade></opencv_storage>")


@pytest.mark.parametrize("text, message", [
    ("<opencv_storage><cascade><stageType>BOOST", "not well-formed XML"),
    ("<opencv_storage></opencv_storage>", "no cascade"),
    ("<opencv_storage><x><y>1</y></x></opencv_storage>", "not an OpenCV cascade"),
    ("<opencv_storage><cascade><stageType>BOOST</stageType><featureType>LBP</featureType></cascade></opencv_storage>",
     "featureType 'LBP' is not supported"),
    (_one_stump("0 -1 3 0.5"), "stage 0 weak classifier 0 uses feature 3, but there are 1 features"),
    (_one_stump("0 -1 0 x"), "stage 0 weak classifier 0 <internalNodes>: expected numbers"),
    (_one_stump("1 -1 0 0.5 0 -1 0 0.2"), "stage 0 weak classifier 0 is a tree of 2 nodes"),
    (_one_stump("0 -1 0 0.5").replace("2 0 2 4 2.", "2 0 5 4 2."), "feature 0: a rectangle .* leaves the 6x6 window"),
])
def test_bad_files_name_the_file_and_the_fault(tmp_path, text, message):
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        read_cascade_xml(path)
    assert str(path) in str(error.value)


def test_missing_file_and_unknown_opencv_name():
    with pytest.raises(FileNotFoundError, match="nowhere.xml"):
        read_cascade_xml("/nowhere.xml")
    with pytest.raises(FileNotFoundError, match="haarcascade_frontalface_default") as error:
        opencv_cascade_path("frontal_cat_dog")
    assert "frontal_cat_dog" in str(error.value)
    assert opencv_cascade_path("eye") == opencv_cascade_path("haarcascade_eye.xml")


def test_refuses_to_write_an_invalid_cascade(tmp_path):
    path = tmp_path / "c.xml"
    write_cascade_xml(_tiny(), path)
    assert _same(read_cascade_xml(path), _tiny())
    bad = _tiny()
    bad.features[0].rects[1, 0] = 5   # leaves the 6 x 6 window
    with pytest.raises(ValueError, match=r"cannot write .*feature 0: a rectangle .* leaves the 6x6 window"):
        write_cascade_xml(bad, tmp_path / "bad.xml")
    assert not (tmp_path / "bad.xml").exists()
