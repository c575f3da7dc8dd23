"""The classical-model contract over every registered classical model: fit, the pipeline's input and output
types, weights saved as safetensors and loaded by `create_model` with the same outputs."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import ninshiki
from ninshiki.classical.base import ClassicalClassifier, ClassicalDetector
from ninshiki.io import save_safetensors
from ninshiki.models.weights import create_model
from ninshiki.registry import model_info
from ninshiki.structures import Detections

CLASSICAL = [n for n in ninshiki.list_models() if model_info(n).classical]
# Small settings so every fit takes a second or two; the models' defaults are for real data.
TINY = {"bof_sift": {"k": 16, "pca_dim": 8, "pyramid": [1]}, "vlad_sift": {"k": 4, "pca_dim": 8, "pyramid": [1]},
        "fisher_sift": {"k": 2, "pca_dim": 8, "pyramid": [1]},
        "haar_cascade": {"num_stages": 2, "num_negatives": 200, "feature_step": 4}}


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """300 of scikit-learn's digits at 24 x 24, uint8 (N, 1, 24, 24), three classes."""
    data = load_digits()
    keep = np.flatnonzero(data.target < 3)[:300]
    images = [cv2.resize((data.images[i] * 16).clip(0, 255).astype(np.uint8), (24, 24)) for i in keep]
    return torch.from_numpy(np.stack(images))[:, None], torch.from_numpy(data.target[keep]).long()


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory):
    from ninshiki.data.detection_data import load_detection_data
    from ninshiki.data.synthetic import synth_faces

    root = synth_faces(tmp_path_factory.mktemp("faces") / "faces", train=16, val=2, image_size=128, seed=1,
                       progress=False)
    return load_detection_data(str(root))


def test_every_classical_model_is_marked_and_has_a_paper() -> None:
    assert {"haar_cascade", "hog_svm", "bof_sift", "vlad_sift", "fisher_sift"} <= set(CLASSICAL)
    assert all(model_info(n).paper for n in CLASSICAL)


@pytest.mark.parametrize("name", [n for n in CLASSICAL if "classify" in model_info(n).tasks])
def test_classifier_contract(name: str, digits, tmp_path) -> None:
    images, labels = digits
    kwargs = {**TINY.get(name, {}), **({"task": "classify"} if model_info(name).also_tasks else {})}
    model = create_model(name, num_classes=3, in_channels=1, **kwargs)
    assert isinstance(model, ClassicalClassifier) and not model.fitted
    with pytest.raises(RuntimeError, match="not fitted"):
        model(images[:2].float() / 255)
    model.fit(images[:250], labels[:250], progress=False)
    scores = model(images[250:].float() / 255)
    assert scores.shape == (50, 3) and scores.dtype == torch.float32 and torch.isfinite(scores).all()
    assert (scores.argmax(1) == labels[250:]).float().mean() > 0.6
    save_safetensors(model.state_dict(), tmp_path / "w.safetensors")
    loaded = create_model(name, num_classes=3, in_channels=1, weights=tmp_path / "w.safetensors", **kwargs)
    assert torch.equal(loaded(images[250:].float() / 255), scores)


@pytest.mark.parametrize("name", [n for n in CLASSICAL if "detect" in model_info(n).tasks])
def test_detector_contract(name: str, faces, tmp_path) -> None:
    from ninshiki.data.images import read_image

    model = create_model(name, num_classes=1, **TINY.get(name, {}))
    assert isinstance(model, ClassicalDetector)
    model.fit(faces.train, progress=False)
    batch = torch.stack([read_image(faces.train.path(img)) for img in faces.train.images[:2]]).float() / 255
    raw = model(batch)
    assert isinstance(raw, list) and len(raw) == 2 and all(isinstance(d, Detections) for d in raw)
    for det in raw:
        assert ((det.scores >= 0) & (det.scores <= 1)).all() and (det.labels == 0).all()
    kept = model.postprocess(raw, sizes=[(100, 90)] * 2)
    assert all((d.boxes[:, 0::2] <= 90).all() and (d.boxes[:, 1::2] <= 100).all() for d in kept)
    with pytest.raises(TypeError):
        model.loss(raw, [])
    save_safetensors(model.state_dict(), tmp_path / "w.safetensors")
    loaded = create_model(name, num_classes=1, weights=tmp_path / "w.safetensors", **TINY.get(name, {}))
    for a, b in zip(raw, loaded(batch)):
        assert torch.equal(a.boxes, b.boxes) and torch.equal(a.scores, b.scores)
