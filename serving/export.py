"""Export a segmentation model to a versioned SavedModel that TF Serving (or ``serving.local_server``) serves.

Layout written (what ``tensorflow_model_server --model_base_path=OUT`` reads)::

    OUT/<version>/saved_model.pb, variables/, assets/histozoo.json

Signatures (all return the same outputs):

| signature | input key | input |
|---|---|---|
| ``serving_default`` | ``images`` | float32 [B, H, W, 3] in [0, 1] |
| ``predict_images`` | ``images`` | uint8 [B, H, W, 3] |
| ``predict_bytes`` | ``image_bytes`` | string [B]: encoded PNG/JPEG/BMP/GIF, one size per request |
| ``predict_examples`` | ``examples`` | string [B]: serialized tf.Example of the record schema (zoo.data.records) |

Outputs: ``probabilities`` float32 [B, H, W, C]; ``class_map`` int32 [B, H, W] (argmax); ``instances`` int32
[B, H, W] (0 = background, 1..N per image, numbered in raster order of each instance's first pixel, like
``scipy.ndimage.label``); ``num_instances`` int32 [B].

The instance map is computed in the graph with TF ops only, so a plain TF Serving answers with instances:
8-connected components of the nucleus region (class 1) by iterative label propagation with pointer jumping
(the min-label propagation of Shiloach & Vishkin, J. Algorithms 3(1):57-67, 1982, on the pixel grid), then, for
3-class models (0 background, 1 interior, 2 boundary; Naylor et al. 2018, TMI 38(2):448-459, sec. III-B), each
instance grows into the adjacent boundary pixels (the "inner region + dilation" post-processing of the
contour-aware models).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Any

import numpy as np

from zoo.errors import ConfigError

INSTANCE_MODES = ("inner_cc", "threshold_cc")
OUTPUT_KEYS = ("probabilities", "class_map", "instances", "num_instances")
SIGNATURES = {
    "serving_default": ("images", "float32"),
    "predict_images": ("images", "uint8"),
    "predict_bytes": ("image_bytes", "string"),
    "predict_examples": ("examples", "string"),
}
METADATA_ASSET = "histozoo.json"
DEFAULT_DIVISOR = 32


def _tf():
    import tensorflow as tf

    return tf


# --------------------------------------------------------------------------- in-graph connected components
def _max3x3(x):
    """3x3 max filter of an integer [B, H, W] tensor (zero outside), as two separable 1-D maxima."""
    tf = _tf()
    p = tf.pad(x, [[0, 0], [1, 1], [1, 1]])
    rows = tf.maximum(tf.maximum(p[:, :-2, :], p[:, 1:-1, :]), p[:, 2:, :])
    return tf.maximum(tf.maximum(rows[:, :, :-2], rows[:, :, 1:-1]), rows[:, :, 2:])


def label_components(fg, max_iters: int = 1024):
    """8-connected components of a boolean [B, H, W] mask, in-graph: int32 labels 1..N per image, 0 = background.

    Each foreground pixel starts with the value ``total - flat_index`` (so the maximum is the component's first
    pixel in raster order); each iteration takes the 3x3 maximum restricted to the foreground and then jumps
    pointers (a pixel adopts the value held by the pixel its value points to, Shiloach & Vishkin 1982), until
    nothing changes or ``max_iters`` iterations ran. Labels are then renumbered 1..N per image in raster order of
    each component's first pixel, which is exactly ``scipy.ndimage.label(fg, np.ones((3, 3)))``'s numbering.
    """
    tf = _tf()
    fg = tf.cast(fg, tf.bool)
    shape = tf.shape(fg)
    b, h, w = shape[0], shape[1], shape[2]
    total = b * h * w
    flat_idx = tf.reshape(tf.range(total, dtype=tf.int32), shape)
    fgi = tf.cast(fg, tf.int32)
    v0 = (total - flat_idx) * fgi

    def body(i, v, _):
        m = _max3x3(v) * fgi
        # pointer jumping: value m points at the pixel total - m, whose value is >= m and lies in the same component
        ptr = (total - m) * fgi
        jumped = tf.gather(tf.reshape(m, [-1]), tf.reshape(ptr, [-1]))
        new = tf.maximum(m, tf.reshape(jumped, shape) * fgi)
        return i + 1, new, tf.reduce_any(tf.not_equal(new, v))

    _, v, _ = tf.while_loop(lambda i, v, changed: tf.logical_and(changed, i < max_iters), body,
                            (tf.constant(0), v0, tf.constant(True)))
    # roots: pixels whose value points at themselves; rank them in raster order within their image
    is_root = tf.logical_and(fg, tf.equal(v, total - flat_idx))
    per_image = tf.reshape(tf.cast(is_root, tf.int32), [b, h * w])
    rank = tf.reshape(tf.cumsum(per_image, axis=1), [-1])
    root = tf.reshape((total - v) * fgi, [-1])
    labels = tf.reshape(tf.gather(rank, root), shape) * fgi
    return labels


def grow_labels(labels, into, max_iters: int = 1024):
    """Grow int32 [B, H, W] ``labels`` into the unlabelled pixels of the boolean mask ``into`` (8-neighbourhood,
    one pixel per iteration, the largest neighbouring label wins), until nothing changes or ``max_iters``."""
    tf = _tf()
    into = tf.cast(into, tf.bool)

    def body(i, lab, _):
        grown = tf.where(tf.logical_and(into, tf.equal(lab, 0)), _max3x3(lab), lab)
        return i + 1, grown, tf.reduce_any(tf.not_equal(grown, lab))

    _, lab, _ = tf.while_loop(lambda i, lab, changed: tf.logical_and(changed, i < max_iters), body,
                              (tf.constant(0), labels, tf.constant(True)))
    return lab


def instances_from_probabilities(probs, mode: str = "inner_cc", threshold: float = 0.5, max_iters: int = 1024):
    """Instance map [B, H, W] int32 from softmax probabilities [B, H, W, C] (class 1 = nucleus / interior).

    ``inner_cc``: components of the pixels whose argmax is class 1; ``threshold_cc``: components of
    ``probs[..., 1] >= threshold``. With C >= 3, instances then grow into the boundary pixels (argmax == 2).
    """
    tf = _tf()
    class_map = tf.argmax(probs, axis=-1, output_type=tf.int32)
    if mode == "inner_cc":
        fg = tf.equal(class_map, 1)
    elif mode == "threshold_cc":
        fg = probs[..., 1] >= threshold
    else:
        raise ConfigError(f"instance_mode {mode!r}: expected one of {INSTANCE_MODES}")
    labels = label_components(fg, max_iters)
    if probs.shape[-1] is not None and probs.shape[-1] >= 3:
        labels = grow_labels(labels, tf.equal(class_map, 2), max_iters)
    return labels


# --------------------------------------------------------------------------- the serving module
def _divisor(model) -> int:
    d = getattr(model, "min_divisor", None)
    return int(d) if d else DEFAULT_DIVISOR


def pad_to_divisor(images, divisor: int):
    """``zoo.models.base.pad_to_multiple`` (the same padding a zoo model applies in-process). Returns (padded, H, W)."""
    from zoo.models.base import pad_to_multiple

    return pad_to_multiple(images, divisor)


class _Predictor:
    """The graph pieces shared by every signature (plain Python; the ExportArchive traces its methods)."""

    def __init__(self, model, stain, instance_mode, threshold, max_iters):
        self.model, self.stain = model, stain
        self.instance_mode, self.threshold, self.max_iters = instance_mode, threshold, max_iters
        self.divisor = _divisor(model)

    def from_float(self, images):
        tf = _tf()
        images = tf.convert_to_tensor(images, tf.float32)
        if self.stain is not None:  # the stain transform works on uint8
            return self.from_uint8(tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8))
        return self._run(images)

    def from_uint8(self, images):
        tf = _tf()
        if self.stain is not None:
            images = self.stain.tf_transform(images)
        return self._run(tf.cast(images, tf.float32) / 255.0)

    def _run(self, images):
        tf = _tf()
        padded, h, w = pad_to_divisor(images, self.divisor)
        out = self.model(padded, training=False)
        if isinstance(out, dict):
            out = out["probabilities"]
        probs = tf.cast(out, tf.float32)[:, :h, :w, :]
        inst = instances_from_probabilities(probs, self.instance_mode, self.threshold, self.max_iters)
        return {
            "probabilities": probs,
            "class_map": tf.argmax(probs, axis=-1, output_type=tf.int32),
            "instances": inst,
            "num_instances": tf.reduce_max(inst, axis=[1, 2]),
        }


def decode_same_size(strings, decode_one, what: str):
    """Decode a string [B] tensor with ``decode_one(s) -> uint8 [H, W, 3]`` into uint8 [B, H, W, 3]; raises
    InvalidArgumentError naming ``what`` when the images do not share one size."""
    tf = _tf()
    n = tf.shape(strings)[0]
    imgs = tf.TensorArray(tf.uint8, size=n, infer_shape=False, element_shape=tf.TensorShape([None, None, 3]))
    shapes = tf.TensorArray(tf.int32, size=n, element_shape=tf.TensorShape([3]))

    def body(i, imgs, shapes):
        img = decode_one(strings[i])
        shape = tf.shape(img)
        return i + 1, imgs.write(i, img), shapes.write(i, tf.stack([shape[0], shape[1], shape[2]]))

    _, imgs, shapes = tf.while_loop(lambda i, *_: i < n, body, (tf.constant(0), imgs, shapes))
    shp = shapes.stack()
    check = tf.debugging.assert_equal(
        shp, tf.broadcast_to(shp[:1], tf.shape(shp)),
        message=f"all {what} in one request must share one height and width; send differently sized images "
                "in separate requests")
    with tf.control_dependencies([check]):
        return tf.ensure_shape(imgs.stack(), [None, None, None, 3])


def _decode_image(s):
    tf = _tf()
    return tf.io.decode_image(s, channels=3, dtype=tf.uint8, expand_animations=False)


def _decode_example(s):
    from zoo.data.records import decode

    return decode(s)["image"]


def _check_model(model, predictor: _Predictor) -> int:
    """Run the model once on a tiny input: it must return [B, H, W, C] probabilities with C >= 2."""
    d = predictor.divisor
    out = model(np.full((1, d, d, 3), 0.5, np.float32), training=False)
    if isinstance(out, dict):
        if "probabilities" not in out:
            raise ConfigError(f"model {model.name!r} returns a dict without 'probabilities' ({sorted(out)})")
        out = out["probabilities"]
    shape = tuple(out.shape)
    if len(shape) != 4 or shape[1:3] != (d, d) or shape[3] < 2:
        raise ConfigError(f"model {model.name!r}: expected softmax output [B, H, W, C>=2] for input [1, {d}, {d}, 3],"
                          f" got {list(shape)}")
    return int(shape[3])


def _next_version(out_dir: str) -> int:
    versions = [int(v) for v in os.listdir(out_dir) if v.isdigit()] if os.path.isdir(out_dir) else []
    return max(versions, default=0) + 1


def export(model, out_dir: str, version: int | None = None, *, stain: Any = None, instance_mode: str = "inner_cc",
           threshold: float = 0.5, max_iters: int = 1024, metadata: dict | None = None) -> str:
    """Write ``model`` as ``out_dir/<version>/`` (a SavedModel TF Serving reads) and return that path.

    model: keras.Model, float32 [B, H, W, 3] in [0, 1] -> softmax [B, H, W, C]; inputs are padded to
    ``model.min_divisor`` (default 32) and cropped back. version: a positive int, default one more than the
    largest present; an existing version is never overwritten. stain: an object with a pure-TF
    ``tf_transform(uint8 [B, H, W, 3]) -> uint8`` applied in the graph before the model. instance_mode /
    threshold / max_iters: see ``instances_from_probabilities``. metadata: JSON-able dict stored in
    ``assets/histozoo.json`` (with the class names, mpp, model name and config: missing keys are filled in).
    The version folder is written under a temporary name and renamed, so a crash leaves no partial version.
    """
    tf = _tf()
    import keras

    if instance_mode not in INSTANCE_MODES:
        raise ConfigError(f"instance_mode {instance_mode!r}: expected one of {INSTANCE_MODES}")
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold {threshold}: expected a probability in (0, 1)")
    if max_iters < 1:
        raise ConfigError(f"max_iters {max_iters}: expected >= 1")
    if stain is not None and not callable(getattr(stain, "tf_transform", None)):
        raise ConfigError(f"stain {type(stain).__name__}: needs a tf_transform(uint8 images) -> uint8 method")
    os.makedirs(out_dir, exist_ok=True)
    version = _next_version(out_dir) if version is None else int(version)
    if version < 1:
        raise ConfigError(f"version {version}: TF Serving versions are positive integers")
    final = os.path.join(out_dir, str(version))
    if os.path.exists(final):
        raise ConfigError(f"{final}: version {version} already exists (versions are immutable; pick another)")

    pred = _Predictor(model, stain, instance_mode, threshold, max_iters)
    num_classes = _check_model(model, pred)

    archive = keras.export.ExportArchive()
    archive.track(model)
    if stain is not None and isinstance(stain, tf.Module):
        archive.track(stain)
    img = lambda dt: [tf.TensorSpec([None, None, None, 3], dt, name="images")]
    strings = lambda name: [tf.TensorSpec([None], tf.string, name=name)]
    archive.add_endpoint("serving_default", lambda images: pred.from_float(images), img(tf.float32))
    archive.add_endpoint("predict_images", lambda images: pred.from_uint8(images), img(tf.uint8))
    archive.add_endpoint("predict_bytes", lambda image_bytes: pred.from_uint8(
        decode_same_size(image_bytes, _decode_image, "images")), strings("image_bytes"))
    archive.add_endpoint("predict_examples", lambda examples: pred.from_uint8(
        decode_same_size(examples, _decode_example, "examples")), strings("examples"))

    meta = dict(metadata or {})
    meta.setdefault("model_name", model.name)
    meta.setdefault("class_names", ["background", "nucleus"] if num_classes == 2
                    else ["background", "interior", "boundary"] + [f"class_{i}" for i in range(3, num_classes)])
    meta.setdefault("mpp", 0.0)
    if "config" not in meta:
        try:
            meta["config"] = model.get_config()
        except Exception:  # a model without get_config still exports; its config is simply not recorded
            meta["config"] = None
    stain_info = None
    if stain is not None:
        to_json = getattr(stain, "to_json", None)
        stain_info = to_json() if callable(to_json) else {"method": type(stain).__name__}
    meta.update(version=version, num_classes=num_classes, divisor=pred.divisor, instance_mode=instance_mode,
                threshold=threshold, max_iters=max_iters, stain=stain_info,
                signatures={k: {"input": v[0], "dtype": v[1]} for k, v in SIGNATURES.items()},
                outputs=list(OUTPUT_KEYS), exported_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=out_dir)
    try:
        archive.write_out(tmp, verbose=False)
        os.makedirs(os.path.join(tmp, "assets"), exist_ok=True)
        with open(os.path.join(tmp, "assets", METADATA_ASSET), "w") as f:
            json.dump(meta, f, indent=2, default=str)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_metadata(version_dir: str) -> dict:
    """The ``assets/histozoo.json`` of an exported version folder."""
    with open(os.path.join(version_dir, "assets", METADATA_ASSET)) as f:
        return json.load(f)


def load_keras_model(uri: str):
    """Load the model ``histozoo export`` exports: a ``.keras`` file path (MLflow URIs: see the branch below)."""
    import keras

    try:
        import zoo.models  # noqa: F401 - registers the zoo's models for deserialisation
    except ImportError:
        pass
    if uri.startswith(("models:/", "runs:/")):
        # the lead's MLflow loader; this is the one line that changes when zoo.training.tracking lands
        from zoo.training.tracking import load_model

        return load_model(uri)
    if not os.path.exists(uri):
        from zoo.errors import DataError

        raise DataError(uri, "no such model file (expected a .keras file, or a models:/ or runs:/ URI)")
    if not uri.endswith(".keras"):
        from zoo.errors import DataError

        raise DataError(uri, "not a .keras file (save the model with model.save('name.keras'))")
    try:
        return keras.saving.load_model(uri, compile=False)
    except Exception as e:
        from zoo.errors import DataError

        raise DataError(uri, f"cannot load the Keras model ({type(e).__name__}: {str(e).splitlines()[0][:200]})")


def load_stain(path: str):
    """A fitted stain normalizer saved with ``StainNormalizer.save`` (zoo.stain), for ``export(stain=...)``."""
    import importlib
    import pkgutil

    import zoo.stain

    for m in pkgutil.iter_modules(zoo.stain.__path__):  # every method module registers itself on import
        importlib.import_module(f"zoo.stain.{m.name}")
    from zoo.stain.base import load

    return load(path)
