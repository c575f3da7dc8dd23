"""Object detectors. Importing this package registers every architecture under task "detect"."""
from ninshiki.models.detect import (
    faster_rcnn,  # noqa: F401
    rcnn,  # noqa: F401
    ssd,  # noqa: F401
    yolov1,  # noqa: F401
)
