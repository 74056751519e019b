"""Per-pixel training targets and loss-weight maps from instance maps and centre points.

Class indices of every target (y, int32):
- ``binary``: 0 background, 1 nucleus (Naylor et al. 2018, section 4).
- ``three_class``: 0 background, 1 nucleus interior, 2 nucleus boundary (Yuan & Suh, section 2.2).
- ``inner_contour``: 0 background, 1 inner part, 2 contour (Qu et al. 2019, section 2.1); with typed output
  merged in ("merged"), Qu's five maps generalised to K types: 0 background, k = inner part of a type-k nucleus
  (1..K), K + 1 contour.
- ``points``: a disc of radius r around each centre, labelled with the point's type (1 when the dataset is untyped);
  weight 0 (ignored) outside the discs.

Boundary / contour pixels (``boundary``): a nucleus pixel is a boundary pixel when some pixel in the
(2 * width + 1) x (2 * width + 1) square around it carries another label (background or another nucleus); pixels
beyond the map's edge do not count. width = 1 equals skimage.segmentation.find_boundaries(mode="inner",
connectivity=2). The band is ``width`` pixels thick, inside each nucleus, so touching nuclei are separated.

Weight maps (``weight_map``):
- ``unet``: w = 1 + w0 * exp(-(d1 + d2)^2 / (2 sigma^2)), Qu et al. eq. (2), for EVERY pixel; d1, d2 = Euclidean
  distances to the nearest and second-nearest nucleus (0 inside a nucleus for its own nucleus); with fewer than two
  nuclei the missing distance is infinite and the term vanishes. This is Ronneberger et al. 2015 eq. (2) with
  w_c = 1.
- ``class_balanced``: Ronneberger's w_c alone: w_c(x) = n / (m * n_c(x)) over the valid pixels of the patch, n_c the
  pixel count of x's class and m the number of classes present (mean weight 1).
- ``unet_class_balanced``: Ronneberger's full eq. (2), w = w_c + w0 * exp(...).
The exponential term is computed per nucleus in its bounding box grown by a margin beyond which it is below
``tol`` (default 1e-4) of w0, so the map is exact to that tolerance at a cost linear in the number of nuclei.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from scipy import ndimage

TARGETS = ("binary", "three_class", "inner_contour", "points")
WEIGHT_MAPS = ("none", "unet", "class_balanced", "unet_class_balanced")


# ---------------------------------------------------------------- segmentation targets (TF, graph-safe)

def _window_extrema(x, r: int):
    """Max and min of x over the (2r+1)^2 square around each pixel, pixels beyond the edge ignored.

    Separable running extrema over shifted views of a symmetrically padded map (a mirrored pixel within r of the
    edge is already inside the window, so the padding adds no value).
    """
    p = tf.pad(x, [[r, r], [r, r]], mode="SYMMETRIC")
    h, w = tf.shape(x)[0], tf.shape(x)[1]
    rows_hi = rows_lo = p[:, 0:w]
    for d in range(1, 2 * r + 1):
        v = p[:, d:d + w]
        rows_hi, rows_lo = tf.maximum(rows_hi, v), tf.minimum(rows_lo, v)
    hi, lo = rows_hi[0:h], rows_lo[0:h]
    for d in range(1, 2 * r + 1):
        hi, lo = tf.maximum(hi, rows_hi[d:d + h]), tf.minimum(lo, rows_lo[d:d + h])
    return hi, lo


def boundary(instances, width: int):
    """Boolean (H, W): nucleus pixels within ``width`` (Chebyshev) of a pixel with another label (module doc)."""
    x = tf.convert_to_tensor(instances)
    hi, lo = _window_extrema(x, int(width))
    return (x > 0) & ((hi != x) | (lo != x))


def segmentation_target(instances, target: str, width: int = 2, types=None, num_types: int = 0):
    """(H, W) int32 class-index target from an instance map (module doc for the indices).

    ``types`` (H, W) per-pixel nucleus type, given only for the merged typed ``inner_contour`` target
    (0 = unknown type: such inner pixels get class 0 here and must be ignored through the weight; see
    ``typed_ignore``).
    """
    fg = instances > 0
    if target == "binary":
        return tf.cast(fg, tf.int32)
    b = boundary(instances, width)
    if target in ("three_class", "inner_contour"):
        if types is None:
            return tf.where(b, 2, tf.cast(fg, tf.int32))
        inner = tf.where(fg, tf.cast(types, tf.int32), 0)
        return tf.where(b, num_types + 1, inner)
    raise ValueError(f"not an instance-map target: {target!r}")


def typed_ignore(instances, types, target_y, num_types: int):
    """Float (H, W) mask: 0 on inner pixels of nuclei of unknown type (merged typed target), else 1."""
    unknown = (instances > 0) & (tf.cast(types, tf.int32) == 0) & (target_y != num_types + 1)
    return 1.0 - tf.cast(unknown, tf.float32)


def point_discs(points_yx, classes, size, radius: float, untyped: bool):
    """Disc target of centre points: (y int32, w float32), each (H, W) with (H, W) = ``size``.

    Pixel (i, j) belongs to the disc of a point p when (i - p_row)^2 + (j - p_col)^2 <= radius^2; where discs
    overlap the nearest centre wins (ties: the larger class). y = the point's type, or 1 for every point when
    ``untyped``; w = 1 inside a disc, 0 outside it and inside discs of points of unknown type (type 0) of a typed
    dataset.
    """
    h, w = size[0], size[1]
    r = int(math.ceil(radius))
    off = tf.range(-r, r + 1)
    oy, ox = tf.meshgrid(off, off, indexing="ij")
    oy, ox = tf.reshape(oy, [-1]), tf.reshape(ox, [-1])
    p = tf.cast(tf.reshape(points_yx, [-1, 2]), tf.float32)
    cls = tf.cast(tf.reshape(classes, [-1]), tf.int32)
    cls = tf.ones_like(cls) if untyped else cls
    base = tf.cast(tf.round(p), tf.int32)
    iy = base[:, 0:1] + oy[None]                      # (N, K)
    ix = base[:, 1:2] + ox[None]
    d2 = tf.square(tf.cast(iy, tf.float32) - p[:, 0:1]) + tf.square(tf.cast(ix, tf.float32) - p[:, 1:2])
    q = tf.cast(tf.round(d2 * 16.0), tf.int32)
    r2q = int(round(radius * radius * 16.0)) + 1
    code = (r2q - q) * 1024 + tf.clip_by_value(cls, 0, 1023)[:, None]
    keep = (d2 <= radius * radius + 1e-6) & (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    idx = tf.stack([tf.boolean_mask(iy, keep), tf.boolean_mask(ix, keep)], -1)
    grid = tf.tensor_scatter_nd_max(tf.zeros(tf.stack([h, w]), tf.int32), idx, tf.boolean_mask(code, keep))
    y = tf.math.floormod(grid, 1024)
    wt = tf.cast((grid > 0) & (y > 0), tf.float32)
    return tf.where(grid > 0, y, 0), wt


# ---------------------------------------------------------------- weight maps

def unet_border_term(instances: np.ndarray, w0: float = 10.0, sigma: float = 5.0, tol: float = 1e-4) -> np.ndarray:
    """w0 * exp(-(d1 + d2)^2 / (2 sigma^2)) (Ronneberger et al. 2015 eq. 2; Qu et al. 2019 eq. 2), float32 (H, W).

    One exact Euclidean distance transform per nucleus inside its bounding box grown by a margin M with
    w0 * exp(-M^2 / (2 sigma^2)) <= tol (the term is below tol wherever d2 > M); running first/second minima give
    d1 and d2. Numpy/scipy: call it through ``tf.numpy_function`` inside tf.data.
    """
    inst = np.asarray(instances)
    h, w = inst.shape
    out_shape = (h, w)
    if w0 <= 0 or inst.max(initial=0) == 0:
        return np.zeros(out_shape, np.float32)
    margin = int(math.ceil(sigma * math.sqrt(2.0 * math.log(max(w0 / tol, 1.0 + 1e-9))))) + 1
    d1 = np.full(out_shape, np.inf, np.float32)
    d2 = np.full(out_shape, np.inf, np.float32)
    objs = ndimage.find_objects(inst)
    for lab, sl in enumerate(objs, start=1):
        if sl is None:
            continue
        y0, y1 = max(sl[0].start - margin, 0), min(sl[0].stop + margin, h)
        x0, x1 = max(sl[1].start - margin, 0), min(sl[1].stop + margin, w)
        win = inst[y0:y1, x0:x1] != lab
        d = ndimage.distance_transform_edt(win).astype(np.float32)
        a, b = d1[y0:y1, x0:x1], d2[y0:y1, x0:x1]
        d2[y0:y1, x0:x1] = np.minimum(b, np.maximum(a, d))
        d1[y0:y1, x0:x1] = np.minimum(a, d)
    s = d1 + d2
    with np.errstate(over="ignore", invalid="ignore"):
        term = w0 * np.exp(-(s * s) / (2.0 * sigma * sigma))
    term[~np.isfinite(s)] = 0.0
    return term.astype(np.float32)


def unet_border_term_tf(instances, w0: float, sigma: float):
    """``unet_border_term`` inside a TF graph (tf.numpy_function), shape kept."""
    out = tf.numpy_function(lambda a: unet_border_term(a, w0, sigma), [instances], tf.float32, stateful=False)
    return tf.ensure_shape(tf.reshape(out, tf.shape(instances)), instances.shape)


def class_balance(y, valid, num_classes: int):
    """Ronneberger's w_c: n / (m * n_c(x)) over pixels where ``valid`` > 0 (mean 1 over them), 0 elsewhere."""
    yv = tf.reshape(y, [-1])
    vv = tf.reshape(tf.cast(valid, tf.float32), [-1])
    counts = tf.math.unsorted_segment_sum(vv, yv, num_classes)
    present = tf.reduce_sum(tf.cast(counts > 0, tf.float32))
    n = tf.reduce_sum(counts)
    per = tf.math.divide_no_nan(n, present * counts)
    return tf.gather(per, y) * tf.cast(valid, tf.float32)


def weight_map(kind: str, instances, y, num_classes: int, w0: float = 10.0, sigma: float = 5.0, valid=None):
    """The float32 (H, W) loss-weight map ``kind`` (module doc); ``valid`` (H, W) multiplies it (0 = ignore)."""
    valid = tf.ones(tf.shape(y), tf.float32) if valid is None else tf.cast(valid, tf.float32)
    if kind == "none":
        return valid
    if kind == "unet":
        return (1.0 + unet_border_term_tf(instances, w0, sigma)) * valid
    if kind == "class_balanced":
        return class_balance(y, valid, num_classes)
    if kind == "unet_class_balanced":
        return class_balance(y, valid, num_classes) + unet_border_term_tf(instances, w0, sigma) * valid
    raise ValueError(f"unknown weight map {kind!r}")
