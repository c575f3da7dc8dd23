"""Cascade training: a small synthetic problem end to end, bootstrapped negatives that the cascade accepts, the
trained cascade run by OpenCV itself, and (slow) a face cascade from scikit-image's LFW crops."""
import time

import cv2
import numpy as np
import pytest

from ninshiki.classical.haar.adaboost import CascadeEvaluator, cascade_accepts
from ninshiki.classical.haar.cascade import HaarCascade, HaarFeature, Stage, Stump
from ninshiki.classical.haar.opencv_xml import write_cascade_xml
from ninshiki.classical.haar.train import (
    BackgroundWindows,
    CascadeTrainConfig,
    CascadeTrainer,
    augment_positives,
    train_cascade,
)

_WINDOW = (12, 12)


def _blobs(rng: np.random.Generator, n: int, contrast: float) -> np.ndarray:
    """(n, 12, 12) noisy patches with a round blob of `contrast` grey levels near the centre."""
    yy, xx = np.mgrid[:12, :12]
    centre = 5.5 + rng.uniform(-1, 1, (n, 2, 1, 1))
    radius = rng.uniform(2.5, 3.5, (n, 1, 1))
    inside = (yy - centre[:, 0]) ** 2 + (xx - centre[:, 1]) ** 2 < radius ** 2
    return np.clip(rng.normal(90, 12, (n, 12, 12)) + contrast * inside, 0, 255).astype(np.uint8)


def _backgrounds(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Noise with dark blobs, bright bars and large bright squares: everything but a small bright blob."""
    images = []
    for _ in range(count):
        image = rng.normal(90, 12, (96, 96))
        for _ in range(12):
            y, x = rng.integers(0, 90, 2)
            kind = rng.integers(3)
            if kind == 0:
                cv2.circle(image, (int(x), int(y)), int(rng.integers(2, 5)), -70.0, -1)
            elif kind == 1:
                cv2.line(image, (int(x), int(y)), tuple(int(v) for v in rng.integers(0, 96, 2)), 200.0, 2)
            else:
                image[y:y + 30, x:x + 30] += 110
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return images


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    config = CascadeTrainConfig(window=_WINDOW, num_stages=2, min_hit_rate=0.99, max_false_alarm=0.3,
                                num_negatives=400, max_weak_per_stage=30)
    trainer = CascadeTrainer(config)
    cascade = trainer.train(_blobs(rng, 400, 110), _backgrounds(rng, 4), progress=False)
    return cascade, trainer


def test_small_cascade_separates_bright_from_dark_blobs(trained):
    cascade, trainer = trained
    assert cascade.window == _WINDOW and len(cascade.stages) == 2 and trainer.stop_reason == "2 stages"
    assert [r.stage for r in trainer.reports] == [1, 2] and all(r.hit_rate >= 0.99 for r in trainer.reports)
    assert all(r.false_alarm <= 0.3 for r in trainer.reports)
    assert trainer.reports[1].acceptance < trainer.reports[0].acceptance
    rng = np.random.default_rng(1)                             # held out: new draws, new backgrounds
    assert cascade_accepts(cascade, _blobs(rng, 300, 110)).mean() >= 0.95
    assert cascade_accepts(cascade, _blobs(rng, 300, -70)).mean() <= 0.02
    windows = BackgroundWindows(_backgrounds(rng, 3), window=_WINDOW, seed=1)
    sample = windows.order[:3000]
    assert cascade_accepts(cascade, windows.patches(sample)).mean() <= 0.1
    used = {s.feature for stage in cascade.stages for s in stage.stumps}
    assert used == set(range(len(cascade.features)))           # only the features the stumps use, once each


def test_bootstrapped_negatives_are_distinct_windows_the_cascade_accepts(trained):
    one_stage = HaarCascade(_WINDOW, trained[0].features, trained[0].stages[:1])
    rng = np.random.default_rng(2)
    backgrounds = _backgrounds(rng, 3)
    exclude = [np.array([[20.0, 20, 60, 60]]), np.zeros((0, 4)), np.array([[0.0, 0, 50, 96], [70, 70, 96, 96]])]
    windows = BackgroundWindows(backgrounds, window=_WINDOW, exclude=exclude, scale_factor=1.25, seed=3)
    found, acceptance = windows.scan(CascadeEvaluator(one_stage), 200)
    assert len(found) == 200 and len(np.unique(found)) == 200 and 0 < acceptance < 0.8
    assert cascade_accepts(one_stage, windows.patches(found)).all()
    assert not cascade_accepts(one_stage, windows.patches(windows.order[:500])).all()   # the filter does filter
    assert len(windows) < len(BackgroundWindows(backgrounds, window=_WINDOW, scale_factor=1.25))
    for index in found:                                        # never on an excluded object
        level = windows.levels[index]
        y, x = divmod(int(windows.offsets[index]) - windows.bases[level], int(windows.strides[level]))
        box = np.array([x, y, x + 12, y + 12]) * windows.scales[level]
        for ex in exclude[windows.sources[level]]:
            lo, hi = np.maximum(box[:2], ex[:2]), np.minimum(box[2:], ex[2:])
            inter = np.clip(hi - lo, 0, None).prod()
            assert inter / ((box[2:] - box[:2]).prod() + (ex[2:] - ex[:2]).prod() - inter) <= 0.3
    again, _ = windows.scan(CascadeEvaluator(trained[0]), 100)   # the next stage's scan: new windows, accepted
    assert not set(again) & set(found) and cascade_accepts(trained[0], windows.patches(again)).all()


def test_opencv_runs_the_trained_cascade_identically(trained, tmp_path):
    cascade = trained[0]
    path = tmp_path / "blobs.xml"
    write_cascade_xml(cascade, path)
    opencv = cv2.CascadeClassifier(str(path))
    rng = np.random.default_rng(4)
    windows = BackgroundWindows(_backgrounds(rng, 2), window=_WINDOW, seed=4)
    patches = np.concatenate([_blobs(rng, 150, 110), _blobs(rng, 50, 40), windows.patches(windows.order[:400])])
    ours = cascade_accepts(cascade, patches)
    theirs = np.array([len(opencv.detectMultiScale(p, 1.1, 0)) == 1 for p in patches])  # one window per patch
    assert 100 < ours.sum() < len(patches) - 100
    np.testing.assert_array_equal(ours, theirs)


def test_stage_thresholds_have_opencvs_epsilon(tmp_path):
    # OpenCV subtracts 1e-5 from stage thresholds on loading: a sum 5e-6 below the written threshold passes
    feature = HaarFeature(np.array([[0.0, 0, 12, 12, -1], [6, 0, 6, 12, 2]]))
    cascade = HaarCascade(_WINDOW, [feature], [Stage([Stump(0, 1e30, 0.25, 0.25)], float(np.float32(0.250005)))])
    patch = _blobs(np.random.default_rng(8), 1, 110)
    write_cascade_xml(cascade, tmp_path / "eps.xml")
    assert len(cv2.CascadeClassifier(str(tmp_path / "eps.xml")).detectMultiScale(patch[0], 1.1, 0)) == 1
    assert cascade_accepts(cascade, patch).all()
    cascade.stages[0].threshold = float(np.float32(0.250015))
    write_cascade_xml(cascade, tmp_path / "eps.xml")
    assert len(cv2.CascadeClassifier(str(tmp_path / "eps.xml")).detectMultiScale(patch[0], 1.1, 0)) == 0
    assert not cascade_accepts(cascade, patch).any()


def test_training_stops_when_backgrounds_hold_no_false_positives():
    rng = np.random.default_rng(5)
    trainer = CascadeTrainer(CascadeTrainConfig(window=_WINDOW, num_negatives=100, min_negatives=10))
    cascade = trainer.train(_blobs(rng, 100, 110), [np.full((40, 50), 128, np.uint8)], progress=False)
    assert cascade.stages == [] and trainer.stop_reason.startswith("only 0 false positives")
    assert trainer.false_positive_rate == 0.0                  # flat windows: OpenCV never evaluates them


def test_bad_input_is_named():
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match=r"positives must be \(P, 24, 24\) uint8"):
        train_cascade(_blobs(rng, 10, 110), [np.zeros((50, 50), np.uint8)], progress=False)
    with pytest.raises(ValueError, match="background 1 must be a gray"):
        BackgroundWindows([np.zeros((50, 50), np.uint8), np.zeros((50, 50, 3), np.uint8)], window=_WINDOW)
    with pytest.raises(ValueError, match="every positive is flat"):
        train_cascade(np.full((5, 24, 24), 7, np.uint8), [np.zeros((50, 50), np.uint8)], progress=False)


def test_augmented_positives():
    crops = np.random.default_rng(7).integers(0, 256, (3, 25, 25)).astype(np.uint8)
    out = augment_positives(crops, window=(24, 24), per_crop=5)
    assert out.shape == (30, 24, 24) and out.dtype == np.uint8
    # the first view of a crop is the crop resized: the same sampling grid as cv2.resize, whose fixed-point
    # weights differ from warpAffine's 1/32-pixel tables by a few grey levels on this noise
    resized = cv2.resize(crops[0], (24, 24), interpolation=cv2.INTER_LINEAR).astype(int)
    assert np.abs(out[0].astype(int) - resized).mean() < 1 and np.abs(out[0].astype(int) - resized).max() <= 4
    mirrored = cv2.resize(crops[0][:, ::-1].copy(), (24, 24), interpolation=cv2.INTER_LINEAR).astype(int)
    assert np.abs(out[5].astype(int) - mirrored).mean() < 1
    assert len({o.tobytes() for o in out}) == 30               # the random warps differ


def _lfw_and_backgrounds():
    skimage_data = pytest.importorskip("skimage.data")
    lfw = np.round(skimage_data.lfw_subset() * 255).astype(np.uint8)   # 100 faces, then 100 non-faces, 25 x 25
    names = ["astronaut", "coffee", "chelsea", "camera", "rocket", "coins", "moon", "page", "text", "brick", "grass",
             "gravel", "hubble_deep_field", "immunohistochemistry", "colorwheel", "clock", "cell",
             "stereo_motorcycle", "retina"]
    backgrounds = []
    for name in names:
        image = getattr(skimage_data, name)()
        image = image[0] if isinstance(image, tuple) else image
        backgrounds.append(cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image)
    return lfw, backgrounds


@pytest.mark.slow
def test_face_cascade_from_lfw(tmp_path):
    lfw, backgrounds = _lfw_and_backgrounds()
    faces = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    exclude = [np.array([[x, y, x + w, y + h] for x, y, w, h in faces.detectMultiScale(b, 1.1, 3)],
                        np.float64).reshape(-1, 4) for b in backgrounds]   # the astronaut's and the cameraman's
    config = CascadeTrainConfig(num_stages=10, min_hit_rate=0.998)
    trainer = CascadeTrainer(config)
    start = time.perf_counter()
    cascade = trainer.train(augment_positives(lfw[:80]), backgrounds, exclude=exclude, progress=False)
    seconds = time.perf_counter() - start
    held_faces = np.stack([cv2.resize(c, (24, 24), interpolation=cv2.INTER_AREA) for c in lfw[80:100]])
    held_other = np.stack([cv2.resize(c, (24, 24), interpolation=cv2.INTER_AREA) for c in lfw[100:]])
    hit, false_alarm = cascade_accepts(cascade, held_faces).mean(), cascade_accepts(cascade, held_other).mean()
    print(f"{len(cascade.stages)} stages in {seconds:.0f} s, held-out hit rate {hit:.2f}, false alarms "
          f"{false_alarm:.2f}, background false-positive rate {trainer.false_positive_rate:.1e}")
    assert len(cascade.stages) == 10 and hit >= 0.9 and false_alarm <= 0.05
    path = tmp_path / "faces.xml"
    write_cascade_xml(cascade, path)
    opencv = cv2.CascadeClassifier(str(path))
    crops = np.concatenate([held_faces, held_other])
    theirs = np.array([len(opencv.detectMultiScale(c, 1.1, 0)) == 1 for c in crops])
    np.testing.assert_array_equal(cascade_accepts(cascade, crops), theirs)
