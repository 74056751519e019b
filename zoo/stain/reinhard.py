"""Reinhard colour normalization (Reinhard et al. 2001, "Color transfer between images", eq. 10-11 applied in
CIELAB as in Hu et al. 2018 §IV-B and torchstain): each LAB channel of the source is shifted and scaled to the
target's mean and standard deviation, ``l' = (l - mu_s) * sd_t / sd_s + mu_t``.

``rgb_to_lab`` / ``lab_to_rgb`` are sRGB (D65) <-> CIELAB in TF ops with skimage's constants (``rgb2lab`` /
``lab2rgb`` agree to ~1e-4 in L, a, b)."""

from __future__ import annotations

import numpy as np

from zoo.errors import ConfigError
from zoo.stain.base import (FALLBACK_DEGENERATE, FALLBACK_NO_TISSUE, FALLBACK_NONE, StainNormalizer, register,
                            tissue_fallback, to_uint8)

# skimage.color.colorconv: xyz_from_rgb, D65 2-degree white point.
XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])
RGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_RGB)
WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def _root(t, n: int):
    """t ** (1 / n) (n = 3 or 5) for t > 0 in float32 by a bit-level first guess and 3 Newton steps (relative error ~1e-7).
    XLA's pow on CPU is ~4x slower, and Reinhard does three per channel and pixel."""
    import tensorflow as tf

    t = tf.maximum(t, 1e-30)
    y = tf.bitcast(tf.bitcast(t, tf.int32) // n + (n - 1) * (1065353216 // n), tf.float32)
    for _ in range(3):
        p = y * y  # y ** (n - 1) for n in (3, 5)
        if n == 5:
            p = p * p
        y = ((n - 1) * y + t / p) * (1.0 / n)
    return y


def _srgb_decode(x):
    """sRGB companding inverse: ((x + 0.055) / 1.055) ** 2.4 = (fifth root) ** 12 above 0.04045, x / 12.92 below."""
    import tensorflow as tf

    r = _root((tf.maximum(x, 0.04045) + 0.055) / 1.055, 5)
    r2 = r * r
    r4 = r2 * r2
    return tf.where(x > 0.04045, r4 * r4 * r4, x / 12.92)


def _srgb_encode(lin):
    """sRGB companding: 1.055 lin ** (1/2.4) - 0.055 (lin^(5/12) = c * c^(1/4), c = cube root), 12.92 lin below."""
    import tensorflow as tf

    c = _root(tf.maximum(lin, 0.0031308), 3)
    return tf.where(lin > 0.0031308, 1.055 * c * tf.sqrt(tf.sqrt(c)) - 0.055, 12.92 * lin)


def _mix(v, m: np.ndarray):
    """``v @ m.T`` for a constant 3x3 ``m`` as nine scalar multiply-adds on the channels: XLA fuses these with
    the element-wise work around them (a dot would be a separate pass over memory)."""
    import tensorflow as tf

    c = [v[..., j] for j in range(3)]
    return tf.stack([c[0] * float(m[i, 0]) + c[1] * float(m[i, 1]) + c[2] * float(m[i, 2]) for i in range(3)], -1)


def rgb_to_lab(rgb):
    """sRGB (uint8 0..255 or float 0..1) -> CIELAB float32 (L in 0..100), as ``skimage.color.rgb2lab``."""
    import tensorflow as tf

    x = tf.convert_to_tensor(rgb)
    x = tf.cast(x, tf.float32) / 255.0 if x.dtype == tf.uint8 else tf.cast(x, tf.float32)
    lin = _srgb_decode(x)
    xyz = _mix(lin, XYZ_FROM_RGB / WHITE_D65[:, None])
    f = tf.where(xyz > 0.008856, _root(tf.maximum(xyz, 0.008856), 3), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return tf.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_rgb(lab):
    """CIELAB -> sRGB float32 in [0, 1], as ``skimage.color.lab2rgb`` (out-of-gamut values clipped)."""
    import tensorflow as tf

    lab = tf.cast(tf.convert_to_tensor(lab), tf.float32)
    fy = (lab[..., 0] + 16.0) / 116.0
    fx = lab[..., 1] / 500.0 + fy
    fz = tf.maximum(fy - lab[..., 2] / 200.0, 0.0)
    f = tf.stack([fx, fy, fz], axis=-1)
    xyz = tf.where(f > 0.2068966, f * f * f, (f - 16.0 / 116.0) / 7.787)
    lin = _mix(xyz, RGB_FROM_XYZ * WHITE_D65[None, :])
    lin = tf.clip_by_value(lin, 0.0, 1.0)
    return _srgb_encode(lin)


def lab_stats(images):
    """Per-image LAB mean and standard deviation over all pixels, ``([B, 3], [B, 3])``."""
    import tensorflow as tf

    lab = rgb_to_lab(images)
    axes = list(range(1, lab.shape.rank - 1))
    mean = tf.reduce_mean(lab, axis=axes)
    std = tf.sqrt(tf.reduce_mean(tf.square(lab - tf.reshape(mean, [-1, 1, 1, 3])), axis=axes))
    return mean, std


@register("reinhard")
class ReinhardNormalizer(StainNormalizer):
    """Reinhard normalization in CIELAB. Fitted parameters: ``lab_mean`` [3], ``lab_std`` [3] of the target over
    all its pixels. An image with no tissue (see ``zoo.stain.base``) or a flat channel (std < ``min_std``) is
    returned unchanged and flagged."""

    _config_keys = ("min_std",)
    _param_keys = ("lab_mean", "lab_std")

    def __init__(self, *, min_std: float = 1e-3, **kw):
        super().__init__(**kw)
        self.min_std = float(min_std)

    def _estimate_target(self, target: np.ndarray) -> dict:
        import tensorflow as tf

        mean, std = lab_stats(tf.constant(target[None]))
        if float(tf.reduce_min(std)) < self.min_std:
            raise ConfigError(f"reinhard target is flat (LAB std {std.numpy()[0].round(4).tolist()}): no colour to match")
        return {"lab_mean": mean.numpy()[0], "lab_std": std.numpy()[0]}

    def _tf_core(self, images, params):
        import tensorflow as tf

        b = tf.shape(images)[0]
        x = tf.cast(images, tf.float32)
        # OD >= beta in every channel  <=>  I <= io exp(-beta) - 1 (no log per pixel)
        dark = tf.reduce_all(x <= self.io * float(np.exp(-self.beta)) - 1.0, axis=-1)
        no_tissue, frac = tissue_fallback(tf.reshape(dark, [b, -1]), self.min_tissue_fraction, self.min_tissue_pixels)
        lab = rgb_to_lab(x / 255.0)
        mean = tf.reduce_mean(lab, axis=[1, 2])
        std = tf.sqrt(tf.reduce_mean(tf.square(lab - mean[:, None, None, :]), axis=[1, 2]))
        flat = tf.reduce_any(std < self.min_std, axis=1)
        scale = params["lab_std"] / tf.maximum(std, self.min_std)
        out_lab = (lab - mean[:, None, None, :]) * scale[:, None, None, :] + params["lab_mean"]
        out = to_uint8(lab_to_rgb(out_lab) * 255.0)
        code = tf.where(no_tissue, FALLBACK_NO_TISSUE, tf.where(flat, FALLBACK_DEGENERATE, FALLBACK_NONE))
        keep = (code != FALLBACK_NONE)[:, None, None, None]
        return tf.where(keep, images, out), code, frac
