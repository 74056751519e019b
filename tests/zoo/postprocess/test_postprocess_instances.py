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
    # each centre floods the contour connected to it, nearest first: every ring pixel is 1 px (chessboard) from its
    # own centre and 2 or more from the other one, so the two squares come back exactly
    np.testing.assert_array_equal(instances_from_inner_contour(inner, contour), gt)
    np.testing.assert_array_equal(instances_from_inner_contour(inner, contour, radius=1), gt)
    # radius 0: no growth, the 3x3 centres alone (the rings touch inner parts, so they are no orphans)
    inst0 = instances_from_inner_contour(inner, contour, radius=0)
    np.testing.assert_array_equal(inst0 > 0, inner > 0.5)
    assert inst0.max() == 2
    # without a contour map there is no nucleus area: a plain dilation, which grows into the background
    inst3 = instances_from_inner_contour(inner, None, radius=2)
    assert (inst3 > 0).sum() > (gt > 0).sum()
    np.testing.assert_array_equal(instances_from_inner_contour(inner, None), inst3)  # None: the band's 2 px
    # a predicted nucleus with no inner part (contour only) is kept as its own nucleus, or dropped on request
    wide = np.pad(inner, ((0, 0), (0, 3)))
    c = np.pad(contour, ((0, 0), (0, 3)), constant_values=0.05)
    c[3, 13:15] = 0.9
    out = instances_from_inner_contour(wide, c)
    assert out.max() == 3 and (out[3, 13:15] == 3).all()
    assert instances_from_inner_contour(wide, c, keep_orphan_contours=False).max() == 2


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


# ---- target -> post-processing on real instance maps: each post-processing inverts the target it decodes.
# (The binary target + Naylor's dynamics watershed is no such pair: a binary mask has no information where two
# touching nuclei meet, and the watershed splits by the shape of a probability map, so no exact inverse exists.)

def _real_maps(shared_data, dataset: str, limit=None):
    from zoo.data.readers import get_reader

    reader = get_reader(dataset)(str(shared_data / dataset))
    samples = [reader.read(i) for i in reader.items()[:limit]]
    return [(s.image_id, s.instances) for s in samples]


def _round_trips(inst, width=2):
    """(inner_contour decoded, three_class decoded) instance maps of the targets of ``inst``."""
    from zoo.data.targets import segmentation_target

    y = np.asarray(segmentation_target(inst, "inner_contour", width))
    ic = instances_from_inner_contour((y == 1).astype(np.float32), (y == 2).astype(np.float32))
    y3 = np.asarray(segmentation_target(inst, "three_class", width))
    return ic, instances_from_three_class(y3)


def test_targets_round_trip_exactly_on_every_tnbc_map(shared_data):
    from zoo.metrics import aji

    maps = _real_maps(shared_data, "tnbc")
    assert len(maps) == 50
    for image_id, inst in maps:
        for name, got in zip(("inner_contour", "three_class"), _round_trips(inst)):
            assert aji(inst, got) == 1.0, (image_id, name)
            assert got.max() == len(np.unique(inst)) - 1, (image_id, name)


def test_targets_round_trip_on_crowded_monuseg_maps(shared_data):
    """MoNuSeg tiles are crowded (up to ~500 nuclei per 1000x1000 tile, many touching): the foreground and the
    number of nuclei come back exactly; the only pixels given to the wrong nucleus are contour pixels within the
    band (2 px) of another nucleus, where that nucleus' inner part is nearer than their own (the 3-class target
    does not say which side of a touching line a band pixel is on). AJI stays >= 0.99."""
    from scipy import ndimage

    from zoo.metrics import aji, overlap

    for image_id, inst in _real_maps(shared_data, "monuseg2018", limit=3):
        near_other = (ndimage.maximum_filter(inst, 5) != inst) | (ndimage.minimum_filter(inst, 5) != inst)
        for name, got in zip(("inner_contour", "three_class"), _round_trips(inst)):
            assert np.array_equal(got > 0, inst > 0), (image_id, name)
            assert got.max() == len(np.unique(inst)) - 1, (image_id, name)
            ov = overlap(inst, got)
            owner = np.zeros(int(got.max()) + 1, np.int64)  # each prediction -> the nucleus it overlaps most
            best = np.lexsort((-ov.inter, ov.pair_pred))
            first = np.r_[True, ov.pair_pred[best][1:] != ov.pair_pred[best][:-1]]
            owner[ov.pred_ids[ov.pair_pred[best][first]]] = ov.gt_ids[ov.pair_gt[best][first]]
            wrong = (inst > 0) & (owner[got] != inst)
            assert not (wrong & ~near_other).any(), (image_id, name)
            assert aji(inst, got) >= 0.99, (image_id, name)
