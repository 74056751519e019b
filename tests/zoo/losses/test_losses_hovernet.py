"""HoVer-Net's targets (zoo.data.targets.hv_maps / hovernet_target, against hand-worked values) and loss
(zoo.losses.hovernet: MSGE = 0 for a perfect HV map, the Sobel kernel, the paper's weights, the TP terms, the
registry), and the hovernet target through the tf.data input layer."""

import numpy as np
import pytest
import tensorflow as tf

from zoo.data import targets
from zoo.errors import ConfigError
from zoo.losses import get_loss
from zoo.losses.hovernet import HoVerNetLoss, hv_gradients, msge, sobel_kernels


def _two_nuclei():
    """A 3 x 3 square (centre of mass (2, 2)) and a 2 x 2 square (centre (1.5, 5.5), rounded to (2, 6))."""
    inst = np.zeros((5, 7), np.int32)
    inst[1:4, 1:4] = 1
    inst[1:3, 5:7] = 2
    return inst


def test_hv_maps_hand_worked_values():
    """x = column - round(com column), y = row - round(com row), negatives / positives divided by their largest
    magnitude per nucleus (the reference's normalisation)."""
    hv = targets.hv_maps(_two_nuclei())
    want_x = np.array([[0, 0, 0, 0, 0, 0, 0],
                       [0, -1, 0, 1, 0, -1, 0],
                       [0, -1, 0, 1, 0, -1, 0],
                       [0, -1, 0, 1, 0, 0, 0],
                       [0, 0, 0, 0, 0, 0, 0]], np.float32)
    want_y = np.array([[0, 0, 0, 0, 0, 0, 0],
                       [0, -1, -1, -1, 0, -1, -1],
                       [0, 0, 0, 0, 0, 0, 0],
                       [0, 1, 1, 1, 0, 0, 0],
                       [0, 0, 0, 0, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(hv[..., 0], want_x)
    np.testing.assert_array_equal(hv[..., 1], want_y)


def test_hv_maps_asymmetric_nucleus_scales_each_side():
    """A 1 x 5 bar at columns 0..4 of a 1 x 6 map: com 2 -> x = -2, -1, 0, 1, 2 -> -1, -.5, 0, .5, 1; a bar at
    columns 0..3 (com 1.5 -> 2): -2, -1, 0, 1 -> -1, -.5, 0, 1 (the positive side has its own maximum)."""
    np.testing.assert_allclose(targets.hv_maps(np.array([[1, 1, 1, 1, 1, 0]]))[0, :, 0], [-1, -.5, 0, .5, 1, 0])
    np.testing.assert_allclose(targets.hv_maps(np.array([[3, 3, 3, 3, 0, 0]]))[0, :, 0], [-1, -.5, 0, 1, 0, 0])
    assert not targets.hv_maps(np.zeros((4, 4), np.int32)).any()


def test_hovernet_target_stack_in_graph():
    inst = _two_nuclei()
    types = np.where(inst == 1, 2, np.where(inst == 2, 1, 0))
    y = tf.function(lambda a, t: targets.hovernet_target(a, t))(tf.constant(inst), tf.constant(types)).numpy()
    assert y.shape == (5, 7, 4) and y.dtype == np.float32
    np.testing.assert_array_equal(y[..., 0], inst > 0)
    np.testing.assert_array_equal(y[..., 1:3], targets.hv_maps(inst))
    np.testing.assert_array_equal(y[..., 3], types)
    assert targets.hovernet_target(tf.constant(inst)).shape == (5, 7, 3)


def test_sobel_kernel_and_gradients():
    """The reference's 5 x 5 kernel: k_x(dy, dx) = dx / (dx^2 + dy^2); a ramp along x has a constant interior
    x-gradient and no y-gradient of the vertical map built the same way along y."""
    kx, ky = sobel_kernels()
    assert kx[2, 3] == 1.0 and kx[2, 4] == 0.5 and kx[0, 4] == pytest.approx(2 / 8) and kx[2, 2] == 0.0
    np.testing.assert_array_equal(ky, kx.T)
    ramp = np.tile(np.arange(9, dtype=np.float32), (9, 1))
    hv = np.stack([ramp, ramp.T], -1)[None]
    g = hv_gradients(hv).numpy()[0]
    inner = g[2:-2, 2:-2]
    np.testing.assert_allclose(inner[..., 0], kx.sum(0) @ np.arange(-2, 3), rtol=1e-6)
    np.testing.assert_allclose(inner[..., 1], inner[..., 0], rtol=1e-6)


def test_msge_is_zero_for_a_perfect_hv_map_and_counts_only_nuclei():
    inst = _two_nuclei()
    hv = targets.hv_maps(inst)[None]
    focus = (inst > 0)[None].astype(np.float32)
    assert float(msge(hv, hv, focus)) == 0.0
    noisy = hv + np.random.default_rng(0).normal(0, 0.1, hv.shape).astype(np.float32)
    assert float(msge(hv, noisy, focus)) > 0
    # an error far from every nucleus (beyond the 5 x 5 kernel's reach) does not count
    big = np.zeros((1, 20, 20, 2), np.float32)
    off = big.copy()
    off[0, 15:, 15:] = 0.7
    f = np.zeros((1, 20, 20), np.float32)
    f[0, :5, :5] = 1
    assert float(msge(big, off, f)) == 0.0


def _perfect(num_types):
    inst = _two_nuclei()
    y = targets.hovernet_target(tf.constant(inst), tf.constant(np.where(inst > 0, inst, 0)) if num_types else None)
    y = y.numpy()[None]
    nuc = y[..., 0]
    parts = [np.stack([1 - nuc, nuc], -1), y[..., 1:3]]
    if num_types:
        parts.append(np.eye(num_types + 1, dtype=np.float32)[y[..., 3].astype(int)])
    return y, np.concatenate(parts, -1)


@pytest.mark.parametrize("num_types", [0, 2])
def test_loss_of_a_perfect_prediction_is_about_zero_and_weights_are_the_papers(num_types):
    y, pred = _perfect(num_types)
    loss = get_loss("hovernet", num_types=num_types)
    assert isinstance(loss, HoVerNetLoss) and loss.hv_msge == 2.0 and loss.hv_mse == 1.0
    terms = loss.terms(y, pred)
    assert set(terms) == {"hv_mse", "hv_msge", "np_ce", "np_dice"} | ({"tp_ce", "tp_dice"} if num_types else set())
    assert float(terms["hv_mse"]) == 0.0 and float(terms["hv_msge"]) == 0.0
    assert float(loss(y, pred)) < 1e-4
    # a wrong HV map: MSE and MSGE grow, and the total is their 1 : 2 weighted sum plus the (zero) rest
    bad = pred.copy()
    bad[..., 2:4] = -bad[..., 2:4]
    t = {k: float(v) for k, v in loss.terms(y, bad).items()}
    assert t["hv_mse"] > 0 and t["hv_msge"] > 0
    assert float(loss(y, bad)) == pytest.approx(t["hv_mse"] + 2 * t["hv_msge"] + sum(
        v for k, v in t.items() if not k.startswith("hv_")), rel=1e-5)


def test_loss_checks_channels_and_options():
    y, pred = _perfect(0)
    with pytest.raises(ConfigError, match="needs a model with 7 outputs"):
        get_loss("hovernet", num_types=2)(np.concatenate([y, y[..., :1]], -1), pred)
    with pytest.raises(ConfigError, match="hv_msge"):
        get_loss("hovernet", hv_msge=-1)
    restored = HoVerNetLoss.from_config(get_loss("hovernet", num_types=3, hv_msge=1).get_config())
    assert restored.num_types == 3 and restored.hv_msge == 1.0


def test_zero_weight_pixels_are_ignored():
    y, pred = _perfect(0)
    bad = pred.copy()
    bad[0, 0, 0, :2] = [0.0, 1.0]  # a background pixel called nucleus
    w = np.ones(y.shape[:3], np.float32)
    loss = get_loss("hovernet")
    assert float(loss(y, bad, w)) > float(loss(y, pred, w))
    w[0, 0, 0] = 0
    assert float(loss(y, bad, w)) == pytest.approx(float(loss(y, pred, w)), abs=1e-6)


def test_input_layer_hovernet_target():
    """The hovernet target through InputConfig: num_classes = model outputs, y the stacked float target of the
    warped instance map, w the valid mask; its option checks."""
    from zoo.data.input import InputConfig, _targets

    cfg = InputConfig(target="hovernet", patch_size=8)
    assert cfg.num_classes == 4
    assert InputConfig(target="hovernet", types="merged", num_types=3).num_classes == 8
    inst = tf.constant(_two_nuclei())
    y, w = _targets(inst, None, cfg)
    np.testing.assert_array_equal(y.numpy(), targets.hovernet_target(inst).numpy())
    assert np.all(w.numpy() == 1)
    for bad in ({"weight_map": "unet"}, {"types": "extra", "num_types": 2}):
        with pytest.raises(ConfigError):
            InputConfig(target="hovernet", **bad)


def test_typed_instance_record_through_the_input_layer(tmp_path, typed_record):
    """A typed instance record (a type per instance) through ``dataset()`` with target hovernet, types merged:
    y = [NP, HV x, HV y, type] of the (unaugmented) patch, exactly hovernet_target of the record's maps; the
    loss of a model-shaped prediction on it is finite."""
    from zoo.data import records
    from zoo.data.input import InputConfig, dataset

    sample = typed_record(tmp_path)
    inst = sample.instances
    rng = np.random.default_rng(0)
    rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)  # the fixture's image draw: the same stream as before
    cfg = InputConfig(patch_size=64, batch_size=1, target="hovernet", types="merged", num_types=4, flip=False,
                      rot90=False, patches_per_image=1)
    assert cfg.num_classes == 9
    _, y, w = (t.numpy() for t in next(iter(dataset(records.list_shards(str(tmp_path), "train"), cfg))))
    types = np.choose(inst.astype(int), [0, 1, 2, 4]).astype(np.int32)
    want = targets.hovernet_target(tf.constant(inst.astype(np.int32)), tf.constant(types)).numpy()
    assert y.shape == (1, 64, 64, 4) and w.shape == (1, 64, 64)
    np.testing.assert_array_equal(y[0], want)
    pred = np.concatenate([rng.dirichlet(np.ones(2), (1, 64, 64)), rng.uniform(-1, 1, (1, 64, 64, 2)),
                           rng.dirichlet(np.ones(5), (1, 64, 64))], -1).astype(np.float32)
    assert np.isfinite(float(get_loss("hovernet", num_types=4)(y, pred, w)))
