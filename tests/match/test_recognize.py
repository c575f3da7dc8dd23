"""Recognising registered objects: pasted into a photo at known homographies, in OpenCV's real sample pairs,
and nowhere in unrelated photos."""
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from ninshiki.match.database import ObjectDatabase
from ninshiki.match.features import image_outline
from ninshiki.match.geometry import project
from ninshiki.match.recognize import draw_matches, draw_recognitions, find
from ninshiki.match.sift import SiftExtractor
from ninshiki.viz.detections import class_color

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
EXTRACTOR = SiftExtractor(max_features=1000)


def gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def paste(scene: np.ndarray, image: np.ndarray, corners: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Warp `image` so that its outline lands on `corners`; returns the new scene and the homography."""
    matrix = cv2.getPerspectiveTransform(image_outline(*image.shape).astype(np.float32), np.float32(corners))
    size = scene.shape[::-1]
    warped = cv2.warpPerspective(image, matrix, size, flags=cv2.INTER_LINEAR)
    inside = cv2.warpPerspective(np.full(image.shape, 255, np.uint8), matrix, size) > 127
    return np.where(inside, warped, scene), matrix


@pytest.fixture(scope="module")
def objects() -> dict[str, np.ndarray]:
    return {"cat": gray(skimage.data.chelsea())[40:260, 80:360], "cup": gray(skimage.data.coffee())[60:330, 120:480]}


@pytest.fixture(scope="module")
def database(objects) -> ObjectDatabase:
    db = ObjectDatabase()
    for name, image in objects.items():
        db.register(name, image, extractor=EXTRACTOR)
    return db


@pytest.fixture(scope="module")
def scene(objects) -> tuple[np.ndarray, dict[str, list[np.ndarray]]]:
    """The astronaut photo with the cat pasted twice (perspective views) and the cup once."""
    photo = gray(skimage.data.astronaut())                                       # (512, 512)
    photo, cat = paste(photo, objects["cat"], [[60, 80], [300, 50], [320, 260], [40, 240]])
    photo, cup = paste(photo, objects["cup"], [[330, 300], [500, 320], [490, 480], [320, 470]])
    photo, small_cat = paste(photo, objects["cat"], [[350, 40], [480, 70], [470, 200], [340, 190]])
    return photo, {"cat": [cat, small_cat], "cup": [cup]}


@pytest.fixture(scope="module")
def found(database, scene):
    return find(database, scene[0], extractor=EXTRACTOR)


def test_every_pasted_instance_is_found_at_its_homography(found, scene, objects):
    _, truth = scene
    assert sorted(r.name for r in found) == ["cat", "cat", "cup"]
    for name, matrices in truth.items():
        outlines = [r.outline for r in found if r.name == name]
        for matrix in matrices:
            expected = project(matrix, image_outline(*objects[name].shape))
            error = min(np.abs(outline - expected).max() for outline in outlines)
            assert error <= 2.0, f"{name}: outline corners {error:.2f} px from the truth"
    for r in found:
        assert r.inliers >= 25 and 0 < r.score <= 1 and r.label == ["cat", "cup"].index(r.name)
        assert r.reference_xy.shape == r.scene_xy.shape == (r.inliers, 2)
        residual = np.linalg.norm(project(r.homography, r.reference_xy) - r.scene_xy, axis=1)
        assert residual.max() < 4.0                                              # the RANSAC threshold
    assert [r.inliers for r in found] == sorted((r.inliers for r in found), reverse=True)


@pytest.mark.parametrize("photo", ["brick", "camera", "grass"])
def test_unrelated_photos_give_nothing(database, photo):
    image = getattr(skimage.data, photo)()
    assert find(database, image, extractor=EXTRACTOR) == []


def test_affine_model_and_a_colour_tensor_scene(objects):
    db = ObjectDatabase()
    db.register("cat", objects["cat"], extractor=EXTRACTOR)
    corners = [[100, 120], [380, 60], [420, 280], [140, 340]]                   # a parallelogram: affine
    photo, _ = paste(gray(skimage.data.astronaut()), objects["cat"], corners)
    tensor = torch.from_numpy(np.repeat(photo[None], 3, axis=0))                 # (3, H, W) uint8
    (result,) = find(db, tensor, extractor=EXTRACTOR, model="affine")
    np.testing.assert_allclose(result.homography[2], [0, 0, 1])
    assert np.abs(result.outline - np.float32(corners)).max() <= 2.0


def test_empty_database_and_blank_scene(database, scene):
    assert find(ObjectDatabase(), scene[0], extractor=EXTRACTOR) == []
    assert find(database, np.full((100, 120), 77, np.uint8), extractor=EXTRACTOR) == []


def test_descriptor_kind_must_match(database, scene):
    with pytest.raises(ValueError, match="holds sift descriptors; the extractor gives rootsift"):
        find(database, scene[0], extractor=SiftExtractor(root=True))


def test_pictures(database, scene, found, objects, tmp_path):
    picture = draw_recognitions(scene[0], found, tmp_path / "found.png")
    assert picture.shape == (512, 512, 3)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "found.png")), picture)
    cup = next(r for r in found if r.name == "cup")
    x, y = np.round(cup.outline[[0, 1]].mean(axis=0)).astype(int)               # the middle of the top side
    assert tuple(picture[y, x]) == class_color(cup.label)
    pairs = draw_matches(objects["cup"], scene[0], cup.reference_xy, cup.scene_xy, tmp_path / "m.png",
                         outline=cup.outline)
    assert pairs.shape == (512, 360 + 512, 3) and (tmp_path / "m.png").is_file()
    assert not np.array_equal(pairs[:270, :360], np.repeat(objects["cup"][..., None], 3, axis=2))   # lines drawn


needs_opencv_data = pytest.mark.skipif(not OPENCV_DATA.is_dir(), reason=f"OpenCV sample images not in {OPENCV_DATA}")


@needs_opencv_data
def test_box_is_found_in_box_in_scene():
    db = ObjectDatabase()
    db.register("box", OPENCV_DATA / "box.png", extractor=EXTRACTOR)
    results = find(db, OPENCV_DATA / "box_in_scene.png", extractor=EXTRACTOR)
    assert [r.name for r in results] == ["box"] and results[0].inliers >= 40
    # the box's corners, read off the drawn result and checked by eye against the photo
    corners = [[119, 161], [285, 175], [268, 298], [89, 272]]
    assert np.abs(results[0].outline - corners).max() <= 5


@needs_opencv_data
def test_graffiti_viewpoint_change_matches_the_published_homography():
    """graf1 -> graf3 (Mikolajczyk's viewpoint set) at half size, against H1to3p shipped with it."""
    matrix = np.array(ET.parse(OPENCV_DATA / "H1to3p.xml").getroot().find("H13/data").text.split(), float)
    shrink = np.array([[0.5, 0, -0.25], [0, 0.5, -0.25], [0, 0, 1]])            # pixel centres: x' = (x + .5) / 2 - .5
    truth = shrink @ matrix.reshape(3, 3) @ np.linalg.inv(shrink)
    first, third = (cv2.resize(cv2.imread(str(OPENCV_DATA / f"graf{i}.png"), cv2.IMREAD_GRAYSCALE), (400, 320),
                               interpolation=cv2.INTER_AREA) for i in (1, 3))
    db = ObjectDatabase()
    db.register("graffiti", first, extractor=EXTRACTOR)
    (result,) = find(db, third, extractor=EXTRACTOR)
    ys, xs = np.mgrid[0:320:8, 0:400:8]
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(float)            # (N, 2) a grid on graf1
    expected = project(truth, points)
    seen = np.all((expected >= 0) & (expected < [400, 320]), axis=1)             # where graf3 shows them
    error = np.linalg.norm(project(result.homography, points[seen]) - expected[seen], axis=1)
    assert result.inliers >= 100 and error.mean() < 1.5 and error.max() < 4.0
