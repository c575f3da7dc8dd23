"""load_segmentation_data: every `--data` spec, the checks on masks, class lists, our YAML, and seeded val splits."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ninshiki.data.annotations import AnnotationError
from ninshiki.data.formats.masks import voc_palette, write_palette_mask
from ninshiki.data.formats.voc import VOC_CLASSES
from ninshiki.data.segmentation.types import load_label_mask
from ninshiki.data.segmentation_data import check_segmentation_set, load_segmentation_data
from ninshiki.data.synthetic import synth_detect


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_detect(tmp_path_factory.mktemp("synth") / "shapes", train=4, val=2, image_size=64, progress=False)


def mask_folder(root: Path, masks: dict[str, np.ndarray], classes: tuple[str, str] | None = ("classes.txt", "cat\ndog\n"),
                image_size: tuple[int, int] | None = None) -> Path:
    """root/images/<name>.png (grey) and root/masks/<name>.png (the given class map), and a class file."""
    for name, mask in masks.items():
        for folder in ("images", "masks"):
            (root / folder / name).parent.mkdir(parents=True, exist_ok=True)
        width, height = image_size or (mask.shape[1], mask.shape[0])
        Image.new("RGB", (width, height), (100, 100, 100)).save(root / "images" / f"{name}.png")
        Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / f"{name}.png")
    if classes is not None:
        (root / classes[0]).write_text(classes[1])
    return root


def blocks(value: int, size: tuple[int, int] = (6, 4)) -> np.ndarray:
    mask = np.zeros((size[1], size[0]), np.uint8)
    mask[1:3, 1:4] = value
    return mask


def test_the_generated_shapes_folder_and_its_other_forms(shapes: Path, helpers) -> None:
    before = helpers.digest_tree(shapes)
    data = load_segmentation_data(shapes)
    assert data.source == f"masks {shapes}" and data.classes[:3] == ["background", "circle", "ring"]
    assert len(data.classes) == 9 and data.colours[1] == (128, 0, 0) and data.colours[8] == (64, 0, 0)
    assert [len(data.train.items), len(data.val.items)] == [4, 2]
    assert data.train.items[0].file == Path("images/train/train_000000.jpg")
    assert data.train.items[0].mask == Path("masks/train/train_000000.png")
    assert check_segmentation_set(data.train) == [] and check_segmentation_set(data.val) == []
    assert data.summary().splitlines()[1:] == ["train: 4 images (mask files)", "val: 2 images (mask files)"]

    voc = load_segmentation_data(shapes / "VOC")                 # classes from the classes.csv above VOC/
    assert voc.classes == data.classes and voc.source == f"VOC {shapes / 'VOC'} (train / val)"
    for a, b in zip(voc.train.items, data.train.items):
        np.testing.assert_array_equal(load_label_mask(voc.train, a), load_label_mask(data.train, b))
    coco = load_segmentation_data(shapes / "coco.yaml")          # names without background: the object classes
    assert coco.classes == data.classes and len(coco.val.items) == 2
    np.testing.assert_array_equal(load_label_mask(coco.val, coco.val.items[1]),
                                  load_label_mask(data.val, data.val.items[1]))
    with pytest.raises(AnnotationError, match=r"train_000000.txt:1: a polygon needs at least 3 points, found 2 "
                                              r"\(this is a box line"):
        load_segmentation_data(shapes / "data.yaml")              # its labels are boxes, not polygons
    assert helpers.digest_tree(shapes) == before


def test_a_mask_folder_without_splits_gets_a_seeded_val_split(tmp_path: Path) -> None:
    root = mask_folder(tmp_path / "d", {f"n{i}": blocks(1 + i % 2) for i in range(8)})
    data = load_segmentation_data(root, split_seed=3, val_fraction=0.25)
    assert data.classes == ["background", "cat", "dog"]          # classes.txt: background prepended
    assert len(data.train.items) == 6 and len(data.val.items) == 2
    assert "val: 2 of its images, split off with seed 3" in data.source
    again = load_segmentation_data(root, split_seed=3, val_fraction=0.25)
    assert [item.file for item in again.val.items] == [item.file for item in data.val.items]
    assert data.colours == [tuple(voc_palette()[3 * k:3 * k + 3]) for k in range(3)]
    assert load_segmentation_data(root, val_fraction=0).val is None
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        load_segmentation_data(root, val_fraction=1)


@pytest.mark.parametrize("name, text, message", [
    ("classes.txt", "_background_\ncat\ndog\n", None),
    ("classes.csv", "index,name,r,g,b\n0,background,0,0,0\n1,cat,1,2,3\n2,dog,4,5,6\n", None),
    ("classes.csv", "0,bg\n1,cat\n2,dog\n", None),
    ("classes.csv", "0,bg\n2,cat\n", r"classes.csv: class indices must be 0..K-1 without gaps, found \[0, 2\]"),
    ("classes.csv", "0,bg\n1,cat,1,2\n", r"classes.csv:2: expected 'index,name' or 'index,name,r,g,b'"),
    ("classes.csv", "0,bg,0,0,0\n1,cat,1,2,300\n", r"classes.csv:2: colour values must lie in 0..255"),
    ("classes.csv", "0,bg\n0,cat\n", r"classes.csv:2: class index 0 appears twice"),
    ("classes.txt", "cat\n\ndog\n", r"classes.txt:2: empty class name"),
    ("classes.txt", "cat\ncat\n", r"classes.txt: class name 'cat' appears twice"),
])
def test_class_files(tmp_path: Path, name: str, text: str, message: str | None) -> None:
    root = mask_folder(tmp_path / "d", {"a": blocks(1), "b": blocks(2)}, classes=(name, text))
    if message is not None:
        with pytest.raises(AnnotationError, match=message):
            load_segmentation_data(root)
        return
    data = load_segmentation_data(root)
    assert data.classes[1:] == ["cat", "dog"] and len(data.classes) == 3
    if "r,g,b" in text:
        assert data.colours == [(0, 0, 0), (1, 2, 3), (4, 5, 6)]


def test_missing_masks_class_files_and_paths(tmp_path: Path) -> None:
    root = mask_folder(tmp_path / "d", {"a": blocks(1), "sub/b": blocks(2)}, classes=None)
    with pytest.raises(FileNotFoundError, match=r"d: a mask folder needs classes.csv .* or classes.txt"):
        load_segmentation_data(root)
    (root / "classes.txt").write_text("cat\ndog\n")
    (root / "masks" / "sub" / "b.png").unlink()
    with pytest.raises(AnnotationError, match=r"images/sub/b.png: no mask .*masks/sub/b.png"):
        load_segmentation_data(root)
    Image.new("L", (6, 4)).save(root / "masks" / "sub" / "b.jpg")
    with pytest.raises(AnnotationError, match=r"images/sub/b.png: .*b.jpg is a JPEG: masks must be PNG"):
        load_segmentation_data(root)
    with pytest.raises(FileNotFoundError, match="nowhere: no such file or folder"):
        load_segmentation_data(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no segmentation data found here; expected a mask folder"):
        load_segmentation_data(tmp_path / "empty")


def test_mask_headers_are_checked_when_loading(tmp_path: Path) -> None:
    root = mask_folder(tmp_path / "d", {"a": blocks(1), "b": blocks(2)}, image_size=(6, 4))
    Image.fromarray(blocks(1, size=(7, 4))).save(root / "masks" / "b.png")
    with pytest.raises(AnnotationError, match=r"masks/b.png: mask is 7x4 \(WxH\) but its image .*images/b.png is 6x4"):
        load_segmentation_data(root)
    Image.new("RGB", (6, 4)).save(root / "masks" / "b.png")
    with pytest.raises(AnnotationError, match=r"masks/b.png: a RGB image is not an index mask"):
        load_segmentation_data(root)


def test_exif_rotated_images_accept_stored_or_upright_masks(tmp_path: Path, helpers) -> None:
    root = mask_folder(tmp_path / "d", {"a": blocks(1)})
    (root / "images" / "a.png").unlink()
    helpers.write_exif_rotated(root / "images" / "a.jpg", orientation=6)   # stored 64x48, displayed 48x64
    for mask_size in ((64, 48), (48, 64)):
        Image.fromarray(np.zeros(mask_size[::-1], np.uint8)).save(root / "masks" / "a.png")
        assert len(load_segmentation_data(root, val_fraction=0).train.items) == 1
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(root / "masks" / "a.png")
    with pytest.raises(AnnotationError, match=r"mask is 50x50 .* is 64x48 \(48x64 as displayed after its EXIF"):
        load_segmentation_data(root)


def test_check_segmentation_set_reports_values_outside_the_classes(tmp_path: Path) -> None:
    root = mask_folder(tmp_path / "d", {"a": blocks(1), "b": blocks(7), "c": blocks(255)})
    data = load_segmentation_data(root, val_fraction=0)
    problems = check_segmentation_set(data.train)
    assert len(problems) == 1 and "masks/b.png: mask values [7] are outside the 3 classes" in problems[0]
    assert check_segmentation_set(data.train, limit=1) == []          # 255 in c is ignore, not a problem


def voc_root(root: Path, names: list[str], sets: dict[str, list[str]]) -> Path:
    for name in names:
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 6)).save(root / "JPEGImages" / f"{name}.jpg")
        mask = np.zeros((6, 8), np.uint8)
        mask[1:5, 1:5], mask[1:5, 5] = 15, 255                # a person with a void border
        write_palette_mask(root / "SegmentationClass" / f"{name}.png", mask)
    for image_set, listed in sets.items():
        (root / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Segmentation" / f"{image_set}.txt").write_text("".join(f"{n}\n" for n in listed))
    return root


def test_voc_roots_and_devkits(tmp_path: Path) -> None:
    names = [f"2007_00000{i}" for i in range(5)]
    root = voc_root(tmp_path / "VOCdevkit" / "VOC2012", names, {"trainval": names})
    data = load_segmentation_data(tmp_path / "VOCdevkit", split_seed=1, val_fraction=0.2)
    assert data.classes == ["background", *VOC_CLASSES] and data.colours[15] == (192, 128, 128)
    assert data.source.startswith(f"VOC {root} (trainval) (val: 1 of its images")
    labels = load_label_mask(data.train, data.train.items[0])
    assert labels[2, 2] == 15 and labels[2, 5] == 255
    voc_root(tmp_path / "VOCdevkit" / "VOC2007", names[:1], {"train": names[:1]})
    with pytest.raises(ValueError, match="several VOC folders"):
        load_segmentation_data(tmp_path / "VOCdevkit")
    (root / "ImageSets" / "Segmentation" / "trainval.txt").write_text(f"{names[0]}\n\nmissing_one\n")
    with pytest.raises(AnnotationError, match=r"trainval.txt:3: missing_one: no image JPEGImages/missing_one.jpg"):
        load_segmentation_data(root)


def coco_file(path: Path, segmentations: list[object], categories: list[str]) -> Path:
    Image.new("RGB", (10, 8)).save(path.parent / "a.png")
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 8}],
            "annotations": [{"id": k + 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "iscrowd": 0,
                             **({"segmentation": s} if s is not None else {})} for k, s in enumerate(segmentations)],
            "categories": [{"id": k + 1, "name": name} for k, name in enumerate(categories)]}
    path.write_text(json.dumps(data))
    return path


def test_coco_files_and_their_errors(tmp_path: Path) -> None:
    square = [[1.0, 1.0, 4.0, 1.0, 4.0, 4.0, 1.0, 4.0]]
    path = coco_file(tmp_path / "a.json", [square], ["cat", "dog"])
    data = load_segmentation_data(path, val_fraction=0)
    assert data.classes == ["background", "cat", "dog"] and data.train.items[0].annotation is not None
    assert int(load_label_mask(data.train, data.train.items[0]).sum()) == 9
    coco_file(tmp_path / "a.json", [square, None], ["cat", "dog"])
    with pytest.raises(AnnotationError, match=r"a.png: object 1 \(cat\) has no segmentation"):
        load_segmentation_data(path)
    coco_file(tmp_path / "b.json", [square], ["cat"])
    coco_file(tmp_path / "a.json", [square], ["cat", "dog"])
    (tmp_path / "two.yaml").write_text("format: coco\ntrain: a.json\nval: b.json\n")
    with pytest.raises(AnnotationError, match=r"the val split's classes \['background', 'cat'\] differ"):
        load_segmentation_data(tmp_path / "two.yaml")


def test_ultralytics_yolo_seg_folder(tmp_path: Path) -> None:
    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
        Image.new("RGB", (10, 10)).save(tmp_path / "images" / split / "a.png")
        (tmp_path / "labels" / split / "a.txt").write_text("1 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5\n")
    (tmp_path / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {0: cat, 1: dog}\n")
    data = load_segmentation_data(tmp_path)
    assert data.source == f"Ultralytics YOLO-seg dataset {tmp_path / 'data.yaml'}"
    assert data.classes == ["background", "cat", "dog"] and len(data.val.items) == 1
    labels = load_label_mask(data.val, data.val.items[0])
    assert labels[1:5, 1:5].tolist() == [[2] * 4] * 4 and int((labels == 2).sum()) == 16


def test_our_yaml_masks_with_names_colours_ignore_and_id_map(tmp_path: Path, helpers) -> None:
    stored = np.array([[0, 38, 75, 200]], np.uint8)        # non-contiguous stored values; 200 not listed
    mask_folder(tmp_path / "d", {"train/a": stored, "val/b": stored}, classes=None)
    (tmp_path / "d" / "seg.yaml").write_text(
        "format: masks\nnames: {0: bg, 1: cat, 2: dog}\ncolors: [[0, 0, 0], [9, 9, 9], [8, 8, 8]]\n"
        "ignore_index: 254\nid_map: {0: 0, 38: 1, 75: 2, 100: ignore}\n"
        "train: {images: images/train, masks: masks/train}\nval: {images: images/val, masks: masks/val}\n"
        "test: {images: images/test, masks: masks/test}\n")
    before = helpers.digest_tree(tmp_path / "d")
    data = load_segmentation_data(tmp_path / "d" / "seg.yaml")
    assert data.classes == ["bg", "cat", "dog"] and data.colours[1] == (9, 9, 9) and data.val.ignore_index == 254
    assert load_label_mask(data.val, data.val.items[0]).tolist() == [[0, 1, 2, 254]]
    assert helpers.digest_tree(tmp_path / "d") == before


@pytest.mark.parametrize("text, message", [
    ("format: masks\nnames: [bg, a]\nextra: 1\ntrain: {images: i, masks: m}\n", r"unknown key 'extra'"),
    ("format: masks\nnames: [bg, a]\ntrain: {images: i, masks: m, labels: l}\n", r"train: unknown key 'labels'"),
    ("format: masks\nnames: [bg, a]\ntrain: images\n", r"train: expected a mapping with 'images' and 'masks'"),
    ("format: png\ntrain: x\n", r"format: expected one of masks, voc, coco, yolo-seg, cityscapes, found 'png'"),
    ("format: masks\ntrain: {images: i, masks: m}\n", r"a masks dataset needs 'names'"),
    ("format: masks\nnames: [bg, a]\n", r"no 'train' entry"),
    ("format: masks\nnames: [bg, a, a]\ntrain: {images: i, masks: m}\n", r"names: class name 'a' appears twice"),
    ("format: masks\nnames: {0: bg, 2: a}\ntrain: {images: i, masks: m}\n", r"names: class ids must be 0..1"),
    ("format: masks\nnames: [bg, a]\ncolors: [[0, 0, 0]]\ntrain: {images: i, masks: m}\n",
     r"colors: expected a list of 2 \[r, g, b\] colours"),
    ("format: masks\nnames: [bg, a]\ncolors: [[0, 0, 0], [0, 0, 256]]\ntrain: {images: i, masks: m}\n",
     r"colors\[1\]: expected \[r, g, b\] with integers in 0..255"),
    ("format: masks\nnames: [bg, a]\nignore_index: 1\ntrain: {images: i, masks: m}\n",
     r"ignore_index: expected an integer in 2..255 \(not a class index\), found 1"),
    ("format: masks\nnames: [bg, a]\nid_map: {3: 2}\ntrain: {images: i, masks: m}\n",
     r"id_map.3: 2 is neither a class index 0..1 nor 'ignore' \(255\)"),
    ("format: masks\nnames: [bg, a]\nid_map: {70000: 1}\ntrain: {images: i, masks: m}\n",
     r"id_map: key 70000 is not a mask value in 0..65535"),
    ("format: coco\nid_map: {1: 1}\ntrain: x.json\n", r"id_map: applies to mask files only"),
    ("format: masks\nnames: [bg, a]\ntrain: {images: i, masks: m\n", r"malformed YAML at line"),
])
def test_our_yaml_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    for folder in ("i", "m"):
        (tmp_path / folder).mkdir()
        Image.fromarray(blocks(1)).save(tmp_path / folder / "a.png")
    (tmp_path / "spec.yaml").write_text(text)
    with pytest.raises(AnnotationError, match=message) as error:
        load_segmentation_data(tmp_path / "spec.yaml")
    assert str(tmp_path / "spec.yaml") in str(error.value)
