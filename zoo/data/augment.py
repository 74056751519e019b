"""In-graph augmentation of histology patches (TF ops only, stateless and seeded).

Geometric augmentations never resample twice: flips, 90-degree rotations, the random affine (rotation, scale, shear)
and the elastic field are folded into ONE map from output-patch pixels to source-image coordinates
(``patch_coordinates``), and the image (bilinear) and every label map (nearest) are read through that same map
(``sample``), so image and labels stay aligned by construction. Pixels that fall outside the source image are read
from its mirror image (symmetric reflection), for image and labels alike. Photometric augmentations
(``photometric``: Gaussian blur, colour jitter, HED jitter) act on the image only, after the geometry.

Papers: Naylor et al. 2018 section 4 (flips, rotations, blur, elastic deformation); Qu et al. 2019 section 2.1 (scale,
flips, affine, elastic, rotation); Yuan & Suh section 2.2 (rotation and inversion). Elastic deformation after Simard
et al. 2003 (smoothed random displacement field), HED jitter after Tellez et al. 2018 in the colour-deconvolution space
of Ruifrok & Johnston 2001. Pixel convention: integer coordinates are pixel centres; coordinates are (row, col).
"""

from __future__ import annotations

import math

import tensorflow as tf

from zoo.stain.deconvolution import hed_to_rgb, rgb_to_hed  # noqa: E402  (Ruifrok & Johnston, one copy)


# ---------------------------------------------------------------- seeds

def split_seed(seed, n: int):
    """``n`` independent stateless seeds (each shape [2] int32) from one seed."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, n))


def _u(seed, lo, hi, shape=()):
    return tf.random.stateless_uniform(shape, seed, lo, hi)


# ---------------------------------------------------------------- geometry

def _rot(theta):
    c, s = tf.cos(theta), tf.sin(theta)
    return tf.stack([tf.stack([c, -s]), tf.stack([s, c])])


def geometric_matrix(seed, cfg):
    """The random 2x2 map (row, col) output offset -> source offset: D4 element (flip / rot90) then affine.

    Affine (if ``cfg.affine``): rotation U(-affine_rotation, affine_rotation) degrees, isotropic scale
    exp(U(-log(1+affine_scale), log(1+affine_scale))), shear U(-affine_shear, affine_shear) degrees.
    """
    s = split_seed(seed, 6)
    m = tf.eye(2)
    if cfg.flip:
        fy = tf.where(_u(s[0], 0.0, 1.0) < 0.5, -1.0, 1.0)
        fx = tf.where(_u(s[1], 0.0, 1.0) < 0.5, -1.0, 1.0)
        m = tf.linalg.diag(tf.stack([fy, fx])) @ m
    if cfg.rot90:
        k = tf.random.stateless_uniform((), s[2], 0, 4, dtype=tf.int32)
        m = _rot(tf.cast(k, tf.float32) * (math.pi / 2)) @ m
        m = tf.round(m)  # exact integers: D4 elements must resample without interpolation
    if cfg.affine:
        theta = _u(s[3], -1.0, 1.0) * (cfg.affine_rotation * math.pi / 180)
        ls = math.log1p(cfg.affine_scale)
        scale = tf.exp(_u(s[4], -ls, ls))
        shear = tf.tan(_u(s[5], -1.0, 1.0) * (cfg.affine_shear * math.pi / 180))
        a = _rot(theta) @ tf.stack([tf.stack([1.0, shear]), tf.stack([0.0, 1.0])]) * scale
        m = a @ m
    return m


def gaussian_kernel1d(sigma, radius: int):
    """Normalised 1-D Gaussian taps on [-radius, radius]; ``sigma`` may be a tensor (0 gives a delta)."""
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    sigma = tf.maximum(tf.cast(sigma, tf.float32), 1e-3)
    k = tf.exp(-0.5 * tf.square(x / sigma))
    return k / tf.reduce_sum(k)


def separable_blur(img, sigma, radius: int):
    """Gaussian blur of a (H, W, C) float tensor with reflected borders (separable, as sums of shifted views:
    on CPU several times faster than depthwise_conv2d for these small kernels)."""
    k = tf.unstack(gaussian_kernel1d(sigma, radius))
    h, w = tf.shape(img)[0], tf.shape(img)[1]
    x = tf.pad(img, [[radius, radius], [0, 0], [0, 0]], mode="SYMMETRIC")
    x = tf.add_n([k[d] * x[d:d + h] for d in range(2 * radius + 1)])
    x = tf.pad(x, [[0, 0], [radius, radius], [0, 0]], mode="SYMMETRIC")
    return tf.add_n([k[d] * x[:, d:d + w] for d in range(2 * radius + 1)])


def elastic_field(seed, size: int, alpha: float, sigma: float):
    """A (size, size, 2) smooth random displacement field in pixels (Simard et al. 2003).

    White noise smoothed by a Gaussian of ``sigma`` px, rescaled so that each component has standard deviation
    ``alpha`` px (alpha here is a displacement in pixels, not Simard's unnormalised factor). For speed the field is
    drawn on a grid 4x coarser (smoothed by sigma / 4) and upsampled bilinearly; it is smooth at that scale anyway.
    """
    f = 4 if sigma >= 8 else 1
    n = -(-size // f)
    noise = tf.random.stateless_normal((n, n, 2), seed)
    radius = max(1, int(math.ceil(3 * sigma / f)))
    if radius >= n:
        radius = n - 1 if n > 1 else 1
    field = separable_blur(noise, sigma / f, radius) if n > radius else noise
    field = field / (tf.math.reduce_std(field) + 1e-6) * alpha
    if f > 1:
        field = tf.image.resize(field[None], (n * f, n * f), "bilinear")[0][:size, :size]
    return field


def patch_coordinates(seed, size: int, centre, cfg):
    """Source (row, col) coordinates, shape (size, size, 2) float32, of every pixel of an output patch.

    ``centre`` is the source point the patch centre maps to. With no affine and no elastic, an integer-aligned
    centre ((size - 1) / 2 + integer) gives integer coordinates, so flips and 90-degree rotations are exact.
    """
    s = split_seed(seed, 2)
    m = geometric_matrix(s[0], cfg)
    g = tf.range(size, dtype=tf.float32) - (size - 1) / 2.0
    gy, gx = tf.meshgrid(g, g, indexing="ij")
    rel = tf.stack([gy, gx], -1)
    src = tf.einsum("hwj,ij->hwi", rel, m) + tf.cast(centre, tf.float32)
    if cfg.elastic:
        src = src + elastic_field(s[1], size, cfg.elastic_alpha, cfg.elastic_sigma)
    return src, m


def reflect_index(i, n):
    """Symmetric reflection of integer indices into [0, n) (… 1 0 | 0 1 … n-1 | n-1 n-2 …), any distance."""
    n2 = 2 * n
    t = tf.math.floormod(i, n2)
    return tf.where(t < n, t, n2 - 1 - t)


def sample(source, coords, method: str = "bilinear"):
    """Read a (H, W) or (H, W, C) tensor at float coordinates (h, w, 2) -> (h, w[, C]), reflected borders.

    ``method``: "bilinear" (images) or "nearest" (label maps: values are copied, never mixed).
    """
    squeeze = source.shape.rank == 2
    src = source[..., None] if squeeze else source
    shp = tf.shape(src)
    h, w = shp[0], shp[1]
    flat = tf.reshape(src, tf.stack([h * w, shp[2]]))
    y, x = coords[..., 0], coords[..., 1]
    if method == "nearest":
        iy = reflect_index(tf.cast(tf.floor(y + 0.5), tf.int32), h)
        ix = reflect_index(tf.cast(tf.floor(x + 0.5), tf.int32), w)
        out = tf.gather(flat, iy * w + ix)
    elif method == "bilinear":
        y0f, x0f = tf.floor(y), tf.floor(x)
        wy, wx = (y - y0f)[..., None], (x - x0f)[..., None]
        y0, x0 = tf.cast(y0f, tf.int32), tf.cast(x0f, tf.int32)
        ya, yb = reflect_index(y0, h) * w, reflect_index(y0 + 1, h) * w
        xa, xb = reflect_index(x0, w), reflect_index(x0 + 1, w)
        v = tf.cast(tf.gather(flat, tf.stack([ya + xa, ya + xb, yb + xa, yb + xb])), tf.float32)  # one gather
        out = (v[0] * (1 - wx) + v[1] * wx) * (1 - wy) + (v[2] * (1 - wx) + v[3] * wx) * wy
    else:
        raise ValueError(f"unknown sampling method {method!r}")
    return out[..., 0] if squeeze else out


def transform_points(points_yx, m, centre, size: int, seed=None, cfg=None):
    """Map source points (N, 2) into output-patch coordinates: the inverse of ``patch_coordinates``.

    The affine part is inverted exactly; the elastic displacement d(o) (defined on the output grid) is inverted by
    two fixed-point steps o <- c + M^-1 (p - centre - d(o)), accurate to a small fraction of a pixel for smooth fields.
    """
    c = (size - 1) / 2.0
    minv = tf.linalg.inv(m)
    rel = tf.cast(points_yx, tf.float32) - tf.cast(centre, tf.float32)
    o = tf.einsum("nj,ij->ni", rel, minv) + c
    if cfg is not None and cfg.elastic:
        s = split_seed(seed, 2)
        field = elastic_field(s[1], size, cfg.elastic_alpha, cfg.elastic_sigma)
        for _ in range(2):
            d = sample(field, o, "bilinear")
            o = tf.einsum("nj,ij->ni", rel - d, minv) + c
    return o


# ---------------------------------------------------------------- photometric

def hed_jitter(img, seed, sigma: float, bias: float):
    """Tellez et al. 2018 HED jitter: per stain channel s' = s * U(1-sigma, 1+sigma) + U(-bias, bias)."""
    s = split_seed(seed, 2)
    alpha = _u(s[0], 1.0 - sigma, 1.0 + sigma, (3,))
    beta = _u(s[1], -bias, bias, (3,))
    return hed_to_rgb(rgb_to_hed(img) * alpha + beta)


def color_jitter(img, seed, brightness: float, contrast: float, saturation: float, hue: float):
    """Random brightness (additive), contrast, saturation (multiplicative) and hue shift (fraction of a turn)."""
    s = split_seed(seed, 4)
    if brightness > 0:
        img = tf.image.stateless_random_brightness(img, brightness, s[0])
    if contrast > 0:
        img = tf.image.stateless_random_contrast(img, 1 - contrast, 1 + contrast, s[1])
    if saturation > 0:
        img = tf.image.stateless_random_saturation(img, 1 - saturation, 1 + saturation, s[2])
    if hue > 0:
        img = tf.image.stateless_random_hue(img, hue, s[3])
    return tf.clip_by_value(img, 0.0, 1.0)


def random_blur(img, seed, max_sigma: float, prob: float):
    """With probability ``prob``, a Gaussian blur of sigma U(0, max_sigma) px (Naylor et al. "bluriness")."""
    s = split_seed(seed, 2)
    sigma = _u(s[0], 0.0, max_sigma)
    sigma = tf.where(_u(s[1], 0.0, 1.0) < prob, sigma, 0.0)
    radius = max(1, int(math.ceil(3 * max_sigma)))
    return tf.cond(sigma > 0.05, lambda: separable_blur(img, sigma, radius), lambda: tf.identity(img))


def photometric(img, seed, cfg):
    """Blur, colour jitter and HED jitter of a float (H, W, 3) image in [0, 1], each only if switched on in cfg."""
    s = split_seed(seed, 3)
    if cfg.blur:
        img = random_blur(img, s[0], cfg.blur_sigma, cfg.blur_prob)
    if cfg.hed_jitter:
        img = hed_jitter(img, s[1], cfg.hed_sigma, cfg.hed_bias)
    if cfg.color_jitter:
        img = color_jitter(img, s[2], cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)
    return img
