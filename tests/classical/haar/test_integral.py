"""Integral images against direct pixel sums (the obviously-correct reference) and against OpenCV's `cv2.integral3`."""
import cv2
import numpy as np
import pytest

from ninshiki.classical.haar.integral import (
    difference_tables,
    integral_images,
    rect_corners,
    rect_sums,
    tilted_integral,
    window_grid_sums,
)


def _tilted_pixels(x: int, y: int, w: int, h: int, shape: tuple[int, int]) -> np.ndarray:
    """The pixels of OpenCV's tilted rectangle (x, y, w, h), by its definition in rotated coordinates: the
    rectangle turned 45 degrees about the table point (x, y), 2 w h pixels with s = px - x + 1 + py - y in
    [0, 2w) along its w side and t = py - y - px + x - 1 in [0, 2h) along its h side."""
    py, px = np.mgrid[:shape[0], :shape[1]]
    s, t = px - x + 1 + py - y, py - y - px + x - 1
    return (s >= 0) & (s < 2 * w) & (t >= 0) & (t < 2 * h)


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (13, 4), (31, 40)])
def test_tables_equal_opencv(shape):
    gray = np.random.default_rng(sum(shape)).integers(0, 256, shape).astype(np.uint8)
    ii, sq = integral_images(gray)
    ref_ii, ref_sq, ref_tilted = cv2.integral3(gray, sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)
    assert ii.dtype == sq.dtype == np.int64 and ii.shape == (shape[0] + 1, shape[1] + 1)
    np.testing.assert_array_equal(ii, ref_ii)
    np.testing.assert_array_equal(sq, ref_sq)
    np.testing.assert_array_equal(tilted_integral(gray), ref_tilted)


def test_tilted_table_matches_its_definition():
    gray = np.random.default_rng(1).integers(0, 256, (9, 11)).astype(np.int64)
    table = tilted_integral(gray)
    py, px = np.mgrid[:9, :11]
    for big_y in range(10):
        for big_x in range(12):
            inside = (py < big_y) & (np.abs(px - big_x + 1) <= big_y - 1 - py)
            assert table[big_y, big_x] == gray[inside].sum()


def test_rect_sums_equal_direct_sums_vectorised():
    rng = np.random.default_rng(2)
    gray = rng.integers(0, 256, (37, 29)).astype(np.uint8)
    ii, sq = integral_images(gray)
    x, y = rng.integers(0, 20, 200), rng.integers(0, 25, 200)
    w, h = rng.integers(0, 29 - x + 1), rng.integers(0, 37 - y + 1)
    got, got_sq = rect_sums(ii, x, y, w, h), rect_sums(sq, x, y, w, h)   # (200,) each, one call
    pixels = gray.astype(np.int64)
    want = [pixels[b:b + d, a:a + c].sum() for a, b, c, d in zip(x, y, w, h)]
    want_sq = [(pixels[b:b + d, a:a + c] ** 2).sum() for a, b, c, d in zip(x, y, w, h)]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_sq, want_sq)
    assert rect_sums(ii, x.reshape(20, 10), y.reshape(20, 10), w.reshape(20, 10), h.reshape(20, 10)).shape == (20, 10)


def test_tilted_rect_sums_equal_direct_sums():
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (30, 30)).astype(np.uint8)
    table = tilted_integral(gray)
    for x, y, w, h in [(5, 1, 3, 2), (10, 0, 1, 1), (8, 4, 6, 8), (12, 3, 9, 12), (1, 0, 29, 1)]:
        assert x - h >= 0 and x + w <= 30 and y + w + h <= 30
        inside = _tilted_pixels(x, y, w, h, gray.shape)
        assert inside.sum() == 2 * w * h
        assert rect_sums(table, x, y, w, h, tilted=True) == gray[inside].astype(np.int64).sum()


def test_window_grid_sums_equal_gathered_sums():
    rng = np.random.default_rng(4)
    gray = rng.integers(0, 256, (50, 61)).astype(np.uint8)
    ii, _ = integral_images(gray)
    ti = tilted_integral(gray)
    for table, rect, tilted in ((ii, (1, 1, 22, 22), False), (ii, (6, 4, 12, 9), False), (ti, (8, 2, 6, 5), True)):
        for step, rows, cols in ((2, 13, 19), (1, 26, 38)):
            grid = window_grid_sums(table, rect_corners(*rect, tilted), step, rows, cols)   # (rows, cols)
            wy, wx = np.mgrid[:rows, :cols] * step
            want = rect_sums(table, wx + rect[0], wy + rect[1], rect[2], rect[3], tilted=tilted)
            np.testing.assert_array_equal(grid, want)


def test_difference_tables_give_sums_in_two_look_ups():
    rng = np.random.default_rng(5)
    gray = rng.integers(0, 256, (40, 45)).astype(np.uint8)
    ii, _ = integral_images(gray)
    ti = tilted_integral(gray)
    keys = np.array([[0, 3], [0, 12], [1, 4], [1, 7]])
    tables = difference_tables(ii, ti, keys)   # (4, 41, 46)
    assert tables.shape == (4, 41, 46) and tables.dtype == np.int32
    for k, (tilted, w) in enumerate(keys):
        for x, y, h in [(9, 0, 2), (12, 5, 8), (20, 17, 6)]:
            if tilted:
                got = tables[k, y, x] - tables[k, y + h, x - h]
            else:
                got = tables[k, y + h, x] - tables[k, y, x]
            assert got == rect_sums(ti if tilted else ii, x, y, w, h, tilted=bool(tilted))


def test_integral_images_refuse_color_images():
    with pytest.raises(ValueError, match="grayscale"):
        integral_images(np.zeros((4, 4, 3), np.uint8))
