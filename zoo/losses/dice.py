"""Soft Dice loss (Milletari et al. 2016, V-Net eq. 1, multi-class) and its sum with the weighted log loss.

    Dice_c = (2 sum_i w_i p_ic t_ic + s) / (sum_i w_i p_ic + sum_i w_i t_ic + s),   L = 1 - mean_c Dice_c

over the foreground classes c = 1..C-1 (all classes with ``include_background``), sums over every pixel of the batch
(or of each image with ``per_image``, then averaged); w = sample_weight (0 removes a pixel), s = ``smooth``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import tensorflow as tf

from zoo.errors import ConfigError
from zoo.losses.cross_entropy import WeightedCrossEntropy
from zoo.losses.pixel import PixelLoss
from zoo.losses.registry import register_loss


def _check_number(owner: str, option: str, value, minimum: float = 0.0):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= minimum
    if not ok:
        raise ConfigError(f"loss {owner!r}: {option} must be a finite number >= {minimum}, got {value!r}")
    return float(value)


@register_loss("dice")
class SoftDice(PixelLoss):
    """1 - mean soft Dice over classes (module docstring).

    smooth: added to numerator and denominator (1.0; keeps classes absent from the batch at Dice 1, loss 0).
    include_background: also average class 0 (False: foreground classes only, the usual choice).
    per_image: Dice per image, then averaged over the batch (False: pooled over the batch).
    """

    def __init__(self, smooth: float = 1.0, include_background: bool = False, per_image: bool = False,
                 name: str = "dice", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.smooth = _check_number("dice", "smooth", smooth)
        self.include_background = bool(include_background)
        self.per_image = bool(per_image)

    def compute(self, labels, probs, weights):
        onehot = tf.one_hot(labels, tf.shape(probs)[-1], dtype=tf.float32)
        w = weights[..., None]
        axes = [1, 2] if self.per_image else [0, 1, 2]
        inter = tf.reduce_sum(w * probs * onehot, axis=axes)
        denom = tf.reduce_sum(w * probs, axis=axes) + tf.reduce_sum(w * onehot, axis=axes)
        dice = (2.0 * inter + self.smooth) / (denom + self.smooth)  # [..., C]
        if not self.include_background:
            dice = dice[..., 1:]
        return 1.0 - tf.reduce_mean(dice)

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth, "include_background": self.include_background,
                "per_image": self.per_image}


@register_loss("ce_dice")
class CrossEntropyDice(PixelLoss):
    """ce_weight * weighted log loss + dice_weight * soft Dice, on the same per-pixel weights.

    class_weights / normalization go to the cross-entropy term; smooth / include_background / per_image to Dice.
    """

    def __init__(self, ce_weight: float = 1.0, dice_weight: float = 1.0,
                 class_weights: Optional[Sequence[float]] = None, normalization: str = "weights",
                 smooth: float = 1.0, include_background: bool = False, per_image: bool = False,
                 name: str = "ce_dice", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.ce_weight = _check_number("ce_dice", "ce_weight", ce_weight)
        self.dice_weight = _check_number("ce_dice", "dice_weight", dice_weight)
        self.ce = WeightedCrossEntropy(class_weights, normalization, name="ce")
        self.dice = SoftDice(smooth, include_background, per_image, name="dice")

    def compute(self, labels, probs, weights):
        return (self.ce_weight * self.ce.compute(labels, probs, weights)
                + self.dice_weight * self.dice.compute(labels, probs, weights))

    def get_config(self):
        ce, dice = self.ce.get_config(), self.dice.get_config()
        return {"name": self.name, "ce_weight": self.ce_weight, "dice_weight": self.dice_weight,
                **{k: ce[k] for k in ("class_weights", "normalization")},
                **{k: dice[k] for k in ("smooth", "include_background", "per_image")}}
