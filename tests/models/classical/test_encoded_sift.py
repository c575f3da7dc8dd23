"""The encoded-SIFT classifiers (bof_sift, vlad_sift, fisher_sift): learning, saving and loading, input checks."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.datasets import load_digits

from ninshiki.io import save_safetensors
from ninshiki.models import create_model
from ninshiki.models.classical import encoded_sift
from ninshiki.models.classical._encoded import EncodedSiftClassifier
from ninshiki.registry import build, model_info

NAMES = ("bof_sift", "vlad_sift", "fisher_sift")
# Small enough for a fast test: 36 descriptors per 24x24 image, tiny codebooks.
FAST = {"step": 4, "size": 3, "upscale": 1, "pca_dim": 16, "pyramid": (1, 2), "max_descriptors": 5000}
SMALL_K = {"bof_sift": 32, "vlad_sift": 8, "fisher_sift": 4}


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits (bundled, no download), upscaled to 24x24 uint8, shuffled: (1797, 1, 24, 24)."""
    data = load_digits()
    pixels = (data.images * (255 / 16)).round().astype(np.uint8)
    images = np.stack([cv2.resize(im, (24, 24), interpolation=cv2.INTER_LINEAR) for im in pixels])
    order = np.random.default_rng(0).permutation(len(images))
    return torch.from_numpy(images[order])[:, None], torch.from_numpy(data.target[order])


def _kwargs(name: str, **extra: object) -> dict:
    return {"num_classes": 10, "in_channels": 1, "k": SMALL_K[name], **FAST, **extra}


@pytest.fixture(scope="module")
def fitted(digits) -> dict[str, EncodedSiftClassifier]:
    images, labels = digits
    models = {}
    for name in NAMES:
        model = build(name, **_kwargs(name))
        facts = model.fit(images[:600], labels[:600], progress=False)
        assert facts["encoding_dim"] > 0 and facts["svm_s"] >= 0
        models[name] = model.eval()
    return models


@pytest.mark.parametrize("name", NAMES)
def test_registered_as_classical_classifiers(name: str) -> None:
    info = model_info(name)
    assert info.task == "classify" and info.classical and info.paper
    channels, height, width = info.test_input
    model = build(name, num_classes=3, in_channels=channels)
    assert isinstance(model, EncodedSiftClassifier) and not model.fitted
    with pytest.raises(RuntimeError, match="not fitted"):
        model(torch.rand(1, channels, height, width))


@pytest.mark.parametrize("name", NAMES)
def test_beats_chance_by_far_on_held_out_digits(name: str, fitted, digits) -> None:
    images, labels = digits
    with torch.no_grad():
        scores = fitted[name](images[600:1200].float() / 255)        # (600, 10)
    assert scores.shape == (600, 10) and scores.dtype == torch.float32
    accuracy = (scores.argmax(1) == labels[600:1200]).float().mean().item()
    assert accuracy > 0.85, f"{name}: held-out accuracy {accuracy:.3f} (chance 0.1)"


@pytest.mark.parametrize("name", NAMES)
def test_weights_round_trip(name: str, fitted, digits, tmp_path: Path) -> None:
    model = fitted[name]
    path = tmp_path / f"{name}.safetensors"
    save_safetensors(model.state_dict(), path)
    fresh = build(name, **_kwargs(name))
    fresh.load_state(load_file(str(path)))                           # the contract: state dict -> load_state
    through_api = create_model(name, weights=path, **_kwargs(name))  # what `classify val` / `predict` do
    x = digits[0][1200:1232].float() / 255
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(fresh(x), expected, atol=0, rtol=0)
        torch.testing.assert_close(through_api(x), expected, atol=0, rtol=0)
    assert set(model.state_dict()) >= {"svm_coef", "svm_intercept", "pca_mean", "pca_components"}


def test_scores_depend_on_the_rounded_pixels_only(fitted, digits) -> None:
    model = fitted["vlad_sift"]
    images = digits[0][1200:1216]
    x = images.float() / 255
    jitter = (torch.rand_like(x) - 0.5) * (0.9 / 255)                # stays within each pixel's rounding interval
    with torch.no_grad():
        torch.testing.assert_close(model(x + jitter), model(x), atol=0, rtol=0)


def test_rgb_input_of_gray_pixels_learns_the_same_model(fitted, digits) -> None:
    images, labels = digits
    rgb = build("bof_sift", **_kwargs("bof_sift", in_channels=3))
    rgb.fit(images[:600].expand(-1, 3, -1, -1).contiguous(), labels[:600], progress=False)
    x = images[600:700].float() / 255
    with torch.no_grad():
        torch.testing.assert_close(rgb(x.expand(-1, 3, -1, -1)), fitted["bof_sift"](x), atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"expects \(B, 3, H, W\)"):
        rgb(x)


def test_two_classes_and_classes_missing_from_the_labels(digits) -> None:
    images, labels = digits
    keep = labels < 3
    model = build("bof_sift", **_kwargs("bof_sift", num_classes=5))
    model.fit(images[keep][:200], labels[keep][:200], progress=False)
    with torch.no_grad():
        scores = model(images[keep][200:300].float() / 255)          # (100, 5)
    assert (scores[:, 3:] == -1e4).all()                             # never predicted
    assert (scores.argmax(1) == labels[keep][200:300]).float().mean() > 0.9
    pair = labels < 2
    binary = build("fisher_sift", **_kwargs("fisher_sift", num_classes=2))
    binary.fit(images[pair][:100], labels[pair][:100], progress=False)
    with torch.no_grad():
        scores = binary(images[pair][100:200].float() / 255)        # (100, 2)
    torch.testing.assert_close(scores[:, 0], -scores[:, 1])          # one hyperplane, seen from both sides
    assert (scores.argmax(1) == labels[pair][100:200]).float().mean() > 0.95


def test_keypoint_mode_and_images_without_keypoints(digits) -> None:
    images, labels = digits
    model = encoded_sift.vlad_sift(num_classes=10, in_channels=1, max_features=20, upscale=2, k=8, pca_dim=16,
                                   max_descriptors=2000)
    model.fit(images[:150], labels[:150], progress=False)
    blank = torch.zeros(2, 1, 24, 24)                                # no keypoint: a zero encoding
    with torch.no_grad():
        scores = model(torch.cat([blank, images[150:152].float() / 255]))
    assert torch.isfinite(scores).all()
    torch.testing.assert_close(scores[0], model.state("svm_intercept"))


def test_bad_input_gets_clear_messages(digits) -> None:
    images, labels = digits
    model = build("fisher_sift", **_kwargs("fisher_sift"))
    with pytest.raises(ValueError, match="uint8"):
        model.fit(images[:20].float(), labels[:20])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        model.fit(images[:20], labels[:20] + 10)
    with pytest.raises(ValueError, match="one label per image"):
        model.fit(images[:20], labels[:10])
    with pytest.raises(ValueError, match="two classes"):
        model.fit(images[:20], torch.zeros(20, dtype=torch.int64))
    with pytest.raises(ValueError, match="in_channels"):
        build("bof_sift", num_classes=3, in_channels=2)
    with pytest.raises(ValueError, match="soft assignment"):
        encoded_sift._build("vlad", 3, 1, pyramid=(1,), max_features=None, step=2, size=2, upscale=1,
                            root_sift=True, pca_dim=0, k=4, soft=True, C=1.0, max_descriptors=100, seed=0)
    with pytest.raises(ValueError, match="pyramid"):
        build("bof_sift", num_classes=3, pyramid=(0,))


def test_soft_bag_of_features(digits, tmp_path: Path) -> None:
    images, labels = digits
    model = build("bof_sift", **_kwargs("bof_sift", soft=True))
    model.fit(images[:600], labels[:600], progress=False)
    assert model.state("bof_sigma").item() > 0
    with torch.no_grad():
        scores = model(images[600:1200].float() / 255)
    assert (scores.argmax(1) == labels[600:1200]).float().mean().item() > 0.85
    save_safetensors(model.state_dict(), tmp_path / "soft.safetensors")
    loaded = create_model("bof_sift", weights=tmp_path / "soft.safetensors", **_kwargs("bof_sift", soft=True))
    with torch.no_grad():
        torch.testing.assert_close(loaded(images[600:1200].float() / 255), scores, atol=0, rtol=0)


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_fashion_mnist_beats_a_linear_svm_on_raw_pixels(name: str) -> None:
    """The survey's claim for these baselines, with the default options: above raw pixels (minutes per model)."""
    from sklearn.svm import LinearSVC

    from ninshiki.data.formats.idx import read_idx

    if not FASHION.is_dir():
        pytest.skip(f"Fashion-MNIST IDX files not found in {FASHION}")
    train = read_idx(FASHION / "train-images-idx3-ubyte.gz")[:5000], read_idx(FASHION / "train-labels-idx1-ubyte.gz")[:5000]
    test = read_idx(FASHION / "t10k-images-idx3-ubyte.gz")[:2000], read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")[:2000]
    raw = LinearSVC(C=0.01).fit(train[0].reshape(5000, -1) / 255, train[1])
    raw_accuracy = (raw.predict(test[0].reshape(2000, -1) / 255) == test[1]).mean()
    model = build(name, num_classes=10, in_channels=1)
    model.fit(torch.from_numpy(train[0])[:, None], torch.from_numpy(train[1].astype(np.int64)), progress=False)
    with torch.no_grad():
        scores = model(torch.from_numpy(test[0])[:, None].float() / 255)
    accuracy = (scores.argmax(1).numpy() == test[1]).mean()
    assert accuracy > raw_accuracy + 0.02, f"{name}: {accuracy:.4f} vs raw pixels {raw_accuracy:.4f}"
