"""Click maps: the encoding of clicks the interactive network reads, ONE function for training (zoo.data.input, in the
tf.data graph) and inference (zoo.interactive.segmenter, eagerly).

Each click becomes a disk of ``radius`` pixels in its channel (positive clicks channel 0, negative channel 1), as
f-BRS's released code does (Sofiiuk et al. 2020, ``DistMaps(use_disks=True)``, radius 5); Xu et al.'s truncated
distance maps (Bhatia eq. 2.1) are the other choice the report describes. Only TensorFlow here: zoo.data imports it.
"""

from __future__ import annotations

import tensorflow as tf


def click_maps(points_yx, positive, shape, radius: float):
    """Disks of ``radius`` px around clicks -> float32 [H, W, 2] (positive, negative), values 0 / 1.

    points_yx: float [N, 2] click coordinates (row, column; N may be 0); positive: bool [N]; shape: (H, W)."""
    points_yx = tf.cast(tf.reshape(points_yx, [-1, 2]), tf.float32)
    positive = tf.reshape(tf.cast(positive, tf.bool), [-1])
    h, w = shape[0], shape[1]
    yy = tf.cast(tf.range(h), tf.float32)[:, None, None]
    xx = tf.cast(tf.range(w), tf.float32)[None, :, None]
    d2 = (yy - points_yx[None, None, :, 0]) ** 2 + (xx - points_yx[None, None, :, 1]) ** 2  # [H, W, N]
    inside = d2 <= float(radius) ** 2
    pos = tf.reduce_any(inside & positive[None, None, :], axis=-1)
    neg = tf.reduce_any(inside & ~positive[None, None, :], axis=-1)
    return tf.cast(tf.stack([pos, neg], -1), tf.float32)


def _random_pixels(candidates, count, max_count: int, seed):
    """Up to ``max_count`` distinct random pixels (row, col) of the bool map ``candidates``, the first ``count`` of
    them valid -> (points float32 [max_count, 2], valid bool [max_count])."""
    flat = tf.reshape(candidates, [-1])
    scores = tf.where(flat, tf.random.stateless_uniform(tf.shape(flat), seed, 0.01, 1.0), 0.0)
    top, idx = tf.math.top_k(scores, k=max_count)
    width = tf.shape(candidates)[1]
    pts = tf.cast(tf.stack([idx // width, idx % width], -1), tf.float32)
    valid = (top > 0) & (tf.range(max_count) < count)
    return pts, valid


def _dilate(mask, r):
    """Binary dilation of a bool [H, W] map by a (2r + 1)-square (r a Python int)."""
    k = 2 * r + 1
    m = tf.cast(mask, tf.float32)[None, :, :, None]
    return tf.nn.max_pool2d(m, [k, k], 1, "SAME")[0, :, :, 0] > 0


def simulated_clicks(instances, seed, max_positive: int, max_negative: int, radius: float, near: int = 15):
    """A training example of the click-conditioned network from an instance-map patch (in the tf.data graph), after
    Xu et al. 2016's click sampling (Bhatia section 2.1) -> (extra input channels float32 [H, W, 3] = positive disks,
    negative disks, previous mask; target int32 [H, W] = the chosen object, 0 / 1).

    One nucleus is chosen uniformly among those in the patch; 1..``max_positive`` positive clicks at random pixels of
    it at least 2 px from its edge (where it is that thick); 0..``max_negative`` negative clicks at random pixels
    within ``near`` px of it but outside it (background or neighbouring nuclei: Xu's strategies 1-2). The previous mask is, with probability 1/4 each, empty (the first
    click), the object dilated or eroded by 1-3 px, or the object shifted by up to 6 px in each direction (a wrong
    previous mask the clicks must override): a stand-in for the previous prediction (f-BRS / RITM feed the model's
    own; documented simplification). A patch without nuclei gives no clicks and an empty target.
    Every random choice derives from the stateless ``seed`` (int64 [2])."""
    inst = tf.convert_to_tensor(instances)
    s = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 7)
    ids, _ = tf.unique(tf.reshape(inst, [-1]))
    ids = tf.boolean_mask(ids, ids > 0)
    n = tf.size(ids)
    pick = tf.random.stateless_uniform([], s[0], 0, tf.maximum(n, 1), dtype=tf.int32)
    obj = tf.cond(n > 0, lambda: tf.equal(inst, tf.gather(ids, pick)), lambda: tf.zeros_like(inst, tf.bool))
    n_pos = tf.random.stateless_uniform([], s[1], 1, max_positive + 1, dtype=tf.int32)
    n_neg = tf.random.stateless_uniform([], s[2], 0, max_negative + 1, dtype=tf.int32)
    inner = ~_dilate(~obj, 2)  # positives at least 2 px inside the object where it is that thick (Xu's d_m)
    inner = tf.cond(tf.reduce_any(inner), lambda: inner, lambda: obj)
    pos_pts, pos_ok = _random_pixels(inner, n_pos, max_positive, s[3])
    neg_pts, neg_ok = _random_pixels(_dilate(obj, near) & ~obj, n_neg, max(max_negative, 1), s[4])
    pts = tf.concat([tf.boolean_mask(pos_pts, pos_ok), tf.boolean_mask(neg_pts, neg_ok)], 0)
    positive = tf.concat([tf.ones([tf.reduce_sum(tf.cast(pos_ok, tf.int32))], tf.bool),
                          tf.zeros([tf.reduce_sum(tf.cast(neg_ok, tf.int32))], tf.bool)], 0)
    disks = click_maps(pts, positive, tf.shape(inst), radius)
    mode = tf.random.stateless_uniform([], s[5], 0, 4, dtype=tf.int32)
    r = tf.random.stateless_uniform([], s[6], 0, 3, dtype=tf.int32)
    shift = tf.random.stateless_uniform([2], s[6], -6, 7, dtype=tf.int32)
    # index mode * 3 + r: 0-2 empty, 3-5 dilated, 6-8 eroded by r + 1 px, 9-11 shifted by up to 6 px
    branches = [lambda: tf.zeros_like(obj)] * 3
    branches += [lambda k=k: _dilate(obj, k) for k in (1, 2, 3)] + [lambda k=k: ~_dilate(~obj, k) for k in (1, 2, 3)]
    branches += [lambda: tf.roll(obj, shift, axis=[0, 1])] * 3
    prev = tf.switch_case(mode * 3 + r, branches)
    extra = tf.concat([disks, tf.cast(prev, tf.float32)[..., None]], -1)
    return extra, tf.cast(obj, tf.int32)
