"""Reinhard colour normalization (Reinhard et al. 2001, "Color transfer between images", eq. 10-11): each channel of
the source, in a decorrelated colour space, is shifted and scaled to the target's mean and standard deviation,
``l' = (l - mu_s) * sd_t / sd_s + mu_t``. Two spaces:

- ``"lab"`` (default): CIELAB, as Hu et al. 2018 §IV-B describe it and torchstain / staintools implement it.
  ``rgb_to_lab`` / ``lab_to_rgb`` are sRGB (D65) <-> CIELAB with skimage's constants (``rgb2lab`` / ``lab2rgb``
  agree to ~1e-4 in L, a, b).
- ``"lalphabeta"``: Ruderman et al. 1998's l-alpha-beta space as Reinhard et al. 2001 used it and HistomicsTK
  (``preprocessing.color_conversion.rgb_to_lab``) implements it: ``LMS = RGB2LMS @ rgb`` (rgb in 0..255, no gamma),
  ``l-alpha-beta = diag(1/sqrt3, 1/sqrt6, 1/sqrt2) @ [[1,1,1],[1,1,-2],[1,-1,0]] @ ln(LMS)`` (natural log, as
  HistomicsTK; LMS = 0 is replaced by machine epsilon). Hu et al.'s published target statistics are in this space.

Speed (transform with ``jit=True``): uint8 input makes the sRGB decoding a 256-entry table lookup; roots are Newton
steps on a bit-level first guess (XLA's pow is ~4x slower on CPU); the per-image affine map in the colour space is
folded with the matrix on the way back into one per-image 3x3 map (``_fold``); and the work is compiled as small
XLA programs (coordinates, fold, output), so that the costly per-pixel values are computed once and stored instead
of being recomputed inside every fused reduction and output channel. The moments come from one GEMM (Eigen's
blocked float32 sums of the coordinates and their squares, shifted by the target's mean so that no digits cancel),
the uint8 output is read off the bytes of the packed int32 levels, and the rare fallback select runs outside XLA.
"""

from __future__ import annotations

import numpy as np

from zoo.errors import ConfigError
from zoo.stain.base import (FALLBACK_DEGENERATE, FALLBACK_NO_TISSUE, FALLBACK_NONE, StainNormalizer, register,
                            require_target_tissue, tissue_fallback)

# skimage.color.colorconv: xyz_from_rgb, D65 2-degree white point.
XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])
RGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_RGB)
WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
# CIELAB from f = (f(X/Xn), f(Y/Yn), f(Z/Zn)): lab = LAB_FROM_F @ f + LAB_OFFSET
LAB_FROM_F = np.array([[0.0, 116.0, 0.0], [500.0, -500.0, 0.0], [0.0, 200.0, -200.0]])
LAB_OFFSET = np.array([-16.0, 0.0, 0.0])

# HistomicsTK preprocessing/color_conversion/rgb_to_lab.py (Ruderman et al. 1998).
LMS_FROM_RGB = np.array([[0.3811, 0.5783, 0.0402],
                         [0.1967, 0.7244, 0.0782],
                         [0.0241, 0.1288, 0.8444]])
LALPHABETA_FROM_LOGLMS = np.diag([1 / np.sqrt(3), 1 / np.sqrt(6), 1 / np.sqrt(2)]) @ np.array(
    [[1.0, 1.0, 1.0], [1.0, 1.0, -2.0], [1.0, -1.0, 0.0]])
RGB_FROM_LMS = np.linalg.inv(LMS_FROM_RGB)
LMS_EPS = float(np.finfo(np.float64).eps)  # HistomicsTK: im_lms[im_lms == 0] = np.spacing(1)

SPACES = ("lab", "lalphabeta")

# sRGB decoding of the 256 uint8 levels (float64, then float32): a gather instead of a root per channel and pixel.
_LEVELS = np.arange(256) / 255.0
SRGB_TO_LINEAR_U8 = np.where(_LEVELS > 0.04045, ((_LEVELS + 0.055) / 1.055) ** 2.4, _LEVELS / 12.92)


def _root(t, n: int, steps: int = 3):
    """t ** (1 / n) (n = 3 or 5) for t > 0 in float32 by a bit-level first guess (~4 % off) and Newton steps
    (quadratic: 2 steps ~2e-6 relative, 3 steps ~1e-7). XLA's pow on CPU is ~4x slower."""
    import tensorflow as tf

    t = tf.maximum(t, 1e-30)
    y = tf.bitcast(tf.bitcast(t, tf.int32) // n + (n - 1) * (1065353216 // n), tf.float32)
    for _ in range(steps):
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


def _srgb_encode(lin, steps: int = 3):
    """sRGB companding: 1.055 lin ** (1/2.4) - 0.055 (lin^(5/12) = c * c^(1/4), c = cube root), 12.92 lin below."""
    import tensorflow as tf

    c = _root(tf.maximum(lin, 0.0031308), 3, steps)
    return tf.where(lin > 0.0031308, 1.055 * c * tf.sqrt(tf.sqrt(c)) - 0.055, 12.92 * lin)


def _lab_f(t, steps: int = 3):
    """CIELAB's f(t): cube root above (6/29)^3, linear below."""
    import tensorflow as tf

    return tf.where(t > 0.008856, _root(tf.maximum(t, 0.008856), 3, steps), 7.787 * t + 16.0 / 116.0)


def _lab_f_inv(f):
    import tensorflow as tf

    return tf.where(f > 0.2068966, f * f * f, (f - 16.0 / 116.0) / 7.787)


def _mix(v, m: np.ndarray):
    """``v @ m.T`` for a constant 3x3 ``m`` as nine scalar multiply-adds on the channels: XLA fuses these with
    the element-wise work around them (a dot would be a separate pass over memory)."""
    import tensorflow as tf

    return tf.stack(_mix_list([v[..., j] for j in range(3)], m), -1)


def _mix_list(c, m):
    """``_mix`` on a list of three channel tensors; ``m`` a constant 3x3 or a per-image ``[B, 3, 3]`` tensor (then
    the channels are ``[B, N]``)."""
    if isinstance(m, np.ndarray):  # zero terms left out: an output channel reads only the planes it needs
        return [sum(c[j] * float(m[i, j]) for j in range(3) if m[i, j] != 0) for i in range(3)]
    return [c[0] * m[:, i, 0, None] + c[1] * m[:, i, 1, None] + c[2] * m[:, i, 2, None] for i in range(3)]


def rgb_to_lab(rgb):
    """sRGB (uint8 0..255 or float 0..1) -> CIELAB float32 (L in 0..100), as ``skimage.color.rgb2lab``."""
    import tensorflow as tf

    x = tf.convert_to_tensor(rgb)
    if x.dtype == tf.uint8:
        lin = tf.gather(tf.constant(SRGB_TO_LINEAR_U8, tf.float32), tf.cast(x, tf.int32))
    else:
        lin = _srgb_decode(tf.cast(x, tf.float32))
    f = _lab_f(_mix(lin, XYZ_FROM_RGB / WHITE_D65[:, None]))
    return _mix(f, LAB_FROM_F) + LAB_OFFSET.astype(np.float32)


def lab_to_rgb(lab):
    """CIELAB -> sRGB float32 in [0, 1], as ``skimage.color.lab2rgb`` (out-of-gamut values clipped)."""
    import tensorflow as tf

    lab = tf.cast(tf.convert_to_tensor(lab), tf.float32)
    fy = (lab[..., 0] + 16.0) / 116.0
    fx = lab[..., 1] / 500.0 + fy
    fz = tf.maximum(fy - lab[..., 2] / 200.0, 0.0)
    xyz = _lab_f_inv(tf.stack([fx, fy, fz], axis=-1))
    lin = tf.clip_by_value(_mix(xyz, RGB_FROM_XYZ * WHITE_D65[None, :]), 0.0, 1.0)
    return _srgb_encode(lin)


def rgb_to_lalphabeta(rgb):
    """RGB (uint8, or float on the same 0..255 scale) -> Ruderman l-alpha-beta float32, as HistomicsTK's
    ``rgb_to_lab``: ``LALPHABETA_FROM_LOGLMS @ ln(max(LMS_FROM_RGB @ rgb, eps))``."""
    import tensorflow as tf

    x = tf.cast(tf.convert_to_tensor(rgb), tf.float32)
    return _mix(tf.math.log(tf.maximum(_mix(x, LMS_FROM_RGB), LMS_EPS)), LALPHABETA_FROM_LOGLMS)


def lalphabeta_to_rgb(lab):
    """Ruderman l-alpha-beta -> RGB float32 on the 0..255 scale, unclipped, as HistomicsTK's ``lab_to_rgb``."""
    import tensorflow as tf

    lab = tf.cast(tf.convert_to_tensor(lab), tf.float32)
    return _mix(tf.exp(_mix(lab, np.linalg.inv(LALPHABETA_FROM_LOGLMS))), RGB_FROM_LMS)


# ------------------------------------------------------------------------------------- the normalizer's stages
# Each colour space is an invertible per-pixel map u = pre(rgb) followed by an affine map coords = T @ u + c; the
# Reinhard map is affine per channel in coords, so the way back is u' = G coords + h, one per-image 3x3 map (``_fold``).
_SPACE_AFFINE = {"lab": (LAB_FROM_F, LAB_OFFSET), "lalphabeta": (LALPHABETA_FROM_LOGLMS, np.zeros(3))}


def _pre(x, space: str):
    """uint8 [B, N, 3] -> the three planes [B, N] of u (CIELAB's f of XYZ / Ruderman's ln LMS)."""
    import tensorflow as tf

    if space == "lab":
        lut = tf.constant(SRGB_TO_LINEAR_U8, tf.float32)
        lin = [tf.gather(lut, tf.cast(x[..., j], tf.int32)) for j in range(3)]
        return [_lab_f(t, steps=2) for t in _mix_list(lin, XYZ_FROM_RGB / WHITE_D65[:, None])]
    rgb = [tf.cast(x[..., j], tf.float32) for j in range(3)]
    return [tf.math.log(tf.maximum(t, LMS_EPS)) for t in _mix_list(rgb, LMS_FROM_RGB)]


def _post(u, space: str):
    """Planes of u -> int32 levels 0..255 per RGB channel (rounded, clipped)."""
    import tensorflow as tf

    if space == "lab":
        u = [u[0], u[1], tf.maximum(u[2], 0.0)]  # fz >= 0 as skimage's lab2rgb
        lin = _mix_list([_lab_f_inv(t) for t in u], RGB_FROM_XYZ * WHITE_D65[None, :])
        out = [_srgb_encode(tf.clip_by_value(t, 0.0, 1.0), steps=2) * 255.0 for t in lin]
    else:
        out = _mix_list([tf.exp(t) for t in u], RGB_FROM_LMS)
    return [tf.cast(tf.round(tf.clip_by_value(t, 0.0, 255.0)), tf.int32) for t in out]


def _coords(images, space: str, dark_level: float):
    """Stage 1: uint8 [B, H, W, 3] -> (colour coordinates, planar float32 [B, 3, H*W]; count of tissue pixels [B]:
    OD >= beta in every channel  <=>  I <= io exp(-beta) - 1, no log per pixel)."""
    import tensorflow as tf

    b = tf.shape(images)[0]
    x = tf.reshape(images, [b, -1, 3])
    m, c = _SPACE_AFFINE[space]
    coords = tf.stack([t + float(o) for t, o in zip(_mix_list(_pre(x, space), m), c)], axis=1)
    dark = tf.reduce_all(tf.cast(x, tf.float32) <= dark_level, axis=-1)
    return coords, dark


def _fold(mean, std, t_mean, t_std, space: str, min_std: float):
    """Reinhard's per-channel map folded with the way back to u: coords' = s (coords - mean) + t_mean with
    s = t_std / std, u' = m^-1 (coords' - c)  =>  u' = G coords + h, G = m^-1 diag(s), h = m^-1 (t_mean - s mean - c).
    Returns (G [B, 3, 3], h [B, 3], flat [B])."""
    import tensorflow as tf

    m, c = _SPACE_AFFINE[space]
    minv = tf.constant(np.linalg.inv(m), tf.float32)
    scale = t_std / tf.maximum(std, min_std)  # [B, 3]
    g = minv[None] * scale[:, None, :]
    h = tf.einsum("ij,bj->bi", minv, t_mean - scale * mean - c.astype(np.float32))
    return g, h, tf.reduce_any(std < min_std, axis=1)


def _moments(coords):
    """Per-image mean and standard deviation of each channel (two-pass, ``tf.nn.moments``): ([B, 3], [B, 3])."""
    import tensorflow as tf

    mean, var = tf.nn.moments(coords, axes=[2])
    return mean, tf.sqrt(var)


def _output(coords, g, h, space: str):
    """Stage 3: u' = G coords + h (``_fold``) from the stored coordinates, back to RGB levels packed one pixel per
    int32 ``r + 256 g + 65536 b`` [B, N]: XLA then computes the shared part of the three channels once per pixel
    (an [B, N, 3] output recomputes it for every channel: ~3x slower)."""
    u = [t + h[:, i, None] for i, t in enumerate(_mix_list([coords[:, j] for j in range(3)], g))]
    r, gr, b = _post(u, space)
    return r + gr * 256 + b * 65536


def _unpack(images, packed, keep):
    """Stage 4: packed levels -> uint8 [B, H, W, 3]; images with ``keep`` [B] are returned unchanged (the choice is
    made on the packed int32 values: a select on the uint8 image is ~5x slower in XLA and in eager TF)."""
    import tensorflow as tf

    x = tf.cast(tf.reshape(images, [tf.shape(images)[0], -1, 3]), tf.int32)
    p = tf.where(keep[:, None], x[..., 0] + x[..., 1] * 256 + x[..., 2] * 65536, packed)
    out = tf.stack([p % 256, (p // 256) % 256, p // 65536], axis=-1)
    return tf.reshape(tf.cast(out, tf.uint8), tf.shape(images))


@register("reinhard")
class ReinhardNormalizer(StainNormalizer):
    """Reinhard normalization in CIELAB (``space="lab"``) or Ruderman's l-alpha-beta (``space="lalphabeta"``).
    Fitted parameters: ``lab_mean`` [3], ``lab_std`` [3] of the target over all its pixels, in ``space`` (set them
    directly with ``set_params`` for published statistics, e.g. Hu et al.'s). An image with no tissue (see
    ``zoo.stain.base``) or a flat channel (std < ``min_std``) is returned unchanged and flagged. A target with no
    tissue is refused at ``fit`` (``require_target_tissue``, the rule Macenko and Vahadane apply), as is a flat one."""

    _config_keys = ("min_std", "space")
    _param_keys = ("lab_mean", "lab_std")

    def __init__(self, *, min_std: float = 1e-3, space: str = "lab", **kw):
        super().__init__(**kw)
        if space not in SPACES:
            raise ConfigError(f"reinhard: unknown colour space {space!r}; choose one of {', '.join(SPACES)}")
        self.min_std = float(min_std)
        self.space = space

    @property
    def _dark_level(self) -> float:
        return self.io * float(np.exp(-self.beta)) - 1.0

    def tf_stats(self, images):
        """Per-image mean and standard deviation ``([B, 3], [B, 3])`` in this normalizer's space (uint8 batch)."""
        coords, _ = _coords(images, self.space, self._dark_level)
        return _moments(coords)

    def _estimate_target(self, target: np.ndarray) -> dict:
        import tensorflow as tf

        coords, no_tissue, frac = self._stage_coords(tf.constant(target[None]))
        mean, std = _moments(coords)
        if float(tf.reduce_min(std)) < self.min_std:
            raise ConfigError(f"reinhard target is flat ({self.space} std {std.numpy()[0].round(4).tolist()}): "
                              "no colour to match")
        require_target_tissue(self.name, no_tissue[0], frac[0])  # the same rule as Macenko's and Vahadane's
        return {"lab_mean": mean.numpy()[0], "lab_std": std.numpy()[0]}

    # The stages (coordinates, moments + fold, output, unpack); _tf_core chains them in one graph (tf_transform,
    # SavedModels); transform() with jit compiles each one separately, so that XLA stores the per-pixel
    # coordinates once instead of fusing their computation into every consumer (~4x slower as one program).
    def _stage_coords(self, images):
        import tensorflow as tf

        coords, dark = _coords(images, self.space, self._dark_level)
        no_tissue, frac = tissue_fallback(tf.reshape(dark, [tf.shape(images)[0], -1]), self.min_tissue_fraction,
                                          self.min_tissue_pixels)
        return coords, no_tissue, frac

    def _stage_fold(self, coords, no_tissue, params):
        import tensorflow as tf

        mean, std = _moments(coords)
        g, h, flat = _fold(mean, std, params["lab_mean"], params["lab_std"], self.space, self.min_std)
        code = tf.where(no_tissue, FALLBACK_NO_TISSUE, tf.where(flat, FALLBACK_DEGENERATE, FALLBACK_NONE))
        return g, h, code

    def _tf_core(self, images, params):
        coords, no_tissue, frac = self._stage_coords(images)
        g, h, code = self._stage_fold(coords, no_tissue, params)
        return _unpack(images, _output(coords, g, h, self.space), code != FALLBACK_NONE), code, frac

    def _compiled_fn(self):
        if self._compiled is None and self.jit:
            import tensorflow as tf

            params = self._param_tensors()
            jit = lambda f: tf.function(f, jit_compile=True, reduce_retracing=True)  # noqa: E731
            shift = params["lab_mean"][None, :, None]  # [1, 3, 1]

            def coords_shifted(images):  # the target's mean subtracted: a float32 sum of squares keeps its digits
                coords, no_tissue, frac = self._stage_coords(images)  # + a row of ones for the GEMM's sums, written
                ones = tf.ones_like(coords[:, :1])  # in this pass (a concat outside XLA copied all 12 MB again)
                return tf.concat([coords - shift, ones], axis=1), no_tissue, frac

            s1, s3 = jit(coords_shifted), jit(lambda c, g, h: _output(c, g, h, self.space))
            s4 = jit(_unpack_bytes)  # XLA's bitcast + byte slice: ~4x faster than the same ops outside XLA
            s2 = tf.function(_gemm_moments, reduce_retracing=True)  # Eigen's blocked GEMM, not an XLA reduction
            # Reinhard's map depends on coords - mean only: the shifted coordinates and their mean give the same map
            s_fold = jit(lambda mean, std, no_tissue: self._stage_fold_moments(mean, std, no_tissue, params))

            def run(images):
                coords, no_tissue, frac = s1(images)
                g, h, code = s_fold(*s2(coords), no_tissue)
                out = s4(s3(coords, g, h), images)
                keep = code != FALLBACK_NONE
                if bool(tf.reduce_any(keep)):  # rare: the select costs XLA as much as the output stage
                    out = tf.where(keep[:, None, None, None], images, out)
                return out, code, frac

            self._compiled = run
        return super()._compiled_fn()

    def _stage_fold_moments(self, mean, std, no_tissue, params):
        import tensorflow as tf

        g, h, flat = _fold(mean, std, params["lab_mean"], params["lab_std"], self.space, self.min_std)
        code = tf.where(no_tissue, FALLBACK_NO_TISSUE, tf.where(flat, FALLBACK_DEGENERATE, FALLBACK_NONE))
        return g, h, code


def _gemm_moments(c1):
    """Mean and standard deviation per channel of planar coordinates with a row of ones, ``[c; 1]`` [B, 4, N], from
    one pass: the sums of the values and of their squares, both read off ``[c; 1] @ [c; 1]^T`` (a blocked float32
    GEMM: std within ~1e-5 relative of the two-pass ``_moments``)."""
    import tensorflow as tf

    m = tf.matmul(c1, c1, transpose_b=True)  # [B, 4, 4]
    n = m[:, 3, 3:]
    mean = m[:, :3, 3] / n
    var = tf.maximum(tf.linalg.diag_part(m[:, :3, :3]) / n - mean * mean, 0.0)
    return mean, tf.sqrt(var)


def _unpack_bytes(packed, images):
    """Packed levels ``r + 256 g + 65536 b`` (int32 [B, N]) -> uint8 [B, H, W, 3] by reading the int32's bytes
    (little-endian: r, g, b, 0) instead of three divisions per pixel; arithmetic on big-endian machines."""
    import sys

    import tensorflow as tf

    if sys.byteorder != "little":
        return _unpack(images, packed, tf.zeros([tf.shape(images)[0]], tf.bool))
    return tf.reshape(tf.bitcast(packed, tf.uint8)[..., :3], tf.shape(images))
