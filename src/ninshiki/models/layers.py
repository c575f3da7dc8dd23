"""Small helpers shared by the model zoo: first-layer replacement and feature taps on plain Sequentials."""
from __future__ import annotations

from collections.abc import Collection

from torch import Tensor, nn

from ninshiki.structures import FeatureInfo


def conv_like(conv: nn.Conv2d, *, in_channels: int) -> nn.Conv2d:
    """A new convolution with `conv`'s hyperparameters but `in_channels` input channels.

    Adapts a network's first layer to gray (1) or multispectral inputs. The new layer has PyTorch's default
    initialisation; callers re-apply their architecture's own scheme.
    """
    return nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                     dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                     padding_mode=conv.padding_mode)


def pool_feature_info(layers: nn.Sequential, prefix: str) -> list[FeatureInfo]:
    """One `FeatureInfo` per max-pool output of a plain conv/ReLU/pool Sequential (AlexNet, VGG).

    Channels and strides are read off the layers, so they cannot drift from the network.
    """
    channels, stride, info = 0, 1, []
    for index, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d):
            channels, stride = layer.out_channels, stride * _scalar(layer.stride)
        elif isinstance(layer, nn.MaxPool2d):
            stride *= _scalar(layer.stride)
            info.append(FeatureInfo(channels, stride, f"{prefix}.{index}"))
    return info


def run_with_taps(layers: nn.Sequential, x: Tensor, taps: Collection[int]) -> list[Tensor]:
    """Run `layers` on `x` and return the outputs of the layers at the indices `taps`, in order.

    A tapped output must not be followed by an in-place layer (it would be overwritten); pools and
    convolutions, the layers tapped here, are followed by convolutions.
    """
    outputs = []
    for index, layer in enumerate(layers):
        x = layer(x)
        if index in taps:
            outputs.append(x)
    return outputs


def _scalar(value: int | tuple[int, ...]) -> int:
    # Square kernels everywhere in the zoo: (2, 2) -> 2.
    return value if isinstance(value, int) else value[0]
