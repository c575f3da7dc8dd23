"""Homography pair folders: reading (and its bad files), OpenCV's Oxford pair, and pairs warped from photos."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from ninshiki.data.formats.homography_pairs import (
    opencv_doc_pairs,
    read_homography,
    read_homography_pairs,
    write_pair,
    write_warped_pairs,
)
from ninshiki.match.homography import warp_image

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
SHIFT = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]])


def tiny(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)


def write_files(folder: Path, h_text: str, names: tuple[str, ...] = ("a.png", "b.jpg")) -> Path:
    folder.mkdir(parents=True)
    for index, name in enumerate(names):
        cv2.imwrite(str(folder / name), tiny(index))
    (folder / "H.txt").write_text(h_text)
    return folder


def test_written_pairs_read_back_exactly_in_name_order(tmp_path: Path) -> None:
    rotation = np.array([[0.9, -0.2, 10.5], [0.25, 1.1, -4.0], [1e-4, -2e-5, 1.0]])
    write_pair(tmp_path / "b_pair", tiny(0), tiny(1), rotation)
    write_pair(tmp_path / "a_pair", tiny(2), tiny(3)[:, :, 0], SHIFT)
    pairs = read_homography_pairs(tmp_path)
    assert [p.name for p in pairs] == ["a_pair", "b_pair"]
    np.testing.assert_allclose(pairs[1].H, rotation, rtol=1e-10)
    np.testing.assert_array_equal(pairs[0].H, SHIFT)
    assert pairs[1].a_path == tmp_path / "b_pair" / "a.png" and pairs[1].b_path.name == "b.png"
    rgb = cv2.imread(str(pairs[1].a_path))[:, :, ::-1]
    np.testing.assert_array_equal(rgb, tiny(0))                         # RGB in, RGB back (PNG is lossless)
    assert not [p for p in tmp_path.rglob(".*")]                        # no temporary files left behind


def test_a_folder_holding_h_txt_is_one_pair_and_hpatches_text_parses(tmp_path: Path) -> None:
    hpatches = "  7.6285898e-01  -2.9922929e-01   2.2567123e+02\n3.3443473e-01 1.0143901e+00 -7.6999973e+01\n" \
               "3.4663091e-04  -1.4364524e-05   1.0000000e+00 \n\n"
    folder = write_files(tmp_path / "graf", hpatches)
    [pair] = read_homography_pairs(folder)
    assert pair.name == "graf" and pair.b_path.name == "b.jpg"
    assert pair.H[0, 2] == pytest.approx(225.67123) and pair.H[2, 0] == pytest.approx(3.4663091e-04)


@pytest.mark.parametrize(("h_text", "message"), [
    ("1 0 0\n0 x 0\n0 0 1\n", "H.txt, line 2: 'x' is not a number"),
    ("1 0 0\n0 1 0\n0 0\n", "found 8 numbers"),
    ("1 2 3\n2 4 6\n0 0 1\n", "singular"),
    ("1 0 0\n0 1 0\n0 0 nan\n", "non-finite"),
])
def test_bad_matrices_are_errors_naming_the_file(tmp_path: Path, h_text: str, message: str) -> None:
    write_files(tmp_path / "pairs" / "one", h_text)
    with pytest.raises(ValueError, match="pairs/one/H.txt") as error:
        read_homography_pairs(tmp_path / "pairs")
    assert message in str(error.value)


def test_missing_and_ambiguous_files_are_errors_naming_them(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing image b"):
        read_homography_pairs(write_files(tmp_path / "no_b", "1 0 0 0 1 0 0 0 1", names=("a.png",)))
    with pytest.raises(ValueError, match="several images named a: a.jpg, a.png"):
        read_homography_pairs(write_files(tmp_path / "two_a", "1 0 0 0 1 0 0 0 1", names=("a.png", "a.jpg", "b.png")))
    (tmp_path / "no_h" / "p").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no_h/p/H.txt"):
        read_homography_pairs(tmp_path / "no_h")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no pairs found"):
        read_homography_pairs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_homography_pairs(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError):
        read_homography(tmp_path / "H.txt")


def test_opencv_doc_pair_skips_missing_files(tmp_path: Path) -> None:
    assert opencv_doc_pairs(tmp_path) == []
    if not OPENCV_DATA.is_dir():
        pytest.skip(f"OpenCV's sample data (opencv-doc) is not installed at {OPENCV_DATA}")
    for name in ("graf1.png", "H1to3p.xml"):                             # graf3.png missing: no pair
        (tmp_path / name).symlink_to(OPENCV_DATA / name)
    assert opencv_doc_pairs(tmp_path) == []


def test_opencv_doc_pair_maps_graf1_onto_graf3() -> None:
    if not OPENCV_DATA.is_dir():
        pytest.skip(f"OpenCV's sample data (opencv-doc) is not installed at {OPENCV_DATA}")
    [pair] = opencv_doc_pairs(OPENCV_DATA)
    assert pair.name == "graf1-graf3" and pair.a_path.name == "graf1.png" and pair.b_path.name == "graf3.png"
    assert pair.H[0, 0] == pytest.approx(0.76285898) and pair.H[1, 2] == pytest.approx(-76.999973)
    a = cv2.imread(str(pair.a_path), cv2.IMREAD_GRAYSCALE)
    b = cv2.imread(str(pair.b_path), cv2.IMREAD_GRAYSCALE)
    warped, valid = warp_image(a, pair.H)
    valid &= cv2.erode(valid.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    same = np.corrcoef(warped[valid].astype(float), b[valid].astype(float))[0, 1]
    backwards = np.corrcoef(warp_image(a, np.linalg.inv(pair.H))[0][valid].astype(float), b[valid].astype(float))
    assert same > 0.8 and backwards[0, 1] < 0.3, (same, backwards[0, 1])   # a -> b, not b -> a


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    return cv2.resize(skimage.data.coffee(), (200, 133), interpolation=cv2.INTER_AREA)   # (133, 200, 3)


def test_warped_pairs_show_the_photo_through_their_homography(tmp_path: Path, coffee: np.ndarray) -> None:
    photo = tmp_path / "coffee.png"
    cv2.imwrite(str(photo), coffee[:, :, ::-1])
    written = write_warped_pairs([photo, coffee[:, :, 0]], tmp_path / "pairs", count=3, seed=4, max_side=None)
    pairs = read_homography_pairs(tmp_path / "pairs")
    assert [p.name for p in pairs] == ["0000_coffee", "0001_photo1", "0002_coffee"]
    for pair, made in zip(pairs, written):
        np.testing.assert_allclose(pair.H, made.H, rtol=1e-9)
        a = cv2.imread(str(pair.a_path), cv2.IMREAD_GRAYSCALE).astype(float)
        b = cv2.imread(str(pair.b_path), cv2.IMREAD_GRAYSCALE).astype(float)
        assert a.shape == b.shape == (133, 200)
        warped, valid = warp_image(a, pair.H)
        valid &= cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert valid.mean() > 0.4
        assert np.corrcoef(warped[valid], b[valid])[0, 1] > 0.9         # the same picture, relit and noisy
        assert np.all(b[~warp_image(np.ones_like(a), pair.H)[1]] == 0)  # outside the photo: black
    assert not [p for p in (tmp_path / "pairs").rglob(".*")]


def test_warped_pairs_follow_the_seed_and_shrink_large_photos(tmp_path: Path, coffee: np.ndarray) -> None:
    first = write_warped_pairs([coffee], tmp_path / "one", count=2, seed=7, max_side=100)
    again = write_warped_pairs([coffee], tmp_path / "two", count=2, seed=7, max_side=100)
    other = write_warped_pairs([coffee], tmp_path / "three", count=1, seed=8, max_side=100)
    for x, y in zip(first, again):
        assert x.b_path.read_bytes() == y.b_path.read_bytes() and np.array_equal(x.H, y.H)
    assert not np.allclose(first[0].H, other[0].H)
    assert cv2.imread(str(first[0].a_path)).shape == (66, 100, 3)
    with pytest.raises(ValueError, match="count >= 1"):
        write_warped_pairs([coffee], tmp_path / "none", count=0)
