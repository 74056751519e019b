"""Qu et al.'s perceptual loss (ISBI 2019, section 2.3, eq. 3), after Johnson et al. 2016:

    L_per(y_hat, t) = 1/4 * sum_{k=1..4} 1 / (C_k H_k W_k) * || f_k(y_hat) - f_k(t) ||_2^2

f_k = the features of a FROZEN VGG16 after relu1_2, relu2_2, relu3_3 and relu4_3 (Keras' ``block1_conv2``,
``block2_conv2``, ``block3_conv3``, ``block4_conv3``, whose ReLU is inside the layer); here averaged over the images
of the batch as well.

What is compared, as Qu's released code does it (the paper writes y_hat = argmax y, which has no gradient): the
predicted CONTOUR probability, copied to three channels, against the binary contour target copied to three channels
(values in [0, 1], no ImageNet normalisation). ``contour_images`` builds both inputs.

The feature extractor: ``vgg16_features(weights)``: ``weights`` = a local VGG16 (include_top=False) weights file,
``"imagenet"`` (Keras downloads it once; not possible on the project's machines), or None: the VGG16 layers
initialised from ``seed`` (Glorot-uniform kernels, zero biases, numpy RNG), so the same config always gives the
same frozen network: across processes, and when a compiled ``.keras`` file is reloaded. Tests inject a tiny
extractor (any callable image -> list of feature maps).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

VGG_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3")  # relu1_2, relu2_2, relu3_3, relu4_3


def vgg16_features(weights: Optional[str] = None, seed: int = 0):
    """Frozen VGG16 up to relu4_3 returning the four feature maps ``VGG_LAYERS`` (module docstring)."""
    import keras

    if weights is not None:
        from zoo.models.vgg import vgg16_reference

        vgg = vgg16_reference(weights)
    else:
        vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(None, None, 3))
        rng = np.random.default_rng(seed)
        for layer in vgg.layers:
            if isinstance(layer, keras.layers.Conv2D):
                kernel, bias = layer.get_weights()
                fan_in, fan_out = np.prod(kernel.shape[:-1]), kernel.shape[0] * kernel.shape[1] * kernel.shape[-1]
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                layer.set_weights([rng.uniform(-limit, limit, kernel.shape).astype(np.float32),
                                   np.zeros_like(bias)])
    model = keras.Model(vgg.input, [vgg.get_layer(n).output for n in VGG_LAYERS], name="vgg16_perceptual")
    model.trainable = False
    return model


def contour_images(probs, contour, contour_channel: int = -1):
    """(prediction, target) VGG inputs [B, H, W, 3]: the contour probability ``probs[..., contour_channel]`` and the
    binary contour target ``contour`` [B, H, W] (bool or 0/1), each copied to three channels."""
    p = tf.cast(probs, tf.float32)[..., contour_channel]
    t = tf.cast(contour, tf.float32)
    return tf.stack([p, p, p], axis=-1), tf.stack([t, t, t], axis=-1)


def perceptual_per_image(extractor: Callable, pred_images, target_images):
    """Eq. 3 per image: [B] = 1/4 sum_k mean over C_k H_k W_k of (f_k(pred) - f_k(target))^2 (as many levels as
    the extractor returns)."""
    as_list = lambda f: list(f) if isinstance(f, (list, tuple)) else [f]  # noqa: E731
    fp = as_list(extractor(pred_images))
    # the target's features are constants: a separate, gradient-free pass (no backward through its half)
    ft = [tf.stop_gradient(f) for f in as_list(extractor(target_images))]
    b = tf.shape(pred_images)[0]
    levels = []
    for a, t in zip(fp, ft):
        d = tf.square(tf.cast(a, tf.float32) - tf.cast(t, tf.float32))
        levels.append(tf.reduce_mean(tf.reshape(d, [b, -1]), axis=1))
    return tf.add_n(levels) / float(len(levels))


def perceptual_loss(extractor: Callable, probs, contour, mask: Optional[Sequence] = None, contour_channel: int = -1):
    """Eq. 3 averaged over the images where ``mask`` [B] is 1 (all when None; 0 when none is): the contour
    probability against the contour target (module docstring)."""
    pred, target = contour_images(probs, contour, contour_channel)
    per = perceptual_per_image(extractor, pred, target)
    if mask is None:
        return tf.reduce_mean(per)
    m = tf.cast(mask, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(per * m), tf.reduce_sum(m))
