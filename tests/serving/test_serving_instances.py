"""The in-graph instance map (serving.export): label propagation with pointer jumping == scipy.ndimage.label
(8-connectivity), boundary growth, and the two instance modes."""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi
import tensorflow as tf

from serving.export import grow_labels, instances_from_probabilities, label_components

EIGHT = np.ones((3, 3), int)


def test_hand_worked_example():
    # two diagonal-touching pixels are ONE component under 8-connectivity; numbering is raster order of first pixel
    m = np.array([[0, 0, 0, 0, 1],
                  [1, 1, 0, 0, 1],
                  [0, 0, 1, 0, 0],
                  [0, 0, 0, 0, 0],
                  [1, 0, 0, 1, 1]], bool)
    want = np.array([[0, 0, 0, 0, 1],
                     [2, 2, 0, 0, 1],
                     [0, 0, 2, 0, 0],
                     [0, 0, 0, 0, 0],
                     [3, 0, 0, 4, 4]], np.int32)
    np.testing.assert_array_equal(label_components(tf.constant(m[None])).numpy()[0], want)


def test_equals_scipy_label_on_random_batches():
    rng = np.random.default_rng(0)
    for level in (0.5, 0.53, 0.56):
        m = ndi.gaussian_filter(rng.random((4, 61, 77)), (0, 1.5, 1.5)) > level
        got = label_components(tf.constant(m)).numpy()
        for b in range(len(m)):
            ref, n = ndi.label(m[b], EIGHT)
            assert n >= 3
            np.testing.assert_array_equal(got[b], ref)  # same partition AND same numbering


def test_long_snake_needs_many_propagation_steps():
    # one serpentine component ~1000 pixels long: plain 3x3 propagation would need ~1000 iterations
    s = np.zeros((64, 64), bool)
    s[::4, 1:63] = True
    for k, r in enumerate(range(0, 60, 4)):
        s[r:r + 5, 62 if k % 2 == 0 else 1] = True
    ref, n = ndi.label(s, EIGHT)
    assert n == 1
    got = label_components(tf.constant(s[None]), max_iters=64).numpy()[0]
    np.testing.assert_array_equal(got, ref)


def test_empty_and_full_masks():
    m = np.zeros((2, 9, 7), bool)
    m[1] = True
    got = label_components(tf.constant(m)).numpy()
    assert (got[0] == 0).all() and (got[1] == 1).all()


def test_grow_into_boundary_pixels():
    lab = np.zeros((1, 7, 9), np.int32)
    lab[0, 3, 2], lab[0, 3, 6] = 1, 2
    into = np.zeros((1, 7, 9), bool)
    into[0, 1:6, 0:9] = True  # a band around both seeds; column 4 is equidistant (larger label wins)
    got = grow_labels(tf.constant(lab), tf.constant(into)).numpy()[0]
    assert (got[0] == 0).all() and (got[6] == 0).all()  # outside the band: untouched
    assert (got[1:6, :4] == 1).all() and (got[1:6, 5:] == 2).all() and (got[1:6, 4] == 2).all()


def test_modes_from_probabilities():
    p1 = np.array([[0.9, 0.6, 0.0, 0.4, 0.45]], np.float32)[None]  # [1, 1, 5]
    probs = np.stack([1 - p1, p1], -1)
    inner = instances_from_probabilities(tf.constant(probs), "inner_cc").numpy()
    thr = instances_from_probabilities(tf.constant(probs), "threshold_cc", threshold=0.42).numpy()
    np.testing.assert_array_equal(inner[0, 0], [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(thr[0, 0], [1, 1, 0, 0, 2])
