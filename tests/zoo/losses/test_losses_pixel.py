"""zoo.losses: Naylor's weighted log loss, soft Dice, CE + Dice on hand-worked pixels; Keras fit/serialisation."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import losses
from zoo.errors import ConfigError

# one image of 1 x 3 pixels, 2 classes: labels 0, 1, 1
P = np.array([[[[0.8, 0.2], [0.4, 0.6], [0.9, 0.1]]]], np.float32)
Y = np.array([[[0, 1, 1]]], np.int32)
NLL = [-math.log(0.8), -math.log(0.6), -math.log(0.1)]  # -log p[label] per pixel


def _value(loss, y, p, w=None):
    return float(loss(y, p, w))


def test_registry_names_and_errors():
    assert losses.available_losses() == ["ce_dice", "dice", "hovernet", "infowgan_gp", "qu_mixed", "simgan",
                                         "weighted_ce"]
    with pytest.raises(ConfigError, match=r"unknown loss .focal. \(available: ce_dice, dice, hovernet, infowgan_gp, "
                                          r"qu_mixed, simgan, weighted_ce\)"):
        losses.get_loss("focal")
    with pytest.raises(ConfigError, match=r"loss 'dice': unknown option\(s\) 'smoth' \(known: smooth"):
        losses.get_loss("dice", smoth=1.0)


def test_weighted_ce_without_weights_is_mean_negative_log_likelihood():
    assert _value(losses.get_loss("weighted_ce"), Y, P) == pytest.approx(sum(NLL) / 3, rel=1e-6)


def test_weighted_ce_divides_by_the_sum_of_pixel_weights():
    w = np.array([[[2.0, 1.0, 0.5]]], np.float32)
    expected = (2 * NLL[0] + 1 * NLL[1] + 0.5 * NLL[2]) / 3.5  # Naylor: 1 / sum(w) * sum(w * t * log p)
    assert _value(losses.get_loss("weighted_ce"), Y, P, w) == pytest.approx(expected, rel=1e-6)
    per_pixel = losses.get_loss("weighted_ce", normalization="pixels")
    assert _value(per_pixel, Y, P, w) == pytest.approx((2 * NLL[0] + NLL[1] + 0.5 * NLL[2]) / 3, rel=1e-6)


def test_weighted_ce_class_weights_multiply_the_pixel_weights():
    loss = losses.get_loss("weighted_ce", class_weights=[1.0, 3.0])
    assert _value(loss, Y, P) == pytest.approx((NLL[0] + 3 * NLL[1] + 3 * NLL[2]) / 7, rel=1e-6)
    w = np.array([[[2.0, 1.0, 0.0]]], np.float32)
    assert _value(loss, Y, P, w) == pytest.approx((2 * NLL[0] + 3 * NLL[1]) / 5, rel=1e-6)


def test_weight_shapes_accepted():
    loss = losses.get_loss("weighted_ce")
    w = np.array([[[2.0, 1.0, 0.5]]], np.float32)
    ref = _value(loss, Y, P, w)
    assert _value(loss, Y[..., None], P, w[..., None]) == pytest.approx(ref, rel=1e-6)
    # one weight per image: a constant factor cancels in Naylor's normalisation
    assert _value(loss, Y, P, np.array([4.0], np.float32)) == pytest.approx(sum(NLL) / 3, rel=1e-6)


def test_all_zero_weights_give_zero_not_nan_and_zero_probability_is_finite():
    loss = losses.get_loss("weighted_ce")
    assert _value(loss, Y, P, np.zeros((1, 1, 3), np.float32)) == 0.0
    p = tf.constant([[[[1.0, 0.0]]]])
    with tf.GradientTape() as tape:
        tape.watch(p)
        value = loss(np.array([[[1]]]), p)
    assert value.numpy() == pytest.approx(-math.log(1e-7), rel=1e-5)
    assert np.isfinite(tape.gradient(value, p).numpy()).all()


def test_class_weight_count_must_match_the_model():
    with pytest.raises(ConfigError, match="loss 'weighted_ce': 3 class_weights for a model with 2 classes"):
        losses.get_loss("weighted_ce", class_weights=[1, 2, 3])(Y, P)
    with pytest.raises(ConfigError, match="class_weights must be >= 2 finite non-negative numbers"):
        losses.get_loss("weighted_ce", class_weights=[1, -2])
    with pytest.raises(ConfigError, match="normalization must be one of weights, pixels"):
        losses.get_loss("weighted_ce", normalization="mean")


def test_soft_dice_on_the_foreground_class():
    # class 1: intersection 0.6 + 0.1 = 0.7; sum p = 0.2 + 0.6 + 0.1 = 0.9; sum t = 2
    dice1 = (2 * 0.7 + 1) / (0.9 + 2 + 1)
    assert _value(losses.get_loss("dice"), Y, P) == pytest.approx(1 - dice1, rel=1e-6)
    # class 0: intersection 0.8; sum p = 0.8 + 0.4 + 0.9 = 2.1; sum t = 1
    dice0 = (2 * 0.8 + 1) / (2.1 + 1 + 1)
    both = losses.get_loss("dice", include_background=True)
    assert _value(both, Y, P) == pytest.approx(1 - (dice0 + dice1) / 2, rel=1e-6)
    no_smooth = losses.get_loss("dice", smooth=0.0)
    assert _value(no_smooth, Y, P) == pytest.approx(1 - 1.4 / 2.9, rel=1e-6)


def test_soft_dice_weights_remove_pixels_and_per_image_averages():
    w = np.array([[[1.0, 1.0, 0.0]]], np.float32)  # drop the third pixel
    assert _value(losses.get_loss("dice", smooth=0.0), Y, P, w) == pytest.approx(1 - 1.2 / 1.8, rel=1e-6)
    y2 = np.concatenate([Y, np.array([[[0, 0, 1]]])])
    p2 = np.concatenate([P, np.array([[[[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]]]], np.float32)])
    d_a, d_b = 1.4 / 2.9, (2 * 1.0) / (1.5 + 1)
    per_image = losses.get_loss("dice", smooth=0.0, per_image=True)
    assert _value(per_image, y2, p2) == pytest.approx(1 - (d_a + d_b) / 2, rel=1e-6)
    pooled = losses.get_loss("dice", smooth=0.0)
    assert _value(pooled, y2, p2) == pytest.approx(1 - 2 * (0.7 + 1.0) / (0.9 + 1.5 + 3), rel=1e-6)


def test_multiclass_dice_averages_foreground_classes():
    p = np.array([[[[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]]], np.float32)
    y = np.array([[[1, 2]]])
    d1 = 2 * 0.5 / (0.6 + 1)
    d2 = 2 * 0.8 / (1.1 + 1)
    assert _value(losses.get_loss("dice", smooth=0.0), y, p) == pytest.approx(1 - (d1 + d2) / 2, rel=1e-6)


def test_ce_dice_is_the_weighted_sum():
    w = np.array([[[2.0, 1.0, 0.5]]], np.float32)
    ce = _value(losses.get_loss("weighted_ce", class_weights=[1, 2]), Y, P, w)
    dice = _value(losses.get_loss("dice"), Y, P, w)
    both = losses.get_loss("ce_dice", ce_weight=0.5, dice_weight=2.0, class_weights=[1, 2])
    assert _value(both, Y, P, w) == pytest.approx(0.5 * ce + 2.0 * dice, rel=1e-6)
    with pytest.raises(ConfigError, match="loss 'ce_dice': dice_weight must be a finite number >= 0"):
        losses.get_loss("ce_dice", dice_weight=-1)


@pytest.mark.parametrize("name, options", [("weighted_ce", {"class_weights": [1, 2], "normalization": "pixels"}),
                                           ("dice", {"smooth": 0.5, "per_image": True}),
                                           ("ce_dice", {"ce_weight": 0.3, "include_background": True})])
def test_losses_serialise_with_keras(name, options):
    loss = losses.get_loss(name, **options)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
    w = np.array([[[2.0, 1.0, 0.5]]], np.float32)
    assert _value(restored, Y, P, w) == pytest.approx(_value(loss, Y, P, w), rel=1e-6)


def test_keras_fit_passes_per_pixel_sample_weights_to_the_loss():
    """evaluate((x, y, w)) reports exactly our loss of the model's predictions with those weights."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((2, 8, 8, 3), dtype=np.float32)
    y = rng.integers(0, 2, (2, 8, 8))
    w = rng.uniform(0, 3, (2, 8, 8)).astype(np.float32)
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(2, 1, activation="softmax")])
    model.compile(optimizer="sgd", loss=losses.get_loss("ce_dice", class_weights=[1, 4]), weighted_metrics=[])
    history = model.fit(x, y, sample_weight=w, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    reported = model.evaluate(x, y, sample_weight=w, batch_size=2, verbose=0)
    own = _value(losses.get_loss("ce_dice", class_weights=[1, 4]), y, model.predict(x, verbose=0), w)
    assert reported == pytest.approx(own, rel=1e-5)
