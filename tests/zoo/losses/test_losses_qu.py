"""Qu et al.'s loss (eq. 1-4) under mixed supervision, and the perceptual term (eq. 3), against hand-computed values."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.data import targets
from zoo.errors import ConfigError
from zoo.losses import WeightedCrossEntropy, get_loss
from zoo.losses.mixed import QuMixedLoss, mixed_codes, segmentation_images
from zoo.losses.perceptual import VGG_LAYERS, perceptual_per_image, vgg16_features

K = 2  # types; 4 output maps: 0 background, 1..2 inner of type k, 3 contour


def _example():
    """Batch of two 4x4 images. A: one UNTYPED nucleus (the 3x3 block at the top-left, touching the map's edges);
    B: one centre of type 2 at (1, 1), disc radius 1. Labels made by the input layer's target functions."""
    inst = np.zeros((4, 4), np.int32)
    inst[:3, :3] = 7
    y_a = targets.mixed_instance_target(tf.constant(inst), None, 1, K).numpy()
    y_b, w_b = targets.mixed_point_target(tf.constant([[1.0, 1.0]]), tf.constant([2]), [4, 4], 1.0, K)
    return y_a, y_b.numpy(), w_b.numpy()


def test_mixed_targets_by_hand():
    y_a, y_b, w_b = _example()
    c = mixed_codes(K)
    assert (c["contour"], c["any_inner"], c["unlabelled"]) == (3, 4, 7)
    # width 1: pixels beyond the map's edge do not count, so the top-left 2x2 is inner; row 2 / column 2 touch
    # background -> contour
    np.testing.assert_array_equal(y_a, [[4, 4, 3, 0], [4, 4, 3, 0], [3, 3, 3, 0], [0, 0, 0, 0]])
    disc = np.zeros((4, 4), bool)
    disc[1, 0:3] = disc[0:3, 1] = True  # (i-1)^2 + (j-1)^2 <= 1
    np.testing.assert_array_equal(y_b, np.where(disc, 4 + 2, 7))
    np.testing.assert_array_equal(w_b, disc.astype(np.float32))


def test_typed_instances_keep_their_type_and_unknown_becomes_any_inner():
    inst = np.zeros((6, 6), np.int32)
    inst[:3, :3], inst[3:, 3:] = 1, 2
    types = np.where(inst == 1, 2, 0).astype(np.int32)  # nucleus 1 is type 2, nucleus 2 of unknown type
    y = targets.mixed_instance_target(tf.constant(inst), tf.constant(types), 1, K).numpy()
    assert set(np.unique(y[inst == 1])) == {2, 3} and set(np.unique(y[inst == 2])) == {3, 4}
    assert (y[inst == 0] == 0).all()


def test_mixed_loss_equals_hand_computed_value():
    y_a, y_b, w_b = _example()
    w_a = np.ones((4, 4), np.float32)
    w_a[0, 0] = 2.0  # a U-Net-style pixel weight on one inner pixel
    p_a = np.broadcast_to(np.float32([0.1, 0.2, 0.3, 0.4]), (4, 4, 4))
    p_b = np.broadcast_to(np.float32([0.4, 0.1, 0.3, 0.2]), (4, 4, 4))
    y, w, p = np.stack([y_a, y_b]), np.stack([w_a, w_b]), np.stack([p_a, p_b])
    # A: 7 background px (-log .1), 4 inner px of unknown type (-log(.2 + .3)), one of them weighted 2, 5 contour
    # px (-log .4); B: 5 disc px of type 2: -log(p_2 / (p_1 + p_2)) = -log(.3 / .4); 11 px unlabelled (weight 0)
    ce = (7 * -math.log(0.1) + 5 * -math.log(0.5) + 5 * -math.log(0.4) + 5 * -math.log(0.75)) / 32
    assert ce == pytest.approx(0.800116, abs=1e-6)
    no_per = QuMixedLoss(num_types=K, beta=0.0)
    assert float(no_per(y, p, sample_weight=w)) == pytest.approx(ce, rel=1e-6)
    # with an identity "feature extractor", L_per = mean squared difference of contour probability and contour
    # target over image A only (B has no segmentation labels): (5 * .6^2 + 11 * .4^2) / 16
    per = (5 * 0.6 ** 2 + 11 * 0.4 ** 2) / 16
    np.testing.assert_array_equal(segmentation_images(tf.constant(y), K).numpy(), [1.0, 0.0])
    full = QuMixedLoss(num_types=K, beta=0.1, extractor=lambda x: [x])
    assert float(full(y, p, sample_weight=w)) == pytest.approx(ce + 0.1 * per, rel=1e-6)


def test_fully_typed_instances_train_the_plain_k_plus_2_cross_entropy():
    """Labels 0..K+1 only (a CoNSeP / PanNuke-style typed instance fixture): exactly eq. 1 over K + 2 classes."""
    inst = np.zeros((2, 8, 8), np.int32)
    inst[0, 1:5, 1:5], inst[0, 5:8, 4:8], inst[1, 2:7, 2:7] = 1, 2, 3
    types = np.select([inst == 1, inst == 2, inst == 3], [1, 2, 2], 0).astype(np.int32)
    y = np.stack([targets.mixed_instance_target(tf.constant(i), tf.constant(t), 1, K).numpy()
                  for i, t in zip(inst, types)])
    assert y.max() <= K + 1 and set(np.unique(y)) == {0, 1, 2, 3}
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(K + 2), size=(2, 8, 8)).astype(np.float32)
    w = rng.uniform(0.5, 3.0, (2, 8, 8)).astype(np.float32)
    plain = WeightedCrossEntropy(normalization="pixels")(y, p, sample_weight=w)
    mixed = QuMixedLoss(num_types=K, beta=0.0)(y, p, sample_weight=w)
    assert float(mixed) == pytest.approx(float(plain), rel=1e-6)


def _tiny_vgg():
    """Two 'blocks': 1x1 conv 3 -> 2 maps + ReLU; 2x2 max-pool, 1x1 conv 2 -> 1 map + ReLU (fixed weights)."""
    inp = keras.Input((None, None, 3))
    c1 = keras.layers.Conv2D(2, 1, activation="relu")
    f1 = c1(inp)
    c2 = keras.layers.Conv2D(1, 1, activation="relu")
    f2 = c2(keras.layers.MaxPooling2D(2)(f1))
    model = keras.Model(inp, [f1, f2])
    k1, b1 = np.float32([[1.0, -1.0], [2.0, 0.5], [0.0, 1.0]]), np.float32([0.0, 0.25])
    k2, b2 = np.float32([[1.0], [-2.0]]), np.float32([0.5])
    c1.set_weights([k1.reshape(1, 1, 3, 2), b1])
    c2.set_weights([k2.reshape(1, 1, 2, 1), b2])
    return model, (k1, b1, k2, b2)


def test_perceptual_term_matches_hand_computation_on_a_tiny_vgg():
    model, (k1, b1, k2, b2) = _tiny_vgg()
    probs = np.zeros((1, 4, 4, 4), np.float32)
    probs[0, ..., 3] = np.arange(16, dtype=np.float32).reshape(4, 4) / 16.0  # contour probability
    probs[0, ..., 0] = 1.0 - probs[0, ..., 3]
    contour = np.zeros((1, 4, 4), np.float32)
    contour[0, 1:3, 1:3] = 1.0
    loss = QuMixedLoss(num_types=K, beta=1.0, extractor=model)
    got = float(loss.perceptual(np.where(contour > 0, 3, 0).astype(np.int32), probs))

    def feats(v):  # v (4, 4): the value copied to 3 channels
        x = np.repeat(v[..., None], 3, -1)
        f1 = np.maximum(x @ k1 + b1, 0)
        pooled = f1.reshape(2, 2, 2, 2, 2).max(axis=(1, 3))
        return f1, np.maximum(pooled @ k2 + b2, 0)

    a, b = feats(probs[0, ..., 3]), feats(contour[0])
    want = 0.5 * (np.mean((a[0] - b[0]) ** 2) + np.mean((a[1] - b[1]) ** 2))  # 1/4 over 4 levels -> 1/2 over 2
    assert got == pytest.approx(float(want), rel=1e-5)


def test_perceptual_term_is_zero_for_identical_inputs_on_the_frozen_vgg16():
    vgg = vgg16_features(seed=0)
    assert not vgg.trainable and [o.shape[-1] for o in vgg.outputs] == [64, 128, 256, 512]
    assert [la.name for la in vgg.layers if la.name in VGG_LAYERS] == list(VGG_LAYERS)
    x = tf.constant(np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32))
    np.testing.assert_array_equal(perceptual_per_image(vgg, x, x).numpy(), [0.0, 0.0])
    assert float(perceptual_per_image(vgg, x, 1.0 - x)[0]) > 0
    # the seeded random init is the same network every time (a reloaded compiled model gets the same loss)
    again = vgg16_features(seed=0)
    np.testing.assert_array_equal(vgg.get_layer("block4_conv3").get_weights()[0],
                                  again.get_layer("block4_conv3").get_weights()[0])


def test_gradient_flows_through_the_contour_probability():
    model, _ = _tiny_vgg()
    logits = tf.Variable(np.random.default_rng(1).normal(size=(1, 4, 4, 4)).astype(np.float32))
    y = np.zeros((1, 4, 4), np.int32)
    y[0, 1:3, 1:3] = 3
    loss = QuMixedLoss(num_types=K, beta=1.0, extractor=model)
    with tf.GradientTape() as tape:
        value = loss.perceptual(y, tf.nn.softmax(logits))
    assert float(tf.reduce_sum(tf.abs(tape.gradient(value, logits)))) > 0


def test_registered_and_validated():
    loss = get_loss("qu_mixed", num_types=4, beta=0.0)
    assert isinstance(loss, QuMixedLoss) and loss.get_config()["num_types"] == 4
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, QuMixedLoss) and restored.get_config() == loss.get_config()
    with pytest.raises(ConfigError, match="num_types"):
        get_loss("qu_mixed", num_types=0)
    with pytest.raises(ConfigError, match="beta"):
        get_loss("qu_mixed", beta=-1)
    with pytest.raises(ConfigError, match="outputs"):
        QuMixedLoss(num_types=3, beta=0.0)(np.zeros((1, 2, 2), np.int32), np.full((1, 2, 2, 4), 0.25, np.float32))


# ---------------------------------------------------------------- the input layer's mixed batches, on real records

def _mixed_config(**changes):
    from zoo.data.input import InputConfig

    base = dict(patch_size=64, batch_size=4, target="inner_contour", types="merged", num_types=4,
                mixed_supervision=True, weight_map="unet", point_radius=3.0, mpp=0.5, patches_per_image=2,
                shuffle_buffer=1)
    return InputConfig(**{**base, **changes})


def test_one_batch_of_each_kind_from_real_records(built):
    """MoNuSeg -> merged labels {0, K+1 contour, K+2 any-type inner} with U-Net weights >= 1 everywhere;
    CRCHistoPhenotypes -> type discs K+2+k (weight 1) and unlabelled 2K+3 (weight 0); the loss is finite on both."""
    from zoo.data.input import dataset

    k = 4
    x, y, w = (t.numpy() for t in next(iter(dataset(str(built / "monuseg2018"), _mixed_config()))))
    assert x.shape == (4, 64, 64, 3) and set(np.unique(y)) <= {0, k + 1, k + 2} and (y == k + 2).any()
    assert w.min() >= 1.0 and w.max() > 1.0
    loss = QuMixedLoss(num_types=k, beta=0.0)
    p = np.full((4, 64, 64, k + 2), 1.0 / (k + 2), np.float32)
    assert np.isfinite(float(loss(y, p, sample_weight=w)))
    x, y, w = (t.numpy() for t in next(iter(dataset(str(built / "crchistophenotypes"), _mixed_config()))))
    assert set(np.unique(y)) <= set(range(k + 3, 2 * k + 3)) | {2 * k + 3} and (y < 2 * k + 3).any()
    np.testing.assert_array_equal(w, (y < 2 * k + 3).astype(np.float32))
    np.testing.assert_array_equal(segmentation_images(tf.constant(y), k).numpy(), np.zeros(4))
    # uniform probabilities: every disc pixel costs -log(1/K) (p_k / sum of the K inner probabilities)
    assert float(loss(y, p, sample_weight=w)) == pytest.approx(w.sum() * math.log(k) / y.size, rel=1e-5)


def test_mixed_batches_from_both_datasets_and_config_checks(built):
    from zoo.data import records
    from zoo.data.input import dataset

    paths = records.list_shards(str(built / "monuseg2018"), "train") + records.list_shards(
        str(built / "crchistophenotypes"), "train")
    _, y, _ = next(iter(dataset(paths, _mixed_config(batch_size=8, shuffle_buffer=64))))
    kinds = segmentation_images(y, 4).numpy()
    assert kinds.shape == (8,) and set(kinds) == {0.0, 1.0}  # seed 0: both kinds in the first batch
    with pytest.raises(ConfigError, match="mixed_supervision"):
        _mixed_config(types="none", num_types=0)
    with pytest.raises(ConfigError, match="mixed_supervision"):
        _mixed_config(weight_map="class_balanced")


def test_training_core_writes_the_typed_spec(built, tmp_path):
    """One step of a tiny qu through zoo.training.train on MoNuSeg + CRCHistoPhenotypes shards: the spec names the
    typed channels and the CRC class names (read from the records' meta/class_names), post-processing inner_contour."""
    import os

    from zoo.training import ExperimentConfig, train

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("monuseg2018", "crchistophenotypes"):
        for shard in sorted((built / name).glob("train-*.tfrecord.gz")):
            os.symlink(shard, mixed / f"train-{name}-{shard.name[len('train-'):]}")
    (mixed / "summary.json").write_text((built / "monuseg2018" / "summary.json").read_text())
    cfg = ExperimentConfig.from_dict({
        "name": "qu-smoke", "model": "qu", "data_dir": str(mixed), "val_split": "",
        "model_config": {"num_types": 4, "encoder_blocks": [1, 1, 1, 1], "encoder_width": 1 / 16,
                         "decoder_filters": [8, 8, 8, 8, 8]},
        "input": {"patch_size": 64, "batch_size": 2, "target": "inner_contour", "types": "merged", "num_types": 4,
                  "mixed_supervision": True, "weight_map": "unet", "point_radius": 3.0, "mpp": 0.5,
                  "patches_per_image": 1},
        "loss": "qu_mixed", "loss_config": {"num_types": 4, "beta": 0.1},
        "epochs": 1, "steps_per_epoch": 2, "postprocess": {"method": "inner_contour", "min_size": 20}})
    result = train(cfg, output_dir=str(tmp_path / "run"), tracking=False, verbose=0)
    assert np.isfinite(result.history["loss"]).all()
    spec = result.spec
    assert spec.channels == ("background", "inner:epithelial", "inner:inflammatory", "inner:fibroblast",
                             "inner:others", "contour")
    assert tuple(spec.class_names) == ("epithelial", "inflammatory", "fibroblast", "others")
    assert spec.mpp == 0.5 and spec.postprocess.method == "inner_contour"


def test_fully_typed_instance_records_give_plain_k_plus_2_labels(tmp_path, typed_record):
    """A CoNSeP / PanNuke-style record (instance map + a type per instance) through the input layer with
    mixed_supervision: labels only 0..K+1 (each nucleus' inner part carries its type), so qu_mixed is exactly the
    plain K + 2 class cross-entropy on it."""
    from zoo.data import records
    from zoo.data.input import dataset

    sample = typed_record(tmp_path)
    inst = sample.instances
    rng = np.random.default_rng(0)
    rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)  # the fixture's image draw: the same stream as before
    cfg = _mixed_config(patch_size=64, batch_size=1, mpp=0.0, flip=False, rot90=False, patches_per_image=1)
    _, y, w = (t.numpy() for t in next(iter(dataset(records.list_shards(str(tmp_path), "train"), cfg))))
    assert set(np.unique(y)) == {0, 1, 2, 4, 5}  # background, the three types' inner parts, contour (K + 1 = 5)
    for nucleus, t in ((1, 1), (2, 2), (3, 4)):
        assert set(np.unique(y[0][inst == nucleus])) == {t, 5}
    p = rng.dirichlet(np.ones(6), size=y.shape).astype(np.float32)
    plain = WeightedCrossEntropy(normalization="pixels")(y, p, sample_weight=w)
    assert float(QuMixedLoss(num_types=4, beta=0.0)(y, p, sample_weight=w)) == pytest.approx(float(plain), rel=1e-6)
