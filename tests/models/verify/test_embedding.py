"""The embedding networks: the model contract (train/eval output, features, weights round trip), the loss
options, and torchvision's ResNet-18 weights in the trunk."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from ninshiki.io import save_safetensors
from ninshiki.models.verify.embedding import EmbeddingNet, embed, triplet_resnet18, triplet_resnet20
from ninshiki.models.weights import create_model, load_weights
from ninshiki.registry import build, list_models, model_info

NAMES = ("triplet_resnet18", "triplet_resnet20")
LABELS = torch.tensor([0, 0, 1, 1])   # a 2 x 2 P x K batch


def test_registered_under_verify_with_the_facenet_paper() -> None:
    assert set(NAMES) <= set(list_models(task="verify"))
    for name in NAMES:
        assert "FaceNet" in model_info(name).paper


@pytest.mark.parametrize("name", NAMES)
def test_embedding_contract(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    channels, height, width = model_info(name).test_input
    model = create_model(name, num_classes=7, in_channels=channels)     # num_classes is ignored
    x = torch.rand(4, channels, height, width)

    embeddings = model.train()(x)
    assert type(embeddings) is Tensor and embeddings.shape == (4, 128)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(4))
    out = model.loss(embeddings, LABELS)
    assert {"loss", "active_triplets", "mean_pos_dist", "mean_neg_dist"} <= out.keys()
    out["loss"].backward()
    without_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not without_grad, f"no finite gradient for {without_grad[:5]}"

    model.eval()
    with torch.no_grad():
        first, second = model(x), model(x)
    assert type(first) is Tensor and first.shape == (4, 128)
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    _check_features(model, x)

    path = tmp_path / f"{name}.safetensors"
    save_safetensors(model.state_dict(), path)
    loaded = create_model(name, in_channels=channels, weights=path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), first, atol=0, rtol=0)


def _check_features(model: nn.Module, x: Tensor) -> None:
    captured: dict[str, Tensor] = {}
    hooks = [model.get_submodule(info.name).register_forward_hook(
                 lambda _m, _i, out, name=info.name: captured.__setitem__(name, out)) for info in model.feature_info]
    with torch.no_grad():
        features = model.forward_features(x)
    for hook in hooks:
        hook.remove()
    assert len(features) == len(model.feature_info)
    for feature, info in zip(features, model.feature_info):
        assert feature.shape[1] == info.channels and torch.equal(feature, captured[info.name])


@pytest.mark.parametrize("name", NAMES)
def test_classifier_names_are_exactly_the_dimension_dependent_modules(name: str) -> None:
    with torch.device("meta"):
        a, b = build(name, embedding_dim=64).state_dict(), build(name, embedding_dim=32).state_dict()
    changed = {key.rsplit(".", 1)[0] for key in a if a[key].shape != b[key].shape}
    with torch.device("meta"):
        assert changed == set(build(name).classifier_names) == {"head.3"}
        assert set(build(name, head="linear").classifier_names) == {"head.0"}


def test_weights_of_another_embedding_size_load_with_a_fresh_final_layer(tmp_path: Path) -> None:
    path = tmp_path / "emb128.safetensors"
    source = triplet_resnet20(in_channels=1)
    save_safetensors(source.state_dict(), path)
    target = triplet_resnet20(in_channels=1, embedding_dim=64)
    report = load_weights(target, path)
    assert set(report.reinitialised) == {"head.3.weight", "head.3.bias"}
    torch.testing.assert_close(target.trunk.conv1.weight, source.trunk.conv1.weight, atol=0, rtol=0)


def test_first_conv_names_the_first_convolution() -> None:
    for name in NAMES:
        with torch.device("meta"):
            model = build(name, in_channels=1)
        first = next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
        assert model.first_conv == first and model.get_submodule(first).in_channels == 1


def test_torchvision_resnet18_weights_load_into_the_trunk(
        torchvision_checkpoint: Callable[..., tuple[nn.Module, Path]]) -> None:
    reference, path = torchvision_checkpoint("resnet18")
    model = triplet_resnet18().eval()
    skipped = model.load_trunk_weights(path)
    assert set(skipped) == {"fc.weight", "fc.bias"}
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference.avgpool(reference.layer4(reference.layer3(reference.layer2(reference.layer1(
            reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))))))).flatten(1)   # (2, 512)
        torch.testing.assert_close(model.forward_features(x)[-1].mean(dim=(2, 3)), expected, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(model.trunk(x), expected, atol=1e-6, rtol=1e-5)   # its fc is an Identity now

    gray = triplet_resnet18(in_channels=1)
    gray.load_trunk_state(reference.state_dict())
    torch.testing.assert_close(gray.trunk.conv1.weight, reference.conv1.weight.sum(dim=1, keepdim=True))


def test_trunk_state_that_does_not_fit_is_an_error() -> None:
    model = triplet_resnet20(in_channels=1)
    state = {k: v for k, v in triplet_resnet20(in_channels=1).trunk.state_dict().items() if "layer3" not in k}
    with pytest.raises(RuntimeError, match="Missing key"):
        model.load_trunk_state(state)


def test_loss_options_are_attributes_the_loss_reads() -> None:
    model = triplet_resnet20(in_channels=1, mining="semi_hard", metric="sqeuclidean")
    assert (model.loss_name, model.mining, model.metric, model.margin) == ("triplet", "semi_hard", "sqeuclidean", 0.2)
    e = torch.nn.functional.normalize(torch.randn(6, 128), dim=1)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    assert float(model.loss(e, labels)["triplets"]) == 12              # one per anchor-positive pair
    model.mining = "batch_all"                                          # the trainer may change them
    assert float(model.loss(e, labels)["triplets"]) == 6 * 2 * 3
    contrastive = triplet_resnet20(loss="contrastive", margin=0.7)
    assert contrastive.margin == 0.7 and "active_pairs" in contrastive.loss(e, labels)
    assert triplet_resnet20(loss="contrastive").margin == 1.0


@pytest.mark.parametrize(("option", "value"), [("head", "deep"), ("loss", "arcface"), ("mining", "hardest"),
                                               ("metric", "l1"), ("embedding_dim", 0)])
def test_unknown_options_are_errors(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        triplet_resnet20(**{option: value})


def test_embed_batches_in_eval_mode_and_restores_the_mode() -> None:
    torch.manual_seed(0)
    model = EmbeddingNet(trunk=build("resnet20", in_channels=1), embedding_dim=16, head="linear").train()
    x = torch.rand(5, 1, 28, 28)
    out = embed(model, x, batch_size=2)
    assert model.training and out.shape == (5, 16)
    with torch.no_grad():
        torch.testing.assert_close(out, model.eval()(x), atol=1e-6, rtol=1e-5)
    assert embed(model, x[:0]).shape == (0, 16)
