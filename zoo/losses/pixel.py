"""The base of histozoo's per-pixel segmentation losses: Keras-compatible ``loss(y_true, y_pred, sample_weight)``.

- ``y_true``: integer class per pixel ``[B, H, W]`` (``[B, H, W, 1]`` is squeezed);
- ``y_pred``: softmax probabilities ``[B, H, W, C]`` (what every zoo.models model outputs);
- ``sample_weight``: per-pixel weights ``[B, H, W]`` (or ``[B, H, W, 1]``) as ``model.fit((x, y, w))`` passes them
  (e.g. U-Net weight maps, or 0 to ignore pixels), or one weight per image ``[B]``.

``__call__`` is overridden (Keras' own reduction would divide by the pixel count, not by the weights) so each loss
defines its whole normalisation in ``compute(labels, probs, weights)``; the result is a float32 scalar.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import keras
import tensorflow as tf

from zoo.errors import ConfigError

EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1] before the log, as keras' categorical cross-entropy


class PixelLoss(keras.losses.Loss):
    """Per-pixel loss on integer labels and softmax probabilities; see the module docstring."""

    def __init__(self, name: Optional[str] = None, dtype=None):
        super().__init__(name=name, dtype=dtype)

    def __call__(self, y_true, y_pred, sample_weight=None):
        with keras.name_scope(self.name):
            probs = tf.cast(y_pred, tf.float32)
            labels = tf.cast(y_true, tf.int32)
            if labels.shape.rank == 4:
                labels = tf.squeeze(labels, axis=-1)
            weights = pixel_weights(sample_weight, labels)
            return replica_share(self.compute(labels, probs, weights))

    def compute(self, labels, probs, weights):
        """labels int32 [B, H, W], probs float32 [B, H, W, C], weights float32 [B, H, W] -> scalar loss."""
        raise NotImplementedError

    def call(self, y_true, y_pred):  # Keras' abstract per-sample hook; unused because __call__ is overridden
        raise NotImplementedError(f"{type(self).__name__} is used through __call__(y_true, y_pred, sample_weight)")

    def get_config(self):
        return {"name": self.name}


def replica_share(loss):
    """``loss`` / the number of replicas under a tf.distribute strategy (Keras' own ``Loss.__call__`` rule, which an
    overridden ``__call__`` skips): the replicas' gradients are summed, so each replica's batch share carries 1 / n
    of the step. Exact against one device for losses that are means over equal shares (pixel-normalised, or
    weight-normalised with equal weight sums); otherwise the step follows the mean of the shares' losses."""
    n = tf.distribute.get_strategy().num_replicas_in_sync
    return loss if n == 1 else loss * (1.0 / n)


def pixel_weights(sample_weight, labels):
    """Per-pixel float32 weights shaped like ``labels`` from None, [B], [B, H, W] or [B, H, W, 1]."""
    if sample_weight is None:
        return tf.ones_like(labels, dtype=tf.float32)
    w = tf.cast(sample_weight, tf.float32)
    if w.shape.rank == 4:
        w = tf.squeeze(w, axis=-1)
    elif w.shape.rank == 1:
        w = tf.reshape(w, [-1, 1, 1])
    return tf.broadcast_to(w, tf.shape(labels))


def check_class_weights(owner: str, class_weights: Optional[Sequence[float]]) -> Optional[tuple]:
    """None, or a tuple of >= 2 finite non-negative numbers (not all zero); ConfigError otherwise."""
    if class_weights is None:
        return None
    try:
        cw = tuple(float(v) for v in class_weights)
    except (TypeError, ValueError):
        raise ConfigError(f"loss {owner!r}: class_weights must be a list of numbers, got {class_weights!r}") from None
    if len(cw) < 2 or not all(math.isfinite(v) and v >= 0 for v in cw) or not any(cw):
        raise ConfigError(f"loss {owner!r}: class_weights must be >= 2 finite non-negative numbers, not all zero, "
                          f"got {list(class_weights)!r}")
    return cw


def apply_class_weights(owner: str, class_weights: Optional[tuple], labels, weights, num_classes):
    """weights * class_weights[label] per pixel (a static class-count mismatch raises ConfigError)."""
    if class_weights is None:
        return weights
    if num_classes is not None and num_classes != len(class_weights):
        raise ConfigError(f"loss {owner!r}: {len(class_weights)} class_weights for a model with {num_classes} "
                          f"classes")
    return weights * tf.gather(tf.constant(class_weights, tf.float32), labels)
