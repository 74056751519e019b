"""Vahadane stain normalization (Vahadane et al. 2016, "Structure-preserving color normalization and sparse stain
separation for histological images", eq. 3-4): the stain matrix W >= 0 (unit-norm rows) and concentrations
H >= 0 minimise ||V - H W||^2 + lambda ||H||_1 over the tissue optical densities (sparse NMF); the source's
concentrations are scaled to the target's 99th percentile and recomposed with the target's stain matrix
(as staintools does).

The sparse NMF is dictionary learning solved exactly as SPAMS' trainDL mode 2 states it, without SPAMS: with two
stains the non-negative lasso of each pixel has a closed form (a 2-variable QP: both active, one active, or none),
and the dictionary step is Mairal et al.'s (2010) block-coordinate update with projection onto the non-negative
unit ball. Everything is TF ops (a ``tf.while_loop``), so per-image stain estimation runs batched and inside a
SavedModel. ``tests/zoo/stain`` checks the stain matrix against scikit-learn's DictionaryLearning.
"""

from __future__ import annotations

import numpy as np

from zoo.errors import ConfigError
from zoo.stain.base import StainMatrixNormalizer, register
from zoo.stain.deconvolution import RGB_FROM_HED

_INIT = (RGB_FROM_HED[:2] / np.linalg.norm(RGB_FROM_HED[:2], axis=1, keepdims=True)).astype(np.float32)


def nonneg_lasso2(x, w, lam: float):
    """argmin_{h >= 0} 0.5 ||x - h W||^2 + lam * sum(h) for every row of ``x [B, N, 3]`` and two-atom
    dictionaries ``w [B, 2, 3]``, exactly (KKT of the 2-variable QP). Returns ``[B, N, 2]``."""
    import tensorflow as tf

    g = tf.einsum("bkc,bjc->bkj", w, w)  # [B, 2, 2]
    g11, g12, g22 = g[:, 0, 0][:, None], g[:, 0, 1][:, None], g[:, 1, 1][:, None]
    r = tf.einsum("bnc,bkc->bnk", x, w) - lam
    r1, r2 = r[..., 0], r[..., 1]
    det = g11 * g22 - g12 * g12
    safe = tf.where(det > 1e-12, det, tf.ones_like(det))
    b1 = (g22 * r1 - g12 * r2) / safe
    b2 = (g11 * r2 - g12 * r1) / safe
    both = (b1 > 0) & (b2 > 0) & (det > 1e-12)
    s1 = tf.maximum(r1, 0.0) / tf.maximum(g11, 1e-12)  # only atom 1
    s2 = tf.maximum(r2, 0.0) / tf.maximum(g22, 1e-12)  # only atom 2
    # objective 0.5 h'Gh - r'h of the single-atom candidates: -0.5 * s * r
    use1 = -0.5 * s1 * r1 <= -0.5 * s2 * r2
    h1 = tf.where(both, b1, tf.where(use1, s1, 0.0))
    h2 = tf.where(both, b2, tf.where(use1, 0.0, s2))
    return tf.stack([h1, h2], axis=-1)


def sparse_nmf_stains(od, mask, lam: float, iters: int, init=None):
    """Dictionary learning on the masked OD rows: ``[B, 2, 3]`` stain matrices (rows H, E; unit norm,
    non-negative), started from ``init`` [2, 3] (default Ruifrok's H&E)."""
    import tensorflow as tf

    m = tf.cast(mask, tf.float32)[..., None]
    b = tf.shape(od)[0]
    w0 = tf.tile(tf.constant(_INIT if init is None else init, tf.float32)[None], [b, 1, 1])

    def body(i, w):
        h = nonneg_lasso2(od, w, lam) * m  # [B, N, 2]
        a = tf.einsum("bnk,bnj->bkj", h, h)  # [B, 2, 2]
        bm = tf.einsum("bnk,bnc->bkc", h, od)  # [B, 2, 3]
        for j in range(2):
            ajj = a[:, j, j][:, None]
            upd = w[:, j] + (bm[:, j] - tf.einsum("bk,bkc->bc", a[:, j], w)) / tf.maximum(ajj, 1e-12)
            upd = tf.maximum(upd, 0.0)
            upd = upd / tf.maximum(tf.norm(upd, axis=-1, keepdims=True), 1.0)
            new = tf.where(ajj > 1e-9, upd, w[:, j])
            w = tf.stack([new, w[:, 1]] if j == 0 else [w[:, 0], new], axis=1)
        return i + 1, w

    _, w = tf.while_loop(lambda i, w: i < iters, body, (tf.constant(0), w0))
    w = w / tf.maximum(tf.norm(w, axis=-1, keepdims=True), 1e-12)
    h_first = (w[:, 0, 0] >= w[:, 1, 0])[:, None]  # hematoxylin has the larger red OD
    return tf.stack([tf.where(h_first, w[:, 0], w[:, 1]), tf.where(h_first, w[:, 1], w[:, 0])], axis=1)


@register("vahadane")
class VahadaneNormalizer(StainMatrixNormalizer):
    """Vahadane normalization. Settings: ``lambda1`` (dictionary-learning sparsity, 0.1 as staintools),
    ``lambda2`` (sparsity of the concentrations, 0.01), ``iters`` (alternations), ``max_samples`` (pixels taken
    on a regular stride for the dictionary step), ``io`` (255 as staintools). Fitted parameters:
    ``stain_matrix`` [2, 3] and ``max_conc`` [2] of the target."""

    _config_keys = ("lambda1", "lambda2", "iters", "max_samples", "max_percentile")

    def __init__(self, *, lambda1: float = 0.1, lambda2: float = 0.01, iters: int = 30, max_samples: int = 65536,
                 max_percentile: float = 99.0, **kw):
        kw.setdefault("io", 255.0)
        super().__init__(**kw)
        if lambda1 < 0 or lambda2 < 0 or iters < 1 or max_samples < 16 or not 50 < max_percentile <= 100:
            raise ConfigError(f"vahadane: invalid lambda1={lambda1}, lambda2={lambda2}, iters={iters}, "
                              f"max_samples={max_samples}, max_percentile={max_percentile}")
        self.lambda1, self.lambda2 = float(lambda1), float(lambda2)
        self.iters, self.max_samples = int(iters), int(max_samples)
        self.max_percentile = float(max_percentile)

    def _stains(self, od, mask):
        import tensorflow as tf

        n = od.shape[1]
        if n is None:  # dynamic size (e.g. a serving signature with unknown H, W)
            n = tf.shape(od)[1]
            stride = tf.maximum((n + self.max_samples - 1) // self.max_samples, 1)
        else:  # static: XLA needs a compile-time stride
            stride = max(-(-n // self.max_samples), 1)
        he = sparse_nmf_stains(od[:, ::stride], mask[:, ::stride], self.lambda1, self.iters)
        return he, tf.zeros(tf.shape(od)[:1], tf.bool)

    def _concentrations(self, od, he):
        return nonneg_lasso2(od, he, self.lambda2)
