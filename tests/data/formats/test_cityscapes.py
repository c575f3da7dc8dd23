"""Cityscapes: the official labelId -> trainId map, and a tiny fake tree read as the real layout."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ninshiki.data.annotations import AnnotationError
from ninshiki.data.formats.cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_COLOURS, cityscapes_id_map, read_cityscapes
from ninshiki.data.formats.masks import read_index_mask
from ninshiki.data.segmentation.convert import convert_segmentation
from ninshiki.data.segmentation.types import load_label_mask
from ninshiki.data.segmentation_data import check_segmentation_set, load_segmentation_data

# (labelId, name, trainId) of every label, copied from cityscapesScripts/cityscapesscripts/helpers/labels.py.
OFFICIAL = [(0, "unlabeled", 255), (1, "ego vehicle", 255), (2, "rectification border", 255),
            (3, "out of roi", 255), (4, "static", 255), (5, "dynamic", 255), (6, "ground", 255), (7, "road", 0),
            (8, "sidewalk", 1), (9, "parking", 255), (10, "rail track", 255), (11, "building", 2), (12, "wall", 3),
            (13, "fence", 4), (14, "guard rail", 255), (15, "bridge", 255), (16, "tunnel", 255), (17, "pole", 5),
            (18, "polegroup", 255), (19, "traffic light", 6), (20, "traffic sign", 7), (21, "vegetation", 8),
            (22, "terrain", 9), (23, "sky", 10), (24, "person", 11), (25, "rider", 12), (26, "car", 13),
            (27, "truck", 14), (28, "bus", 15), (29, "caravan", 255), (30, "trailer", 255), (31, "train", 16),
            (32, "motorcycle", 17), (33, "bicycle", 18)]


def test_the_official_id_map_names_and_colours() -> None:
    table = cityscapes_id_map()
    assert table.shape == (65536,) and table.dtype == np.uint8
    for label_id, name, train_id in OFFICIAL:
        assert table[label_id] == train_id, name
        if train_id != 255:
            assert CITYSCAPES_CLASSES[train_id] == name
    assert (table[34:] == 255).all()
    assert len(CITYSCAPES_CLASSES) == len(CITYSCAPES_COLOURS) == 19
    assert CITYSCAPES_COLOURS[0] == (128, 64, 128) and CITYSCAPES_COLOURS[13] == (0, 0, 142)   # road, car


def fake_tree(root: Path, splits: dict[str, dict[str, list[str]]], size: tuple[int, int] = (16, 8)) -> Path:
    """root/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png and gtFine/..._gtFine_labelIds.png (+ distractors).

    Each labelIds image holds label ids 0..33 in a row-major sweep, so every id appears.
    """
    ids = (np.arange(size[0] * size[1]) % 34).reshape(size[1], size[0]).astype(np.uint8)
    for split, cities in splits.items():
        for city, names in cities.items():
            for name in names:
                image = root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png"
                label = root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png"
                for path in (image, label):
                    path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", size, (90, 90, 90)).save(image)
                Image.fromarray(ids).save(label)
                Image.new("RGB", size).save(label.parent / f"{name}_gtFine_color.png")
                Image.fromarray(ids.astype(np.uint16) * 1000).save(label.parent / f"{name}_gtFine_instanceIds.png")
    return root


def test_read_a_fake_tree_and_map_its_ids(tmp_path: Path, helpers) -> None:
    root = fake_tree(tmp_path / "cs", {"train": {"aachen": ["aachen_000000_000019", "aachen_000001_000019"],
                                                 "bochum": ["bochum_000000_000313"]},
                                       "val": {"lindau": ["lindau_000000_000019"]}})
    before = helpers.digest_tree(root)
    ds = read_cityscapes(root, "train")
    assert [item.file.as_posix() for item in ds.items] == [
        "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png",
        "leftImg8bit/train/aachen/aachen_000001_000019_leftImg8bit.png",
        "leftImg8bit/train/bochum/bochum_000000_000313_leftImg8bit.png"]
    assert ds.items[0].mask.as_posix() == "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"
    assert ds.classes == list(CITYSCAPES_CLASSES) and ds.ignore_index == 255
    labels = load_label_mask(ds, ds.items[0], image_size=(8, 16))
    stored = np.asarray(Image.open(ds.mask_path(ds.items[0])))
    np.testing.assert_array_equal(labels, cityscapes_id_map()[stored])
    assert labels[0, 7] == 0 and labels[1, 26 - 16] == 13 and labels[0, 0] == 255   # road, car, unlabeled

    data = load_segmentation_data(root)
    assert data.source == f"Cityscapes {root}" and len(data.train.items) == 3 and len(data.val.items) == 1
    assert data.colours == [tuple(c) for c in CITYSCAPES_COLOURS]
    assert "id_map maps 19 stored values to classes, the rest to ignore" in data.summary()
    assert check_segmentation_set(data.train) == []
    assert helpers.digest_tree(root) == before


def test_missing_labels_and_folders(tmp_path: Path) -> None:
    root = fake_tree(tmp_path / "cs", {"train": {"ulm": ["ulm_000000_000019", "ulm_000001_000019"]}})
    (root / "gtFine" / "train" / "ulm" / "ulm_000001_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(AnnotationError, match=r"ulm_000001_000019_leftImg8bit.png: no label file "
                                              r".*gtFine/train/ulm/ulm_000001_000019_gtFine_labelIds.png"):
        read_cityscapes(root, "train")
    with pytest.raises(FileNotFoundError, match=r"leftImg8bit/val: no such folder"):
        read_cityscapes(root, "val")


def test_our_yaml_can_replace_the_id_map(tmp_path: Path) -> None:
    root = fake_tree(tmp_path / "cs", {"train": {"ulm": ["ulm_000000_000019"]}})
    (tmp_path / "flat.yaml").write_text("format: cityscapes\nnames: [flat, vehicle]\nignore_index: 250\n"
                                        "id_map: {7: 0, 8: 0, 26: 1, 27: 1, 28: 1}\ntrain: cs\n")
    data = load_segmentation_data(tmp_path / "flat.yaml", val_fraction=0)
    labels = load_label_mask(data.train, data.train.items[0])
    stored = np.asarray(Image.open(data.train.mask_path(data.train.items[0])))
    assert sorted(np.unique(labels).tolist()) == [0, 1, 250]
    np.testing.assert_array_equal(labels == 1, np.isin(stored, [26, 27, 28]))
    np.testing.assert_array_equal(labels == 250, ~np.isin(stored, [7, 8, 26, 27, 28]))
    (tmp_path / "bad.yaml").write_text("format: cityscapes\nnames: [flat, vehicle]\ntrain: {root: cs, split: train}\n")
    with pytest.raises(AnnotationError, match=r"bad.yaml: names: the Cityscapes id map gives 19 classes, found 2"):
        load_segmentation_data(tmp_path / "bad.yaml")
    assert root.is_dir()


def test_converted_to_masks_it_holds_train_ids(tmp_path: Path) -> None:
    root = fake_tree(tmp_path / "cs", {"train": {"ulm": ["ulm_000000_000019"]}, "val": {"ulm": ["ulm_000001_000019"]}})
    out = convert_segmentation(root, tmp_path / "masks", to="masks")
    stored = np.asarray(Image.open(root / "gtFine" / "val" / "ulm" / "ulm_000001_000019_gtFine_labelIds.png"))
    np.testing.assert_array_equal(read_index_mask(out / "masks" / "val" / "ulm_000001_000019_leftImg8bit.png"),
                                  cityscapes_id_map()[stored])
    data = load_segmentation_data(out)
    assert data.classes == list(CITYSCAPES_CLASSES) and data.colours[0] == (128, 64, 128) and data.train.id_map is None
