"""PSPNet: the pyramid pooling module, the dilated backbones (torchvision's resnet50 weights, stride 8), the
auxiliary head in training only with its 0.4 loss weight, output shapes, and an overfitting run of
`pspnet_small`."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ninshiki.models.segment.pspnet import (
    PSPNet,
    PyramidPooling,
    load_backbone_weights,
    pspnet_resnet50,
    pspnet_small,
    resnet_to_pspnet,
)
from ninshiki.models.segment.pspnet_parts import DilatedResNetSmall
from ninshiki.structures import SegmentationOutput

Checkpoint = Callable[..., tuple[nn.Module, Path]]


@pytest.fixture(scope="module")
def resnet50_model() -> PSPNet:
    """One pspnet_resnet50 for the tests that do not train it (building it takes about a second)."""
    torch.manual_seed(0)
    return pspnet_resnet50(num_classes=4)


# ------------------------------------------------------------------------------------------ pyramid pooling

def test_pyramid_pooling_bins_and_channels() -> None:
    torch.manual_seed(0)
    module = PyramidPooling(in_channels=8).eval()
    pooled: list[tuple[int, ...]] = []
    hooks = [level[0].register_forward_hook(lambda m, args, out: pooled.append(tuple(out.shape)))
             for level in module.levels]
    x = torch.randn(2, 8, 12, 18)
    with torch.no_grad():
        out = module(x)
    for hook in hooks:
        hook.remove()
    assert pooled == [(2, 8, 1, 1), (2, 8, 2, 2), (2, 8, 3, 3), (2, 8, 6, 6)]
    assert module.out_channels == 16 and out.shape == (2, 16, 12, 18)     # C + 4 levels of C / 4
    assert all(level[1].out_channels == 2 for level in module.levels)
    torch.testing.assert_close(out[:, :8], x, atol=0, rtol=0)              # the input itself comes first
    global_level = out[:, 8:10]                                            # the 1x1 bin: one value per map
    torch.testing.assert_close(global_level, global_level[..., :1, :1].expand_as(global_level))
    with torch.no_grad():                                                   # and it is the projected global mean
        expected = module.levels[0][1:](x.mean(dim=(2, 3), keepdim=True))
    torch.testing.assert_close(global_level[..., :1, :1], expected)
    two = out[:, 10:12]                                                     # 2x2 bins: constant within quadrants
    assert not torch.allclose(two[..., 0, 0], two[..., -1, -1])


def test_pspnet_resnet50_heads_are_the_papers(resnet50_model: PSPNet) -> None:
    model = resnet50_model
    assert model.pyramid.out_channels == 2048 + 4 * 512
    assert [level[0].output_size for level in model.pyramid.levels] == [1, 2, 3, 6]
    for head, shape in ((model.head, (4096, 512)), (model.aux_head, (1024, 256))):
        conv, bn, relu, dropout = head
        assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (*shape, (3, 3))
        assert isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU) and dropout.p == 0.1
    assert model.classifier.out_channels == model.aux_classifier.out_channels == 4
    assert model.classifier.kernel_size == (1, 1) and model.aux_weight == 0.4 and model.input_size == 480
    assert model.classifier_names == ("classifier", "aux_classifier")
    assert model.get_submodule(model.first_conv) is model.backbone.conv1


# ------------------------------------------------------------------------------------------------ backbones

def test_resnet50_weights_load_into_the_dilated_backbone(resnet50_model: PSPNet,
                                                         torchvision_checkpoint: Checkpoint) -> None:
    reference, path = torchvision_checkpoint("resnet50", replace_stride_with_dilation=[False, True, True])
    load_backbone_weights(resnet50_model, path)
    backbone = resnet50_model.backbone.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = backbone.forward_features(x)
        y = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        expected = [y := getattr(reference, name)(y) for name in ("layer1", "layer2", "layer3", "layer4")]
    assert [tuple(f.shape) for f in features] == [(1, 256, 16, 16), (1, 512, 8, 8), (1, 1024, 8, 8),
                                                  (1, 2048, 8, 8)]  # output stride 8
    for ours, theirs in zip(features, expected):
        torch.testing.assert_close(ours, theirs, atol=0, rtol=0)
    assert [info.stride for info in backbone.feature_info] == [4, 8, 8, 8]
    assert backbone.layer4[0].conv2.dilation == (2, 2) and backbone.layer4[1].conv2.dilation == (4, 4)


def test_resnet_state_dicts_convert_and_misfits_are_named(tmp_path: Path) -> None:
    state = {"conv1.weight": torch.randn(64, 3, 7, 7), "bn1.weight": torch.ones(64), "fc.weight": torch.zeros(2, 8)}
    converted = resnet_to_pspnet(state)
    assert set(converted) == {"backbone.conv1.weight", "backbone.bn1.weight"}
    gray = resnet_to_pspnet(state, in_channels=1)["backbone.conv1.weight"]
    torch.testing.assert_close(gray, state["conv1.weight"].sum(dim=1, keepdim=True))
    with pytest.raises(ValueError, match="not 2"):
        resnet_to_pspnet(state, in_channels=2)
    with pytest.raises(ValueError, match="not a ResNet state dict"):
        resnet_to_pspnet({"features.0.weight": torch.zeros(1)})
    path = tmp_path / "resnet18ish.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"resnet18ish\.pth does not fit PSPNet's ResNet backbone"):
        load_backbone_weights(pspnet_small(num_classes=2), path)


def test_the_small_backbone_keeps_stride_8_by_dilation() -> None:
    backbone = DilatedResNetSmall(width=8, depth=(1, 1, 2, 1))
    features = backbone.forward_features(torch.rand(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in features] == [(16, 16, 24), (32, 8, 12), (64, 8, 12), (64, 8, 12)]
    assert [(i.channels, i.stride, i.name) for i in backbone.feature_info] == [
        (16, 4, "layer1"), (32, 8, "layer2"), (64, 8, "layer3"), (64, 8, "layer4")]
    assert [block.body[0].dilation for block in backbone.layer3] == [(2, 2), (2, 2)]
    assert backbone.layer4[0].body[3].dilation == (4, 4)
    with pytest.raises(ValueError, match="at least one block"):
        DilatedResNetSmall(depth=(1, 0, 1, 1))


# ------------------------------------------------------------------------------------ outputs and the loss

def test_aux_logits_in_training_only_and_the_loss_weighs_them_by_0_4() -> None:
    torch.manual_seed(0)
    model = pspnet_small(num_classes=3, width=8)
    images = torch.rand(2, 3, 64, 96)
    targets = torch.randint(0, 3, (2, 64, 96))
    targets[:, :5] = 255                                                   # ignored rows
    raw = model.train()(images)
    assert isinstance(raw, SegmentationOutput) and raw.logits.shape == (2, 3, 64, 96)
    assert len(raw.aux_logits) == 1 and raw.aux_logits[0].shape == (2, 3, 64, 96)
    losses = model.loss(raw, targets)
    ce = F.cross_entropy(raw.logits, targets, ignore_index=255)
    aux = F.cross_entropy(raw.aux_logits[0], targets, ignore_index=255)
    torch.testing.assert_close(losses["loss"], ce + 0.4 * aux)
    torch.testing.assert_close(losses["aux"], aux.detach())
    losses["loss"].backward()
    assert model.aux_classifier.weight.grad is not None and model.aux_classifier.weight.grad.abs().sum() > 0
    with torch.no_grad():
        raw = model.eval()(images)
    assert raw.aux_logits == () and raw.logits.shape == (2, 3, 64, 96)
    assert torch.equal(model.loss(raw, targets)["loss"], F.cross_entropy(raw.logits, targets, ignore_index=255))


@pytest.mark.parametrize("training", [True, False])
def test_pspnet_resnet50_output_shapes(resnet50_model: PSPNet, training: bool) -> None:
    resnet50_model.train(training)
    with torch.no_grad():
        raw = resnet50_model(torch.rand(2, 3, 64, 96))
    assert raw.logits.shape == (2, 4, 64, 96)
    assert [a.shape for a in raw.aux_logits] == ([(2, 4, 64, 96)] if training else [])


def test_gray_input_and_bf16_autocast() -> None:
    model = pspnet_small(num_classes=3, in_channels=1, width=8)
    images, targets = torch.rand(2, 1, 32, 32), torch.randint(0, 3, (2, 32, 32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model.loss(model(images), targets)
    assert losses["loss"].dtype == torch.float32 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert torch.isfinite(model.backbone.stem[0].weight.grad).all()


# ------------------------------------------------------------------------------------------------- training

def _two_scenes(size: int = 64) -> tuple[Tensor, Tensor]:
    """Two images of a red square (class 1) and a blue disc (class 2) on gray, and their class maps."""
    targets = torch.zeros(2, size, size, dtype=torch.int64)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for i, (square, disc, radius) in enumerate((((8, 10, 30), (44, 40), 12), ((34, 30, 22), (18, 16), 10))):
        y, x, side = square
        targets[i, y:y + side, x:x + side] = 1
        targets[i][(yy - disc[0]) ** 2 + (xx - disc[1]) ** 2 <= radius ** 2] = 2
    colours = torch.tensor([[0.5, 0.5, 0.5], [0.9, 0.1, 0.1], [0.1, 0.2, 0.9]])
    images = colours[targets].permute(0, 3, 1, 2) + 0.05 * torch.randn(2, 3, size, size)
    return images.clamp(0, 1), targets


@pytest.mark.slow
def test_pspnet_small_overfits_two_images() -> None:
    torch.manual_seed(0)
    images, targets = _two_scenes()
    model = pspnet_small(num_classes=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(100):
        model.train()
        losses = model.loss(model(images), targets)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = torch.stack(model.postprocess(model(images)))
    accuracy = (predicted == targets).float().mean().item()
    assert accuracy > 0.95, accuracy
