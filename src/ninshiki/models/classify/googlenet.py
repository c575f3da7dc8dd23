"""GoogLeNet (Inception v1): Szegedy et al., "Going Deeper with Convolutions" (CVPR 2015, arXiv:1409.4842).

Built by torchvision, so torchvision's weights load unchanged. Two differences from the paper come with it:
batch normalisation after every convolution, and a 3x3 instead of a 5x5 convolution in each Inception
module's third branch (kept for weight compatibility; pytorch/vision#906). The two auxiliary classifiers are
used in training as in the paper; unlike torchvision, the output type is the same in training and evaluation.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torchvision import models as tvm

from ninshiki.models.layers import conv_like
from ninshiki.registry import register
from ninshiki.structures import ClassifierOutput, FeatureInfo

_PAPER = "Szegedy et al., Going Deeper with Convolutions, CVPR 2015"


class GoogLeNet(tvm.GoogLeNet):
    """torchvision's GoogLeNet with the backbone contract and a `ClassifierOutput` in both modes.

    In training mode `aux_logits` holds (aux1, aux2), the heads on inception4a and inception4d, which the
    paper adds to the loss with weight 0.3; in evaluation mode it is empty and the heads are not run.
    Features are inception3b, inception4e and inception5b (strides 8, 16, 32).

    Args:
        num_classes: Number of classes K.
        in_channels: Input channels; other than 3 replaces the first convolution.
        aux_logits: Build the two auxiliary classifiers.
        transform_input: Map inputs normalised with the ImageNet mean and std to the [-1, 1] scaling that
            torchvision's pretrained weights expect (their builder turns it on; here it is off by default).
        dropout: Dropout before the main classifier.
        dropout_aux: Dropout in the auxiliary classifiers.

    Shape:
        - Input: (B, in_channels, H, W), H and W at least 32.
        - Output: `ClassifierOutput` with logits (B, K) and aux_logits of (B, K) tensors.
    """

    classifier_names: tuple[str, ...]
    first_conv: str = "conv1.conv"
    feature_info: list[FeatureInfo]

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, aux_logits: bool = True,
                 transform_input: bool = False, dropout: float = 0.2, dropout_aux: float = 0.7) -> None:
        if transform_input and in_channels != 3:
            raise ValueError(f"transform_input re-normalises 3 RGB channels; got in_channels={in_channels}")
        super().__init__(num_classes=num_classes, aux_logits=aux_logits, transform_input=transform_input,
                         init_weights=True, dropout=dropout, dropout_aux=dropout_aux)
        if in_channels != 3:
            conv = conv_like(self.conv1.conv, in_channels=in_channels)
            nn.init.trunc_normal_(conv.weight, mean=0.0, std=0.01, a=-2, b=2)  # torchvision's GoogLeNet init
            self.conv1.conv = conv
        self.classifier_names = ("fc", "aux1.fc2", "aux2.fc2") if aux_logits else ("fc",)
        self.feature_info = [FeatureInfo(480, 8, "inception3b"), FeatureInfo(832, 16, "inception4e"),
                             FeatureInfo(1024, 32, "inception5b")]

    def forward_features(self, x: Tensor) -> list[Tensor]:
        return self._run(x, with_aux=False)[0]

    def forward(self, x: Tensor) -> ClassifierOutput:  # type: ignore[override]
        features, aux = self._run(x, with_aux=self.training)
        x = self.avgpool(features[-1]).flatten(1)           # (B, 1024)
        return ClassifierOutput(self.fc(self.dropout(x)), aux)

    def _run(self, x: Tensor, *, with_aux: bool) -> tuple[list[Tensor], tuple[Tensor, ...]]:
        x = self._transform_input(x)
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        c3 = self.inception3b(self.inception3a(x))          # (B, 480, H/8, W/8)
        x = self.inception4a(self.maxpool3(c3))
        aux = []
        if with_aux and self.aux1 is not None:
            aux.append(self.aux1(x))
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        if with_aux and self.aux2 is not None:
            aux.append(self.aux2(x))
        c4 = self.inception4e(x)                            # (B, 832, H/16, W/16)
        c5 = self.inception5b(self.inception5a(self.maxpool4(c4)))  # (B, 1024, H/32, W/32)
        return [c3, c4, c5], tuple(aux)


@register(task="classify", test_input=(3, 64, 64), paper=_PAPER, torchvision="googlenet")
def googlenet(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> GoogLeNet:
    """GoogLeNet (6.6M parameters, 13.0M with the aux heads). kwargs: `aux_logits`, `transform_input`, `dropout`,
    `dropout_aux`; pass `transform_input=True` with torchvision's pretrained weights."""
    return GoogLeNet(num_classes=num_classes, in_channels=in_channels, **kwargs)
