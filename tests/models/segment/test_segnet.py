"""SegNet: unpooling with the encoder's max-pooling indices, the paper's layout, torchvision's vgg16_bn weights
in the encoder, output shapes, and an overfitting run of `segnet_small`."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.vgg import cfgs, make_layers

from ninshiki.models.segment.segnet import (
    SegNet,
    load_encoder_weights,
    segnet_small,
    segnet_vgg16,
    vgg16_bn_to_segnet,
)
from ninshiki.registry import model_info
from ninshiki.structures import SegmentationOutput

Checkpoint = Callable[..., tuple[nn.Module, Path]]


def _keep_window_maxima(x: Tensor) -> Tensor:
    """Reference: x where it is the maximum of its 2x2 window, zero elsewhere (distinct values assumed)."""
    window_max = F.max_pool2d(x, 2)
    return torch.where(x == F.interpolate(window_max, scale_factor=2.0, mode="nearest"), x, torch.zeros_like(x))


def _torchvision_vgg16_bn_features(seed: int = 0) -> dict[str, Tensor]:
    """The `features.*` state dict of torchvision's vgg16_bn, built by torchvision's own `make_layers`.

    torchvision's `vgg16_bn` is `VGG(make_layers(cfgs["D"], batch_norm=True))`; building the features alone
    skips the 120M-parameter classifier (seconds). The full model is checked in the slow test below.
    """
    torch.manual_seed(seed)
    features = make_layers(cfgs["D"], batch_norm=True)
    for module in features.modules():
        if isinstance(module, nn.BatchNorm2d):   # non-trivial statistics, so a mix-up of BN tensors shows
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            nn.init.uniform_(module.weight, 0.5, 1.5)
    return {f"features.{key}": value for key, value in features.state_dict().items()}


# ------------------------------------------------------------------------------------------------- unpooling

def test_unpooling_puts_each_maximum_back_where_it_came_from() -> None:
    x = torch.tensor([[1.0, 5.0, 2.0, 0.0],
                      [3.0, 4.0, 7.0, 6.0],
                      [9.0, 8.0, 0.5, 1.5],
                      [2.5, 3.5, 2.0, 4.5]]).view(1, 1, 4, 4)
    pooled, indices = nn.MaxPool2d(2, 2, return_indices=True)(x)
    assert pooled.flatten().tolist() == [5.0, 7.0, 9.0, 4.5]
    assert indices.flatten().tolist() == [1, 6, 8, 15]   # positions in the flattened 4x4 map
    expected = torch.tensor([[0.0, 5.0, 0.0, 0.0],
                             [0.0, 0.0, 7.0, 0.0],
                             [9.0, 0.0, 0.0, 0.0],
                             [0.0, 0.0, 0.0, 4.5]]).view(1, 1, 4, 4)
    torch.testing.assert_close(nn.MaxUnpool2d(2, 2)(pooled, indices), expected, atol=0, rtol=0)


def test_the_models_own_pool_and_unpool_pair_restores_the_maxima() -> None:
    model = segnet_small(num_classes=2)
    pools = [layer for layer in model.encoder if isinstance(layer, nn.MaxPool2d)]
    assert len(pools) == 5 and all(pool.return_indices for pool in pools)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 10)                  # continuous values: no ties
    pooled, indices = pools[0](x)                 # (2, 3, 3, 5)
    restored = model.unpool(pooled, indices, output_size=x.shape[-2:])
    torch.testing.assert_close(restored, _keep_window_maxima(x), atol=0, rtol=0)
    odd = torch.randn(1, 2, 7, 5)                 # pooling floors to 3x2; unpooling restores 7x5, last row/col 0
    pooled, indices = pools[0](odd)
    restored = model.unpool(pooled, indices, output_size=odd.shape[-2:])
    assert restored.shape == odd.shape and not restored[..., 6, :].any() and not restored[..., 4].any()
    torch.testing.assert_close(restored[..., :6, :4], _keep_window_maxima(odd[..., :6, :4]), atol=0, rtol=0)


def test_the_decoder_upsamples_with_the_encoders_indices() -> None:
    """Every unpooled map in a forward pass is nonzero only where the matching encoder map had its maxima."""
    model = segnet_small(num_classes=3).eval()
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        _, pooled = model.encode(model.normalizer(images))
    unpooled: list[Tensor] = []
    hook = model.unpool.register_forward_hook(lambda module, args, out: unpooled.append(out))
    with torch.no_grad():
        model(images)
    hook.remove()
    assert len(unpooled) == 5
    for out, (indices, size) in zip(unpooled, reversed(pooled)):
        assert out.shape[-2:] == size
        kept = torch.zeros_like(out).flatten(2).scatter_(2, indices.flatten(2), 1.0).view_as(out).bool()
        assert not out[~kept].any()               # zeros wherever no maximum came from
        per_window = F.avg_pool2d((out != 0).float(), 2) * 4
        assert per_window.max() <= 1              # at most one value per 2x2 window


# ------------------------------------------------------------------------------------------------ the networks

def test_segnet_vgg16_is_the_papers_network() -> None:
    with torch.device("meta"):                    # shapes only: no 29M-parameter initialisation
        model = segnet_vgg16(num_classes=11)
    encoder_convs = [m for m in model.encoder if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in encoder_convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    decoder_convs = [m for m in model.decoder.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in decoder_convs] == [512, 512, 512, 512, 512, 256, 256, 256, 128, 128, 64, 64]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 25   # every conv but the classifier
    assert model.classifier.kernel_size == (3, 3) and model.classifier.out_channels == 11
    assert model.classifier_names == ("classifier",) and model.get_submodule(model.first_conv) is encoder_convs[0]
    assert model.input_size == 512 and model_info("segnet_vgg16").task == "segment"
    assert sum(p.numel() for p in model.parameters()) == 29_449_355   # the paper's "29.5M"


@pytest.mark.parametrize(("factory", "size"), [(segnet_small, (64, 96)), (segnet_vgg16, (32, 32))])
def test_logits_are_at_the_input_resolution_in_both_modes(factory: Callable[..., SegNet],
                                                          size: tuple[int, int]) -> None:
    model = factory(num_classes=5)
    images = torch.rand(2, 3, *size)
    for training in (True, False):
        model.train(training)
        with torch.no_grad():
            raw = model(images)
        assert isinstance(raw, SegmentationOutput) and raw.logits.shape == (2, 5, *size) and raw.aux_logits == ()
    assert [m.shape for m in model.postprocess(raw, [(30, 20), size])] == [(30, 20), size]


def test_gray_input_and_bf16_autocast() -> None:
    model = segnet_small(num_classes=3, in_channels=1, width=8)
    images, targets = torch.rand(2, 1, 32, 32), torch.randint(0, 3, (2, 32, 32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model.loss(model(images), targets)
    assert losses["loss"].dtype == torch.float32 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert model.encoder[0].weight.grad is not None and torch.isfinite(model.encoder[0].weight.grad).all()


# ----------------------------------------------------------------------------------- torchvision's weights

def test_vgg16_bn_weights_load_into_the_encoder_and_compute_the_same_features(tmp_path: Path) -> None:
    state = _torchvision_vgg16_bn_features()
    reference = make_layers(cfgs["D"], batch_norm=True).eval()
    reference.load_state_dict({k[len("features."):]: v for k, v in state.items()})
    path = tmp_path / "vgg16_bn_features.pth"
    torch.save(state | {"classifier.6.weight": torch.zeros(1000, 4096)}, path)   # the FC layers are dropped
    model = segnet_vgg16(num_classes=4, encoder_weights=path).eval()
    for key, value in state.items():
        assert torch.equal(model.state_dict()[f"encoder.{key[len('features.'):]}"], value), key
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        encoded, pooled = model.encode(x)
        torch.testing.assert_close(encoded, reference(x), atol=0, rtol=0)
    assert [size for _, size in pooled] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]


def test_vgg16_bn_weights_for_gray_input_are_summed_over_rgb() -> None:
    state = _torchvision_vgg16_bn_features()
    gray = vgg16_bn_to_segnet(state, in_channels=1)
    torch.testing.assert_close(gray["encoder.0.weight"], state["features.0.weight"].sum(1, keepdim=True))
    assert set(gray) == {f"encoder.{k[len('features.'):]}" for k in state}
    with pytest.raises(ValueError, match=r"3 \(or, summed, 1\) input channels, not 4"):
        vgg16_bn_to_segnet(state, in_channels=4)
    with pytest.raises(ValueError, match="not a VGG state dict"):
        vgg16_bn_to_segnet({"conv1.weight": torch.zeros(1)})


def test_a_file_that_does_not_fit_the_encoder_is_named(tmp_path: Path) -> None:
    path = tmp_path / "not_vgg.pth"
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, path)
    model = segnet_small(num_classes=2)
    with pytest.raises(ValueError, match=r"not_vgg\.pth does not fit SegNet"):
        load_encoder_weights(model, path)


@pytest.mark.slow
def test_the_full_torchvision_vgg16_bn_checkpoint_loads(torchvision_checkpoint: Checkpoint) -> None:
    reference, path = torchvision_checkpoint("vgg16_bn")
    model = segnet_vgg16(num_classes=21, encoder_weights=path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x)[0], reference.features(x), atol=0, rtol=0)


# ------------------------------------------------------------------------------------------------- training

def _two_scenes(size: int = 64) -> tuple[Tensor, Tensor]:
    """Two images of a red square (class 1) and a blue disc (class 2) on gray, and their class maps."""
    images = torch.full((2, 3, size, size), 0.5)
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
def test_segnet_small_overfits_two_images() -> None:
    torch.manual_seed(0)
    images, targets = _two_scenes()
    model = segnet_small(num_classes=3)
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
