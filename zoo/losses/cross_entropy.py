"""Naylor et al.'s per-pixel weighted log loss (section 3, the loss minimised by SGD):

    L = - 1 / (sum_ij w_ij) * sum_ij sum_k w_ij t_ijk log(p_ijk)

with w_ij = sample_weight_ij * class_weights[label_ij] (class weights, U-Net weight maps, or both; 1 by default),
summed over every pixel of the batch.
"""

from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from zoo.errors import ConfigError
from zoo.losses.pixel import EPSILON, PixelLoss, apply_class_weights, check_class_weights
from zoo.losses.registry import register_loss

NORMALIZATIONS = ("weights", "pixels")


def pixel_cross_entropy(labels, probs):
    """-log p[label] per pixel, probabilities clipped to [EPSILON, 1]: [B, H, W]."""
    p = tf.gather(probs, labels, axis=-1, batch_dims=3)
    return -tf.math.log(tf.clip_by_value(p, EPSILON, 1.0))


@register_loss("weighted_ce")
class WeightedCrossEntropy(PixelLoss):
    """Naylor et al.'s weighted log loss (module docstring).

    class_weights: one weight per class (e.g. [1, 3] to up-weight nuclei), or None.
    normalization: "weights" divides by the sum of the weights (Naylor's formula; an all-zero batch gives 0);
      "pixels" by the number of pixels (Ronneberger's weight-map convention, Keras' default reduction).
    """

    def __init__(self, class_weights: Optional[Sequence[float]] = None, normalization: str = "weights",
                 name: str = "weighted_ce", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.class_weights = check_class_weights("weighted_ce", class_weights)
        if normalization not in NORMALIZATIONS:
            raise ConfigError(f"loss 'weighted_ce': normalization must be one of {', '.join(NORMALIZATIONS)}, "
                              f"got {normalization!r}")
        self.normalization = normalization

    def compute(self, labels, probs, weights):
        weights = apply_class_weights("weighted_ce", self.class_weights, labels, weights, probs.shape[-1])
        total = tf.reduce_sum(weights * pixel_cross_entropy(labels, probs))
        if self.normalization == "weights":
            return tf.math.divide_no_nan(total, tf.reduce_sum(weights))
        return total / tf.cast(tf.size(labels), tf.float32)

    def get_config(self):
        cw = None if self.class_weights is None else list(self.class_weights)
        return {**super().get_config(), "class_weights": cw, "normalization": self.normalization}
