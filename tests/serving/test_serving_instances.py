"""The in-graph instance map (serving.export): label propagation with pointer jumping == scipy.ndimage.label
(8-connectivity), and the ``threshold`` post-processing's TF twin == its numpy original."""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi
import tensorflow as tf

from serving.export import label_components, nucleus_probability_tf, threshold_components_tf

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


def test_threshold_twin_hand_worked():
    # P(nucleus) > 0.42: pixels 0, 1 and 4 (0.45); ties at the threshold are background, as in numpy
    p1 = np.array([[0.9, 0.6, 0.0, 0.42, 0.45]], np.float32)[None]  # [1, 1, 5]
    probs = np.stack([1 - p1, p1], -1)
    got = threshold_components_tf(nucleus_probability_tf(tf.constant(probs)), 0.42).numpy()
    np.testing.assert_array_equal(got[0, 0], [1, 1, 0, 0, 2])


def test_threshold_twin_min_size_hand_worked():
    # components of sizes 3, 1, 2 (raster order); min_size 2 drops the single pixel and renumbers 1, 2
    m = np.array([[1, 1, 0, 1, 0],
                  [0, 1, 0, 0, 0],
                  [0, 0, 0, 1, 1]], np.float32)
    got = threshold_components_tf(tf.constant(m[None]), 0.5, min_size=2).numpy()[0]
    np.testing.assert_array_equal(got, [[1, 1, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 2, 2]])


def test_threshold_twin_equals_numpy_on_random_probabilities():
    from zoo.postprocess.config import nucleus_probability, threshold_components

    rng = np.random.default_rng(1)
    for c, min_size in ((2, 0), (3, 5), (4, 12)):
        logits = ndi.gaussian_filter(rng.normal(size=(3, 57, 70, c)), (0, 2, 2, 0)) * 8
        logits[..., 0] += np.log(c - 1)  # P(background) about one half, so P(nucleus) > 0.5 makes many blobs
        probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
        got = threshold_components_tf(nucleus_probability_tf(tf.constant(probs)), 0.5, min_size).numpy()
        for b in range(len(probs)):
            want = threshold_components(nucleus_probability(probs[b]), 0.5, min_size)
            assert want.max() >= 2
            np.testing.assert_array_equal(got[b], want)
