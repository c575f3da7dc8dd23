"""Image classifiers. Importing this package registers every architecture under task "classify"."""
from ninshiki.models.classify import (  # noqa: F401
    alexnet,
    googlenet,
    googlenet_small,
    resnet,
    resnet_cifar,
    vgg,
)
