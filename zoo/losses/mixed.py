"""Qu et al.'s loss (ISBI 2019, section 2.3, eq. 1-4) under MIXED supervision: one model, K + 2 softmax maps
(0 background, 1..K inner part of a type-k nucleus, K + 1 contour), trained on whatever labels each image has.

    L = L_ce + beta * L_per                         (eq. 4; beta = 0.1)
    L_ce = -1/N * sum_i w_i * log q_i               (eq. 1; N = every pixel of the batch, w_i = the pixel's weight:
                                                     Ronneberger's map, eq. 2, on instance data; the disc mask on
                                                     centre data; 0 = nothing asserted)

q_i, the probability of what pixel i's label asserts, depends on the label y_i (zoo.data.targets, ``mixed_*``):

| y_i | supervision | q_i |
|---|---|---|
| 0, K + 1 | background / contour (any instance data) | p_0, p_{K+1} |
| k in 1..K | inner part of a type-k nucleus (fully typed instance data: CoNSeP / PanNuke style) | p_k |
| K + 2 | inner part of a nucleus of unknown type (untyped instance data: MoNuSeg, TNBC) | sum_{j=1..K} p_j |
| K + 2 + k | on a disc around a centre labelled type k (centre data: CRCHistoPhenotypes) | p_k / sum_{j=1..K} p_j |
| 2K + 3 | unlabelled (centre data away from the discs; weight 0) | (none) |

So untyped instance data trains the cross-entropy over MERGED classes (background, any-type inner = the sum of the
K inner probabilities, contour); centre-typed data trains only the TYPE term, the type of the inner part given that
the pixel is inner, on the discs (radius ``point_radius`` of the input config), asserting nothing about inner /
contour / background anywhere; fully typed instance data has labels 0..K+1 only and this is exactly the plain K + 2
class cross-entropy of eq. 1. Every label is a per-pixel integer, so one batch can mix images of all three kinds.

L_per (zoo.losses.perceptual, eq. 3: the contour probability copied to three channels against the contour target,
as Qu's released code does) needs a contour target, so it is averaged over the images of the batch that carry
segmentation labels: those with no label above K + 2 (centre-data images have 2K + 3 outside the discs, or only
disc labels). beta = 0 turns it off (the "without L_per" row) and builds no VGG.
"""

from __future__ import annotations

from typing import Callable, Optional

import tensorflow as tf

from zoo.errors import ConfigError
from zoo.losses.perceptual import perceptual_loss, vgg16_features
from zoo.losses.pixel import EPSILON, PixelLoss
from zoo.losses.registry import register_loss


def mixed_codes(num_types: int) -> dict:
    """The label values of the table in the module docstring for K = ``num_types``."""
    k = int(num_types)
    return {"background": 0, "contour": k + 1, "any_inner": k + 2, "centre_type_offset": k + 2,
            "unlabelled": 2 * k + 3}


def mixed_cross_entropy_terms(labels, probs, num_types: int):
    """-log q_i per pixel [B, H, W] (module docstring; 0 on unlabelled pixels); probabilities clipped to
    [EPSILON, 1] before every log."""
    k = int(num_types)
    labels = tf.cast(labels, tf.int32)
    probs = tf.cast(probs, tf.float32)
    log = lambda v: tf.math.log(tf.clip_by_value(v, EPSILON, 1.0))  # noqa: E731
    plain = -log(tf.gather(probs, tf.clip_by_value(labels, 0, k + 1), axis=-1, batch_dims=3))
    inner = tf.reduce_sum(probs[..., 1:k + 1], axis=-1)
    any_inner = -log(inner)
    t = tf.clip_by_value(labels - (k + 2), 1, k)
    typed = -(log(tf.gather(probs, t, axis=-1, batch_dims=3)) - log(inner))
    out = tf.where(labels <= k + 1, plain, tf.where(labels == k + 2, any_inner, typed))
    return tf.where(labels >= 2 * k + 3, tf.zeros_like(out), out)


def segmentation_images(labels, num_types: int):
    """[B] float: 1 for images with segmentation labels (no label above K + 2), 0 for centre-data images."""
    top = tf.reduce_max(tf.reshape(tf.cast(labels, tf.int32), [tf.shape(labels)[0], -1]), axis=1)
    return tf.cast(top <= int(num_types) + 2, tf.float32)


@register_loss("qu_mixed")
class QuMixedLoss(PixelLoss):
    """L = L_ce + beta * L_per under mixed supervision (module docstring).

    num_types: K (the model has K + 2 outputs).  beta: weight of the perceptual term (Qu et al.: 0.1; 0 = off).
    vgg_weights: the frozen VGG16's weights: null (seeded random init, ``vgg_seed``), a local VGG16 notop weights
      file, or "imagenet" (downloads; zoo.losses.perceptual).
    extractor: (tests) a callable image -> list of feature maps used instead of the VGG16; not serialised.
    """

    def __init__(self, num_types: int = 3, beta: float = 0.1, vgg_weights: Optional[str] = None, vgg_seed: int = 0,
                 extractor: Optional[Callable] = None, name: str = "qu_mixed", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if isinstance(num_types, bool) or not isinstance(num_types, int) or num_types < 1:
            raise ConfigError(f"loss 'qu_mixed': num_types must be an integer >= 1, got {num_types!r}")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
            raise ConfigError(f"loss 'qu_mixed': beta must be a number >= 0, got {beta!r}")
        if vgg_weights is not None and not isinstance(vgg_weights, str):
            raise ConfigError(f"loss 'qu_mixed': vgg_weights must be null, 'imagenet' or a file path, "
                              f"got {vgg_weights!r}")
        self.num_types, self.beta = int(num_types), float(beta)
        self.vgg_weights, self.vgg_seed = vgg_weights, int(vgg_seed)
        self._extractor = extractor

    def extractor(self):
        """The frozen feature extractor, built on first use (outside any tf.function being traced)."""
        if self._extractor is None:
            with tf.init_scope():
                self._extractor = vgg16_features(self.vgg_weights, self.vgg_seed)
        return self._extractor

    def cross_entropy(self, labels, probs, weights):
        """Eq. 1 under mixed supervision: sum_i w_i (-log q_i) / N."""
        self._check_channels(probs)
        terms = mixed_cross_entropy_terms(labels, probs, self.num_types)
        return tf.reduce_sum(weights * terms) / tf.cast(tf.size(labels), tf.float32)

    def perceptual(self, labels, probs):
        """Eq. 3 on the images with segmentation labels (contour target: label K + 1)."""
        contour = tf.equal(tf.cast(labels, tf.int32), self.num_types + 1)
        return perceptual_loss(self.extractor(), probs, contour, segmentation_images(labels, self.num_types),
                               contour_channel=self.num_types + 1)

    def compute(self, labels, probs, weights):
        loss = self.cross_entropy(labels, probs, weights)
        if self.beta > 0:
            loss = loss + self.beta * self.perceptual(labels, probs)
        return loss

    def _check_channels(self, probs):
        c = probs.shape[-1]
        if c is not None and c != self.num_types + 2:
            raise ConfigError(f"loss 'qu_mixed': num_types {self.num_types} needs a model with "
                              f"{self.num_types + 2} outputs, got {c}")

    def get_config(self):
        return {**super().get_config(), "num_types": self.num_types, "beta": self.beta,
                "vgg_weights": self.vgg_weights, "vgg_seed": self.vgg_seed}
