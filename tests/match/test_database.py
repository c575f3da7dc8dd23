"""The object database: registering views, saving and loading, and the errors for bad files."""
import json

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from ninshiki.match.database import RECORD_KEY, ObjectDatabase
from ninshiki.match.features import image_outline
from ninshiki.match.sift import SiftExtractor

EXTRACTOR = SiftExtractor(max_features=150)


@pytest.fixture(scope="module")
def objects() -> dict[str, np.ndarray]:
    cat = cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2GRAY)[40:200, 100:300]      # (160, 200)
    cup = cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2GRAY)[60:260, 150:400]      # (200, 250)
    return {"cat": cat, "cup": cup}


@pytest.fixture(scope="module")
def database(objects, tmp_path_factory) -> ObjectDatabase:
    folder = tmp_path_factory.mktemp("views")
    Image.fromarray(objects["cup"]).save(folder / "cup.png")
    db = ObjectDatabase()
    assert db.register("cat", objects["cat"], extractor=EXTRACTOR) == 0
    assert db.register("cup", folder / "cup.png", extractor=EXTRACTOR) == 1
    side_view = torch.from_numpy(np.ascontiguousarray(objects["cat"][:, ::-1]))[None]   # (1, H, W) tensor
    assert db.register("cat", [side_view], extractor=EXTRACTOR) == 0                   # a second view
    return db


def test_register_keeps_features_outlines_and_labels(database, objects):
    assert database.names == ["cat", "cup"] and len(database) == 2
    assert [r.label for r in database.references] == [0, 1, 0]
    assert database.descriptor == "sift" and database.extractor_config == EXTRACTOR.config()
    cat = database.references[0]
    assert cat.size == (160, 200) and cat.source == ""
    np.testing.assert_array_equal(cat.outline, image_outline(160, 200))
    np.testing.assert_allclose(cat.centre, [99.5, 79.5])
    assert 100 <= len(cat.features) <= 160 and cat.features.dim == 128
    np.testing.assert_array_equal(cat.features.descriptors, EXTRACTOR.extract(objects["cat"]).descriptors)
    assert database.references[1].source.endswith("cup.png")


def test_save_load_round_trip(database, tmp_path):
    path = database.save(tmp_path / "objects.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["objects.db"]         # no temporary file left behind
    loaded = ObjectDatabase.load(path)
    assert loaded.names == database.names and loaded.descriptor == database.descriptor
    assert loaded.extractor_config == database.extractor_config
    assert len(loaded.references) == len(database.references)
    for got, want in zip(loaded.references, database.references):
        assert (got.label, got.size, got.source) == (want.label, want.size, want.source)
        np.testing.assert_array_equal(got.outline, want.outline)
        for field in ("xy", "scale", "angle", "response", "descriptors"):
            np.testing.assert_array_equal(getattr(got.features, field), getattr(want.features, field))


def test_empty_database_round_trip(tmp_path):
    loaded = ObjectDatabase.load(ObjectDatabase().save(tmp_path / "empty.db"))
    assert loaded.names == [] and loaded.references == [] and loaded.descriptor is None


def test_registration_errors(objects, tmp_path):
    db = ObjectDatabase()
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((50, 60), 90, np.uint8)).save(blank)
    with pytest.raises(ValueError, match=r"blank\.png: 0 keypoints"):
        db.register("wall", blank, extractor=EXTRACTOR)
    with pytest.raises(ValueError, match="image 0 of 'wall'"):
        db.register("wall", np.zeros((40, 40), np.uint8), extractor=EXTRACTOR)
    with pytest.raises(ValueError, match="no such file"):
        db.register("ghost", tmp_path / "missing.png", extractor=EXTRACTOR)
    with pytest.raises(ValueError, match="no images"):
        db.register("cat", [], extractor=EXTRACTOR)
    assert db.names == []                                       # failed registrations add nothing
    db.register("cat", objects["cat"], extractor=EXTRACTOR)
    with pytest.raises(ValueError, match="holds sift descriptors"):
        db.register("cup", objects["cup"], extractor=SiftExtractor(root=True))


def saved_parts(database, tmp_path):
    path = database.save(tmp_path / "good.db")
    data = path.read_bytes()   # safetensors: an 8-byte header length, then the JSON header with the metadata
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    return load_file(str(path)), json.loads(header["__metadata__"][RECORD_KEY])


@pytest.mark.parametrize("change, message", [
    (lambda t, r: r.update(format_version=99), "format_version 99"),
    (lambda t, r: r.pop("names"), "missing 'names'"),
    (lambda t, r: t.pop("descriptors"), "missing 'descriptors'"),
    (lambda t, r: t.update(outlines=t["outlines"][:1]), "tensor 'outlines' has shape"),
    (lambda t, r: t.update(scale=t["scale"][:-1]), "LocalFeatures.scale"),
    (lambda t, r: t.update(labels=t["labels"] + 5), "'labels' has values outside"),
    (lambda t, r: t.update(feature_reference=t["feature_reference"].flip(0)), "'feature_reference' is not a sorted"),
    (lambda t, r: r.update(descriptor_dim=64), "the record says 64"),
])
def test_corrupt_database_files_name_the_file_and_the_field(database, tmp_path, change, message):
    tensors, record = saved_parts(database, tmp_path)
    change(tensors, record)
    bad = tmp_path / "bad.db"
    save_file(tensors, str(bad), metadata={RECORD_KEY: json.dumps(record)})
    with pytest.raises(ValueError, match=message) as error:
        ObjectDatabase.load(bad)
    assert str(bad) in str(error.value)


def test_foreign_and_damaged_files(database, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.db"):
        ObjectDatabase.load(tmp_path / "missing.db")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00\x01 not safetensors at all")
    with pytest.raises(ValueError, match="garbage.db: not a readable safetensors file"):
        ObjectDatabase.load(garbage)
    weights = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(weights), metadata={"ninshiki": "{}"})
    with pytest.raises(ValueError, match="weights.safetensors: not a ninshiki object database"):
        ObjectDatabase.load(weights)
    broken = tmp_path / "broken.db"
    save_file({"w": torch.zeros(2)}, str(broken), metadata={RECORD_KEY: "{not json"})
    with pytest.raises(ValueError, match="broken.db: corrupt object database record"):
        ObjectDatabase.load(broken)
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(database.save(tmp_path / "whole.db").read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated.db: not a readable safetensors file"):
        ObjectDatabase.load(truncated)
