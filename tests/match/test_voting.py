"""Hough voting over (position, scale, orientation) against a brute-force histogram, and on real matches."""
import math
from collections import defaultdict

import cv2
import numpy as np
import pytest
import skimage.data

from ninshiki.match.matching import match_descriptors
from ninshiki.match.sift import SiftExtractor
from ninshiki.match.voting import hough_clusters, predict_poses


def brute_force(poses, reference, sizes, angle_bin=30.0, scale_factor=2.0, location_bin=0.25, min_votes=3):
    """One match at a time: the 2 nearest bins per dimension, into a dict."""
    votes = defaultdict(list)
    for m, (x, y, log_scale, angle) in enumerate(poses):
        a0 = math.floor(angle / angle_bin - 0.5)
        s0 = math.floor(log_scale / math.log2(scale_factor) - 0.5)
        for a in (a0, a0 + 1):
            for s in (s0, s0 + 1):
                width = location_bin * sizes[reference[m]] * scale_factor ** (s + 0.5)
                x0, y0 = math.floor(x / width - 0.5), math.floor(y / width - 0.5)
                for bx in (x0, x0 + 1):
                    for by in (y0, y0 + 1):
                        votes[(reference[m], a % round(360 / angle_bin), s, bx, by)].append(m)
    return {key: sorted(ms) for key, ms in votes.items() if len(ms) >= min_votes}


def similarity(points, scale, degrees, shift):
    t = np.deg2rad(degrees)
    rotation = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return scale * points @ rotation.T + shift


def test_predict_poses_recovers_a_similarity():
    rng = np.random.default_rng(1)
    ref_xy = rng.uniform(0, 100, (20, 2))
    ref_scale, ref_angle = rng.uniform(2, 10, 20), rng.uniform(0, 360, 20)
    scene_xy = similarity(ref_xy, 1.5, 40.0, [300, 200])
    poses = predict_poses(ref_xy, ref_scale, ref_angle, scene_xy, ref_scale * 1.5, np.mod(ref_angle + 40, 360),
                          np.tile([50.0, 50.0], (20, 1)))
    centre = similarity(np.array([[50.0, 50.0]]), 1.5, 40.0, [300, 200])[0]
    np.testing.assert_allclose(poses[:, :2], np.tile(centre, (20, 1)), atol=1e-9)
    np.testing.assert_allclose(poses[:, 2], np.log2(1.5))
    np.testing.assert_allclose(poses[:, 3], 40.0)


def test_clusters_equal_the_brute_force_histogram():
    rng = np.random.default_rng(0)
    count = 300
    poses = np.column_stack([rng.normal(200, 40, count), rng.normal(150, 40, count), rng.normal(0, 1, count),
                             rng.uniform(0, 360, count)])
    poses[:60] = [210, 160, 0.3, 355] + rng.normal(0, [5, 5, 0.1, 8], (60, 4))     # one consistent group
    poses[:, 3] = np.mod(poses[:, 3], 360)
    reference = rng.integers(0, 2, count)
    sizes = np.array([120.0, 300.0])
    clusters = hough_clusters(poses, reference, sizes)
    expected = brute_force(poses, reference, sizes)
    found = {(c.reference, tuple(c.matches)) for c in clusters}
    assert found == {(key[0], tuple(ms)) for key, ms in expected.items()}
    assert len(clusters) == len(expected) > 0
    assert [c.votes for c in clusters] == sorted((c.votes for c in clusters), reverse=True)
    best = clusters[0]
    assert best.votes >= 25 and set(best.matches) <= set(range(60)) | set(np.flatnonzero(reference == best.reference))


def test_neighbouring_bins_and_wrap_around():
    # orientations on both sides of a bin edge (30) and of 0/360; scales on both sides of a factor-2 edge
    poses = np.array([[100, 100, 0.0, 29.0], [100, 100, 0.0, 31.0], [101, 99, 0.01, 33.0]])
    assert hough_clusters(poses, np.zeros(3), np.array([200.0]))[0].votes == 3
    wrapped = np.array([[100, 100, 0.0, 359.0], [100, 100, 0.0, 1.0], [100, 100, 0.0, 2.0]])
    best = hough_clusters(wrapped, np.zeros(3), np.array([200.0]))[0]
    assert best.votes == 3 and best.pose[3] in (345.0, 15.0)
    scales = np.array([[100, 100, 0.49, 10.0], [100, 100, 0.51, 10.0], [100, 100, 0.6, 10.0]])
    assert hough_clusters(scales, np.zeros(3), np.array([200.0]))[0].votes == 3


def test_too_few_votes_empty_and_bad_arguments():
    far_apart = np.array([[0, 0, 0, 0], [900, 900, 3, 180]], float)
    assert hough_clusters(far_apart, np.zeros(2), np.array([100.0])) == []
    assert hough_clusters(np.zeros((0, 4)), np.zeros(0), np.array([100.0])) == []
    assert hough_clusters(np.zeros((3, 4)), np.zeros(3), np.array([100.0]), min_votes=4) == []
    with pytest.raises(ValueError, match="angle_bin"):
        hough_clusters(np.zeros((3, 4)), np.zeros(3), np.array([100.0]), angle_bin=25.0)
    with pytest.raises(ValueError, match="reference indices"):
        hough_clusters(np.zeros((3, 4)), np.zeros(2), np.array([100.0]))


def test_real_matches_vote_for_the_true_pose():
    """A photo turned by 90 degrees (np.rot90: +270 in the keypoint convention) and shrunk by 2/3."""
    gray = cv2.resize(cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2GRAY), (300, 200))
    scene = cv2.resize(np.ascontiguousarray(np.rot90(gray)), None, fx=2 / 3, fy=2 / 3, interpolation=cv2.INTER_AREA)
    extractor = SiftExtractor(max_features=500)
    ref, found = extractor.extract(gray), extractor.extract(scene)
    pairs, _ = match_descriptors(found.descriptors, ref.descriptors, ratio=0.8, mutual=False)
    s, r = pairs[:, 0], pairs[:, 1]
    centre = np.array([149.5, 99.5])
    poses = predict_poses(ref.xy[r], ref.scale[r], ref.angle[r], found.xy[s], found.scale[s], found.angle[s],
                          np.tile(centre, (len(r), 1)))
    best = hough_clusters(poses, np.zeros(len(r)), np.array([300.0]))[0]
    # the centre (149.5, 99.5) goes to (99.5, 150.5) after rot90, then ((x + 0.5) * 2/3 - 0.5)
    truth = (np.array([centre[1], 300 - 1 - centre[0]]) + 0.5) * 2 / 3 - 0.5
    assert best.votes >= 40
    x, y, scale, angle = best.pose
    width = 0.25 * 300 * scale
    assert abs(x - truth[0]) <= width and abs(y - truth[1]) <= width
    assert 2 ** -1 <= scale / (2 / 3) <= 2 and abs(angle - 270) <= 30
    moved = (np.stack([ref.xy[r, 1], 300 - 1 - ref.xy[r, 0]], axis=1) + 0.5) * 2 / 3 - 0.5   # true positions
    correct = np.linalg.norm(moved - found.xy[s], axis=1) < 1.5
    assert correct[best.matches].mean() > 0.95                       # the bin holds correct matches ...
    assert np.isin(np.flatnonzero(correct), best.matches).mean() > 0.8   # ... and most of them
