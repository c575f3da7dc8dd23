"""The `haar_cascade` detector: OpenCV's cascades run as `cv2.CascadeClassifier` runs them, weights round trips,
OpenCV XML export, and fitting on a small generated face set."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from safetensors.torch import load_file

from ninshiki.classical.haar.opencv_xml import opencv_cascade_path
from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet
from ninshiki.io import save_safetensors
from ninshiki.models.classical.haar_cascade import (
    crop_positive,
    haar_cascade,
    haar_cascade_from_opencv,
)
from ninshiki.registry import model_info
from ninshiki.structures import Detections


def _astronaut(scale: float = 0.5) -> np.ndarray:
    rgb = skimage.data.astronaut()   # (512, 512, 3)
    return cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255   # (1, 3, H, W) in [0, 1]


def _opencv_xyxy(path, rgb: np.ndarray, **kwargs) -> list[tuple[float, ...]]:
    rects = cv2.CascadeClassifier(str(path)).detectMultiScale(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), **kwargs)
    return sorted((x, y, x + w, y + h) for x, y, w, h in np.asarray(rects).reshape(-1, 4).tolist())


def _xyxy(det: Detections) -> list[tuple[float, ...]]:
    return sorted(map(tuple, det.boxes.tolist()))


def test_registered_as_a_detector():
    info = model_info("haar_cascade")
    assert info.task == "detect" and "Viola" in info.paper and info.test_input == (3, 96, 96)


def test_opencv_face_cascade_finds_what_opencv_finds():
    model = haar_cascade_from_opencv("haarcascade_frontalface_default").eval()
    assert model.extra_record() == {"classes": ["face"]} and model.num_classes == 1
    rgb = _astronaut()
    (det,) = model(_tensor(rgb))
    assert _xyxy(det) == _opencv_xyxy(opencv_cascade_path("frontalface_default"), rgb)
    assert det.boxes.dtype == torch.float32 and (det.labels == 0).all()
    assert ((det.scores > 0) & (det.scores < 1)).all() and (det.scores.diff() <= 0).all()
    assert det.boxes[0].tolist() == [86, 31, 139, 84]   # her face, the best-supported box
    model.score_threshold, model.max_detections = 0.9, 10
    (kept,) = model.postprocess([det], [(100, 120)])
    assert len(kept) == 1 and kept.boxes[0].tolist() == [86, 31, 120, 84]   # clipped to the 120 x 100 image


def test_class_names_from_opencv_file_names():
    assert haar_cascade_from_opencv("fullbody").extra_record() == {"classes": ["person"]}
    assert haar_cascade_from_opencv("haarcascade_eye.xml").extra_record() == {"classes": ["eye"]}
    assert haar_cascade_from_opencv("frontalcatface").extra_record() == {"classes": ["cat_face"]}
    fullbody = haar_cascade_from_opencv("fullbody")
    assert fullbody.cascade(0).window == (14, 28)


def test_weights_round_trip_and_opencv_export(tmp_path):
    model = haar_cascade_from_opencv("haarcascade_upperbody", min_neighbors=1)   # tilted features, 22 x 18 window
    rgb = _astronaut(0.4)
    before = model(_tensor(rgb))[0]
    assert len(before) > 0
    save_safetensors(model.state_dict(), tmp_path / "w.safetensors")
    fresh = haar_cascade(min_neighbors=1)   # default keywords: the window comes with the weights
    fresh.load_state(load_file(str(tmp_path / "w.safetensors")))
    after = fresh(_tensor(rgb))[0]
    assert torch.equal(after.boxes, before.boxes) and torch.equal(after.scores, before.scores)
    fresh.export_opencv_xml(tmp_path / "upperbody.xml")
    assert _xyxy(after) == _opencv_xyxy(tmp_path / "upperbody.xml", rgb, minNeighbors=1)


def test_unfitted_and_bad_inputs():
    model = haar_cascade()
    with pytest.raises(RuntimeError, match="not fitted"):
        model(torch.rand(1, 3, 96, 96))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        haar_cascade_from_opencv("eye")(torch.rand(1, 1, 96, 96))
    with pytest.raises(ValueError, match="unknown options \\['stages'\\]"):
        haar_cascade(stages=3)
    with pytest.raises(TypeError, match="fit, not trained by a loss"):
        model.loss([], [])


def test_gray_input_channel():
    model = haar_cascade_from_opencv("frontalface_default", in_channels=1)
    rgb = _astronaut()
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    (det,) = model(torch.from_numpy(gray)[None, None].float() / 255)
    assert _xyxy(det) == _opencv_xyxy(opencv_cascade_path("frontalface_default"), rgb)


def test_crop_positive_grows_boxes_to_the_window_aspect():
    gray = np.arange(100 * 80, dtype=np.int64).reshape(100, 80).astype(np.uint8)
    crop = crop_positive(gray, np.array([20.0, 30, 40, 70]), (24, 24))   # 20 x 40 box -> 40 x 40 square
    np.testing.assert_array_equal(crop, cv2.resize(gray[30:70, 10:50], (24, 24), interpolation=cv2.INTER_AREA))
    edge = crop_positive(gray, np.array([-5.0, 90, 10, 110]), (20, 10))   # leaves the image: edges replicated
    assert edge.shape == (10, 20)


def _face_set(root: Path, count: int, seed: int, faces_from: int = 0) -> AnnotatedSet:
    """Gray photos with two faces of scikit-image's LFW crops pasted into each (48 px), as RGB PNGs; the faces
    are crops faces_from, faces_from + 1, ... (cyclically) of the 100."""
    faces = (skimage.data.lfw_subset()[:100] * 255).astype(np.uint8)   # (100, 25, 25): the face crops
    backgrounds = [cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2GRAY), skimage.data.camera(),
                   cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2GRAY)]
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        bg = backgrounds[i % 3]
        y0, x0 = rng.integers(0, bg.shape[0] - 120), rng.integers(0, bg.shape[1] - 160)
        image = bg[y0:y0 + 120, x0:x0 + 160].copy()
        boxes = []
        for j, (x, y) in enumerate([(int(rng.integers(0, 40)), 20), (int(rng.integers(90, 110)), 50)]):
            image[y:y + 48, x:x + 48] = cv2.resize(faces[(faces_from + 2 * i + j) % 100], (48, 48))
            boxes.append([x, y, x + 48, y + 48])
        Image.fromarray(np.repeat(image[..., None], 3, 2)).save(root / f"{i}.png")
        images.append(AnnotatedImage(Path(f"{i}.png"), 160, 120, np.array(boxes, float), np.zeros(2, int)))
    return AnnotatedSet(["face"], images, root=root)


def test_fit_trains_a_cascade_opencv_runs(tmp_path):
    train = _face_set(tmp_path, 12, seed=0)
    train.images[1].iscrowd = np.array([False, True])   # a crowd region: neither positive nor negative
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    train.images.append(AnnotatedImage(Path("broken.png"), 160, 120, np.zeros((0, 4)), np.zeros(0, int)))
    model = haar_cascade(window=20, num_stages=2, num_negatives=200, feature_step=4, max_weak_per_stage=10,
                         min_neighbors=1)
    with pytest.warns(UserWarning, match="broken.png"):
        facts = model.fit(train, progress=False)
    assert facts["positives"] == 2 * 23 and facts["stages"] >= 1 and facts["weak_classifiers"] >= facts["stages"]
    assert 0 < facts["false_positive_rate"] < 1 and model.extra_record() == {"classes": ["face"]}
    cascade = model.cascade(0)
    assert cascade.window == (20, 20) and len(cascade.stages) == facts["stages"]
    rgb = np.array(Image.open(tmp_path / "0.png"))
    ours = model(_tensor(rgb))[0]
    model.export_opencv_xml(tmp_path / "trained.xml")
    assert _xyxy(ours) == _opencv_xyxy(tmp_path / "trained.xml", rgb, minNeighbors=1)


def _recall(model, train: AnnotatedSet) -> float:
    found = 0
    for record in train.images:
        rgb = np.array(Image.open(train.path(record)))
        boxes = model(_tensor(rgb))[0].boxes.numpy()
        for gt in record.boxes:
            lo, hi = np.maximum(boxes[:, :2], gt[:2]), np.minimum(boxes[:, 2:], gt[2:])
            inter = np.clip(hi - lo, 0, None).prod(1)
            iou = inter / ((boxes[:, 2:] - boxes[:, :2]).prod(1) + 48 * 48 - inter)
            found += bool((iou >= 0.5).any())
    return found / train.num_boxes()


@pytest.mark.slow
def test_fit_finds_faces_it_has_not_seen(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    train = _face_set(tmp_path / "train", 40, seed=1)                   # faces 0..79 of the LFW crops
    test = _face_set(tmp_path / "test", 10, seed=7, faces_from=80)      # faces 80..99, other backgrounds
    model = haar_cascade(window=20, num_stages=8, num_negatives=500, feature_step=2, max_weak_per_stage=40)
    facts = model.fit(train, progress=False)
    assert facts["stages"] >= 6 and facts["false_positive_rate"] < 0.01
    assert _recall(model, train) >= 0.9
    assert _recall(model, test) >= 0.7
