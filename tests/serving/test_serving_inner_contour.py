"""Qu et al.'s inner / contour decoding in the SavedModel graph (issue 17): ``grow="dilate"`` of
``zoo.postprocess.instances.instances_from_inner_contour`` (the paper's "simple morphological dilation", sec. 2.2) by
hand, its TF twin ``serving.export.inner_contour_instances_tf`` equal to it on random probability batches, and the
in-graph per-instance type (``instance_types_tf``) equal to ``zoo.inference``'s. The served equality on real TNBC
images is in test_served_equals_evaluated.py."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import tensorflow as tf

from serving.export import inner_contour_instances_tf, instance_types_tf
from zoo.errors import ConfigError
from zoo.postprocess.config import PostprocessConfig, inner_probability
from zoo.postprocess.instances import dilate_labels, instances_from_inner_contour


def test_dilate_hand_worked_tie_goes_to_the_larger_label():
    # inner parts at both ends of a 1 x 5 row of contour: round 1 takes columns 1 and 3, round 2 column 2, which
    # touches both nuclei in the same round and takes the larger label
    inner = np.array([[0.9, 0, 0, 0, 0.9]])
    contour = np.array([[0.05, 0.8, 0.8, 0.8, 0.05]])
    np.testing.assert_array_equal(instances_from_inner_contour(inner, contour, grow="dilate"), [[1, 1, 2, 2, 2]])
    np.testing.assert_array_equal(instances_from_inner_contour(inner, contour, grow="dilate", radius=1),
                                  [[1, 1, 0, 2, 2]])
    # the flooding default gives the middle pixel to the first-queued nucleus instead
    assert instances_from_inner_contour(inner, contour)[0, 2] in (1, 2)
    # dilate_labels by hand: two rounds of 8-neighbour dilation from one pixel, the 5 x 5 square
    seed = np.zeros((7, 7), np.int32)
    seed[3, 3] = 4
    np.testing.assert_array_equal(dilate_labels(seed, None, 2), np.pad(np.full((5, 5), 4), 1))
    np.testing.assert_array_equal(dilate_labels(seed, None, 1, connectivity=4)[2:5, 2:5],
                                  [[0, 4, 0], [4, 4, 4], [0, 4, 0]])
    with pytest.raises(ConfigError, match="grow"):
        instances_from_inner_contour(inner, contour, grow="erode")


def test_dilate_recovers_touching_nuclei():
    gt = np.zeros((7, 12), np.int32)
    gt[1:6, 1:6], gt[1:6, 6:11] = 1, 2
    inner = np.zeros(gt.shape)
    inner[2:5, 2:5] = inner[2:5, 7:10] = 0.9
    contour = np.where((gt > 0) & (inner == 0), 0.8, 0.05)
    np.testing.assert_array_equal(instances_from_inner_contour(inner, contour, grow="dilate"), gt)


def test_in_graph_only_for_dilate_and_8_connectivity():
    assert PostprocessConfig("inner_contour", {"grow": "dilate"}).in_graph
    assert not PostprocessConfig("inner_contour", {}).in_graph
    assert not PostprocessConfig("inner_contour", {"grow": "dilate", "connectivity": 4}).in_graph


def _random_probs(rng, b, h, w, c, sigma, gain):
    z = ndi.gaussian_filter(rng.normal(size=(b, h, w, c)), (0, sigma, sigma, 0)) * gain
    z[..., 0] += 0.3
    e = np.exp(z - z.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


OPTIONS = [{}, {"radius": 0}, {"radius": 2, "min_size": 5}, {"radius": 2, "keep_orphan_contours": False},
           {"threshold": 0.3, "min_size": 3}]


@pytest.mark.parametrize("kw", OPTIONS, ids=[str(k) for k in OPTIONS])
def test_tf_twin_equals_numpy_on_random_batches(kw):
    rng = np.random.default_rng(0)
    total = orphans = 0
    for sigma, gain in ((1.0, 6.0), (1.5, 8.0), (0.8, 5.0)):
        probs = _random_probs(rng, 3, 96, 112, 6, sigma, gain)
        got = inner_contour_instances_tf(tf.constant(probs), **kw).numpy()
        for b in range(len(probs)):
            p = probs[b]
            want = instances_from_inner_contour(inner_probability(p), p[..., -1], grow="dilate", **kw)
            np.testing.assert_array_equal(got[b], want)  # same partition AND same numbering
            total += int(want.max())
            no_orphans = instances_from_inner_contour(inner_probability(p), p[..., -1], grow="dilate",
                                                      **{**kw, "keep_orphan_contours": False})
            orphans += int(want.max()) - int(no_orphans.max())
    assert total >= 10  # not a comparison of empty maps
    if kw.get("keep_orphan_contours", True) and kw.get("threshold", 0.5) == 0.5:
        assert orphans > 0  # the orphan branch was exercised


def test_in_graph_instance_types_equal_inference_core():
    from zoo.inference.core import _instance_types, _type_map
    from zoo.inference.spec import InferenceSpec

    rng = np.random.default_rng(1)
    spec = InferenceSpec(model="qu", channels=("background", "inner:a", "inner:b", "inner:c", "contour"),
                         class_names=("a", "b", "c"))
    probs = _random_probs(rng, 3, 48, 56, 5, 1.0, 6.0)
    probs[0, :4, :4, 1:4] = 0.25  # exact ties between the three types: the first (smallest) type wins
    inst = inner_contour_instances_tf(tf.constant(probs), radius=2)
    type_map, classes = (t.numpy() for t in instance_types_tf(inst, tf.constant(probs), spec.type_channels()))
    inst = inst.numpy()
    assert classes.shape == (3, inst.max() + 1)
    voted = set()
    for b in range(3):
        want = _instance_types(inst[b], _type_map(probs[b], spec))
        n = int(inst[b].max())
        np.testing.assert_array_equal(classes[b, :n + 1], want)
        assert (classes[b, n + 1:] == 0).all()  # ids beyond this image's count
        np.testing.assert_array_equal(type_map[b], want[inst[b]])
        voted |= set(want[1:].tolist())
    assert voted == {1, 2, 3}
