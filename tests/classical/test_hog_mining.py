"""Hard-negative mining (ninshiki.classical.hog_mining) on bright squares pasted on scikit-image photos."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from ninshiki.classical.hog import HOGParams, hog_batch
from ninshiki.classical.hog_detect import detect_multiscale
from ninshiki.classical.hog_mining import MiningOptions, train_hog_svm

PARAMS = HOGParams(win_size=(24, 24), block_size=(12, 12), block_stride=(6, 6), cell_size=(6, 6))


def _scene(rng: np.random.Generator, photo: str, count: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A 160x120 gray photo with `count` bright squares with dark centres, and their boxes (xyxy)."""
    image = getattr(skimage.data, photo)()
    image = cv2.resize(image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (160, 120))
    boxes = []
    while len(boxes) < count:
        side = int(rng.integers(26, 40))
        x, y = int(rng.integers(0, 160 - side)), int(rng.integers(0, 120 - side))
        if any(x < b[2] and b[0] < x + side and y < b[3] and b[1] < y + side for b in boxes):
            continue
        image[y:y + side, x:x + side] = 230
        image[y + side // 4:y + 3 * side // 4, x + side // 4:x + 3 * side // 4] = 40
        boxes.append([x, y, x + side, y + side])
    return image, np.array(boxes, np.float64)


@pytest.fixture(scope="module")
def squares():
    rng = np.random.default_rng(0)
    scenes = [_scene(rng, photo) for photo in ("astronaut", "coffee", "chelsea", "camera", "rocket") * 2]
    crops = [cv2.resize(image[int(y1):int(y2), int(x1):int(x2)], (24, 24), interpolation=cv2.INTER_AREA)
             for image, boxes in scenes for x1, y1, x2, y2 in boxes]
    return scenes, np.stack(crops + [c[:, ::-1] for c in crops])                 # (40, 24, 24) with mirrors


def test_mining_adds_hard_negatives_and_separates_the_squares(squares):
    scenes, positives = squares
    images, boxes = [s[0] for s in scenes], [s[1] for s in scenes]
    weights, bias, facts = train_hog_svm(positives, images, exclude=boxes, params=PARAMS, C=0.1, progress=False)
    assert weights.shape == (PARAMS.descriptor_size,) and facts["positives"] == 40
    assert facts["negatives_round0"] == 10 * len(images)                         # 10 random windows each
    assert facts["negatives_round1"] > 0                                         # false positives were found
    assert facts["negatives"] == sum(facts[f"negatives_round{i}"] for i in range(3))
    margins = hog_batch(positives, PARAMS) @ weights + bias
    assert (margins > 0).mean() > 0.9
    image, truth = _scene(np.random.default_rng(5), "immunohistochemistry")       # unseen
    found, scores = detect_multiscale(image, weights, bias, PARAMS, hit_threshold=-1.0, grouping="nms")
    ious = [max(_iou(box, t) for box in found[:2]) for t in truth]
    assert min(ious) >= 0.5, (truth, found[:3], scores[:3])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def test_negatives_respect_the_excluded_boxes(squares):
    scenes, positives = squares
    image = scenes[0][0]
    whole = np.array([[0.0, 0.0, 160.0, 120.0]])
    with pytest.raises(ValueError, match="no window outside the excluded boxes"):
        train_hog_svm(positives, [image], exclude=[whole], params=PARAMS, progress=False,
                      options=MiningOptions(max_overlap=0.0))
    with pytest.raises(ValueError, match="no positive"):
        train_hog_svm(positives[:0], [image], params=PARAMS, progress=False)
    with pytest.raises(ValueError, match="2 exclude lists for 1 backgrounds"):
        train_hog_svm(positives, [image], exclude=[whole, whole], params=PARAMS, progress=False)
