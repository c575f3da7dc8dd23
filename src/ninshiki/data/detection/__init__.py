"""Object detection data: annotated images in, letterboxed batches out; predict sources; mosaic.

`DetectionDataset` decodes the files of an `AnnotatedSet` and applies a transform (`train_transform`,
`eval_transform`); `detection_loader` batches the samples as `DetectionBatch`es; every sample carries the
`Letterbox` that maps network-input boxes back to its original image. `iter_sources` reads what `predict`
is pointed at: an image, a folder, a glob pattern or a video.
"""
from __future__ import annotations

from ninshiki.data.detection.color import RandomHSV, hsv_jitter
from ninshiki.data.detection.dataset import (
    DetectionBatch,
    DetectionDataset,
    DetectionSample,
    collate_detection,
    detection_loader,
)
from ninshiki.data.detection.mosaic import mosaic, random_center
from ninshiki.data.detection.orientation import exif_orientation, orient_boxes, upright_annotation, upright_boxes
from ninshiki.data.detection.sources import (
    VIDEO_EXTENSIONS,
    SourceBatch,
    VideoWriter,
    is_video_file,
    iter_sources,
    list_sources,
)
from ninshiki.data.detection.transforms import (
    GREY,
    MODES,
    DetectionTransform,
    Letterbox,
    eval_transform,
    letterbox,
    letterbox_boxes,
    train_transform,
)

__all__ = [
    "GREY", "MODES", "VIDEO_EXTENSIONS", "DetectionBatch", "DetectionDataset", "DetectionSample",
    "DetectionTransform", "Letterbox", "RandomHSV", "SourceBatch", "VideoWriter", "collate_detection", "detection_loader",
    "eval_transform", "exif_orientation", "hsv_jitter", "is_video_file", "iter_sources", "letterbox", "letterbox_boxes",
    "list_sources", "mosaic", "orient_boxes", "random_center", "train_transform", "upright_annotation",
    "upright_boxes",
]
