"""The `hog_svm` model: OpenCV's people detector reproduced through the model API, weights round trips, a
detector fit on a small generated set, and the classifier on scikit-learn's digits."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from safetensors.torch import load_file
from sklearn.datasets import load_digits
from torchvision.ops import box_iou

from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet
from ninshiki.io import save_safetensors
from ninshiki.models.classical.hog_svm import (
    HOGSVMDetector,
    crop_window,
    hog_svm,
    hog_svm_from_opencv,
    margin_threshold,
    window_from_boxes,
)
from ninshiki.models.classical.hog_svm_classifier import HOGSVMClassifier
from ninshiki.registry import model_info

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def _tensor(bgr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(2, 0, 1)[None].float() / 255


def test_registered_for_detection_and_classification():
    info = model_info("hog_svm")
    assert info.task == "detect" and "classify" in info.tasks and "Dalal" in info.paper
    assert info.test_input == (3, 128, 128)
    assert isinstance(hog_svm(), HOGSVMDetector)
    assert isinstance(hog_svm(task="classify", num_classes=3), HOGSVMClassifier)
    with pytest.raises(ValueError, match="unknown options.*mining_round"):
        hog_svm(mining_round=3)
    with pytest.raises(ValueError, match="task"):
        hog_svm(task="segment")
    with pytest.raises(RuntimeError, match="not fitted"):
        hog_svm()(torch.zeros(1, 3, 128, 128))


def test_opencv_people_detector_through_the_model():
    """The model on a float RGB tensor finds exactly what cv2.HOGDescriptor.detectMultiScale finds on the frame."""
    if not VTEST.exists():
        pytest.skip(f"OpenCV's sample video is not installed ({VTEST}; Debian package opencv-doc)")
    ok, frame = cv2.VideoCapture(str(VTEST)).read()
    assert ok
    model = hog_svm_from_opencv("default_people").eval()
    assert model.extra_record() == {"classes": ["person"]} and model.hog_params().win_size == (64, 128)
    (det,) = model(_tensor(frame))
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    rects, weights = hog.detectMultiScale(frame)
    expected = sorted((x, y, x + w, y + h) for x, y, w, h in rects.tolist())
    assert len(expected) >= 2 and sorted(map(tuple, det.boxes.tolist())) == expected
    margins = torch.logit(det.scores.double())
    np.testing.assert_allclose(sorted(margins.tolist()), sorted(np.ravel(weights).tolist()), atol=1e-4)
    assert (det.scores.diff() <= 0).all() and (det.labels == 0).all()


def test_weights_round_trip(tmp_path):
    model = hog_svm_from_opencv("daimler_people", hit_threshold=-0.5)
    image = _tensor(cv2.resize(skimage.data.astronaut()[..., ::-1], (200, 200)))
    before = model(image)[0]
    assert len(before) > 0
    save_safetensors(model.state_dict(), tmp_path / "w.safetensors")
    fresh = hog_svm(grouping="opencv", hit_threshold=-0.5)    # the window and geometry come with the weights
    fresh.load_state(load_file(str(tmp_path / "w.safetensors")))
    after = fresh(image)[0]
    assert torch.equal(after.boxes, before.boxes) and torch.equal(after.scores, before.scores)


def test_score_mapping_and_postprocess():
    assert margin_threshold(0.0, 0.3) == 0.3
    assert margin_threshold(0.5, -1.0) == 0.0
    assert math.isclose(margin_threshold(0.9, 0.0), math.log(9))
    model = hog_svm_from_opencv("daimler_people", hit_threshold=-1.0, grouping="nms")
    (det,) = model(_tensor(cv2.resize(skimage.data.astronaut()[..., ::-1], (200, 200))))
    margins = torch.logit(det.scores.double())
    assert len(det) > 2 and float(margins.min()) >= -1.0 - 1e-6 and float(margins.min()) < 0
    model.score_threshold, model.max_detections = 0.5, 2
    (kept,) = model.postprocess([det], [(150, 150)])
    assert len(kept) == min(2, int((margins >= 0).sum())) and (kept.boxes[:, 2:] <= 150).all()


def _square_scene(rng: np.random.Generator, photo: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """A 160x120 crop of a photo with `count` bright squares with dark centres (sides 28-44)."""
    image = cv2.resize(photo, (160, 120), interpolation=cv2.INTER_AREA)
    boxes = []
    while len(boxes) < count:
        side = int(rng.integers(28, 45))
        x, y = int(rng.integers(0, 160 - side)), int(rng.integers(0, 120 - side))
        if any(x < b[2] + 4 and b[0] < x + side + 4 and y < b[3] + 4 and b[1] < y + side + 4 for b in boxes):
            continue
        image[y:y + side, x:x + side] = (235, 225, 215)
        image[y + side // 4:y + 3 * side // 4, x + side // 4:x + 3 * side // 4] = (30, 40, 50)
        boxes.append([x, y, x + side, y + side])
    return image, np.array(boxes, np.float64)


def _photos() -> list[np.ndarray]:
    names = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
    return [getattr(skimage.data, name)() for name in names]


def test_detector_fit_on_generated_squares(tmp_path):
    rng = np.random.default_rng(0)
    images = []
    for i, photo in enumerate(_photos()[:5] * 2):
        rgb, boxes = _square_scene(rng, photo, 2)
        Image.fromarray(rgb).save(tmp_path / f"{i}.png")
        images.append(AnnotatedImage(Path(f"{i}.png"), 160, 120, boxes, np.zeros(len(boxes), np.int64)))
    train = AnnotatedSet(["square"], images, root=tmp_path)
    # C: the paper's 0.01 suits thousands of windows; 40 positives need less regularisation
    model = hog_svm(cell_size=6, C=0.1, mining_rounds=2)
    facts = model.fit(train, progress=False)
    assert facts["window_width"] == facts["window_height"] == 24 and facts["positives"] == 40
    assert facts["negatives"] > 100 and model.extra_record() == {"classes": ["square"]}
    found = 0
    for seed in (1, 2, 3):                                                      # unseen scenes and photo
        rgb, truth = _square_scene(np.random.default_rng(seed), _photos()[5], 2)
        (det,) = model.eval()(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)
        iou = box_iou(torch.from_numpy(truth).float(), det.boxes[:2])               # the two best boxes
        assert float(iou[:, 0].max()) >= 0.5                                        # the best one is a square
        found += int((iou.max(1).values >= 0.5).sum())
    assert found >= 5, found                                                        # of 6 squares


def test_window_and_crop_helpers():
    boxes = np.array([[0, 0, 40, 80], [0, 0, 50, 110], [0, 0, 100, 190]], np.float64)
    assert window_from_boxes(boxes, 8, 16) == (40, 80)          # p10 short side 42 -> 40; aspect ~2
    assert window_from_boxes(boxes * 4, 8, 16) == (64, 128)     # large objects: short side 64
    assert window_from_boxes(boxes[:, [1, 0, 3, 2]], 8, 16) == (80, 40)
    image = np.arange(100 * 100, dtype=np.uint8).reshape(100, 100)
    crop = crop_window(image, np.array([90, 10, 110, 20]), (20, 10))   # leaves the image: edges replicated
    assert crop.shape == (10, 20) and (crop[:, 10:] == crop[:, 10:11]).all()


def test_classifier_on_digits_and_round_trip(tmp_path):
    digits = load_digits()
    images = np.kron(digits.images, np.ones((2, 2))) * (255 / 16)               # (1797, 16, 16)
    images = torch.from_numpy(images.round().astype(np.uint8))[:, None]          # (N, 1, 16, 16)
    labels = torch.from_numpy(digits.target)
    model = hog_svm(task="classify", num_classes=10, in_channels=1)
    facts = model.fit(images[:1200], labels[:1200], progress=False)
    assert facts["feature_dim"] == 7 * 7 * 36                                  # cells of 2 px: 7 x 7 blocks
    scores = model.eval()(images[1200:].float() / 255)                          # (597, 10)
    accuracy = (scores.argmax(1) == labels[1200:]).float().mean().item()
    assert accuracy > 0.9, accuracy                                               # measured: 0.97
    save_safetensors(model.state_dict(), tmp_path / "w.safetensors")
    fresh = hog_svm(task="classify", num_classes=10, in_channels=1)
    fresh.load_state(load_file(str(tmp_path / "w.safetensors")))
    assert torch.equal(fresh(images[1200:1210].float() / 255), scores[:10])


def test_two_class_classifier_has_two_scores():
    rng = np.random.default_rng(0)
    dark = rng.integers(0, 60, (20, 3, 16, 16))
    stripes = np.tile((np.arange(16) % 4 < 2) * 200, (20, 3, 16, 1)) + rng.integers(0, 40, (20, 3, 16, 16))
    images = torch.from_numpy(np.concatenate([dark, stripes]).astype(np.uint8))
    labels = torch.tensor([0] * 20 + [1] * 20)
    model = hog_svm(task="classify", num_classes=2)
    model.fit(images, labels, progress=False)
    scores = model(images.float() / 255)
    assert scores.shape == (40, 2) and (scores.argmax(1) == labels).all()
    with pytest.raises(ValueError, match="labels"):
        model.fit(images, labels + 5, progress=False)


def test_degenerate_inputs():
    model = hog_svm_from_opencv("default_people")
    for small in model(torch.zeros(2, 3, 100, 50)):                              # smaller than the window
        assert len(small) == 0 and small.boxes.shape == (0, 4) and small.labels.dtype == torch.int64
    (flat,) = model(torch.full((1, 3, 160, 96), 0.5))                            # no gradient anywhere
    assert len(flat) == 0
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.zeros(1, 1, 128, 64))
    classifier = hog_svm(task="classify", num_classes=3)
    with pytest.raises(ValueError, match="uint8"):
        classifier.fit(torch.zeros(6, 3, 16, 16), torch.tensor([0, 1, 2] * 2))
    with pytest.raises(ValueError, match="fewer than 2 cells"):
        classifier.fit(torch.zeros(6, 3, 3, 3, dtype=torch.uint8), torch.tensor([0, 1, 2] * 2))
