"""draw_label_mask: class maps from polygons and RLE, painting order, crowds, and objects that cannot be drawn."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ninshiki.data.annotations import AnnotatedImage, AnnotatedSet, AnnotationError
from ninshiki.data.formats.rle import encode_mask
from ninshiki.data.segmentation.draw import draw_label_mask, is_background, require_segmentations
from ninshiki.data.segmentation.types import SegmentationSet, SegmentedImage, load_label_mask

CLASSES = ["background", "cat", "dog"]


def square(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    """A COCO polygon of the pixels [x0, x1) x [y0, y1)."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def image(segmentations: list[object] | None, labels: list[int], *, crowd: list[bool] | None = None,
          size: tuple[int, int] = (10, 8)) -> AnnotatedImage:
    n = len(labels)
    return AnnotatedImage(file=Path("a.jpg"), width=size[0], height=size[1], boxes=np.zeros((n, 4)),
                          labels=np.array(labels), iscrowd=crowd, segmentations=segmentations)


def dataset(root: Path = Path("/data")) -> SegmentationSet:
    return SegmentationSet(classes=list(CLASSES), items=[], root=root)


def test_labels_plus_one_later_objects_on_top() -> None:
    annotation = image([square(1, 1, 6, 5), square(4, 2, 9, 7)], [1, 0])
    labels = draw_label_mask(annotation, dataset())
    expected = np.zeros((8, 10), np.uint8)
    expected[1:5, 1:6] = 2          # dog (label 1) first
    expected[2:7, 4:9] = 1          # cat (label 0) drawn over it
    assert labels.dtype == np.uint8 and labels.shape == (8, 10)
    np.testing.assert_array_equal(labels, expected)


def test_rle_objects_and_crowds_drawn_under_the_objects() -> None:
    crowd_region = np.zeros((8, 10), bool)
    crowd_region[:, 5:] = True
    blob = np.zeros((8, 10), bool)
    blob[3:5, 6:8] = True
    # the crowd is listed last, but an object outlined on its own wins over the crowd's rough region
    annotation = image([encode_mask(blob), square(0, 0, 2, 2), encode_mask(crowd_region)], [0, 1, 1],
                       crowd=[False, False, True])
    labels = draw_label_mask(annotation, SegmentationSet(classes=list(CLASSES), items=[], ignore_index=200))
    expected = np.zeros((8, 10), np.uint8)
    expected[crowd_region] = 200
    expected[blob] = 1
    expected[0:2, 0:2] = 2
    np.testing.assert_array_equal(labels, expected)


def test_an_image_without_objects_is_all_background() -> None:
    labels = draw_label_mask(image(None, []), dataset())
    np.testing.assert_array_equal(labels, np.zeros((8, 10), np.uint8))


@pytest.mark.parametrize("segmentations", [None, [square(0, 0, 2, 2), None], [square(0, 0, 2, 2), []],
                                           [square(0, 0, 2, 2), [[]]]])
def test_an_object_without_a_segmentation_is_an_error(segmentations: list[object] | None) -> None:
    annotation = image(segmentations, [0, 1])
    k = 0 if segmentations is None else 1
    name = "cat" if k == 0 else "dog"
    with pytest.raises(AnnotationError, match=rf"/data/a.jpg: object {k} \({name}\) has no segmentation"):
        draw_label_mask(annotation, dataset())
    annotated = AnnotatedSet(classes=["cat", "dog"], images=[annotation], root=Path("/data"))
    with pytest.raises(AnnotationError, match=rf"/data/a.jpg: object {k} \({name}\) has no segmentation"):
        require_segmentations(annotated)   # the same check, when a set is read


def test_labels_outside_the_classes_and_malformed_segmentations() -> None:
    with pytest.raises(AnnotationError, match=r"/data/a.jpg: object 1 has label 2, outside the 2 object classes"):
        draw_label_mask(image([square(0, 0, 2, 2), square(0, 0, 2, 2)], [0, 2]), dataset())
    with pytest.raises(AnnotationError, match=r"/data/a.jpg: object 0 \(cat\): malformed segmentation .*polygon 0"):
        draw_label_mask(image([[[1.0, 1.0, 4.0, 1.0, 4.0]]], [0]), dataset())
    wrong_size = encode_mask(np.ones((3, 3), bool))
    with pytest.raises(AnnotationError, match=r"object 0 \(cat\): malformed segmentation .*RLE size \[3, 3\]"):
        draw_label_mask(image([wrong_size], [0]), dataset())


def test_load_label_mask_draws_polygon_items(tmp_path: Path) -> None:
    annotation = image([square(2, 2, 5, 5)], [1])
    seg_set = SegmentationSet(classes=list(CLASSES), items=[SegmentedImage(file=Path("a.jpg"), annotation=annotation)],
                              root=tmp_path)
    labels = load_label_mask(seg_set, seg_set.items[0], image_size=(8, 10))
    assert labels[3, 3] == 2 and labels.sum() == 2 * 9
    with pytest.raises(AnnotationError, match=r"a.jpg: mask is 10x8 \(WxH\) but its image is 9x8"):
        load_label_mask(seg_set, seg_set.items[0], image_size=(8, 9))


def test_background_names() -> None:
    assert all(is_background(name) for name in ("background", "_background_", "Background", "bg "))
    assert not any(is_background(name) for name in ("road", "backgrounds", ""))
