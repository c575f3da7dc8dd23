"""Pieces of FCN (Long, Shelhamer and Darrell, CVPR 2015): bilinear upsampling and the VGG-16 weight surgery.

Upsampling is a transposed convolution whose kernel is bilinear interpolation (the reference's
`surgery.upsample_filt`). Where a map's samples lie decides the kernel and the crop:

- Caffe's FCN on VGG-16 (2x2 max-pools): a stride-s sample sits *between* input pixels, so the reference uses
  kernels of 2s, no padding, and crops the output at offsets its `coord_map` computed (`on_samples=False`).
- Stride-2 convolutions with padding 1 (`SmallBackbone`): sample i of a stride-s map sits *on* input pixel
  s * i. A kernel of 2s - 1 with padding s - 1 and output padding s - 1 gives exactly h * s pixels with
  sample i on pixel s * i (`on_samples=True`). Upsampling twice then equals upsampling once by the product
  (linear interpolation of a piecewise-linear signal whose knots are samples reproduces it), which is what
  makes FCN-16s start out exactly as the FCN-32s it is initialised from.
"""
from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def bilinear_kernel(size: int) -> Tensor:
    """The 2-D bilinear interpolation kernel of side `size` (Shelhamer's `upsample_filt`).

    Even sizes 2f upsample by f with samples between output pixels, odd sizes 2f - 1 by f with samples on them.

    Shape:
        - Output: (size, size), float32.
    """
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(size, dtype=torch.float64) - center).abs() / factor   # (size,)
    return torch.outer(ramp, ramp).float()


def upsampling_layout(factor: int, *, on_samples: bool) -> tuple[int, int, int]:
    """(kernel_size, padding, output_padding) of a bilinear x`factor` transposed convolution.

    `on_samples=False` is Caffe's layout: kernel 2f, output (h + 1) * f pixels, to be cropped by the caller.
    `on_samples=True`: kernel 2f - 1, output h * f pixels with input sample i on output pixel f * i.
    """
    if on_samples:
        return 2 * factor - 1, factor - 1, factor - 1
    return 2 * factor, 0, 0


def bilinear_upsampling(channels: int, factor: int, *, on_samples: bool) -> nn.ConvTranspose2d:
    """A learnable x`factor` upsampling of `channels` maps, initialised to bilinear interpolation.

    Channel c reads only channel c at initialisation (the reference's "diagonal" init); training may mix
    them. No bias, as in the reference.
    """
    kernel_size, padding, output_padding = upsampling_layout(factor, on_samples=on_samples)
    layer = nn.ConvTranspose2d(channels, channels, kernel_size, stride=factor, padding=padding,
                               output_padding=output_padding, bias=False)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[range(channels), range(channels)] = bilinear_kernel(kernel_size)
    return layer


class BilinearUpsampling(nn.Module):
    """A fixed bilinear x`factor` upsampling, one kernel per channel: FCN's final layer (not learned).

    The paper fixes the last upsampling to bilinear interpolation (its Caffe models give it lr_mult 0); a
    kernel buffer instead of a frozen parameter keeps it out of optimisers and state dicts. It runs in
    float32 under autocast: its output is the logits the loss reads.

    Args:
        channels: Maps to upsample (the number of classes).
        factor: Integer upsampling factor (the stride of the map).
        on_samples: Sample layout; see `upsampling_layout`.

    Shape:
        - Input: (B, channels, h, w). Output: (B, channels, h * f, w * f) if `on_samples`, else
          (B, channels, (h + 1) * f, (w + 1) * f); float32.
    """

    def __init__(self, *, channels: int, factor: int, on_samples: bool) -> None:
        super().__init__()
        kernel_size, self.padding, self.output_padding = upsampling_layout(factor, on_samples=on_samples)
        self.factor = factor
        kernel = bilinear_kernel(kernel_size).expand(channels, 1, kernel_size, kernel_size).clone()
        self.register_buffer("kernel", kernel, persistent=False)   # (channels, 1, k, k)

    def forward(self, x: Tensor) -> Tensor:
        device = x.device.type
        with torch.autocast(device, enabled=False) if torch.amp.is_autocast_available(device) else nullcontext():
            return F.conv_transpose2d(x.float(), self.kernel.float(), stride=self.factor, padding=self.padding,
                                      output_padding=self.output_padding, groups=x.shape[1])


def crop(x: Tensor, offset: int, height: int, width: int) -> Tensor:
    """x[..., offset:offset + height, offset:offset + width], checked (Caffe's Crop layer).

    Shape:
        - x: (B, C, H, W) with H >= offset + height, W >= offset + width. Output: (B, C, height, width).
    """
    if x.shape[-2] < offset + height or x.shape[-1] < offset + width:
        raise ValueError(f"cannot crop {height}x{width} at offset {offset} from a {x.shape[-2]}x{x.shape[-1]} map")
    return x[..., offset:offset + height, offset:offset + width]


def vgg16_to_fcn(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Convert a torchvision `vgg16` state dict into the trunk of `fcn32s_vgg16` / `fcn16s_vgg16` / `fcn8s_vgg16`.

    The paper's "convolutionalization": `features.*` (the 13 convolutions) are kept as they are; the first
    two fully connected layers become convolutions, `classifier.0` (4096 x 25088) -> `fc6` (4096, 512, 7, 7)
    and `classifier.3` (4096 x 4096) -> `fc7` (4096, 4096, 1, 1); the ImageNet classifier `classifier.6` is
    dropped. Load the result with `model.load_state_dict(vgg16_to_fcn(sd), strict=False)`: the keys it
    leaves missing are exactly those under `model.classifier_names` (score layers, learned upsampling),
    which keep the paper's initialisation (zero scores, bilinear upsampling). A flattened pool5 is
    (channel, row, column)-major, so the reshape is exact: fc6 on a 7x7 pool5 map gives the Linear's output.

    Raises:
        ValueError: `state_dict` is not a VGG-16 (without batch norm) state dict; the message lists the keys.
    """
    conv_indices = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)   # VGG-16's convolutions in `features`
    expected = [f"features.{i}.{p}" for i in conv_indices for p in ("weight", "bias")]
    expected += [f"classifier.{i}.{p}" for i in (0, 3) for p in ("weight", "bias")]
    missing = [key for key in expected if key not in state_dict]
    if missing:
        raise ValueError(f"not a torchvision vgg16 state dict: missing {missing[:6]}"
                         f"{' ...' if len(missing) > 6 else ''}")
    fc6, fc7 = state_dict["classifier.0.weight"], state_dict["classifier.3.weight"]
    if tuple(fc6.shape) != (4096, 512 * 7 * 7) or tuple(fc7.shape) != (4096, 4096):
        raise ValueError(f"not a torchvision vgg16 state dict: classifier.0.weight {tuple(fc6.shape)} and "
                         f"classifier.3.weight {tuple(fc7.shape)}, expected (4096, 25088) and (4096, 4096)")
    out = {key: state_dict[key] for key in expected if key.startswith("features.")}
    out["fc6.weight"] = fc6.reshape(4096, 512, 7, 7)
    out["fc6.bias"] = state_dict["classifier.0.bias"]
    out["fc7.weight"] = fc7.reshape(4096, 4096, 1, 1)
    out["fc7.bias"] = state_dict["classifier.3.bias"]
    return out
