"""Nearest-neighbour matching against an obviously correct brute-force search."""
import cv2
import numpy as np
import pytest
import skimage.data

from ninshiki.match import matching
from ninshiki.match.matching import match_descriptors
from ninshiki.match.sift import SiftExtractor


def brute_force(a: np.ndarray, b: np.ndarray, ratio: float | None, mutual: bool) -> tuple[np.ndarray, np.ndarray]:
    """Loop over every pair in float64; first index wins ties."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    dist = np.array([[np.sqrt(np.sum((x - y) ** 2)) for y in b] for x in a])      # (Na, Nb)
    pairs, distances = [], []
    for i in range(len(a)):
        order = sorted(range(len(b)), key=lambda j: (dist[i, j], j))
        j = order[0]
        if ratio is not None and len(b) > 1 and not dist[i, j] < ratio * dist[i, order[1]]:
            continue
        if mutual and min(range(len(a)), key=lambda k: (dist[k, j], k)) != i:
            continue
        pairs.append((i, j))
        distances.append(dist[i, j])
    return np.array(pairs, np.int64).reshape(-1, 2), np.array(distances)


@pytest.fixture
def small_chunks(monkeypatch):
    """A few rows per chunk, so that the column minima are carried across chunks."""
    monkeypatch.setattr(matching, "_CHUNK_ELEMENTS", 150)


@pytest.mark.parametrize("ratio", [None, 0.9, 0.7])
@pytest.mark.parametrize("mutual", [False, True])
@pytest.mark.parametrize("kind", ["integer", "float"])
def test_matches_brute_force(small_chunks, ratio, mutual, kind):
    rng = np.random.default_rng(0)
    if kind == "integer":   # SIFT-like: the float32 search is exact, so ties are real ties
        a, b = rng.integers(0, 6, (40, 8)).astype(np.float32), rng.integers(0, 6, (55, 8)).astype(np.float32)
    else:
        b = rng.normal(size=(55, 16)).astype(np.float32)
        a = np.concatenate([b[rng.permutation(55)[:25]] + 0.1 * rng.normal(size=(25, 16)),
                            rng.normal(size=(15, 16))]).astype(np.float32)
    pairs, distances = match_descriptors(a, b, ratio=ratio, mutual=mutual)
    expected_pairs, expected_distances = brute_force(a, b, ratio, mutual)
    np.testing.assert_array_equal(pairs, expected_pairs)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-6)
    assert pairs.dtype == np.int64 and distances.dtype == np.float32
    if kind == "float" and ratio == 0.7:
        assert len(pairs) >= 20                  # the perturbed copies are found, the random rows are not


def test_ties_are_ambiguous_and_go_to_the_lowest_index():
    b = np.array([[0, 0], [5, 5], [5, 5], [9, 0]], np.float32)
    a = np.array([[5, 5], [9, 1]], np.float32)
    pairs, _ = match_descriptors(a, b, ratio=0.8, mutual=False)
    np.testing.assert_array_equal(pairs, [[1, 3]])                       # d1 == d2 for the duplicate: rejected
    pairs, _ = match_descriptors(a, b, ratio=None, mutual=False)
    np.testing.assert_array_equal(pairs, [[0, 1], [1, 3]])
    pairs, _ = match_descriptors(np.array([[1, 1], [1, 1]], np.float32), b, ratio=None, mutual=True)
    np.testing.assert_array_equal(pairs, [[0, 0]])                       # b[0]'s nearest: the first tied a


def test_empty_single_and_invalid_inputs():
    empty = np.zeros((0, 4), np.float32)
    one = np.ones((1, 4), np.float32)
    for a, b in ((empty, one), (one, empty)):
        pairs, distances = match_descriptors(a, b)
        assert pairs.shape == (0, 2) and distances.shape == (0,)
    pairs, distances = match_descriptors(np.zeros((3, 4), np.float32), one, ratio=0.8, mutual=False)
    np.testing.assert_array_equal(pairs, [[0, 0], [1, 0], [2, 0]])      # no second neighbour: the test passes
    np.testing.assert_allclose(distances, 2.0)
    with pytest.raises(ValueError, match="one length D"):
        match_descriptors(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="ratio"):
        match_descriptors(one, one, ratio=1.5)


def test_sift_matches_of_a_shifted_photo_are_correct():
    gray = cv2.resize(cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2GRAY), (300, 200))
    shifted = np.zeros_like(gray)
    shifted[7:, 11:] = gray[:-7, :-11]                                    # content moves by (+11, +7)
    extractor = SiftExtractor(max_features=400, root=True)
    a, b = extractor.extract(gray), extractor.extract(shifted)
    pairs, _ = match_descriptors(a.descriptors, b.descriptors, ratio=0.8, mutual=True)
    error = np.linalg.norm(a.xy[pairs[:, 0]] + [11, 7] - b.xy[pairs[:, 1]], axis=1)
    assert len(pairs) > 100
    assert np.mean(error < 1.0) > 0.97
