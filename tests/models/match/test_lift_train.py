"""LIFT's training: the pairs and correspondences are geometrically right, each stage's loss goes down on a
fixed batch, a short run saves weights that reload (directly and through the registry) to the same
descriptors, and bad configurations and photos are refused."""
import math
from functools import partial

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from ninshiki.engine.checkpoint import read_record
from ninshiki.match.homography import random_homography, warp_image, warp_points
from ninshiki.models.match.lift import lift
from ninshiki.models.match.lift_extractor import LiftExtractor
from ninshiki.models.match.lift_losses import desc_loss, det_loss, hardest_negative_loss, ori_loss, window_soft_argmax
from ninshiki.models.match.lift_pairs import ViewPair, correspondences, load_photos, local_similarity, make_pair
from ninshiki.models.match.lift_patches import build_pyramid, sample_patches
from ninshiki.models.match.lift_train import LiftTrainConfig, sample_batch, train_lift
from ninshiki.models.weights import create_model, load_weights


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2GRAY), skimage.data.camera()[::2, ::2].copy()]


@pytest.fixture
def photo_folder(tmp_path, photos):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, photo in enumerate(photos):
        Image.fromarray(photo).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_hardest_negative_loss_matches_a_loop() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(6, 8), torch.randn(6, 8)
    exclude = torch.zeros(6, 6, dtype=torch.bool)
    exclude[0, 3] = True
    expected = []
    for i in range(6):
        negatives = [torch.dist(a[i], b[j]) for j in range(6) if j != i and not exclude[i, j] and not exclude[j, i]]
        negatives += [torch.dist(a[j], b[i]) for j in range(6) if j != i and not exclude[i, j] and not exclude[j, i]]
        expected.append(torch.relu(1.0 + torch.dist(a[i], b[i]) - min(negatives)))
    torch.testing.assert_close(hardest_negative_loss(a, b, exclude=exclude), torch.stack(expected).mean())
    torch.testing.assert_close(hardest_negative_loss(a, b, exclude=exclude, reduce=False), torch.stack(expected))


def test_window_soft_argmax_finds_sharp_peaks() -> None:
    scores = torch.zeros(2, 1, 16, 24)
    peaks = [(0, 3, 5), (0, 10, 20), (1, 12, 9)]                                  # (image, row, column)
    for b, r, c in peaks:
        scores[b, 0, r, c] = 5.0
    xy, pooled, entropy, tile = window_soft_argmax(scores, 8, beta=10.0)
    assert xy.shape == (2 * 2 * 3, 2) and tile.shape == (12, 3)
    for b, r, c in peaks:
        row = int(((tile[:, 0] == b) & (tile[:, 1] == r // 8) & (tile[:, 2] == c // 8)).nonzero())
        torch.testing.assert_close(xy[row], torch.tensor([float(c), float(r)]), atol=1e-3, rtol=0)
        assert pooled[row] > 4.99 and entropy[row] < 1e-3
    flat = (tile[:, 0] == 1) & (tile[:, 1] == 0) & (tile[:, 2] == 0)
    torch.testing.assert_close(xy[flat][0], torch.tensor([3.5, 3.5]))             # a flat window: its centre
    assert abs(float(entropy[flat][0]) - math.log(64)) < 1e-4


def test_local_similarity_of_a_homography() -> None:
    angle, zoom = math.radians(25), 1.3
    similarity = np.array([[zoom * math.cos(angle), -zoom * math.sin(angle), 12],
                           [zoom * math.sin(angle), zoom * math.cos(angle), -7], [0, 0, 1]])
    scale, rotation = local_similarity(similarity, np.array([[10.0, 20.0], [50.0, 5.0]]))
    np.testing.assert_allclose(scale, zoom)
    np.testing.assert_allclose(rotation, 25.0)
    matrix = random_homography(200, 300, np.random.default_rng(0), perspective=0.002)
    point = np.array([[120.0, 80.0]])
    eps = 1e-4
    jacobian = np.stack([(warp_points(point + d, matrix) - warp_points(point - d, matrix))[0] / (2 * eps)
                         for d in (np.array([[eps, 0]]), np.array([[0, eps]]))], axis=1)   # columns: d/dx, d/dy
    scale, rotation = local_similarity(matrix, point)
    np.testing.assert_allclose(scale, np.sqrt(abs(np.linalg.det(jacobian))), rtol=1e-6)
    expected = math.degrees(math.atan2(jacobian[1, 0] - jacobian[0, 1], jacobian[0, 0] + jacobian[1, 1]))
    np.testing.assert_allclose(rotation, expected, atol=1e-5)


def test_view2_is_view1_warped_by_the_homography(photos) -> None:
    pair = make_pair(photos[0], np.random.default_rng(3), size=(120, 160), jitter=False)
    assert pair.view1.shape == pair.view2.shape == (120, 160) and pair.view1.dtype == np.uint8
    warped, valid = warp_image(pair.view1, pair.homography)
    inner = cv2.erode((valid & pair.valid2).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert inner.mean() > 0.4
    difference = np.abs(warped.astype(float) - pair.view2)[inner]
    assert np.median(difference) < 3                                             # two resamplings vs one


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_corresponding_patches_show_the_same_content(photos) -> None:
    rng = np.random.default_rng(5)
    pair = make_pair(photos[0], rng, size=(240, 320), jitter=False)
    points = correspondences(pair, patch_size=32, max_points=40)
    assert 10 <= len(points) <= 40
    np.testing.assert_allclose(points.xy2, warp_points(points.xy1, pair.homography), atol=1e-3)
    np.testing.assert_allclose((points.angle2 - points.angle1 - points.rotation + 180) % 360 - 180, 0, atol=1e-3)
    pyramids = [build_pyramid(torch.from_numpy(v).float()[None, None], max_diameter=160, patch_size=32)
                for v in (pair.view1, pair.view2)]
    def patches(view: int, angle: np.ndarray) -> np.ndarray:
        xy, diameter = (points.xy1, points.diameter1) if view == 1 else (points.xy2, points.diameter2)
        return sample_patches(pyramids[view - 1], torch.from_numpy(xy), torch.from_numpy(diameter),
                              torch.from_numpy(angle), patch_size=32)[:, 0].numpy()
    first = patches(1, points.angle1)
    right = [ncc(p, q) for p, q in zip(first, patches(2, points.angle2))]
    wrong = [ncc(p, q) for p, q in zip(first, patches(2, points.angle1 - points.rotation))]   # turned the wrong way
    assert np.median(right) > 0.9 and np.median(right) > np.median(wrong) + 0.1


def test_sample_batch_shapes(photos) -> None:
    batch = sample_batch(photos, np.random.default_rng(0), batch=40, patch_size=32, view_size=(128, 160))
    n = len(batch.xy1)
    assert n == 40 and batch.view1.shape[1:] == (1, 128, 160) and batch.view1.shape == batch.view2.shape
    assert batch.homography.shape == (len(batch.view1), 3, 3) and int(batch.index.max()) == len(batch.view1) - 1
    assert batch.exclude.shape == (n, n) and bool(batch.exclude.diagonal().all())
    for name in ("diameter1", "angle1", "diameter2", "angle2", "rotation"):
        assert getattr(batch, name).shape == (n,)


@pytest.mark.parametrize("stage", ["desc", "ori", "det"])
def test_a_few_steps_lower_each_stage_loss_on_a_fixed_batch(stage, photos) -> None:
    torch.manual_seed(0)
    model = lift()
    module = {"desc": model.descriptor, "ori": model.orientation, "det": model.detector}[stage]
    loss_fn = {"desc": desc_loss, "ori": ori_loss, "det": partial(det_loss, max_pairs=1)}[stage]   # DET: one pair
    batch = sample_batch(photos, np.random.default_rng(1), batch=32, patch_size=32, view_size=(128, 160))
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)

    def loss() -> torch.Tensor:
        torch.manual_seed(7)                                                     # the same random turns each time
        return loss_fn(model, batch)

    first = float(loss().detach())
    for _ in range(8):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert float(loss().detach()) < 0.9 * first


def test_a_short_run_saves_weights_that_reload_to_the_same_descriptors(tmp_path, photo_folder, photos) -> None:
    config = LiftTrainConfig(out=str(tmp_path / "run"), photos=str(photo_folder), val_photos=[], steps=3,
                             time_limit=None, stage_shares=(1, 1, 1), batch=24, view_size=(128, 160))
    metrics = train_lift(config, progress=False)
    run = tmp_path / "run"
    assert {"best.safetensors", "last.safetensors", "log.csv", "metrics.json"} <= {p.name for p in run.iterdir()}
    assert metrics["steps"] == 3 and all(np.isfinite(metrics[f"{s}_loss"]) for s in ("desc", "ori", "det"))
    assert metrics["det_kept"] in (0.0, 1.0)
    log = (run / "log.csv").read_text().splitlines()
    assert log[0] == "stage,step,loss,seconds" and [line.split(",")[0] for line in log[1:]] == ["desc", "ori", "det"]
    record = read_record(run / "best.safetensors")
    assert record["model"] == "lift" and record["task"] == "match" and record["patch_size"] == 32
    assert record["steps"] == 3 and record["model_kwargs"]["descriptor_dim"] == 128

    gray = photos[1][:96, :128].copy()
    rebuilt = lift(**record["model_kwargs"])
    load_weights(rebuilt, run / "best.safetensors")
    via_registry = create_model("lift", in_channels=1, weights=run / "best.safetensors", **record["model_kwargs"])
    from_file = LiftExtractor.from_weights(run / "best.safetensors", max_features=50).extract(gray)
    for model in (rebuilt, via_registry):
        features = LiftExtractor(model.eval(), max_features=50).extract(gray)
        assert len(features) > 10
        np.testing.assert_array_equal(features.xy, from_file.xy)
        np.testing.assert_array_equal(features.descriptors, from_file.descriptors)


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(ValueError, match="steps, time_limit or both"):
        LiftTrainConfig(steps=None, time_limit=None)
    with pytest.raises(ValueError, match="stage_shares"):
        LiftTrainConfig(stage_shares=(1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="batch"):
        LiftTrainConfig(batch=1)


def test_bad_photos_are_refused(tmp_path, photo_folder) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_photos(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        load_photos(tmp_path / "empty")
    (photo_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ValueError, match="broken.png"):
        load_photos(photo_folder)
    blank = [np.full((200, 200), 90, np.uint8)]
    with pytest.raises(ValueError, match="usable keypoints"):
        sample_batch(blank, np.random.default_rng(0), batch=16, patch_size=32, view_size=(128, 160))


def test_default_photos_are_real_and_shrunk() -> None:
    photos = load_photos()
    assert len(photos) >= 12 and all(p.dtype == np.uint8 and p.ndim == 2 and max(p.shape) <= 640 for p in photos)


@pytest.mark.slow
def test_a_trained_lift_finds_a_turned_object_and_matches_warped_photos(tmp_path) -> None:
    """About two minutes: train on the default photos, then recognise an object pasted at 120 degrees."""
    config = LiftTrainConfig(out=str(tmp_path / "run"), time_limit=90, val_photos=None)
    metrics = train_lift(config, progress=False)
    if "lift_precision" in metrics:                                              # OpenCV's held-out photos exist
        assert metrics["lift_precision"] > 0.6 and metrics["lift_correct"] > 20
    extractor = LiftExtractor.from_weights(tmp_path / "run" / "best.safetensors", max_features=1000)
    from ninshiki.match.database import ObjectDatabase
    from ninshiki.match.features import image_outline
    from ninshiki.match.geometry import project
    from ninshiki.match.recognize import find

    cup = cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2GRAY)[60:330:2, 120:480:2].copy()   # (135, 180)
    scene = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)[::2, ::2].copy()         # (256, 256)
    centre, turn = np.array([128.0, 128.0]), math.radians(120)
    rotation = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    corners = (image_outline(*cup.shape) - [90, 67.5]) @ rotation.T + centre
    matrix = cv2.getPerspectiveTransform(image_outline(*cup.shape).astype(np.float32), corners.astype(np.float32))
    warped, valid = warp_image(cup, matrix, scene.shape)
    scene = np.where(valid, warped, scene)
    database = ObjectDatabase()
    database.register("cup", cup, extractor=extractor)
    found = find(database, scene, extractor=extractor)
    assert [r.name for r in found] == ["cup"]
    assert np.abs(found[0].outline - project(matrix, image_outline(*cup.shape))).max() < 3.0


def test_pairs_carry_their_geometry(photos) -> None:
    pair = make_pair(photos[1], np.random.default_rng(2), size=(100, 120))
    assert isinstance(pair, ViewPair) and pair.homography.shape == (3, 3)
    assert pair.valid1.dtype == bool and pair.valid1.mean() > 0.9
