"""The InfoWGAN-GP game's loss terms (Hu et al., IEEE JBHI 2019, section III-A; Gulrajani et al. 2017, WGAN-GP):

    L_D = E[D(G(z, c))] - E[D(x)] + lambda_1 * E[(||grad_xhat D(xhat)||_2 - 1)^2]      (eq. 10; xhat on the lines
                                                                                        between real and fake)
    L_G = -E[D(G(z, c))] + lambda_2 * L_MI                                            (eq. 11 + the MI term of eq. 9)
    L_Q = lambda_2 * L_MI,  L_MI = -E[log Q(c | G(z, c))]                             (eq. 12, sign corrected)

Eq. 12 as printed, ``L_Q = lambda_2 E[log Q(c|G(z,c))]``, drops a minus sign: minimising it would *decrease* the
likelihood of c, i.e. minimise the lower bound L_I of eq. 7 that eq. 9 maximises. The loss minimised here is the
negative log-likelihood (the cross-entropy between c and Q's softmax), as the paper's text says ("the negative
log-likelihood between Q(c|G(z,c)) and the discrete variable c"); H(c) of eq. 7 is a constant and left out.

The G step also carries lambda_2 * L_MI: eq. 9 minimises V - lambda_2 L_I over G *and* Q (eq. 11 as printed only
shows the adversarial term). Yuan & Suh (sec. 3.3) use the same three terms (their eq. 1-3).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from zoo.errors import ConfigError
from zoo.losses.registry import register_loss


def gradient_penalty(critic, real, fake, alpha=None, seed=None):
    """E[(||grad_xhat critic(xhat)||_2 - 1)^2] over xhat = alpha * real + (1 - alpha) * fake, alpha ~ U[0, 1] per
    sample (Hu et al. eq. 10, Gulrajani et al. eq. 3). ``critic``: a callable [B, ...] -> [B] or [B, 1]; the norm is
    taken over every non-batch axis. ``alpha`` [B] may be given (tests); otherwise drawn with ``seed``."""
    real = tf.convert_to_tensor(real, tf.float32)
    fake = tf.convert_to_tensor(fake, tf.float32)
    b = tf.shape(real)[0]
    if alpha is None:
        alpha = keras.random.uniform([b], 0.0, 1.0, seed=seed)
    alpha = tf.reshape(tf.cast(alpha, tf.float32), [-1] + [1] * (real.shape.rank - 1))
    xhat = alpha * real + (1.0 - alpha) * fake
    with tf.GradientTape() as tape:
        tape.watch(xhat)
        score = tf.reduce_sum(critic(xhat))  # sum: each sample's gradient is its own (samples are independent)
    grad = tape.gradient(score, xhat)
    norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=list(range(1, real.shape.rank))) + 1e-12)
    return tf.reduce_mean(tf.square(norm - 1.0))


def mutual_information_loss(c, q_logits):
    """L_MI = -E[log Q(c | G(z, c))] (the negative of eq. 7's L_I without the constant H(c)): the mean
    cross-entropy between the sampled categories ``c`` (int [B]) and Q's logits [B, k]."""
    c = tf.cast(tf.reshape(c, [-1]), tf.int32)
    logp = tf.nn.log_softmax(tf.cast(q_logits, tf.float32), axis=-1)
    return -tf.reduce_mean(tf.gather(logp, c, axis=-1, batch_dims=1))


@register_loss("infowgan_gp")
class InfoWGANGPLoss:
    """The three losses of the game (module docstring) with their weights; the GAN models' ``compile`` takes it as
    ``loss`` (zoo.training.gan runs the steps).

    lambda_gp: lambda_1, the gradient-penalty weight (Hu et al. IV-B: 10).
    lambda_info: lambda_2, the mutual-information weight (Hu et al. IV-B: 1).
    """

    def __init__(self, lambda_gp: float = 10.0, lambda_info: float = 1.0, name: str = "infowgan_gp"):
        for k, v in (("lambda_gp", lambda_gp), ("lambda_info", lambda_info)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ConfigError(f"loss 'infowgan_gp': {k} must be a number >= 0, got {v!r}")
        self.lambda_gp, self.lambda_info, self.name = float(lambda_gp), float(lambda_info), name

    def critic_loss(self, d_real, d_fake, penalty):
        """L_D of eq. 10: E[D(fake)] - E[D(real)] + lambda_1 * GP."""
        return tf.reduce_mean(d_fake) - tf.reduce_mean(d_real) + self.lambda_gp * penalty

    def generator_loss(self, d_fake, mi):
        """L_G: -E[D(G(z, c))] (eq. 11) + lambda_2 * L_MI (eq. 9)."""
        return -tf.reduce_mean(d_fake) + self.lambda_info * mi

    def info_loss(self, mi):
        """L_Q = lambda_2 * L_MI = -lambda_2 E[log Q(c | G(z, c))] (eq. 12 with its minus sign restored)."""
        return self.lambda_info * mi

    def get_config(self) -> dict:
        return {"lambda_gp": self.lambda_gp, "lambda_info": self.lambda_info, "name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> "InfoWGANGPLoss":
        return cls(**config)
