"""Colour deconvolution (Ruifrok & Johnston 2001, "Quantification of histochemical staining by color
deconvolution"), in TensorFlow ops.

- ``rgb_to_hed`` / ``hed_to_rgb``: the fixed H&E-DAB matrix exactly as ``skimage.color.rgb2hed`` / ``hed2rgb``
  (stains = log(max(rgb, 1e-6)) / log(1e-6) @ inv(M), clipped at 0).
- ``separate_stains`` / ``stain_image``: deconvolution with any (per-image) stain matrix, e.g. the one a
  ``MacenkoNormalizer`` estimates (Hu et al.'s pipeline: Macenko deconvolution, hematoxylin image thresholded).
- ``optical_density`` / ``to_uint8``: the Beer-Lambert and uint8 round-trip helpers every stain method uses.
All functions take one image ``(H, W, 3)`` or a batch ``(..., H, W, 3)``, uint8 (0..255) or float (0..1 for
``rgb_to_hed``), numpy or tensors, and return tensors.

This module is a leaf of zoo.stain: it imports no other zoo.stain module (zoo.stain.base may import it).
"""

from __future__ import annotations

import numpy as np

# Ruifrok & Johnston's H, E, DAB optical-density vectors (rows), as in skimage.color.colorconv.
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
_LOG_ADJUST = np.log(1e-6)


def optical_density(x, io: float):
    """Beer-Lambert optical density ``OD = -log((I + 1) / Io)`` of float RGB values (Macenko et al. 2009;
    the +1 and ``Io = 240`` follow torchstain / the original Macenko code)."""
    import tensorflow as tf

    return -tf.math.log((x + 1.0) / io)


def to_uint8(x):
    """Round float RGB to uint8 with clipping (NaN-free inputs assumed)."""
    import tensorflow as tf

    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


def _rgb_float(rgb):
    import tensorflow as tf

    rgb = tf.convert_to_tensor(rgb)
    if rgb.dtype == tf.uint8:
        return tf.cast(rgb, tf.float32) / 255.0
    return tf.cast(rgb, tf.float32)


def rgb_to_hed(rgb):
    """RGB -> (hematoxylin, eosin, DAB) stain amounts, equal to ``skimage.color.rgb2hed`` (float32)."""
    import tensorflow as tf

    x = _rgb_float(rgb)
    logs = tf.math.log(tf.maximum(x, 1e-6)) / _LOG_ADJUST
    return tf.maximum(tf.tensordot(logs, tf.constant(HED_FROM_RGB, tf.float32), axes=1), 0.0)


def hed_to_rgb(hed):
    """Stain amounts -> RGB in [0, 1], equal to ``skimage.color.hed2rgb`` (float32)."""
    import tensorflow as tf

    hed = tf.cast(tf.convert_to_tensor(hed), tf.float32)
    log_rgb = -tf.tensordot(hed * (-_LOG_ADJUST), tf.constant(RGB_FROM_HED, tf.float32), axes=1)
    return tf.clip_by_value(tf.exp(log_rgb), 0.0, 1.0)


def separate_stains(images, stain_matrix, io: float = 240.0):
    """Least-squares stain concentrations ``C`` with ``OD ~= C @ stain_matrix`` (Ruifrok & Johnston eq. 4-6;
    Macenko et al. 2009). ``images`` uint8 ``[B, H, W, 3]`` (or ``[H, W, 3]``), ``stain_matrix`` ``[k, 3]`` (rows =
    stain OD vectors, shared) or ``[B, k, 3]`` (per image); OD = -log((I + 1) / io). Returns float32 ``[..., k]``."""
    import tensorflow as tf

    x = tf.cast(tf.convert_to_tensor(images), tf.float32)
    od = optical_density(x, io)
    s = tf.cast(tf.convert_to_tensor(stain_matrix), tf.float32)
    pinv = tf.linalg.pinv(s)  # [..., 3, k]
    if s.shape.rank == 2:
        return tf.tensordot(od, pinv, axes=1)
    return tf.einsum("bhwc,bck->bhwk", od, pinv)


def stain_image(concentration, stain_vector, io: float = 240.0):
    """The RGB uint8 image of one stain alone, ``io * exp(-c * v)`` (``concentration [..., H, W]``,
    ``stain_vector [3]`` or ``[B, 3]``): the 'hematoxylin image' of Macenko / torchstain."""
    import tensorflow as tf

    c = tf.cast(tf.convert_to_tensor(concentration), tf.float32)[..., None]
    v = tf.cast(tf.convert_to_tensor(stain_vector), tf.float32)
    if v.shape.rank == 2:
        v = v[:, None, None, :]
    return to_uint8(io * tf.exp(-tf.maximum(c, 0.0) * v))
