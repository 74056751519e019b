"""The SimGAN losses (Shrivastava et al., CVPR 2017, "Learning from simulated and unsupervised images through
adversarial training", eq. 1-3; Bhatia, "Ground-truth-free nuclei segmentation", sec. 3.2.1):

    L_D(psi)   = - sum_i log D(x~_i) - sum_j log(1 - D(y_j))                 (Bhatia sec. 3.2.1; Shrivastava eq. 2)
    L_R(Omega) = - sum_i log(1 - D(R(x_i))) + lambda * ||R(x_i) - x_i||_1    (Bhatia sec. 3.2.1; Shrivastava eq. 3)

with D(.) the probability that an image (here: each local patch of it, Shrivastava sec. 2.2) is refined/synthetic,
x~ refined synthetic images (current and from the history buffer), y unlabelled real images. Sums become means over
images and local patches (and over pixels and channels for the L1 term), so lambda does not depend on the sizes.

lambda is not given in Bhatia's report (nor used there with a value); ``lambda_reg`` = 1.0 here, our choice: with
images in [0, 1] a mean absolute change of 0.05 costs 0.05, against an adversarial term of ~0.69 (log 2) at
equilibrium, so the refiner may change local texture but not move nuclei or repaint them (the masks stay valid).
"""

from __future__ import annotations

import tensorflow as tf

from zoo.errors import ConfigError
from zoo.losses.registry import register_loss


def _weighted_mean(values, weights):
    """sum(w * v) / max(sum(w), 1) over samples: ``values`` [B] and ``weights`` [B] (0 = sample left out)."""
    w = tf.cast(weights, tf.float32)
    return tf.reduce_sum(tf.cast(values, tf.float32) * w) / tf.maximum(tf.reduce_sum(w), 1.0)


def patch_cross_entropy(logits, synthetic: bool):
    """Per-image mean over local patches of -log D (``synthetic``) or -log(1 - D) (real), D = sigmoid(logits)
    [B, h, w, 1] -> [B]."""
    labels = tf.ones_like(logits) if synthetic else tf.zeros_like(logits)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=tf.cast(logits, tf.float32))
    return tf.reduce_mean(ce, axis=[1, 2, 3])


@register_loss("simgan")
class SimGANLoss:
    """L_D and L_R of the module docstring; the SimGAN refiner's ``compile`` takes it as ``loss``
    (zoo.training.gan.refiner_train_step runs the steps). lambda_reg: the self-regularisation weight (1.0, our
    choice: not given in the report)."""

    def __init__(self, lambda_reg: float = 1.0, name: str = "simgan"):
        if isinstance(lambda_reg, bool) or not isinstance(lambda_reg, (int, float)) or not lambda_reg >= 0:
            raise ConfigError(f"loss 'simgan': lambda_reg must be a number >= 0, got {lambda_reg!r}")
        self.lambda_reg, self.name = float(lambda_reg), name

    def discriminator_loss(self, real_logits, real_w, fake_logits, fake_w):
        """L_D: the mean of -log(1 - D(y)) over real images plus that of -log D(x~) over refined ones (weights [B]
        select which samples of each batch count)."""
        return (_weighted_mean(patch_cross_entropy(real_logits, False), real_w)
                + _weighted_mean(patch_cross_entropy(fake_logits, True), fake_w))

    def refiner_loss(self, refined_logits, refined, synthetic, weights):
        """(L_R, adversarial term, L1 term): -log(1 - D(R(x))) + lambda * mean |R(x) - x| over synthetic images."""
        adv = _weighted_mean(patch_cross_entropy(refined_logits, False), weights)
        l1 = _weighted_mean(tf.reduce_mean(tf.abs(tf.cast(refined, tf.float32) - tf.cast(synthetic, tf.float32)),
                                           axis=[1, 2, 3]), weights)
        return adv + self.lambda_reg * l1, adv, l1

    def get_config(self) -> dict:
        return {"lambda_reg": self.lambda_reg, "name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> "SimGANLoss":
        return cls(**config)
