"""Targets and weight maps on hand-made instance maps, against hand-worked values."""

import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage
from skimage.segmentation import find_boundaries

from zoo.data import targets


def _np(t):
    return np.asarray(t)


def test_three_class_square_nucleus_width1():
    inst = np.zeros((6, 6), np.int32)
    inst[1:5, 1:5] = 7
    want = np.array([[0, 0, 0, 0, 0, 0],
                      [0, 2, 2, 2, 2, 0],
                      [0, 2, 1, 1, 2, 0],
                      [0, 2, 1, 1, 2, 0],
                      [0, 2, 2, 2, 2, 0],
                      [0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(_np(targets.segmentation_target(inst, "three_class", 1)), want)
    np.testing.assert_array_equal(_np(targets.segmentation_target(inst, "binary")), inst > 0)


def test_three_class_width2_and_touching_nuclei():
    inst = np.zeros((9, 9), np.int32)
    inst[1:8, 1:8] = 1
    y = _np(targets.segmentation_target(inst, "three_class", 2))
    assert np.array_equal(np.argwhere(y == 1), [[r, c] for r in range(3, 6) for c in range(3, 6)])  # 3x3 core
    assert (y == 2).sum() == 49 - 9 and (y[inst == 0] == 0).all()
    # two nuclei touching along a vertical line: the columns on both sides of the line are boundary
    t = np.zeros((5, 8), np.int32)
    t[:, :4], t[:, 4:] = 1, 2
    y = _np(targets.segmentation_target(t, "inner_contour", 1))
    want = np.ones((5, 8), np.int64)
    want[:, 3:5] = 2
    np.testing.assert_array_equal(y, want)  # the map's own edge is not a boundary


def test_boundary_width1_equals_skimage_inner_connectivity2():
    rng = np.random.default_rng(0)
    inst = ndimage.label(ndimage.binary_opening(rng.random((64, 64)) > 0.45))[0]
    inst[20:30, 20:40] = inst.max() + 1  # a nucleus touching others
    ours = _np(targets.boundary(inst, 1))
    ref = find_boundaries(inst, connectivity=2, mode="inner") & (inst > 0)
    assert inst.max() > 20 and ours.sum() > 100
    np.testing.assert_array_equal(ours, ref)  # edges included: neither marks the map's own edge


def test_merged_typed_inner_contour_and_ignore():
    inst = np.zeros((7, 12), np.int32)
    inst[1:6, 1:6], inst[1:6, 6:11] = 1, 2
    types = np.where(inst == 1, 3, 0).astype(np.int32)  # nucleus 1 has type 3, nucleus 2 unknown
    y = _np(targets.segmentation_target(inst, "inner_contour", 1, types, num_types=4))
    assert set(np.unique(y[inst == 1])) == {3, 5} and y[3, 3] == 3 and y[1, 3] == 5
    assert set(np.unique(y[inst == 2])) == {0, 5}  # unknown inner -> 0, contour K+1 = 5
    ign = _np(targets.typed_ignore(inst, types, y, 4))
    assert (ign[(inst == 2) & (y == 0)] == 0).all() and ign[(inst == 2) & (y == 5)].min() == 1
    assert ign[inst != 2].min() == 1


def test_unet_weight_hand_values():
    inst = np.zeros((5, 11), np.int32)
    inst[2, 2], inst[2, 8] = 1, 2
    w = _np(targets.weight_map("unet", inst, tf.zeros((5, 11), tf.int32), 2, w0=10.0, sigma=5.0))
    mid = 1 + 10 * math.exp(-36 / 50)         # d1 = d2 = 3 at (2, 5)
    assert w[2, 5] == pytest.approx(mid, abs=1e-5)
    assert w[2, 2] == pytest.approx(mid, abs=1e-5)  # inside nucleus 1: d1 = 0, d2 = 6
    assert w[0, 5] == pytest.approx(1 + 10 * math.exp(-52 / 50), abs=1e-5)  # d1 = d2 = sqrt(13)
    assert w[0, 0] == pytest.approx(1 + 10 * math.exp(-(math.sqrt(8) + math.sqrt(68)) ** 2 / 50), abs=1e-5)
    one = np.zeros((5, 11), np.int32)
    one[2, 2] = 1
    np.testing.assert_allclose(targets.unet_border_term(one), 0.0)  # one nucleus: no second distance
    np.testing.assert_allclose(targets.unet_border_term(np.zeros((4, 4), np.int32)), 0.0)


def test_unet_weight_matches_brute_force():
    rng = np.random.default_rng(1)
    inst = ndimage.label(ndimage.binary_opening(rng.random((96, 96)) > 0.6))[0]
    ids = [i for i in np.unique(inst) if i]
    d = np.sort(np.stack([ndimage.distance_transform_edt(inst != i) for i in ids]), axis=0)
    ref = 10 * np.exp(-(d[0] + d[1]) ** 2 / 50)
    np.testing.assert_allclose(targets.unet_border_term(inst, 10, 5), ref, atol=1e-4)


def test_class_balanced_weights():
    y = np.zeros((4, 4), np.int32)
    y[0] = 1
    w = _np(targets.weight_map("class_balanced", None, y, 3))
    np.testing.assert_allclose(w[y == 0], 16 / (2 * 12))
    np.testing.assert_allclose(w[y == 1], 16 / (2 * 4))
    assert w.mean() == pytest.approx(1.0)


def test_point_discs_hand_values():
    y, w = targets.point_discs([[5.0, 5.0]], [3], [11, 11], 2.0, untyped=False)
    y, w = _np(y), _np(w)
    assert (y == 3).sum() == 13 and w.sum() == 13 and ((y == 3) == (w == 1)).all()
    ii, jj = np.mgrid[:11, :11]
    np.testing.assert_array_equal(y == 3, (ii - 5) ** 2 + (jj - 5) ** 2 <= 4)
    # untyped: class 1
    y, _ = targets.point_discs([[5.0, 5.0]], [3], [11, 11], 2.0, untyped=True)
    assert set(np.unique(_np(y))) == {0, 1}
    # overlap: nearest centre wins
    y, _ = targets.point_discs([[5.0, 3.0], [5.0, 6.0]], [1, 2], [11, 11], 2.0, untyped=False)
    y = _np(y)
    assert y[5, 4] == 1 and y[5, 5] == 2 and y[5, 1] == 1 and y[5, 8] == 2
    # clipped at the edge; fractional centre
    y, _ = targets.point_discs([[0.0, 0.0]], [1], [11, 11], 2.0, untyped=False)
    assert _np(y).sum() == 6
    y, _ = targets.point_discs([[5.5, 5.5]], [1], [11, 11], 1.0, untyped=False)
    assert np.array_equal(np.argwhere(_np(y) == 1), [[5, 5], [5, 6], [6, 5], [6, 6]])
    # unknown type in a typed dataset: ignored (weight 0), and no points at all
    y, w = targets.point_discs([[5.0, 5.0]], [0], [11, 11], 2.0, untyped=False)
    assert _np(w).sum() == 0 and _np(y).sum() == 0
    y, w = targets.point_discs(np.zeros((0, 2), np.float32), np.zeros(0, np.int32), [4, 4], 2.0, untyped=True)
    assert _np(w).sum() == 0
