"""Semantic segmenters. Importing this package registers every architecture under task "segment"."""
from ninshiki.models.segment import (
    fcn,  # noqa: F401
    pspnet,  # noqa: F401
    segnet,  # noqa: F401
)
