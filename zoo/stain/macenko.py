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
from zoo.stain.base import (FALLBACK_DEGENERATE, FALLBACK_NO_TISSUE, FALLBACK_NONE, StainMatrixNormalizer,
                            hist_percentiles, register, tissue_fallback)
from zoo.stain.deconvolution import to_uint8


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
    return _he_from_plane(e1, e2, t1, t2, mask, alpha, evals)


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

    def _compiled_fn(self):
        """``transform``'s function: with ``jit``, the five stages below (one per-pixel pass each, see "the fast
        transform path"); without, ``_tf_core``, the one-graph definition that ``tf_transform`` and SavedModels
        use."""
        if self._compiled is None and self.jit:
            import tensorflow as tf

            params = self._param_tensors()
            jit = lambda f: tf.function(f, jit_compile=True, reduce_retracing=True)  # noqa: E731
            s1 = jit(lambda x: planar_od(x, self.io, self.beta))
            s2 = tf.function(tissue_moments, reduce_retracing=True)  # a GEMM: Eigen's, not XLA's
            s3 = jit(self._stage_stains)
            s4 = jit(lambda od, he: _planar_max_conc(od, he, self.max_percentile))
            s5 = jit(lambda x, od, mix: _planar_output(x, od, mix, self.io))
            s_mix = jit(lambda he, maxc, degenerate, no_tissue: self._stage_mix(he, maxc, degenerate, no_tissue,
                                                                                params))

            def run(images):
                od, weighted = s1(images)
                moments = s2(weighted)
                he, degenerate, no_tissue, frac = s3(od, weighted, moments)
                maxc = s4(od, he)
                mix, code = s_mix(he, maxc, degenerate, no_tissue)
                out = s5(images, od, mix)
                keep = code != FALLBACK_NONE
                if bool(tf.reduce_any(keep)):
                    out = tf.where(keep[:, None, None, None], images, out)
                return out, code, frac

            self._compiled = run
        return super()._compiled_fn()

    def _stage_stains(self, od, weighted, moments):
        mask = weighted[:, 3] > 0
        no_tissue, frac = tissue_fallback(mask, self.min_tissue_fraction, self.min_tissue_pixels)
        he, degenerate = _planar_stains(od, mask, moments, self.alpha)
        return he, degenerate, no_tissue, frac

    @staticmethod
    def _stage_mix(he, maxc, degenerate, no_tissue, params):
        """The fallback code (as ``tf_estimate``) and the per-image 3x3 map od -> output od."""
        import tensorflow as tf

        bad = (degenerate | tf.reduce_any(~(maxc > 1e-6), axis=1)
               | tf.reduce_any(~tf.math.is_finite(he), [1, 2]) | (tf.reduce_sum(he[:, 0] * he[:, 1], -1) > 1 - 1e-6))
        code = tf.where(no_tissue, FALLBACK_NO_TISSUE, tf.where(bad, FALLBACK_DEGENERATE, FALLBACK_NONE))
        scale = params["max_conc"][None, :] / tf.maximum(maxc, 1e-6)  # [B, 2]
        mix = tf.einsum("bkc,bk,kj->bcj", _pinv(he), scale, params["stain_matrix"])
        return mix, code


# ------------------------------------------------------------------------------------ the fast transform path
# ``transform`` (jit) runs the same definition as ``_tf_core`` in five stages instead of one XLA program, so that
# every per-pixel value is computed once and stored (XLA recomputes a fused producer in every consumer, and its
# CPU reductions over 10^6 pixels are slow): (1) OD, planar, by a 256-entry table, and the tissue mask; (2) every
# first and second moment of the tissue OD in one matrix product (Eigen / oneDNN, not XLA); (3) the plane, the
# angles and their percentiles; (4) the concentrations' percentiles; (5) the output, with the concentrations
# recomputed (6 multiply-adds) rather than stored. Equal to ``tf_transform`` within one uint8 level
# (tests/zoo/stain/test_stain_macenko.py::test_fast_transform_equals_the_graph_definition).
def od_table(io: float):
    """OD = -log((I + 1) / Io) of the 256 uint8 levels, computed in float64 and rounded once to float32: a gather
    replaces a float32 log per channel and pixel (and is closer to the exact value)."""
    import numpy as np

    return (-np.log((np.arange(256, dtype=np.float64) + 1.0) / io)).astype(np.float32)


def planar_od(images, io: float, beta: float):
    """Stage 1: uint8 [B, H, W, 3] -> (OD planar float32 [B, 3, N], [tissue * OD; tissue] float32 [B, 4, N])."""
    import tensorflow as tf

    b = tf.shape(images)[0]
    x = tf.transpose(tf.reshape(images, [b, -1, 3]), [0, 2, 1])
    od = tf.gather(tf.constant(od_table(io)), tf.cast(x, tf.int32))
    m = tf.cast(tf.reduce_all(od >= beta, axis=1, keepdims=True), tf.float32)  # [B, 1, N]
    return od, tf.concat([od * m, m], axis=1)


def tissue_moments(weighted):
    """Stage 2: [[sum m od_i od_j, sum m od_i], [., sum m]] for i, j in RGB as ``w @ w^T`` [B, 4, 4] with
    w = [m od; m] (m the 0/1 tissue mask: m^2 = m). One GEMM over the pixels: blocked float32 sums."""
    import tensorflow as tf

    return tf.matmul(weighted, weighted, transpose_b=True)


def _planar_stains(od, mask, moments, alpha: float):
    """Stage 3: ``macenko_stains`` on planar OD [B, 3, N] with the covariance from the moments
    (cov = E[od od^T] - mu mu^T over the tissue)."""
    import tensorflow as tf

    n = tf.maximum(moments[:, 3, 3], 1.0)[:, None]  # [B, 1]
    mu = moments[:, :3, 3] / n
    cov = moments[:, :3, :3] / n[:, :, None] - mu[:, :, None] * mu[:, None, :]
    evals, evecs = tf.linalg.eigh(cov)
    e1, e2 = evecs[:, :, 2], evecs[:, :, 1]  # largest, second
    e1 = e1 * tf.where(tf.reduce_sum(e1, -1, keepdims=True) < 0, -1.0, 1.0)  # tissue projects to t1 > 0
    e2 = e2 * tf.where(e2[:, :1] < 0, -1.0, 1.0)
    t1 = od[:, 0] * e1[:, :1] + od[:, 1] * e1[:, 1:2] + od[:, 2] * e1[:, 2:]
    t2 = od[:, 0] * e2[:, :1] + od[:, 1] * e2[:, 1:2] + od[:, 2] * e2[:, 2:]
    return _he_from_plane(e1, e2, t1, t2, mask, alpha, evals)


def _pinv(he):
    """(H H^T)^-1 H [B, 2, 3]: least-squares concentrations are ``pinv @ od`` (as ``concentrations``)."""
    import tensorflow as tf

    g = tf.einsum("bkc,bjc->bkj", he, he)
    det = g[:, 0, 0] * g[:, 1, 1] - g[:, 0, 1] * g[:, 1, 0]
    det = tf.where(tf.abs(det) > 1e-12, det, tf.ones_like(det))[:, None, None]
    ginv = tf.stack([tf.stack([g[:, 1, 1], -g[:, 0, 1]], -1), tf.stack([-g[:, 1, 0], g[:, 0, 0]], -1)], 1) / det
    return tf.einsum("bkj,bjc->bkc", ginv, he)


def _planar_max_conc(od, he, max_percentile: float):
    """Stage 4: the ``max_percentile`` percentile of each concentration over all pixels [B, 2]."""
    import tensorflow as tf

    p = _pinv(he)
    c = tf.stack([od[:, 0] * p[:, k, :1] + od[:, 1] * p[:, k, 1:2] + od[:, 2] * p[:, k, 2:] for k in (0, 1)], 1)
    b = tf.shape(od)[0]
    return tf.reshape(hist_percentiles(tf.reshape(c, [b * 2, -1]), [max_percentile])[:, 0], [b, 2])


def _planar_output(images, od, mix, io: float):
    """Stage 5: I' = Io exp(-od @ mix) with the per-image 3x3 ``mix = pinv^T diag(scale) HE_ref`` (the
    concentrations, scaled and recomposed, folded into one map), rounded to uint8, interleaved. (The images that
    fall back are put back outside: a select on uint8 costs XLA as much as the rest of this stage.)"""
    import tensorflow as tf

    planes = [od[:, 0] * mix[:, 0, j, None] + od[:, 1] * mix[:, 1, j, None] + od[:, 2] * mix[:, 2, j, None]
              for j in range(3)]
    return tf.reshape(tf.stack([to_uint8(io * tf.exp(-t)) for t in planes], axis=-1), tf.shape(images))


def _he_from_plane(e1, e2, t1, t2, mask, alpha, evals):
    """Macenko et al. steps 4-6: the robust extreme angles (alpha / 100 - alpha percentiles, tissue pixels only) of the
    OD projections (t1, t2) on the plane of the two largest eigenvectors (e1, e2) -> the H and E unit vectors [B, 2, 3]
    (hematoxylin first: the larger red OD), and whether the estimate is degenerate (flat tissue or parallel vectors)."""
    import tensorflow as tf

    pct = hist_percentiles(_diamond(t1, t2), [alpha, 100.0 - alpha], weights=mask)  # [B, 2]
    dirs = _diamond_dir(pct)  # [B, 2, 2]
    v = dirs[..., :1] * e1[:, None, :] + dirs[..., 1:] * e2[:, None, :]  # [B, 2, 3]
    v = v / tf.maximum(tf.norm(v, axis=-1, keepdims=True), 1e-12)
    vmin, vmax = v[:, 0], v[:, 1]
    h_first = (vmin[:, 0] > vmax[:, 0])[:, None]
    he = tf.stack([tf.where(h_first, vmin, vmax), tf.where(h_first, vmax, vmin)], axis=1)
    degenerate = (evals[:, 1] <= 1e-10) | (tf.abs(tf.reduce_sum(vmin * vmax, -1)) > 1.0 - 1e-6)
    return he, degenerate
