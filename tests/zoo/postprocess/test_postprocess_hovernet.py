"""HoVer-Net's post-processing (zoo.postprocess.hovernet): two touching discs split into two, a lone disc stays
whole, the registry entry and its options, ``auto`` resolving to it for NP / HV channels, per-instance types."""

import numpy as np
import pytest

from zoo.data.targets import hv_maps
from zoo.errors import ConfigError
from zoo.postprocess import config as ppconfig
from zoo.postprocess.hovernet import hovernet_instances, sobel_derivative


def _disc(shape, centre, radius):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def _maps(inst, types=None, num_types=0):
    """A perfect HoVer-Net output for ``inst``: NP softmax, HV maps of the ground truth, optional TP softmax."""
    nuc = (inst > 0).astype(np.float32)
    parts = [np.stack([1 - nuc, nuc], -1), hv_maps(inst)]
    if num_types:
        parts.append(np.eye(num_types + 1, dtype=np.float32)[types])
    return np.concatenate(parts, -1)


def _touching():
    inst = np.zeros((64, 80), np.int32)
    inst[_disc(inst.shape, (32, 26), 12)] = 1
    inst[_disc(inst.shape, (32, 49), 12) & (inst == 0)] = 2  # overlapping discs: one shared straight boundary
    return inst


def _best_iou(pred, gt, label):
    g = gt == label
    return max(((pred == p) & g).sum() / ((pred == p) | g).sum() for p in range(1, pred.max() + 1))


def test_two_touching_discs_are_split_in_two():
    from scipy import ndimage

    gt = _touching()
    assert ndimage.label(gt > 0)[1] == 1  # one connected blob: thresholding alone would merge them
    pred = hovernet_instances(_maps(gt))
    assert pred.max() == 2 and pred.dtype == np.int32
    assert _best_iou(pred, gt, 1) > 0.9 and _best_iou(pred, gt, 2) > 0.9


def test_a_lone_disc_stays_whole():
    gt = _disc((48, 48), (24, 23), 13).astype(np.int32)
    pred = hovernet_instances(_maps(gt))
    assert pred.max() == 1
    assert ((pred == 1) == (gt == 1)).all()


def test_empty_and_small_inputs():
    assert not hovernet_instances(np.zeros((16, 16, 4), np.float32)).any()
    speck = np.zeros((20, 20), np.int32)
    speck[5:7, 5:7] = 1  # 4 px < min_size 10
    assert hovernet_instances(_maps(speck)).max() == 0
    with pytest.raises(ConfigError, match="C>=4"):
        hovernet_instances(np.zeros((8, 8, 2), np.float32))


def test_sobel_derivative_matches_opencv_size_3():
    """Size 3 = [-1, 0, 1] along the axis x [1, 2, 1] across it (OpenCV's Sobel), mirrored borders."""
    from scipy import ndimage

    img = np.random.default_rng(0).random((7, 9))
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float)
    np.testing.assert_allclose(sobel_derivative(img, 1, 3), ndimage.correlate(img, kx, mode="mirror"), atol=1e-12)
    np.testing.assert_allclose(sobel_derivative(img, 0, 3), ndimage.correlate(img, kx.T, mode="mirror"), atol=1e-12)


def test_registered_method_options_and_dispatch():
    assert "hovernet" in ppconfig.METHODS
    opts = ppconfig.method_options("hovernet")
    assert opts == {"threshold": 0.5, "edge_threshold": 0.4, "sobel_size": 21, "min_size": 10,
                    "marker_min_size": 10}
    gt = _touching()
    out = ppconfig.apply(_maps(gt), {"method": "hovernet", "edge_threshold": 0.4})
    np.testing.assert_array_equal(out, hovernet_instances(_maps(gt)))
    with pytest.raises(ConfigError, match="sobel_size"):
        ppconfig.PostprocessConfig("hovernet", {"sobel_size": 2.5})
    with pytest.raises(ConfigError, match="at least 4"):
        ppconfig.PostprocessConfig("hovernet").resolve(3)
    # without HV channels, auto keeps resolving by channel count
    assert ppconfig.PostprocessConfig().resolve(4).method == "three_class"


def test_spec_channels_auto_resolution_and_instance_types():
    """channel_names for the hovernet target; ``auto`` -> hovernet when the channels include hv:x; the TP channels
    named type:<name> give each instance its majority type through zoo.inference."""
    from zoo.inference import InferenceSpec, channel_names

    assert channel_names(4, "hovernet") == ("background", "nucleus", "hv:x", "hv:y")
    names = channel_names(7, "hovernet", ("tumour", "lymphocyte"))
    assert names == ("background", "nucleus", "hv:x", "hv:y", "tp:background", "type:tumour", "type:lymphocyte")
    assert channel_names(7, "hovernet")[4:] == ("tp:background", "tp:1", "tp:2")
    spec = InferenceSpec(channels=names, class_names=("tumour", "lymphocyte"), divisor=8)
    assert spec.postprocess.method == "hovernet" and spec.type_channels() == [(5, 1), (6, 2)]
    assert InferenceSpec(channels=("background", "interior", "boundary")).postprocess.method == "three_class"
    assert InferenceSpec(channels=names[:4], postprocess={"method": "threshold"}).postprocess.method == "threshold"

    from zoo.inference.core import _instance_types, _type_map  # the vote zoo.inference runs

    gt = _touching()
    types = np.where(gt == 1, 2, np.where(gt == 2, 1, 0))
    maps = _maps(gt, types, 2)
    inst = ppconfig.apply(maps, spec.postprocess)
    votes = _instance_types(inst, _type_map(maps, spec))
    assert sorted(votes[1:].tolist()) == [1, 2]
    for label in (1, 2):
        assert votes[label] == np.bincount(types[inst == label]).argmax()


def test_target_round_trip_on_crowded_monuseg_maps(shared_data):
    """A perfect output (NP = the foreground, HV = hv_maps of the ground truth) of the first three MoNuSeg training
    tiles (398-480 nuclei each) comes back through the post-processing almost exactly: measured AJI 0.997 / 0.992 /
    0.998, PQ 0.994 / 0.985 / 0.997 (a few nuclei under the 10 px size limits, or left without a marker by the
    5 x 5 opening, are lost or merged)."""
    from zoo.data.readers import get_reader
    from zoo.metrics.instance import aji, pq

    reader = get_reader("monuseg2018")(str(shared_data / "monuseg2018"))
    for item in reader.items()[:3]:
        gt = reader.read(item).instances.astype(np.int32)
        pred = hovernet_instances(_maps(gt))
        assert aji(gt, pred) >= 0.985 and pq(gt, pred)["pq"] >= 0.975, item
