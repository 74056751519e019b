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


def test_unet_weight_paper_definition_inside_a_nucleus_by_hand():
    """Ronneberger eq. 2 as the paper (and Qu et al.'s weight-map code) define it: d1, d2 = distances to the BORDERS
    of the nearest and second-nearest nuclei, for every pixel. A = the 5x5 square rows 1-5, cols 1-5 (border: its
    outer ring), B = the single pixel (3, 11); w0 = 10, sigma = 5, so w = 1 + 10 exp(-(d1 + d2)^2 / 50)."""
    inst = np.zeros((7, 13), np.int32)
    inst[1:6, 1:6] = 1
    inst[3, 11] = 2
    y = tf.zeros((7, 13), tf.int32)
    w = _np(targets.weight_map("unet", inst, y, 2, w0=10.0, sigma=5.0))
    assert w[3, 3] == pytest.approx(2.353353, abs=1e-5)   # centre of A: 2 to A's ring, 8 to B -> 1 + 10 e^-2
    assert w[3, 4] == pytest.approx(3.780373, abs=1e-5)   # 1 to A's ring, 7 to B -> 1 + 10 e^-1.28
    assert w[3, 5] == pytest.approx(5.867523, abs=1e-5)   # on A's ring: 0 and 6 -> 1 + 10 e^-0.72
    assert w[3, 8] == pytest.approx(5.867523, abs=1e-5)   # background between: 3 and 3
    assert w[3, 11] == pytest.approx(5.867523, abs=1e-5)  # B (its own border): 0, and 6 to A's ring
    assert w[2, 2] == pytest.approx(2.323619, abs=1e-5)   # 1 to A's ring, sqrt(82) = 9.0554 to B
    # the earlier variant measures d_A to A itself (0 inside A): at A's centre d1 = 0, d2 = 8 -> 1 + 10 e^-1.28
    v = _np(targets.weight_map("unet_nucleus_distance", inst, y, 2, w0=10.0, sigma=5.0))
    assert v[3, 3] == pytest.approx(3.780373, abs=1e-5)
    outside = inst == 0  # outside the nuclei both definitions agree (the nearest pixel of a nucleus is a border one)
    np.testing.assert_allclose(w[outside], v[outside], atol=1e-6)
    # a nucleus filling the map has no border in it: one nucleus, no second distance, no term
    np.testing.assert_allclose(targets.unet_border_term(np.ones((4, 4), np.int32)), 0.0)


def _borders(inst, i):
    """Pixels of nucleus i with a 4-neighbour of another label (the map's edge not counting), by brute force."""
    m = inst == i
    out = np.zeros_like(m)
    for y, x in zip(*np.nonzero(m)):
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            yy, xx = y + dy, x + dx
            if 0 <= yy < inst.shape[0] and 0 <= xx < inst.shape[1] and inst[yy, xx] != i:
                out[y, x] = True
    return out


def test_unet_weight_matches_brute_force():
    rng = np.random.default_rng(1)
    inst = ndimage.label(ndimage.binary_opening(rng.random((96, 96)) > 0.6))[0]
    inst[40:60, 40:62] = inst.max() + 1  # a large nucleus touching others, with a real interior
    ids = [i for i in np.unique(inst) if i]
    d = np.sort(np.stack([ndimage.distance_transform_edt(~_borders(inst, i)) for i in ids]), axis=0)
    ref = 10 * np.exp(-(d[0] + d[1]) ** 2 / 50)
    got = targets.unet_border_term(inst, 10, 5)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    d = np.sort(np.stack([ndimage.distance_transform_edt(inst != i) for i in ids]), axis=0)
    ref = 10 * np.exp(-(d[0] + d[1]) ** 2 / 50)
    near = targets.unet_border_term(inst, 10, 5, to="nucleus")
    np.testing.assert_allclose(near, ref, atol=1e-4)
    big = inst == inst.max()
    assert got[big].mean() < near[big].mean()  # inside a nucleus the paper's term is the smaller


def test_inner_parts_one_piece_per_nucleus():
    """A dumbbell whose waist (3 px) is thinner than the band's 2 * 2 + 1 = 5: two interior pieces, the larger kept,
    the other becomes contour; a 3x3 nucleus is all band: its centre (deepest pixel) is its inner part."""
    inst = np.zeros((14, 24), np.int32)
    inst[1:11, 1:11] = 1      # 10x10 lobe: interior 6x6 = 36 px
    inst[5:8, 11:14] = 1      # 3-px waist
    inst[2:10, 14:22] = 1     # 8x8 lobe: interior 4x4 = 16 px
    inst[10:13, 18:21] = 2    # 3x3 nucleus touching the small lobe from below
    inner = targets.inner_parts(inst, 2)
    assert inner[inst == 1].sum() == 36 and inner[3:9, 3:9].all()
    assert np.argwhere(inner & (inst == 2)).tolist() == [[11, 19]]  # the 3x3's deepest pixel, its centre
    y = _np(targets.segmentation_target(inst, "three_class", 2))
    assert (y[4:8, 16:20] == 2).all()  # the smaller lobe's interior is contour
    assert (y == 1).sum() == 37


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
