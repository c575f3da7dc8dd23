"""The CNNs R-CNN runs on its warped crops: one feature vector per crop, for the class and box heads.

`SmallCropNet` is the CPU default, trained from scratch. `ClassifierCropNet` takes any registered classifier
with a single classifier layer and returns what that layer would see: AlexNet's fc7 activations, the features
R-CNN fine-tunes and classifies (Girshick et al., CVPR 2014), or a ResNet's pooled features.
"""
from __future__ import annotations

from torch import Tensor, nn

from ninshiki.models.backbones.small import SmallBackbone
from ninshiki.models.weights import create_model
from ninshiki.structures import split_logits


class SmallCropNet(nn.Module):
    """`SmallBackbone` to stride 32, global average pooling, and one fully connected layer with ReLU and dropout.

    Shape:
        - Input: (R, C, S, S) crops. Output: (R, hidden).
    """

    def __init__(self, *, in_channels: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.trunk = SmallBackbone(in_channels=in_channels, out_strides=(32,))
        self.fc = nn.Sequential(nn.Linear(self.trunk.feature_info[-1].channels, hidden), nn.ReLU(inplace=True),
                                nn.Dropout(dropout))
        self.out_features = hidden
        self.first_conv = f"trunk.{self.trunk.first_conv}"

    def forward(self, crops: Tensor) -> Tensor:
        x = self.trunk.forward_features(crops)[-1]        # (R, C', S / 32, S / 32)
        return self.fc(x.mean(dim=(2, 3)))


class ClassifierCropNet(nn.Module):
    """A registered classifier whose classifier layer is replaced by the identity: its penultimate features.

    `weights` (R-CNN's supervised pre-training, e.g. torchvision's ImageNet AlexNet) are loaded into the whole
    classifier before its last layer is removed; parameter names under `net` are the classifier's own.

    Shape:
        - Input: (R, C, S, S) crops, S at least the classifier's smallest input (63 for AlexNet). Output: (R, D).
    """

    def __init__(self, name: str, *, in_channels: int, weights: str | None = None) -> None:
        super().__init__()
        net = create_model(name, num_classes=1000, in_channels=in_channels, weights=weights)
        names = tuple(getattr(net, "classifier_names", ()))
        last = net.get_submodule(names[0]) if names else None
        if len(names) != 1 or not isinstance(last, nn.Linear):
            raise ValueError(f"rcnn: backbone {name!r} must have exactly one linear classifier layer, has {names}; "
                             f"use 'small' or a classifier such as 'alexnet', 'vgg16' or 'resnet18'")
        self.out_features = last.in_features
        net.set_submodule(names[0], nn.Identity())
        self.net = net
        self.first_conv = f"net.{net.first_conv}"

    def forward(self, crops: Tensor) -> Tensor:
        return split_logits(self.net(crops))[0]


def crop_encoder(backbone: str, *, in_channels: int, hidden: int, dropout: float,
                 weights: str | None = None) -> tuple[SmallCropNet | ClassifierCropNet, int]:
    """The crop CNN named `backbone` ("small" or a registered classifier) and its feature width."""
    if backbone == "small":
        if weights is not None:
            raise ValueError("rcnn: backbone_weights needs a registered classifier backbone, not 'small'")
        net: SmallCropNet | ClassifierCropNet = SmallCropNet(in_channels=in_channels, hidden=hidden, dropout=dropout)
    else:
        net = ClassifierCropNet(backbone, in_channels=in_channels, weights=weights)
    return net, net.out_features
