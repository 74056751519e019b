"""The forward pass (one definition for in-process inference and the SavedModel) and tiled inference."""

from __future__ import annotations

from typing import Callable

import numpy as np

from zoo.errors import ConfigError
from zoo.inference.spec import InferenceSpec

# ------------------------------------------------------------------------------------------- the forward pass
def forward_tf(model, spec: InferenceSpec, stain=None):
    """The forward pass as TF ops, ONE definition for in-process inference and the SavedModel (``serving.export``
    traces this same function): uint8 images [B, H, W, 3] (or float32 in [0, 1]) -> the spec's stain normalisation (``stain``: its fitted
    normalizer) -> float [0, 1] -> padded to ``spec.divisor`` (``zoo.models.base.pad_to_multiple``) -> the model ->
    float32 probabilities [B, H, W, C] cropped back."""
    import tensorflow as tf

    from zoo.models.base import pad_to_multiple

    def fn(images):
        images = tf.convert_to_tensor(images)
        if images.dtype.is_floating:  # float [0, 1] (the serving_default signature)
            if stain is None:
                x = tf.cast(images, tf.float32)
            else:  # the stain transform works on uint8
                images = tf.cast(tf.round(tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 1.0) * 255.0), tf.uint8)
        if images.dtype == tf.uint8:
            if stain is not None:
                images = stain.tf_transform(images)
            x = tf.cast(images, tf.float32) / 255.0
        padded, h, w = pad_to_multiple(x, spec.divisor)
        out = model(padded, training=False)
        if isinstance(out, dict):
            out = out["probabilities"]
        return tf.cast(out, tf.float32)[:, :h, :w, :]

    return fn


class KerasForward:
    """uint8 images [B, H, W, 3] at the model's resolution -> float32 probabilities [B, H, W, C]: :func:`forward_tf`
    compiled with ``tf.function``, as the SavedModel compiles it, so the in-process and the served probabilities are
    the same numbers (eager execution and a graph may round differently, which flips quantised post-processing)."""

    def __init__(self, model, spec: InferenceSpec):
        import tensorflow as tf

        self.model, self.spec = model, spec
        self.stain = stain_normalizer(spec)
        self._fn = tf.function(forward_tf(model, spec, self.stain), reduce_retracing=True,
                               input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self._fn(np.asarray(images, np.uint8)), np.float32)


def stain_normalizer(spec: InferenceSpec):
    """The fitted stain normalizer of the spec, or None."""
    if not spec.stain:
        return None
    import zoo.stain  # noqa: F401 — registers every method
    from zoo.stain.base import from_json

    return from_json(dict(spec.stain), "spec.stain")


def as_forward(model, spec: InferenceSpec) -> Callable[[np.ndarray], np.ndarray]:
    """A probability function from a Keras model, or ``model`` itself when it is already one (a served model's
    client, ``serving.client.ServedForward``)."""
    if getattr(model, "is_forward", False) or isinstance(model, KerasForward):
        return model
    # the last (model, spec) keeps its compiled forward, so predict() called image by image never retraces; one
    # entry only, so no model is kept alive beyond the next call with another one
    last = _LAST_FORWARD[0]
    if last is None or last.model is not model or last.spec != spec:
        last = _LAST_FORWARD[0] = KerasForward(model, spec)
    return last


_LAST_FORWARD: list = [None]


# ------------------------------------------------------------------------------------------- tiles
def tile(image, size: int, overlap: int = 0):
    """Cut a (H, W[, C]) image into overlapping (size, size) tiles covering it.

    Returns (tiles [N, size, size(, C)], info) where info = {"starts": [N, 2] int32 (row, col) of each tile,
    "height", "width"}. Tiles start every ``size - overlap`` pixels, the last one flush with the bottom/right edge;
    an image smaller than ``size`` is mirror-padded. Graph-safe; numpy input accepted.
    """
    import tensorflow as tf

    from zoo.data import augment

    if not 0 <= overlap < size:
        raise ConfigError(f"tile: overlap must lie in [0, size), got overlap={overlap}, size={size}")
    image = tf.convert_to_tensor(image)
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    stride = size - overlap

    def starts(n):
        last = tf.maximum(n - size, 0)
        k = (last + stride - 1) // stride + 1
        return tf.minimum(tf.range(k) * stride, last)

    sy, sx = starts(h), starts(w)
    iy = augment.reflect_index(sy[:, None] + tf.range(size)[None], h)  # [ny, size]
    ix = augment.reflect_index(sx[:, None] + tf.range(size)[None], w)  # [nx, size]
    t = tf.gather(image, iy, axis=0)                # [ny, size, W, ...]
    t = tf.gather(t, ix, axis=2)                    # [ny, size, nx, size, ...]
    perm = [0, 2, 1, 3] + list(range(4, t.shape.rank))
    t = tf.transpose(t, perm)
    ny, nx = tf.shape(sy)[0], tf.shape(sx)[0]
    t = tf.reshape(t, tf.concat([[ny * nx, size, size], tf.shape(image)[2:]], 0))
    gy, gx = tf.meshgrid(sy, sx, indexing="ij")
    info = {"starts": tf.stack([tf.reshape(gy, [-1]), tf.reshape(gx, [-1])], -1), "height": h, "width": w}
    return t, info


def untile(tiles, info, margin: int = 0):
    """Blend per-tile outputs [N, size, size(, C)] back into [H, W(, C)]. Each tile contributes only its core: it
    drops ``margin`` pixels on every side that does not lie on the image's edge (predictions near a tile's cut edge
    see a padded context); where cores overlap they are averaged. With ``margin`` <= overlap / 2 the cores cover the
    image, so every pixel comes from a tile that saw at least ``margin`` pixels of real context around it."""
    import tensorflow as tf

    tiles = tf.cast(tf.convert_to_tensor(tiles), tf.float32)
    size = tf.shape(tiles)[1]
    h, w = info["height"], info["width"]
    hc, wc = tf.maximum(h, size), tf.maximum(w, size)
    r = tf.range(size)
    sy, sx = info["starts"][:, 0], info["starts"][:, 1]

    def core(start, n):  # [N, size]: 1 inside the tile's core along one axis
        lo = tf.where(start[:, None] > 0, margin, 0)
        hi = tf.where(start[:, None] + size < n, size - margin, size)
        return tf.cast((r[None] >= lo) & (r[None] < hi), tf.float32)

    wgt = core(sy, h)[:, :, None] * core(sx, w)[:, None, :]  # [N, size, size]
    yy = sy[:, None, None] + r[None, :, None] + 0 * r[None, None, :]
    xx = sx[:, None, None] + 0 * r[None, :, None] + r[None, None, :]
    idx = tf.stack([yy, xx], -1)                               # [N, size, size, 2]
    rest = tf.shape(tiles)[3:]
    wt = tf.reshape(wgt, tf.concat([tf.shape(wgt), tf.ones_like(rest)], 0))
    acc = tf.scatter_nd(idx, tiles * wt, tf.concat([[hc, wc], rest], 0))
    cnt = tf.scatter_nd(idx, wgt, tf.stack([hc, wc]))
    cnt = tf.reshape(cnt, tf.concat([[hc, wc], tf.ones_like(rest)], 0))
    return (acc / tf.maximum(cnt, 1e-12))[:h, :w]


def forward_image(forward, spec: InferenceSpec, image: np.ndarray, batch: int = 4) -> np.ndarray:
    """Probabilities (H, W, C) of one image at the model's resolution: in one pass, or, when ``spec.tile_size`` is set
    and the image is larger, in ``tile_size`` tiles overlapping by ``spec.tile_overlap`` (``batch`` tiles per call),
    each keeping its core (``tile_overlap / 2`` pixels dropped at cut edges, :func:`untile`)."""
    size = spec.tile_size
    h, w = image.shape[:2]
    if not size or (h <= size and w <= size):
        return forward(image[None])[0]
    tiles, info = tile(image, size, spec.tile_overlap)
    tiles = np.asarray(tiles)
    out = np.concatenate([forward(tiles[i:i + batch]) for i in range(0, len(tiles), batch)])
    return np.asarray(untile(out, info, spec.tile_overlap // 2), np.float32)


