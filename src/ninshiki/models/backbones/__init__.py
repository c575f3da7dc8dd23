"""Feature extractors shared by detection and segmentation heads (the classifiers are backbones too)."""
from ninshiki.models.backbones.small import SmallBackbone

__all__ = ["SmallBackbone"]
