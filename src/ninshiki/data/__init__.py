"""Data: image files and standard formats in, uint8 tensors and typed samples out."""
from __future__ import annotations

from ninshiki.data.checks import DataReport, check_dataset, format_report
from ninshiki.data.datasets import BUILTIN_SOURCES, load_classification_data
from ninshiki.data.images import (MAX_PIXELS, ImageInfo, ImageReadError, UnreadableImageWarning, inspect_image,
                                  read_image, resize_to, to_channels)
from ninshiki.data.splits import (ClassificationData, ConvertedSplit, FileSplit, InMemorySplit, Unreadable,
                                  collate_skipping, stratified_split)

__all__ = [
    "BUILTIN_SOURCES", "MAX_PIXELS", "ClassificationData", "ConvertedSplit", "DataReport", "FileSplit", "ImageInfo",
    "ImageReadError", "InMemorySplit", "Unreadable", "UnreadableImageWarning", "check_dataset", "collate_skipping",
    "format_report", "inspect_image", "load_classification_data", "read_image", "resize_to", "stratified_split",
    "to_channels",
]
