"""SIFT / RootSIFT extraction, the LocalFeatures container and image conversion."""
import cv2
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from ninshiki.classical.sift import root_sift
from ninshiki.data.images import read_image
from ninshiki.match.features import FeatureExtractor, LocalFeatures, as_gray, image_outline
from ninshiki.match.sift import SiftExtractor, pack_octaves


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    gray = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (256, 256), interpolation=cv2.INTER_AREA)


def test_extract_shapes_order_and_values(photo):
    features = SiftExtractor(max_features=300).extract(photo)
    assert 250 <= len(features) <= 310          # OpenCV keeps ties at the cut, and repeats multi-orientation points
    assert features.xy.shape == (len(features), 2) and features.descriptors.shape == (len(features), 128)
    assert all(getattr(features, f).dtype == np.float32 for f in ("xy", "scale", "angle", "response", "descriptors"))
    assert np.all(np.diff(features.response) <= 0)                      # strongest first
    assert np.all((features.angle >= 0) & (features.angle < 360)) and np.all(features.scale > 0)
    assert np.all((features.xy >= -0.5) & (features.xy <= 255.5))
    assert np.array_equal(features.descriptors, np.round(features.descriptors))   # OpenCV's integer SIFT
    assert features.descriptors.max() <= 255


def test_rootsift_is_the_square_root_of_l1_normalised_sift(photo):
    sift = SiftExtractor(max_features=200).extract(photo)
    root = SiftExtractor(max_features=200, root=True).extract(photo)
    np.testing.assert_array_equal(root.xy, sift.xy)
    expected = np.sqrt(sift.descriptors / sift.descriptors.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(root.descriptors, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(root.descriptors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(root.descriptors, root_sift(sift.descriptors), rtol=1e-6)
    assert (SiftExtractor().name, SiftExtractor(root=True).name) == ("sift", "rootsift")


def test_describe_detected_keypoints_gives_the_one_pass_descriptors(photo):
    """`describe` rebuilds OpenCV's packed octave from the scale: it must pick the level detection used."""
    extractor = SiftExtractor(max_features=300)
    keypoints = extractor.detect(photo)
    assert keypoints.dim == 0
    described = extractor.describe(photo, keypoints)
    direct = extractor.extract(photo)
    np.testing.assert_array_equal(described.xy, direct.xy)
    np.testing.assert_array_equal(described.descriptors, direct.descriptors)


def test_pack_octaves_inverts_the_sift_size_formula():
    sigma, layers = 1.6, 3
    octave, layer = np.meshgrid(np.arange(-1, 4), np.arange(1, layers + 1), indexing="ij")
    octave, layer = octave.ravel(), layer.ravel()
    xi = np.tile([-0.45, 0.0, 0.45], len(octave) // 3 + 1)[:len(octave)]   # sub-level offsets of refined keypoints
    size = 2 * sigma * 2.0 ** (octave + (layer + xi) / layers)
    packed = pack_octaves(size, sigma=sigma, octave_layers=layers, max_octave=5)
    unpacked_octave = ((packed & 255) ^ 128) - 128                           # signed low byte
    np.testing.assert_array_equal(unpacked_octave, octave)
    np.testing.assert_array_equal((packed >> 8) & 255, layer)


def test_angles_follow_the_documented_rotation_convention(photo):
    """np.rot90 maps (x, y) to (y, W-1-x): the matrix [[cos a, -sin a], [sin a, cos a]] with a = -90, so +270."""
    extractor = SiftExtractor(max_features=300)
    before, after = extractor.extract(photo), extractor.extract(np.ascontiguousarray(np.rot90(photo)))
    moved = np.stack([before.xy[:, 1], photo.shape[1] - 1 - before.xy[:, 0]], axis=1)        # (N, 2)
    dist = np.linalg.norm(moved[:, None] - after.xy[None], axis=2)                           # (N, M)
    i, j = np.nonzero((dist < 0.5) & (np.abs(before.scale[:, None] - after.scale[None]) < 0.1))
    assert len(i) > 50
    turn = np.mod(after.angle[j] - before.angle[i] + 180, 360) - 180                         # in (-180, 180]
    assert np.median(np.abs(np.mod(turn - 270 + 180, 360) - 180)) < 3


def test_blank_and_bad_images():
    features = SiftExtractor().extract(np.full((64, 64), 128, np.uint8))
    assert len(features) == 0 and features.descriptors.shape == (0, 128)
    assert len(SiftExtractor().describe(np.zeros((32, 32), np.uint8), LocalFeatures.empty())) == 0
    with pytest.raises(ValueError, match="uint8 grayscale"):
        SiftExtractor().extract(np.zeros((32, 32), np.float32))
    with pytest.raises(ValueError, match="uint8 grayscale"):
        SiftExtractor().extract(np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="max_features"):
        SiftExtractor(max_features=0)


def test_sift_is_a_feature_extractor():
    assert isinstance(SiftExtractor(), FeatureExtractor)
    assert SiftExtractor().descriptor_dim == 128
    assert SiftExtractor(max_features=5, root=True).config()["max_features"] == 5


def test_local_features_validate_and_slice():
    features = LocalFeatures(np.arange(6).reshape(3, 2), np.ones(3), np.zeros(3), np.arange(3), np.eye(3, 4))
    assert features.xy.dtype == np.float32 and len(features) == 3 and features.dim == 4
    part = features.subset(np.array([2, 0]))
    np.testing.assert_array_equal(part.response, [2, 0])
    joined = LocalFeatures.concatenate([part, features])
    assert len(joined) == 5 and joined.dim == 4
    assert LocalFeatures.concatenate([], 7).descriptors.shape == (0, 7)
    with pytest.raises(ValueError, match="LocalFeatures.scale"):
        LocalFeatures(np.zeros((3, 2)), np.ones(2), np.zeros(3), np.zeros(3), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="LocalFeatures.xy"):
        LocalFeatures(np.zeros((3, 3)), np.ones(3), np.zeros(3), np.zeros(3), np.zeros((3, 4)))


def test_as_gray_accepts_paths_arrays_and_tensors(tmp_path):
    rgb = skimage.data.chelsea()[:40, :50]                                     # (40, 50, 3)
    Image.fromarray(rgb).save(tmp_path / "cat.png")
    expected = read_image(tmp_path / "cat.png", channels=1)[0].numpy()
    np.testing.assert_array_equal(as_gray(tmp_path / "cat.png"), expected)
    np.testing.assert_array_equal(as_gray(torch.from_numpy(rgb).permute(2, 0, 1)), expected)
    np.testing.assert_array_equal(as_gray(expected), expected)
    np.testing.assert_array_equal(as_gray(expected[None]), expected)
    with pytest.raises(ValueError, match="C in"):
        as_gray(rgb)                                                           # (H, W, 3) is ambiguous: refused
    with pytest.raises(TypeError, match="uint8"):
        as_gray(expected.astype(np.float32))


def test_image_outline_is_the_outer_pixel_edge():
    np.testing.assert_array_equal(image_outline(2, 3), [[-0.5, -0.5], [2.5, -0.5], [2.5, 1.5], [-0.5, 1.5]])
