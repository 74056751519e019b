"""Macenko stain normalization (Macenko et al. 2009, "A method for normalizing histology slides for quantitative
analysis"; the SVD baseline of Yuan & Suh §4.1; Hu et al. 2018 §IV-B settings: angles at the 1st and 99th
percentiles). Per image, in TF ops:

1. OD = -log((I + 1) / Io), Io = 240; tissue = pixels with OD >= beta (0.15) in every channel.
2. The plane of the two largest eigenvectors of the tissue OD covariance (``tf.linalg.eigh`` on 3x3; the same
   plane as the SVD of the centred OD), tissue OD projected onto it.
3. Stain vectors at the ``alpha`` and ``100 - alpha`` percentiles of the projected angle; hematoxylin first
   (the larger red OD). Angles are ranked through a monotone "diamond angle" (no atan2) and the percentiles read
   from a 65536-bin histogram (``zoo.stain.base.hist_percentiles``).
4. Concentrations by least squares over all pixels, scaled so their 99th percentile matches the target's
   (max-concentration normalisation), recomposed with the target's stain vectors: I' = Io exp(-C' HE_ref).
"""

from __future__ import annotations

from zoo.errors import ConfigError
from zoo.stain.base import StainMatrixNormalizer, hist_percentiles, register


def _diamond(t1, t2):
    """Monotone stand-in for atan2(t2, t1) on the whole circle, in [-2, 2]."""
    import tensorflow as tf

    d = t2 / (tf.abs(t1) + tf.abs(t2) + 1e-30)
    back = tf.where(t2 >= 0, 2.0 - d, -2.0 - d)
    return tf.where(t1 >= 0, d, back)


def _diamond_dir(d):
    """Unit-free direction (x, y) of diamond angle ``d`` (inverse of ``_diamond``), [..., 2]."""
    import tensorflow as tf

    ad = tf.abs(d)
    front = tf.stack([1.0 - ad, d], -1)
    sign = tf.where(d >= 0, 1.0, -1.0)
    back = tf.stack([-(ad - 1.0), sign * (2.0 - ad)], -1)
    return tf.where((ad <= 1.0)[..., None], front, back)


def macenko_stains(od, mask, alpha: float):
    """Per-image stain matrices ``[B, 2, 3]`` (rows H, E; unit norm) from OD ``[B, N, 3]`` and tissue mask
    ``[B, N]``, plus a ``degenerate`` flag [B] (fewer than 2 distinct directions)."""
    import tensorflow as tf

    m = tf.cast(mask, tf.float32)[..., None]
    n = tf.maximum(tf.reduce_sum(m, axis=1), 1.0)  # [B, 1]
    mu = tf.reduce_sum(od * m, axis=1) / n  # [B, 3]
    c = (od - mu[:, None, :]) * m
    cov = tf.einsum("bnc,bnd->bcd", c, c) / n[:, :, None]
    evals, evecs = tf.linalg.eigh(cov)
    e1, e2 = evecs[:, :, 2], evecs[:, :, 1]  # largest, second
    e1 = e1 * tf.where(tf.reduce_sum(e1, -1, keepdims=True) < 0, -1.0, 1.0)  # tissue projects to t1 > 0
    e2 = e2 * tf.where(e2[:, :1] < 0, -1.0, 1.0)
    t1 = tf.einsum("bnc,bc->bn", od, e1)
    t2 = tf.einsum("bnc,bc->bn", od, e2)
    pct = hist_percentiles(_diamond(t1, t2), [alpha, 100.0 - alpha], weights=mask)  # [B, 2]
    dirs = _diamond_dir(pct)  # [B, 2, 2]
    v = dirs[..., :1] * e1[:, None, :] + dirs[..., 1:] * e2[:, None, :]  # [B, 2, 3]
    v = v / tf.maximum(tf.norm(v, axis=-1, keepdims=True), 1e-12)
    vmin, vmax = v[:, 0], v[:, 1]
    h_first = (vmin[:, 0] > vmax[:, 0])[:, None]
    he = tf.stack([tf.where(h_first, vmin, vmax), tf.where(h_first, vmax, vmin)], axis=1)
    degenerate = (evals[:, 1] <= 1e-10) | (tf.abs(tf.reduce_sum(vmin * vmax, -1)) > 1.0 - 1e-6)
    return he, degenerate


def concentrations(od, he):
    """Least-squares concentrations ``[B, N, 2]`` of OD ``[B, N, 3]`` on stain rows ``he [B, 2, 3]``."""
    import tensorflow as tf

    g = tf.einsum("bkc,bjc->bkj", he, he)  # [B, 2, 2]
    det = g[:, 0, 0] * g[:, 1, 1] - g[:, 0, 1] * g[:, 1, 0]
    det = tf.where(tf.abs(det) > 1e-12, det, tf.ones_like(det))[:, None, None]  # degenerate: flagged elsewhere
    ginv = tf.stack([tf.stack([g[:, 1, 1], -g[:, 0, 1]], -1), tf.stack([-g[:, 1, 0], g[:, 0, 0]], -1)], 1) / det
    pinv = tf.einsum("bkj,bjc->bkc", ginv, he)  # (H H^T)^-1 H : [B, 2, 3]
    return tf.einsum("bnc,bkc->bnk", od, pinv)


@register("macenko")
class MacenkoNormalizer(StainMatrixNormalizer):
    """Macenko normalization. Fitted parameters: ``stain_matrix`` [2, 3] (rows H, E) and ``max_conc`` [2]
    (99th-percentile concentrations) of the target. Settings: ``alpha`` (angle percentile, 1 = Hu et al.),
    ``max_percentile``, ``beta``, ``io`` (see ``zoo.stain.base``). Images without tissue, or whose estimate is
    degenerate, are returned unchanged and flagged. ``deconvolve`` gives Hu et al.'s H and E channels."""

    _config_keys = ("alpha", "max_percentile")

    def __init__(self, *, alpha: float = 1.0, max_percentile: float = 99.0, **kw):
        super().__init__(**kw)
        if not 0 <= alpha < 50 or not 50 < max_percentile <= 100:
            raise ConfigError(f"macenko: need 0 <= alpha < 50 and 50 < max_percentile <= 100, got {alpha}, "
                              f"{max_percentile}")
        self.alpha = float(alpha)
        self.max_percentile = float(max_percentile)

    def _stains(self, od, mask):
        return macenko_stains(od, mask, self.alpha)

    def _concentrations(self, od, he):
        return concentrations(od, he)
