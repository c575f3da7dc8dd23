"""Instance segmenters. Importing this package registers every architecture under task "instance"."""
from ninshiki.models.instance import mask_rcnn  # noqa: F401
