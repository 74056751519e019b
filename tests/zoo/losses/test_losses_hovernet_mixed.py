"""HoVer-Net under mixed supervision (zoo.losses.hovernet's table; zoo.data.targets mixed_hovernet_*): untyped
instance maps train NP / HV and the merged TP term, typed centres train only the type term on their discs -- against
hand-computed values, and through the tf.data input layer on real MoNuSeg / CRCHistoPhenotypes records."""

import math

import numpy as np
import pytest
import tensorflow as tf

from zoo.data import targets
from zoo.errors import ConfigError
from zoo.losses.hovernet import HoVerNetLoss

K = 2  # types: TP has 3 channels (background, type 1, type 2)


def _example():
    """A: a 4x4 instance map with one UNTYPED 3x3 nucleus at the top-left; B: one centre of type 2 at (1, 1), disc
    radius 1 (the 5-pixel plus). Targets made by the input layer's functions."""
    inst = np.zeros((4, 4), np.int32)
    inst[:3, :3] = 7
    y_a = targets.mixed_hovernet_instance_target(tf.constant(inst), None, K).numpy()
    y_b, w_b = targets.mixed_hovernet_point_target(tf.constant([[1.0, 1.0]]), tf.constant([2]), [4, 4], 1.0, K)
    return inst, y_a, y_b.numpy(), w_b.numpy()


def test_mixed_targets_by_hand():
    inst, y_a, y_b, w_b = _example()
    assert y_a.shape == (4, 4, 5) and y_b.shape == (4, 4, 5)
    np.testing.assert_array_equal(y_a[..., :3], targets.hovernet_target(tf.constant(inst)).numpy())
    np.testing.assert_array_equal(y_a[..., 3], np.where(inst > 0, K + 1, 0))  # unknown type: K + 1
    np.testing.assert_array_equal(y_a[..., 4], np.ones((4, 4)))
    disc = np.zeros((4, 4), np.float32)
    disc[0, 1] = disc[1, 0] = disc[1, 1] = disc[1, 2] = disc[2, 1] = 1
    np.testing.assert_array_equal(w_b, disc)
    np.testing.assert_array_equal(y_b[..., 3], 2 * disc)
    assert not y_b[..., [0, 1, 2, 4]].any()  # nothing asserted about NP / HV on centre data
    typed = targets.mixed_hovernet_instance_target(tf.constant(inst), tf.constant(np.full((4, 4), 1)), K).numpy()
    np.testing.assert_array_equal(typed[..., 3], np.where(inst > 0, 1, 0))  # a known type keeps its code


def test_mixed_loss_equals_hand_computed_value():
    """TP probabilities (0.5, 0.3, 0.2) everywhere. TP cross-entropy: A's 7 background pixels cost -log 0.5, its 9
    unknown-type nucleus pixels -log(0.3 + 0.2) (merged), B's 5 disc pixels -log 0.2; B's other pixels weigh 0.
    TP Dice over the known pixels only (A's background, B's disc). NP / HV terms: exactly the plain loss on A alone."""
    inst, y_a, y_b, w_b = _example()
    y = np.stack([y_a, y_b])
    w = np.stack([np.ones((4, 4), np.float32), w_b])
    rng = np.random.default_rng(3)
    npp = rng.uniform(0.05, 0.95, (2, 4, 4, 1)).astype(np.float32)
    pred = np.concatenate([1 - npp, npp, rng.uniform(-1, 1, (2, 4, 4, 2)).astype(np.float32),
                           np.broadcast_to(np.float32([0.5, 0.3, 0.2]), (2, 4, 4, 3))], -1)
    loss = HoVerNetLoss(num_types=K)
    t = {k: float(v) for k, v in loss.terms(y, pred, w).items()}
    assert t["tp_ce"] == pytest.approx((16 * math.log(2) + 5 * -math.log(0.2)) / 21, rel=1e-6)
    s = 1e-3
    dice = (1 - (2 * 3.5 + s) / (12 * 0.5 + 7 + s)) + (1 - s / (12 * 0.3 + s)) + (1 - (2 * 1.0 + s) / (12 * 0.2 + 5 + s))
    assert t["tp_dice"] == pytest.approx(dice, rel=1e-6)
    plain = {k: float(v) for k, v in HoVerNetLoss(num_types=0).terms(y_a[None, ..., :3], pred[:1, ..., :4]).items()}
    for k in ("hv_mse", "hv_msge", "np_ce", "np_dice"):
        assert t[k] == pytest.approx(plain[k], rel=1e-6), k
    want = plain["hv_mse"] + 2 * plain["hv_msge"] + plain["np_ce"] + plain["np_dice"] + t["tp_ce"] + t["tp_dice"]
    assert float(loss(y, pred, w)) == pytest.approx(want, rel=1e-6)
    with pytest.raises(ConfigError, match="num_types >= 1"):
        HoVerNetLoss(num_types=0).terms(y, pred[..., :4], w)


def _config(**changes):
    from zoo.data.input import InputConfig

    base = dict(patch_size=64, batch_size=4, target="hovernet", types="merged", num_types=4, mixed_supervision=True,
                point_radius=3.0, mpp=0.5, patches_per_image=2, shuffle_buffer=1)
    return InputConfig(**{**base, **changes})


def test_mixed_hovernet_batches_from_real_records(built):
    """MoNuSeg -> NP / HV targets, type codes {0, K + 1}, supervised everywhere, weight 1; CRCHistoPhenotypes ->
    type discs 1..K with weight = the disc mask, nothing else; the loss is finite on both."""
    from zoo.data.input import dataset

    k = 4
    loss = HoVerNetLoss(num_types=k)
    pred = np.concatenate([np.full((4, 64, 64, 2), 0.5, np.float32), np.zeros((4, 64, 64, 2), np.float32),
                           np.full((4, 64, 64, k + 1), 1.0 / (k + 1), np.float32)], -1)
    _, y, w = (t.numpy() for t in next(iter(dataset(str(built / "monuseg2018"), _config()))))
    assert y.shape == (4, 64, 64, 5) and np.all(y[..., 4] == 1) and np.all(w == 1)
    assert set(np.unique(y[..., 3])) == {0, k + 1}
    np.testing.assert_array_equal(y[..., 3] > 0, y[..., 0] > 0)
    assert np.isfinite(float(loss(y, pred, sample_weight=w)))
    _, y, w = (t.numpy() for t in next(iter(dataset(str(built / "crchistophenotypes"), _config()))))
    assert not y[..., [0, 1, 2, 4]].any() and set(np.unique(y[..., 3])) <= set(range(k + 1)) and (y[..., 3] > 0).any()
    np.testing.assert_array_equal(w, (y[..., 3] > 0).astype(np.float32))
    t = loss.terms(y, pred, sample_weight=w)
    assert float(t["np_ce"]) == 0.0 and float(t["hv_mse"]) == 0.0  # no NP / HV signal from centres
    assert float(t["tp_ce"]) == pytest.approx(math.log(k + 1), rel=1e-5)
    with pytest.raises(ConfigError, match="mixed_supervision"):
        _config(types="none", num_types=0)
