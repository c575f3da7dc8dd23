"""read_voc / write_voc: the 1-based pixel convention, difficult, image sets, hard links, repairs and errors."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet, AnnotationError
from ninshiki.data.formats.common import InvalidBoxWarning
from ninshiki.data.formats.voc import VOC_CLASSES, read_voc, write_voc


def _obj(name: str, box: tuple[float, ...], difficult: int | None = 0) -> str:
    flag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    coords = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    return f"<object><name>{name}</name><truncated>1</truncated>{flag}<bndbox>{coords}</bndbox></object>"


def _xml(filename: str, objects: list[str], size: tuple[int, int] | None = (64, 48)) -> str:
    size_xml = "" if size is None else f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    return f"<annotation><folder>VOC2007</folder><filename>{filename}</filename>{size_xml}{''.join(objects)}</annotation>"


def _voc(tmp_path: Path, files: dict[str, str], sets: dict[str, list[str]] | None = None) -> Path:
    root = tmp_path / "VOC2007"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for stem, text in files.items():
        (root / "Annotations" / f"{stem}.xml").write_text(text)
        Image.new("RGB", (64, 48), (10, 200, 30)).save(root / "JPEGImages" / f"{stem}.jpg")
    for name, ids in (sets or {}).items():
        (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def test_read_converts_one_based_boxes_and_keeps_difficult(tmp_path: Path, helpers) -> None:
    root = _voc(tmp_path, {
        "000001": _xml("000001.jpg", [_obj("dog", (1, 1, 64, 48)), _obj("person", (10.5, 20, 30, 40), 1)]),
        "000002": _xml("000002.jpg", []),
        "000003": _xml("000003.jpg", [_obj("dog", (5, 6, 7, 8), None)])},
        sets={"train": ["000001", "000002"], "val": ["000003"]})
    before = helpers.digest_tree(tmp_path)
    ds = read_voc(root)
    assert helpers.digest_tree(tmp_path) == before
    assert ds.classes == list(VOC_CLASSES) and ds.root == root
    first, background, third = ds.images
    assert first.file == Path("JPEGImages/000001.jpg") and (first.width, first.height) == (64, 48)
    np.testing.assert_array_equal(first.boxes, [[0, 0, 64, 48], [9.5, 19, 30, 40]])   # (xmin-1, ymin-1, xmax, ymax)
    assert [ds.classes[k] for k in first.labels] == ["dog", "person"]
    np.testing.assert_array_equal(first.difficult, [False, True])
    assert not first.iscrowd.any() and len(background) == 0 and not third.difficult.any()
    assert [im.file.stem for im in read_voc(root, image_set="val").images] == ["000003"]
    assert [im.file.stem for im in read_voc(root, image_set="train").images] == ["000001", "000002"]


def test_class_lists(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": _xml("a.jpg", [_obj("zebra", (1, 1, 5, 5)), _obj("ant", (1, 1, 5, 5))])})
    assert read_voc(root).classes == ["ant", "zebra"]                # not all VOC names: the sorted names found
    ds = read_voc(root, classes=["zebra", "ant", "bee"])
    assert ds.classes == ["zebra", "ant", "bee"] and ds.images[0].labels.tolist() == [0, 1]
    with pytest.raises(AnnotationError) as info:
        read_voc(root, classes=["zebra"])
    assert str(info.value) == f"{root / 'Annotations' / 'a.xml'}: object 1: class 'ant' is not among the classes (zebra)"


def test_write_read_round_trip_with_links_and_image_set(tmp_path: Path, helpers) -> None:
    source = tmp_path / "src"
    source.mkdir()
    Image.new("RGB", (50, 40)).save(source / "p.png")
    Image.new("L", (30, 20)).save(source / "q.jpg")
    ds = AnnotatedSet(classes=["cat", "dog"], root=source, images=[
        AnnotatedImage(file=Path("p.png"), width=50, height=40, boxes=[[0.25, 0, 10.125, 39.5], [3, 4, 50, 40]],
                       labels=[1, 0], difficult=[True, False], iscrowd=[False, True]),
        AnnotatedImage(file=Path("q.jpg"), width=30, height=20, boxes=np.zeros((0, 4)), labels=[])])
    before = helpers.digest_tree(source)
    write_voc(ds, tmp_path / "VOC", image_set="train")
    write_voc(ds, tmp_path / "VOC", image_set="train")               # again: identical images are left alone
    assert helpers.digest_tree(source) == before
    assert os.path.samefile(source / "p.png", tmp_path / "VOC" / "JPEGImages" / "p.png")   # a hard link
    assert (tmp_path / "VOC" / "ImageSets" / "Main" / "train.txt").read_text() == "p\nq\n"
    xml = (tmp_path / "VOC" / "Annotations" / "q.xml").read_text()
    assert "<depth>1</depth>" in xml and "<object>" not in xml
    back = read_voc(tmp_path / "VOC", image_set="train", classes=["cat", "dog"])
    p, q = back.images
    np.testing.assert_allclose(p.boxes, ds.images[0].boxes, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(p.labels, [1, 0])
    np.testing.assert_array_equal(p.difficult, [True, True])          # the crowd box is written difficult
    assert (p.file, q.file, len(q), (q.width, q.height)) == (Path("JPEGImages/p.png"), Path("JPEGImages/q.jpg"),
                                                              0, (30, 20))


def test_write_refuses_clashes(tmp_path: Path) -> None:
    for name in ("a/x.png", "b/x.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.new("RGB", (8, 8), (1, 2, 3) if name.startswith("a") else (4, 5, 6)).save(tmp_path / name)
    one = AnnotatedImage(file=Path("a/x.png"), width=8, height=8, boxes=np.zeros((0, 4)), labels=[])
    two = AnnotatedImage(file=Path("b/x.jpg"), width=8, height=8, boxes=np.zeros((0, 4)), labels=[])
    with pytest.raises(ValueError, match="share the file stem 'x'"):
        write_voc(AnnotatedSet(classes=["c"], images=[one, two], root=tmp_path), tmp_path / "VOC")
    (tmp_path / "VOC" / "JPEGImages").mkdir(parents=True)
    Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "VOC" / "JPEGImages" / "x.png")
    with pytest.raises(FileExistsError, match="already exists with other content"):
        write_voc(AnnotatedSet(classes=["c"], images=[one], root=tmp_path), tmp_path / "VOC")
    gone = AnnotatedImage(file=Path("nope.jpg"), width=8, height=8, boxes=np.zeros((0, 4)), labels=[])
    with pytest.raises(FileNotFoundError, match="nope.jpg: no such image file"):
        write_voc(AnnotatedSet(classes=["c"], images=[gone], root=tmp_path), tmp_path / "VOC")


def test_size_from_the_image_when_missing(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": _xml("a.jpg", [_obj("cat", (1, 1, 5, 5))], size=None),
                           "b": _xml("renamed.jpg", [], size=(0, 0))})
    a, b = read_voc(root).images
    assert (a.width, a.height, b.width, b.height) == (64, 48, 64, 48) and b.file == Path("JPEGImages/b.jpg")
    (root / "JPEGImages" / "a.jpg").unlink()
    with pytest.raises(AnnotationError, match="a.xml: no usable <size>, and the image .*a.jpg is not there"):
        read_voc(root)


@pytest.mark.parametrize("text, message", [
    ("<annotation><filename>a.jpg</filename>\n<object>\n</annotation>", "malformed XML: mismatched tag: line 3"),
    ("<root/>", "the root element is <root>, expected <annotation>"),
    (_xml("a.jpg", [_obj("cat", (1, 1, "ten", 5))]), "object 0 (cat): <bndbox/xmax> is not a number: 'ten'"),
    (_xml("a.jpg", [_obj("cat", (1, 1, 5, 5)), "<object><name>dog</name></object>"]), "object 1 (dog): missing <bndbox>"),
    (_xml("a.jpg", ["<object><bndbox/></object>"]), "object 0: missing <name>"),
    (_xml("a.jpg", []).replace("<width>64</width>", "<width>6.5</width>"), "<size> must hold whole pixels"),
])
def test_malformed_files_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    root = _voc(tmp_path, {"a": text})
    with pytest.raises(AnnotationError) as info:
        read_voc(root)
    assert str(info.value).startswith(f"{root / 'Annotations' / 'a.xml'}: ") and message in str(info.value)


def test_boxes_clipped_or_dropped_with_a_record(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"a": _xml("a.jpg", [_obj("cat", (1, 1, 70, 20)), _obj("dog", (5, 5, 4, 9)),
                                               _obj("cat", (2, 2, "nan", 9))])})
    with pytest.warns(InvalidBoxWarning, match="2 invalid box"):
        ds = read_voc(root)
    xml = root / "Annotations" / "a.xml"
    np.testing.assert_array_equal(ds.images[0].boxes, [[0, 0, 64, 20]])
    assert ds.log.clipped == [(f"{xml}: object 0 (cat) bndbox: box [0, 0, 70, 20] (xyxy) extends outside the 64x48 "
                              f"image: clipped")]
    assert ds.log.dropped[0].startswith(f"{xml}: object 1 (dog) bndbox: box [4, 4, 4, 9] (xyxy) has zero or negative")
    assert ds.log.dropped[1].startswith(f"{xml}: object 2 (cat) bndbox") and "NaN" in ds.log.dropped[1]


def test_missing_folders_and_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a VOC folder"):
        read_voc(tmp_path)
    root = _voc(tmp_path, {"a": _xml("a.jpg", [])}, sets={"train": ["a", "b"]})
    with pytest.raises(FileNotFoundError, match=r"b.xml: no such annotation file \(listed in .*train.txt, line 2\)"):
        read_voc(root, image_set="train")
    with pytest.raises(FileNotFoundError, match=r"val.txt: no such image set file \(sets found: train\)"):
        read_voc(root, image_set="val")
