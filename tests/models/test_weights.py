"""`create_model(weights=...)` and `load_weights`: formats, wrappers, classifier re-initialisation,
first-convolution adaptation, and the errors for everything else."""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from ninshiki.io import save_safetensors
from ninshiki.models import LoadReport, create_model, load_weights

Checkpoint = Callable[..., tuple[nn.Module, Path]]
LOGGER = "ninshiki.models.weights"


def _small_state(seed: int = 0, **kwargs: object) -> tuple[nn.Module, dict[str, Tensor]]:
    torch.manual_seed(seed)
    model = create_model("resnet20", num_classes=10, **kwargs)  # 0.27M parameters: cheap to build and save
    return model, {k: v.clone() for k, v in model.state_dict().items()}


def _assert_state_equal(model: nn.Module, state: dict[str, Tensor], *, skip: tuple[str, ...] = ()) -> None:
    for key, value in model.state_dict().items():
        if not key.startswith(skip):
            assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".pt", ".bin", ".ckpt"])
def test_every_format_loads_every_tensor(suffix: str, tmp_path: Path) -> None:
    _, state = _small_state()
    path = tmp_path / f"weights{suffix}"
    save_safetensors(state, path) if suffix == ".safetensors" else torch.save(state, path)
    model, _ = _small_state(seed=1)

    report = load_weights(model, path)

    assert report == LoadReport(loaded=tuple(state), reinitialised=(), adapted=())
    _assert_state_equal(model, state)


@pytest.mark.parametrize("wrap", [
    lambda s: {"state_dict": {f"module.{k}": v for k, v in s.items()}, "epoch": 3},         # Lightning + DDP
    lambda s: {"model": {f"_orig_mod.{k}": v for k, v in s.items()}, "optimizer": {}},     # torch.compile
    lambda s: {"model": {"state_dict": {f"module._orig_mod.{k}": v for k, v in s.items()}}},
])
def test_training_checkpoint_wrappers_and_prefixes_are_removed(wrap: Callable, tmp_path: Path) -> None:
    _, state = _small_state()
    torch.save(wrap(state), tmp_path / "run.ckpt")
    model = create_model("resnet20", num_classes=10, weights=tmp_path / "run.ckpt")
    _assert_state_equal(model, state)


def test_checkpoint_without_num_batches_tracked_loads(tmp_path: Path) -> None:
    # torchvision's older ImageNet checkpoints predate the BatchNorm counter.
    _, state = _small_state()
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, tmp_path / "old.pth")
    model, _ = _small_state(seed=1)
    report = load_weights(model, tmp_path / "old.pth")
    assert not any(k.endswith("num_batches_tracked") for k in report.loaded)
    _assert_state_equal(model, state)                    # the counters are the model's own zeros


def test_thousand_class_checkpoint_into_ten_class_model(torchvision_checkpoint: Checkpoint,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    reference, path = torchvision_checkpoint("resnet18")
    torch.manual_seed(1)
    model = create_model("resnet18", num_classes=10)
    fresh = {k: v.clone() for k, v in model.fc.state_dict().items()}

    with caplog.at_level(logging.INFO, logger=LOGGER):
        report = load_weights(model, path)

    assert report.reinitialised == ("fc.weight", "fc.bias") and report.adapted == ()
    assert "fc: checkpoint has 1000 classes, model has 10; the classifier was re-initialised" in caplog.text
    _assert_state_equal(model, reference.state_dict(), skip=("fc.",))
    _assert_state_equal(model.fc, fresh)


def test_googlenet_reinitialises_main_and_auxiliary_classifiers(torchvision_checkpoint: Checkpoint) -> None:
    reference, path = torchvision_checkpoint("googlenet")
    model = create_model("googlenet", num_classes=10)
    report = load_weights(model, path)
    assert set(report.reinitialised) == {f"{m}.{p}" for m in ("fc", "aux1.fc2", "aux2.fc2") for p in ("weight", "bias")}
    _assert_state_equal(model, reference.state_dict(), skip=("fc.", "aux1.fc2.", "aux2.fc2."))


def test_rgb_first_conv_summed_for_gray_input(torchvision_checkpoint: Checkpoint,
                                              caplog: pytest.LogCaptureFixture) -> None:
    reference, path = torchvision_checkpoint("resnet18")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        model = create_model("resnet18", in_channels=1, weights=path).eval()
    assert "conv1: checkpoint has 3 input channels, model has 1" in caplog.text

    gray = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        ours, theirs = model(gray), reference(gray.expand(-1, 3, -1, -1))
    # Summing the weights first changes the order of float additions: equal up to rounding.
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_gray_first_conv_spread_for_rgb_input(tmp_path: Path) -> None:
    # Plain alexnet_small's first convolution has a bias, which must be loaded as it is.
    torch.manual_seed(0)
    gray_model = create_model("alexnet_small", num_classes=10, in_channels=1, batch_norm=False).eval()
    save_safetensors(gray_model.state_dict(), tmp_path / "gray.safetensors")
    rgb_model = create_model("alexnet_small", num_classes=10, in_channels=3, batch_norm=False)
    report = load_weights(rgb_model, tmp_path / "gray.safetensors")
    assert report.adapted == ("features.0.weight",) and "features.0.bias" in report.loaded

    gray = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rgb_model.eval()(gray.expand(-1, 3, -1, -1)), gray_model(gray),
                                   atol=1e-5, rtol=1e-4)


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.safetensors"
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        create_model("resnet20", weights=path)


@pytest.mark.parametrize("name, content", [
    ("garbage.pth", b"not a zip and not a pickle"),
    ("empty.pt", b""),
    ("garbage.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}"),
    ("truncated.safetensors", b"\xff\xff\xff\xff"),
])
def test_corrupt_file_is_a_value_error_naming_it(name: str, content: bytes, tmp_path: Path) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=name):
        create_model("resnet20", weights=tmp_path / name)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file_is_a_value_error_naming_it(suffix: str, tmp_path: Path) -> None:
    _, state = _small_state()
    whole, cut = tmp_path / f"whole{suffix}", tmp_path / f"cut{suffix}"
    save_safetensors(state, whole) if suffix == ".safetensors" else torch.save(state, whole)
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"cut{suffix}"):
        create_model("resnet20", num_classes=10, weights=cut)


class _NotATensor:
    pass


def test_arbitrary_pickled_objects_are_refused(tmp_path: Path) -> None:
    _, state = _small_state()
    torch.save({"state_dict": state, "extra": _NotATensor()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match=r"evil\.pth holds pickled Python objects.*weights_only=True"):
        create_model("resnet20", num_classes=10, weights=tmp_path / "evil.pth")


@pytest.mark.parametrize("name, obj", [("epoch.pth", {"epoch": 3}), ("list.pth", [torch.zeros(1)])])
def test_file_without_a_state_dict_is_rejected(name: str, obj: object, tmp_path: Path) -> None:
    torch.save(obj, tmp_path / name)
    with pytest.raises(ValueError, match="does not hold a state dict"):
        create_model("resnet20", weights=tmp_path / name)


def test_unknown_format_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "weights.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown weights format '.npz'"):
        create_model("resnet20", weights=tmp_path / "weights.npz")


def test_renamed_key_is_reported_as_missing_and_unexpected(tmp_path: Path) -> None:
    _, state = _small_state()
    state["layer1.0.conv1.kernel"] = state.pop("layer1.0.conv1.weight")
    save_safetensors(state, tmp_path / "renamed.safetensors")
    with pytest.raises(ValueError, match=r"renamed\.safetensors.*missing keys: layer1\.0\.conv1\.weight.*"
                                         r"unexpected keys: layer1\.0\.conv1\.kernel"):
        create_model("resnet20", num_classes=10, weights=tmp_path / "renamed.safetensors")


@pytest.mark.parametrize("key, shape", [
    ("layer2.0.conv1.weight", (32, 16, 1, 1)),  # an inner layer
    ("fc.weight", (10, 32)),                    # a classifier whose input, not class count, differs
    ("conv1.weight", (16, 2, 3, 3)),            # a first conv with neither 1 nor 3 input channels
])
def test_shape_mismatch_is_an_error_naming_the_key(key: str, shape: tuple[int, ...], tmp_path: Path) -> None:
    _, state = _small_state()
    state[key] = torch.zeros(shape)
    save_safetensors(state, tmp_path / "bad.safetensors")
    model, before = _small_state(seed=1)
    with pytest.raises(ValueError, match=rf"bad\.safetensors.*shape mismatches: {key}"):
        load_weights(model, tmp_path / "bad.safetensors")
    _assert_state_equal(model, before)                   # nothing was loaded


def test_class_square_layers_are_reinitialised_on_a_class_count_change(tmp_path) -> None:
    """FCN's learned upsampling is (K, K, k, k): both class dims change with the class count."""
    from safetensors.torch import save_file

    from ninshiki.registry import build

    source = build("fcn8s_small", num_classes=5)
    path = tmp_path / "fcn5.safetensors"
    save_file(source.state_dict(), str(path))
    target = build("fcn8s_small", num_classes=3)
    report = load_weights(target, path)
    assert any(key.startswith("upscore2.") for key in report.reinitialised), report.reinitialised
    assert all(key.startswith(target.classifier_names) for key in report.reinitialised)
    assert torch.equal(target.state_dict()["backbone.stages.0.0.0.weight"],
                       source.state_dict()["backbone.stages.0.0.0.weight"])
