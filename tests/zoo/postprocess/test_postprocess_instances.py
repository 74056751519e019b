"""Qu et al.'s inner/contour recovery, Yuan & Suh's three-class decoding and the label-map helpers, on hand-made maps."""

import numpy as np
import pytest

from zoo.errors import ConfigError
from zoo.postprocess import (instances_from_inner_contour, instances_from_three_class,
                             relabel_sequential, remove_small)


def test_relabel_sequential_keeps_order_and_background():
    a = np.array([[0, 7, 7], [300, 0, 2]], np.uint16)
    np.testing.assert_array_equal(relabel_sequential(a), [[0, 2, 2], [3, 0, 1]])
    np.testing.assert_array_equal(relabel_sequential(np.array([[4, 4], [9, 9]])), [[1, 1], [2, 2]])
    assert relabel_sequential(np.zeros((3, 3), int)).max() == 0
    assert relabel_sequential(np.zeros((3, 3), int)).dtype == np.int32


def test_remove_small_counts_pixels():
    a = np.array([[1, 1, 0, 5],
                  [1, 0, 0, 5],
                  [0, 9, 9, 5]])
    # sizes: 1 -> 3, 5 -> 3, 9 -> 2
    np.testing.assert_array_equal(remove_small(a, 3), np.where(a == 9, 0, a))
    np.testing.assert_array_equal(remove_small(a, 4), np.zeros_like(a))
    np.testing.assert_array_equal(remove_small(a, 0), a)
    with pytest.raises(ConfigError):
        remove_small(a, -1)
    with pytest.raises(ConfigError, match="integer"):
        remove_small(a.astype(float), 2)


def two_touching_nuclei():
    """Ground truth: two 5x5 squares side by side (columns 1-5 and 6-10, rows 1-5) in a 7x12 image.
    Qu-style prediction: inner = the 3x3 centres, contour = the one-pixel ring of each square."""
    gt = np.zeros((7, 12), np.int32)
    gt[1:6, 1:6] = 1
    gt[1:6, 6:11] = 2
    inner = np.zeros(gt.shape)
    inner[2:5, 2:5] = 0.9
    inner[2:5, 7:10] = 0.9
    contour = np.where((gt > 0) & (inner == 0), 0.8, 0.05)
    return gt, inner, contour


def test_inner_contour_recovers_touching_nuclei():
    gt, inner, contour = two_touching_nuclei()
    inst = instances_from_inner_contour(inner, contour, radius=1)
    # the dilation by one pixel (a disk of radius 1 = cross) grows each 3x3 centre to a 5x5 square minus its four
    # corners (the corners are at distance sqrt(2) > 1); the contour map limits nothing here
    assert inst.max() == 2
    expect = np.zeros_like(gt)
    expect[1:6, 1:6] = 1
    expect[1:6, 6:11] = 2
    for r, c in [(1, 1), (1, 5), (5, 1), (5, 5), (1, 6), (1, 10), (5, 6), (5, 10)]:
        expect[r, c] = 0
    np.testing.assert_array_equal(inst, expect)
    # radius 2 would leak beyond the nuclei; the contour map keeps the growth inside inner | contour
    inst2 = instances_from_inner_contour(inner, contour, radius=2)
    np.testing.assert_array_equal(inst2 > 0, gt > 0)
    assert inst2.max() == 2 and (inst2[:, :6] != 2).all() and (inst2[:, 6:] != 1).all()
    # without a contour map, the plain dilation (Qu et al.) grows into the background
    inst3 = instances_from_inner_contour(inner, None, radius=2)
    assert (inst3 > 0).sum() > (gt > 0).sum()


def test_inner_contour_contour_wins_and_min_size():
    gt, inner, contour = two_touching_nuclei()
    inner = inner.copy()
    inner[3, 5:7] = 0.7       # a thin inner bridge between the two centres...
    c = contour.copy()
    c[3, 5:7] = 0.75          # ...where the contour is more probable: not inner, so the nuclei stay apart
    assert instances_from_inner_contour(inner, c, radius=1).max() == 2
    assert instances_from_inner_contour(inner, None, radius=1).max() == 1   # no contour: they merge
    inner[0, 11] = 0.9        # a 1-pixel speck
    assert instances_from_inner_contour(inner, c, radius=0).max() == 3
    assert instances_from_inner_contour(inner, c, radius=0, min_size=2).max() == 2
    assert instances_from_inner_contour(np.zeros((5, 5)), np.zeros((5, 5))).max() == 0


def test_three_class_decoding_assigns_boundary_to_the_closer_nucleus():
    gt, inner, contour = two_touching_nuclei()
    cls = np.zeros(gt.shape, np.int64)
    cls[contour > 0.5] = 2
    cls[inner > 0.5] = 1
    inst = instances_from_three_class(cls)
    np.testing.assert_array_equal(inst, gt)   # every ring pixel is closer to its own centre
    # the same through (H, W, 3) probabilities
    probs = np.stack([cls == 0, cls == 1, cls == 2], -1).astype(float)
    np.testing.assert_array_equal(instances_from_three_class(probs), gt)


def test_three_class_orphans_and_empty():
    cls = np.zeros((6, 10), np.int64)
    cls[1:4, 1:4] = 2            # an all-boundary blob: no interior
    cls[1:4, 6:9] = 2
    cls[2, 7] = 1
    assert instances_from_three_class(cls).max() == 2
    assert instances_from_three_class(cls, keep_orphan_boundaries=False).max() == 1
    assert instances_from_three_class(np.zeros((4, 4), np.int64)).max() == 0
    with pytest.raises(ConfigError):
        instances_from_three_class(np.zeros((4, 4, 2)))
