"""LiftExtractor and its patch sampler: patches equal a direct bilinear reference at any scale and angle and
follow the angle convention under quarter turns; features have SIFT's conventions and work with `find`."""
import cv2
import numpy as np
import pytest
import skimage.data
import torch

from ninshiki.match.database import ObjectDatabase
from ninshiki.match.features import FeatureExtractor, LocalFeatures, image_outline
from ninshiki.match.geometry import project
from ninshiki.match.recognize import find
from ninshiki.models.match.lift import LIFT, lift
from ninshiki.models.match.lift_extractor import LiftExtractor
from ninshiki.models.match.lift_patches import PYRAMID_STEP, build_pyramid, patch_grid, pyramid_level, sample_patches


@pytest.fixture(scope="module")
def model() -> LIFT:
    torch.manual_seed(0)
    return lift().eval()


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return skimage.data.camera()[100:260, 150:310].copy()                          # (160, 160) uint8


def bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The obviously correct reference: bilinear interpolation, zero outside the image."""
    padded = np.pad(image.astype(np.float64), 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    def at(r, c):
        r, c = np.clip(r + 1, 0, padded.shape[0] - 1), np.clip(c + 1, 0, padded.shape[1] - 1)
        return padded[r, c]
    return ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
            + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))


def test_level_zero_patches_equal_a_rotated_bilinear_crop(camera) -> None:
    image = camera.astype(np.float32) / 255
    xy = np.array([[80.0, 70.0], [40.3, 100.7], [120.0, 30.0]])
    angle = np.array([0.0, 37.0, -120.0])
    diameter = np.array([32.0, 36.0, 28.0])                                      # all sampled from level 0
    pyramid = build_pyramid(torch.from_numpy(image)[None, None], max_diameter=36, patch_size=32)
    patches = sample_patches(pyramid, torch.from_numpy(xy).float(), torch.from_numpy(diameter).float(),
                             torch.from_numpy(angle).float(), patch_size=32)[:, 0].numpy()
    for k in range(3):
        u = (np.arange(32) - 15.5) / 32 * diameter[k]
        uu, vv = np.meshgrid(u, u)                                               # uu along columns
        a = np.radians(angle[k])
        x = xy[k, 0] + np.cos(a) * uu - np.sin(a) * vv
        y = xy[k, 1] + np.sin(a) * uu + np.cos(a) * vv
        np.testing.assert_allclose(patches[k], bilinear(image, x, y), atol=2e-5)


def test_large_patches_come_from_the_matching_pyramid_level(camera) -> None:
    image = torch.from_numpy(camera).float()[None, None] / 255
    pyramid = build_pyramid(image, max_diameter=128, patch_size=32)
    assert len(pyramid.levels) == 5 and pyramid.levels[4].shape[-2:] == (40, 40)
    diameter = torch.tensor([32.0, 45.0, 64.0, 128.0, 500.0])
    assert pyramid_level(diameter, 32, len(pyramid.levels)).tolist() == [0, 1, 2, 4, 4]
    # at level 2 (half size) a 64-pixel patch samples the half-size image one pixel per sample, unrotated
    patch = sample_patches(pyramid, torch.tensor([[79.5, 79.5]]), torch.tensor([64.0]), torch.tensor([0.0]),
                           patch_size=32)[0, 0]
    torch.testing.assert_close(patch, pyramid.levels[2][0, 0, 24:56, 24:56], atol=1e-5, rtol=0)
    assert abs(PYRAMID_STEP ** 2 - 0.5) < 1e-12


def test_patch_grid_follows_the_angle_convention() -> None:
    grid = patch_grid(torch.tensor([[10.0, 20.0]]), torch.tensor([4.0]), torch.tensor([90.0]), 2)[0]
    # samples at offsets +-1 along the patch's x axis, which angle 90 turns onto the image's +y (downwards)
    torch.testing.assert_close(grid[0, 1] - grid[0, 0], torch.tensor([0.0, 2.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(grid[1, 0] - grid[0, 0], torch.tensor([-2.0, 0.0]), atol=1e-6, rtol=0)


def quarter_turn(features: LocalFeatures, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Where np.rot90 (counter-clockwise on screen, -90 degrees in x right / y down) moves keypoints."""
    x, y = features.xy[:, 0], features.xy[:, 1]
    return np.stack([y, width - 1 - x], axis=1), (features.angle - 90) % 360


def test_descriptors_are_the_same_after_a_quarter_turn(model, camera) -> None:
    extractor = LiftExtractor(model, max_features=60)
    features = extractor.extract(camera)
    xy, angle = quarter_turn(features, camera.shape[1])
    turned = LocalFeatures(xy, features.scale, angle, features.response, np.zeros((len(xy), 0)))
    again = extractor.describe(np.ascontiguousarray(np.rot90(camera)), turned)
    np.testing.assert_allclose(again.descriptors, features.descriptors, atol=1e-4)


def test_keypoints_turn_with_the_image(model, camera) -> None:
    extractor = LiftExtractor(model, max_features=150)
    found = extractor.detect(camera)
    turned = extractor.detect(np.ascontiguousarray(np.rot90(camera)))
    expected, _ = quarter_turn(found, camera.shape[1])
    distance = np.linalg.norm(expected[:, None] - turned.xy[None], axis=-1)     # (N, M)
    nearest = distance.argmin(axis=1)
    close = distance.min(axis=1) < 1.0
    assert close.mean() > 0.9
    np.testing.assert_allclose(turned.scale[nearest[close]], found.scale[close])


def test_features_have_sift_conventions(model, camera) -> None:
    extractor = LiftExtractor(model, max_features=100)
    assert isinstance(extractor, FeatureExtractor)
    assert extractor.name == "lift" and extractor.descriptor_dim == 128 and extractor.patch_size == 32
    features = extractor.extract(camera)
    assert 50 <= len(features) <= 100
    for name, shape in (("xy", (len(features), 2)), ("scale", (len(features),)), ("angle", (len(features),)),
                        ("descriptors", (len(features), 128))):
        value = getattr(features, name)
        assert value.shape == shape and value.dtype == np.float32, name
    assert np.all(np.diff(features.response) <= 0)
    assert np.all((features.angle >= 0) & (features.angle < 360))
    np.testing.assert_allclose(np.linalg.norm(features.descriptors, axis=1), 1, atol=1e-5)
    nominal = 32 / np.array(extractor.scales)                                    # levels' sizes are rounded
    assert np.all(np.abs(features.scale[:, None] / nominal[None] - 1).min(axis=1) < 0.01)
    margin = 7 - 0.5                                                              # DET's half kernel, sub-pixel step
    assert np.all((features.xy >= margin) & (features.xy <= 159 - margin))
    assert extractor.config()["max_features"] == 100 and "LiftExtractor(" in repr(extractor)


def test_blank_and_tiny_images_give_no_features(model) -> None:
    extractor = LiftExtractor(model)
    for image in (np.full((64, 80), 128, np.uint8), np.zeros((10, 12), np.uint8)):
        features = extractor.extract(image)
        assert len(features) == 0 and features.descriptors.shape == (0, 128)
    strong = LiftExtractor(model, min_score=1e6).extract(skimage.data.camera()[:96, :96])
    assert len(strong) == 0


def test_bad_input_is_refused(model) -> None:
    with pytest.raises(ValueError, match=r"\(H, W\) uint8"):
        LiftExtractor(model).extract(np.zeros((32, 32), np.float32))
    with pytest.raises(ValueError, match="scales"):
        LiftExtractor(model, scales=(1.0, 2.0))
    with pytest.raises(ValueError, match="max_features"):
        LiftExtractor(model, max_features=0)


def test_find_recognises_a_pasted_object_with_lift_features(model) -> None:
    gray = cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2GRAY)[60:330:2, 120:480:2].copy()     # (135, 180)
    scene = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)[::2, ::2].copy()             # (256, 256)
    corners = np.float32([[40, 50], [200, 40], [210, 170], [30, 160]])
    matrix = cv2.getPerspectiveTransform(image_outline(*gray.shape).astype(np.float32), corners)
    warped = cv2.warpPerspective(gray, matrix, scene.shape[::-1])
    inside = cv2.warpPerspective(np.full(gray.shape, 255, np.uint8), matrix, scene.shape[::-1]) > 127
    scene = np.where(inside, warped, scene)
    extractor = LiftExtractor(model, max_features=800)
    database = ObjectDatabase()
    database.register("cup", gray, extractor=extractor)
    assert database.descriptor == "lift"
    found = find(database, scene, extractor=extractor)
    assert [r.name for r in found] == ["cup"] and found[0].inliers >= 20
    assert np.abs(found[0].outline - project(matrix, image_outline(*gray.shape))).max() < 3.0
