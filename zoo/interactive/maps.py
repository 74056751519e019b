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
