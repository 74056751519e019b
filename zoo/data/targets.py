"""Per-pixel training targets and loss-weight maps from instance maps and centre points.

Class indices of every target (y, int32):
- ``binary``: 0 background, 1 nucleus (Naylor et al. 2017, section 4).
- ``three_class``: 0 background, 1 nucleus interior, 2 nucleus boundary (Yuan & Suh, section 2.2).
- ``inner_contour``: 0 background, 1 inner part, 2 contour (Qu et al. 2019, section 2.1); with typed output
  merged in ("merged"), Qu's five maps generalised to K types: 0 background, k = inner part of a type-k nucleus
  (1..K), K + 1 contour.
- ``hovernet`` (Graham et al. 2019): not class indices but a float32 (H, W, 3) stack: the nucleus label (0 / 1) and
  the horizontal and vertical maps (``hv_maps``), plus the per-pixel type 0..K as a 4th channel when typed
  (``hovernet_target``; the loss is zoo.losses.hovernet).
- ``points``: a disc of radius r around each centre, labelled with the point's type (1 when the dataset is untyped);
  weight 0 (ignored) outside the discs.
- mixed supervision (``mixed_instance_target`` / ``mixed_point_target``; InputConfig ``mixed_supervision``): the
  ``inner_contour`` merged classes 0..K+1 plus K + 2 (inner of unknown type), K + 2 + k (disc of a type-k centre)
  and 2K + 3 (unlabelled); the table is in zoo.losses.mixed.

Boundary / contour pixels (``boundary``): a nucleus pixel is a boundary pixel when some pixel in the
(2 * width + 1) x (2 * width + 1) square around it carries another label (background or another nucleus); pixels
beyond the map's edge do not count. width = 1 equals skimage.segmentation.find_boundaries(mode="inner",
connectivity=2). The band is ``width`` pixels thick, inside each nucleus, so touching nuclei are separated.

Inner parts (``inner_parts``; the interior / inner class of ``three_class`` and ``inner_contour``), built so that
the post-processing (zoo.postprocess.instances: inner components grown back through the contour) inverts the
target: every nucleus has exactly ONE 8-connected inner part.
- the non-boundary pixels of the nucleus, when they form one component;
- when the band cuts a nucleus' interior in several pieces (a waist thinner than 2 * width + 1), only the largest
  piece (ties: the first in raster order); the other pieces are contour;
- when the nucleus is all band (thinner than 2 * width + 1 everywhere), its deepest pixel (largest chessboard
  distance to another label; ties: the first in raster order) is its inner part, so it is not lost.
Touching nuclei: inner parts of different nuclei are more than 2 * width apart, so never connected; only two
nuclei that are both all-band and whose deepest pixels touch would merge. On the real maps (all 50 TNBC images,
MoNuSeg) target -> post-processing gives back the instance map except, in crowded MoNuSeg tiles, a few band
pixels where two nuclei touch and the other nucleus' inner part is nearer (tests/zoo/postprocess).

Weight maps (``weight_map``):
- ``unet``: w = 1 + w0 * exp(-(d1 + d2)^2 / (2 sigma^2)), Ronneberger et al. 2015 eq. (2) with w_c = 1, as Qu et
  al. 2019 eq. (2) use it: for EVERY pixel x, d1(x) and d2(x) are the Euclidean distances to the **border** of the
  nearest and second-nearest nucleus ("the distance to the border of the nearest cell"), inside nuclei included:
  inside nucleus k its own d_k is the distance to k's border, not 0. The border of nucleus k is its pixels with a
  4-neighbour of another label (Qu et al.'s released weight-map code traces it with ``bwboundaries``); pixels beyond
  the map's edge do not count (a nucleus cut by a patch edge has no border there). With fewer than two nuclei the
  missing distance is infinite and the term vanishes.
- ``unet_nucleus_distance``: the earlier variant: d_k = distance to nucleus k itself (0 inside k), so a nucleus
  pixel has d1 = 0 and a larger term than the paper's (TNBC 07_3: 1.33 inside nuclei against 0.88).
- ``class_balanced``: Ronneberger's w_c alone: w_c(x) = n / (m * n_c(x)) over the valid pixels of the patch, n_c the
  pixel count of x's class and m the number of classes present (mean weight 1).
- ``unet_class_balanced``: Ronneberger's full eq. (2), w = w_c + w0 * exp(...) (paper's d1, d2).
The exponential term is computed per nucleus in its bounding box grown by a margin beyond which it is below
``tol`` (default 1e-4) of w0, so the map is exact to that tolerance at a cost linear in the number of nuclei (one
cropped distance transform per nucleus: a Python loop over nuclei, each step on a small window).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from scipy import ndimage

TARGETS = ("binary", "three_class", "inner_contour", "points", "hovernet")
WEIGHT_MAPS = ("none", "unet", "unet_nucleus_distance", "class_balanced", "unet_class_balanced")


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


def _principal_piece(inst: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``inner`` keeping, per nucleus, only its largest 8-connected piece (ties: the first in raster order)."""
    comp, n = ndimage.label(inner, structure=np.ones((3, 3), bool))
    if n == 0:
        return inner
    owner = np.zeros(n + 1, np.int64)
    owner[comp[inner]] = inst[inner]  # a piece lies inside one nucleus (different nuclei's pieces never touch)
    area = np.bincount(comp.ravel(), minlength=n + 1)
    piece = np.arange(1, n + 1)
    order = np.lexsort((piece, -area[1:], owner[1:]))
    o = owner[1:][order]
    first = np.ones(n, bool)
    first[1:] = o[1:] != o[:-1]
    keep = np.zeros(n + 1, bool)
    keep[piece[order][first]] = True
    return keep[comp]


def inner_parts(instances, width: int) -> np.ndarray:
    """Boolean (H, W): the one inner part of every nucleus (module doc), numpy. ``width`` = the band's width."""
    inst = np.asarray(instances)
    inst = inst.astype(np.int64 if inst.dtype.kind == "u" else inst.dtype, copy=False)
    fg = inst > 0
    size = 2 * int(width) + 1
    # mode "nearest": a replicated edge pixel already lies in the window, so beyond-the-edge pixels do not count
    inner = fg & (ndimage.maximum_filter(inst, size, mode="nearest") == inst) \
        & (ndimage.minimum_filter(inst, size, mode="nearest") == inst)
    inner = _principal_piece(inst, inner)
    has = np.zeros(int(inst.max(initial=0)) + 1, bool)
    has[inst[inner]] = True
    lacking = fg & ~has[inst]
    if lacking.any():  # all-band nuclei: their deepest pixel
        edge1 = fg & ((ndimage.maximum_filter(inst, 3, mode="nearest") != inst)
                      | (ndimage.minimum_filter(inst, 3, mode="nearest") != inst))
        depth = ndimage.distance_transform_cdt(~edge1, metric="chessboard") if edge1.any() \
            else np.zeros(inst.shape, np.int64)
        flat = np.flatnonzero(lacking)
        lab = inst.ravel()[flat]
        order = np.lexsort((flat, -depth.ravel()[flat], lab))
        lo = lab[order]
        first = np.ones(lo.size, bool)
        first[1:] = lo[1:] != lo[:-1]
        inner = inner.copy()
        inner.ravel()[flat[order][first]] = True
    return inner


def inner_parts_tf(instances, width: int):
    """``inner_parts`` inside a TF graph (tf.numpy_function), shape kept."""
    x = tf.convert_to_tensor(instances)
    out = tf.numpy_function(lambda a: inner_parts(a, width), [x], tf.bool, stateful=False)
    return tf.ensure_shape(tf.reshape(out, tf.shape(x)), x.shape)


def segmentation_target(instances, target: str, width: int = 2, types=None, num_types: int = 0):
    """(H, W) int32 class-index target from an instance map (module doc for the indices).

    Interior / inner = ``inner_parts`` (one piece per nucleus), boundary / contour = the rest of the nucleus (the
    ``boundary`` band of ``width`` px, plus any interior piece cut off by it).
    ``types`` (H, W) per-pixel nucleus type, given only for the merged typed ``inner_contour`` target
    (0 = unknown type: such inner pixels get class 0 here and must be ignored through the weight; see
    ``typed_ignore``).
    """
    fg = instances > 0
    if target == "binary":
        return tf.cast(fg, tf.int32)
    if target in ("three_class", "inner_contour"):
        contour = fg & ~inner_parts_tf(instances, width)
        if types is None:
            return tf.where(contour, 2, tf.cast(fg, tf.int32))
        inner = tf.where(fg, tf.cast(types, tf.int32), 0)
        return tf.where(contour, num_types + 1, inner)
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


# ---------------------------------------------------------------- HoVer-Net (Graham et al. 2019, section 3.2)

def hv_maps(instances) -> np.ndarray:
    """float32 (H, W, 2): the horizontal (x, channel 0) and vertical (y, channel 1) distance of every nucleus pixel
    to its nucleus' centre of mass, scaled per nucleus to [-1, 1]; 0 on the background.

    As the reference (vqdang/hover_net models/hovernet/targets.py): the centre of mass is rounded to the nearest
    pixel (c = floor(com + 0.5)), d = coordinate - c, then the negative distances of a nucleus are divided by their
    largest magnitude and the positive ones by their largest value (each side reaches -1 / +1 separately; a side
    with no pixel stays as it is). The reference numbers its crop's coordinates from 1 against a 0-based centre,
    which shifts its maps by one pixel; here both are 0-based, so the centre pixel itself is 0. Vectorised: one
    bincount per statistic over all nuclei, no loop.
    """
    inst = np.asarray(instances)
    if inst.ndim != 2:
        raise ValueError(f"hv_maps: instance map must be (H, W), got shape {inst.shape}")
    h, w = inst.shape
    out = np.zeros((h, w, 2), np.float32)
    fg = inst > 0
    if not fg.any():
        return out
    _, lab = np.unique(inst[fg], return_inverse=True)
    n = int(lab.max()) + 1
    rows, cols = np.nonzero(fg)  # raster order, the order of inst[fg]
    count = np.bincount(lab, minlength=n).astype(np.float64)
    for axis, coord in ((0, cols), (1, rows)):
        centre = np.floor(np.bincount(lab, weights=coord, minlength=n) / count + 0.5)
        d = (coord - centre[lab]).astype(np.float64)
        neg = np.zeros(n)
        np.minimum.at(neg, lab, d)
        pos = np.zeros(n)
        np.maximum.at(pos, lab, d)
        scale = np.where(d < 0, -neg[lab], np.where(d > 0, pos[lab], 1.0))
        out[rows, cols, axis] = (d / np.where(scale > 0, scale, 1.0)).astype(np.float32)
    return out


def hovernet_target(instances, types=None):
    """HoVer-Net's stacked target inside a TF graph: float32 (H, W, 3) = nucleus (0 / 1), HV x, HV y
    (``hv_maps``), with a 4th channel, the per-pixel nucleus type 0..K, when ``types`` (H, W) is given."""
    x = tf.convert_to_tensor(instances)
    hv = tf.numpy_function(hv_maps, [x], tf.float32, stateful=False)
    hv = tf.ensure_shape(tf.reshape(hv, tf.concat([tf.shape(x), [2]], 0)), x.shape.concatenate([2]))
    parts = [tf.cast(x > 0, tf.float32)[..., None], hv]
    if types is not None:
        parts.append(tf.cast(tf.where(x > 0, tf.cast(types, tf.int32), 0), tf.float32)[..., None])
    return tf.concat(parts, axis=-1)


# ---------------------------------------------------------------- mixed supervision (Qu et al., zoo.losses.mixed)

def mixed_instance_target(instances, types, width: int, num_types: int):
    """(H, W) int32 mixed-supervision labels of an instance map (zoo.losses.mixed's table, K = ``num_types``):
    0 background, K + 1 contour, inner part of a type-k nucleus k (1..K) where ``types`` (H, W) knows the type, and
    K + 2 (any-type inner) where it does not (type 0, or ``types`` None: untyped data such as MoNuSeg / TNBC)."""
    fg = instances > 0
    contour = fg & ~inner_parts_tf(instances, width)
    t = tf.zeros_like(instances, tf.int32) if types is None else tf.cast(types, tf.int32)
    inner = tf.where((t > 0) & (t <= num_types), t, num_types + 2)
    return tf.where(contour, num_types + 1, tf.where(fg, inner, 0))


def mixed_point_target(points_yx, classes, size, radius: float, num_types: int):
    """Mixed-supervision (y, w) of centre points (zoo.losses.mixed): K + 2 + k on the disc (``point_discs``) of a
    point of type k, weight 1; 2K + 3 (unlabelled) elsewhere and on discs of points of unknown type, weight 0."""
    y, w = point_discs(points_yx, tf.clip_by_value(tf.cast(classes, tf.int32), 0, num_types), size, radius,
                       untyped=False)
    return tf.where(w > 0, num_types + 2 + y, 2 * num_types + 3), w


def mixed_hovernet_instance_target(instances, types, num_types: int):
    """HoVer-Net under mixed supervision, an instance map (zoo.losses.hovernet): float32 (H, W, 5) = NP, HV x, HV y
    (``hovernet_target``), the type code (0 background, 1..K where ``types`` knows the type, K + 1 = a nucleus of
    unknown type: MoNuSeg / TNBC), and 1 = "NP / HV supervised here"."""
    inst = tf.convert_to_tensor(instances)
    t = tf.zeros_like(inst, tf.int32) if types is None else tf.cast(types, tf.int32)
    code = tf.where(inst > 0, tf.where((t > 0) & (t <= num_types), t, num_types + 1), 0)
    return tf.concat([hovernet_target(inst), tf.cast(code, tf.float32)[..., None],
                      tf.ones_like(tf.cast(inst, tf.float32))[..., None]], axis=-1)


def mixed_hovernet_point_target(points_yx, classes, size, radius: float, num_types: int):
    """HoVer-Net under mixed supervision, typed centres: ((H, W, 5), (H, W) weight). NP / HV / supervised are 0
    (nothing asserted about the nuclei's extent), the type code is the centre's type 1..K on its disc
    (``point_discs``), and the weight is the disc mask (discs of points of unknown type weigh 0)."""
    y, w = point_discs(points_yx, tf.clip_by_value(tf.cast(classes, tf.int32), 0, num_types), size, radius,
                       untyped=False)
    z = tf.zeros_like(w)[..., None]
    return tf.concat([z, z, z, tf.cast(y, tf.float32)[..., None], z], axis=-1), w


# ---------------------------------------------------------------- weight maps

def unet_border_term(instances: np.ndarray, w0: float = 10.0, sigma: float = 5.0, tol: float = 1e-4,
                     to: str = "border") -> np.ndarray:
    """w0 * exp(-(d1 + d2)^2 / (2 sigma^2)) (Ronneberger et al. 2015 eq. 2; Qu et al. 2019 eq. 2), float32 (H, W).

    to="border" (the paper's definition, the ``unet`` weight map): d_k(x) = distance from x to the border of nucleus
    k (its pixels with a 4-neighbour of another label, the map's edge not counting), for every pixel, inside nuclei
    included; to="nucleus" (``unet_nucleus_distance``): distance to nucleus k itself (0 inside it). Outside a
    nucleus both agree (its nearest pixel is a border pixel); inside, "nucleus" gives d1 = 0.

    One exact Euclidean distance transform per nucleus inside its bounding box grown by a margin M with
    w0 * exp(-M^2 / (2 sigma^2)) <= tol (the term is below tol wherever d2 > M); running first/second minima give
    d1 and d2. The loop over nuclei is cropped: each step costs the nucleus' window only. Numpy/scipy: call it
    through ``tf.numpy_function`` inside tf.data.
    """
    if to not in ("border", "nucleus"):
        raise ValueError(f"unet_border_term: to must be 'border' or 'nucleus', got {to!r}")
    inst = np.asarray(instances)
    h, w = inst.shape
    out_shape = (h, w)
    if w0 <= 0 or inst.max(initial=0) == 0:
        return np.zeros(out_shape, np.float32)
    margin = int(math.ceil(sigma * math.sqrt(2.0 * math.log(max(w0 / tol, 1.0 + 1e-9))))) + 1
    d1 = np.full(out_shape, np.inf, np.float32)
    d2 = np.full(out_shape, np.inf, np.float32)
    if to == "border":
        p = np.pad(inst, 1, mode="edge")  # beyond the edge: a copy of the edge pixel, never another label
        border = (inst > 0) & ((p[:-2, 1:-1] != inst) | (p[2:, 1:-1] != inst) | (p[1:-1, :-2] != inst)
                               | (p[1:-1, 2:] != inst))
    objs = ndimage.find_objects(inst)
    for lab, sl in enumerate(objs, start=1):
        if sl is None:
            continue
        y0, y1 = max(sl[0].start - margin, 0), min(sl[0].stop + margin, h)
        x0, x1 = max(sl[1].start - margin, 0), min(sl[1].stop + margin, w)
        own = inst[y0:y1, x0:x1] == lab
        win = ~(own & border[y0:y1, x0:x1]) if to == "border" else ~own
        if win.all():  # no border pixel in the map (the nucleus fills it): infinitely far
            continue
        d = ndimage.distance_transform_edt(win).astype(np.float32)
        a, b = d1[y0:y1, x0:x1], d2[y0:y1, x0:x1]
        d2[y0:y1, x0:x1] = np.minimum(b, np.maximum(a, d))
        d1[y0:y1, x0:x1] = np.minimum(a, d)
    s = d1 + d2
    with np.errstate(over="ignore", invalid="ignore"):
        term = w0 * np.exp(-(s * s) / (2.0 * sigma * sigma))
    term[~np.isfinite(s)] = 0.0
    return term.astype(np.float32)


def unet_border_term_tf(instances, w0: float, sigma: float, to: str = "border"):
    """``unet_border_term`` inside a TF graph (tf.numpy_function), shape kept."""
    out = tf.numpy_function(lambda a: unet_border_term(a, w0, sigma, to=to), [instances], tf.float32,
                            stateful=False)
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
    if kind == "unet_nucleus_distance":
        return (1.0 + unet_border_term_tf(instances, w0, sigma, to="nucleus")) * valid
    if kind == "class_balanced":
        return class_balance(y, valid, num_classes)
    if kind == "unet_class_balanced":
        return class_balance(y, valid, num_classes) + unet_border_term_tf(instances, w0, sigma) * valid
    raise ValueError(f"unknown weight map {kind!r}")
