"""Export a segmentation model to a versioned SavedModel that TF Serving (or ``serving.local_server``) serves.

Layout written (what ``tensorflow_model_server --model_base_path=OUT`` reads)::

    OUT/<version>/saved_model.pb, variables/, assets/histozoo.json (the model's InferenceSpec under "spec")

Signatures:

| signature | input key | input |
|---|---|---|
| ``serving_default`` | ``images`` | float32 [B, H, W, 3] in [0, 1] |
| ``predict_images`` | ``images`` | uint8 [B, H, W, 3] |
| ``predict_bytes`` | ``image_bytes`` | string [B]: encoded PNG/JPEG/BMP/GIF, one size per request |
| ``predict_examples`` | ``examples`` | string [B]: serialized tf.Example of the record schema (zoo.data.records) |
| ``histozoo_spec`` | ``unused`` | int32 [N] (any): returns ``spec``, the model's InferenceSpec as a JSON string |

Outputs of the four predict signatures: ``probabilities`` float32 [B, H, W, C] (after the spec's stain normalisation,
padding and cropping: exactly ``zoo.inference.KerasForward``); ``class_map`` int32 [B, H, W] (argmax); and, when the
spec's post-processing has an in-graph twin (``PostprocessConfig.in_graph``: ``threshold`` with 8-connectivity, or
Qu et al.'s ``inner_contour`` with ``grow: dilate``), ``instances`` int32 [B, H, W] and ``num_instances`` int32 [B],
equal to the numpy method's output; a typed model (the spec names type channels) then also returns
``instance_classes`` int32 [B, M + 1] (the type 1..K of each instance id, index 0 unused, M the batch's largest id)
and ``type_map`` int32 [B, H, W] (each nucleus pixel's instance type, 0 elsewhere), equal to the per-instance classes
of ``zoo.inference.predict``.

The other methods (Naylor's dynamics watershed, the three-class and flooding inner/contour decodings) are marker-controlled
flooding that TF has no op for: the SavedModel returns the probabilities and the client runs the SAME numpy function
through ``zoo.inference.predict`` (``serving.client`` and ``histozoo predict`` do this, reading the spec from the
``histozoo_spec`` signature). Either way the served instances are the evaluated ones. Inputs are at the model's
resolution (``spec.mpp``); ``zoo.inference.predict`` resamples other resolutions on the client side.

The in-graph connected components: iterative label propagation with pointer jumping (the min-label propagation of
Shiloach & Vishkin, J. Algorithms 3(1):57-67, 1982, on the pixel grid), numbered like ``scipy.ndimage.label``.
"""

from __future__ import annotations

import json
import os
import time

from zoo.errors import ConfigError

OUTPUT_KEYS = ("probabilities", "class_map", "instances", "num_instances")
TYPED_OUTPUT_KEYS = ("instance_classes", "type_map")  # a typed model with in-graph instances (Qu et al.)
SIGNATURES = {
    "serving_default": ("images", "float32"),
    "predict_images": ("images", "uint8"),
    "predict_bytes": ("image_bytes", "string"),
    "predict_examples": ("examples", "string"),
}
METADATA_ASSET = "histozoo.json"
SPEC_SIGNATURE = "histozoo_spec"


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


def _per_label_counts(labels, values=None):
    """[B, H*W + 1] per image: the number of pixels of each label 0..H*W of an int32 [B, H, W] map (or, with
    ``values`` int32 [B, H, W] >= 0, their sum per label)."""
    tf = _tf()
    shape = tf.shape(labels)
    b, hw = shape[0], shape[1] * shape[2]
    n = hw + 1  # labels of one image are < hw + 1
    keys = tf.reshape(tf.reshape(labels, [b, hw]) + tf.range(b)[:, None] * n, [-1])
    w = None if values is None else tf.reshape(values, [-1])
    return tf.reshape(tf.math.bincount(keys, weights=w, minlength=b * n, maxlength=b * n, dtype=tf.int32), [b, n])


def _lookup(table, labels):
    """``table[b, labels[b, y, x]]`` for int32 ``labels`` [B, H, W] and a per-image table [B, N]: a per-image
    gather, shaped as ``labels``."""
    tf = _tf()
    flat = tf.reshape(labels, [tf.shape(labels)[0], -1])
    return tf.reshape(tf.gather(table, flat, batch_dims=1), tf.shape(labels))


def _keep_labels(labels, keep):
    """``labels`` int32 [B, H, W] with the labels where ``keep`` [B, H*W + 1] is False set to 0 and the rest
    renumbered 1..M per image in increasing order of their old label (order-preserving, as remap_label)."""
    tf = _tf()
    keep = tf.concat([tf.zeros([tf.shape(labels)[0], 1], tf.bool), keep[:, 1:]], axis=1)  # 0 stays background
    new_ids = tf.cumsum(tf.cast(keep, tf.int32), axis=1) * tf.cast(keep, tf.int32)
    return _lookup(new_ids, labels)


def _remove_small_tf(labels, min_size: int):
    """In-graph ``remove_small`` + ``relabel_sequential``: components under ``min_size`` pixels dropped, the rest
    renumbered 1..M in their order."""
    if min_size <= 1:
        return labels
    return _keep_labels(labels, _per_label_counts(labels) >= min_size)


def threshold_components_tf(prob, threshold: float = 0.5, min_size: int = 0, max_iters: int = 1024):
    """In-graph twin of ``zoo.postprocess.config.threshold_components`` (8-connected): components of
    ``prob > threshold`` for a float [B, H, W] map, those under ``min_size`` pixels removed, renumbered 1..N per image
    in raster order of their first pixel. Tested equal to the numpy function."""
    return _remove_small_tf(label_components(prob > threshold, max_iters), min_size)


def dilate_labels_tf(labels, allowed, rounds, max_iters: int = 1024):
    """In-graph twin of ``zoo.postprocess.instances.dilate_labels`` (8-connected): rounds of 3x3 maximum into the
    unlabelled pixels of ``allowed`` (bool [B, H, W]) until nothing changes or ``rounds`` rounds (None: until stable,
    at most ``max_iters``). Integer arithmetic only, so equal to the numpy function."""
    tf = _tf()
    free = tf.cast(allowed, tf.int32)
    limit = max_iters if rounds is None else int(rounds)

    def body(i, lab, _):
        grown = _max3x3(lab)
        take = tf.cast(tf.equal(lab, 0), tf.int32) * free
        new = lab + grown * take
        return i + 1, new, tf.reduce_any(tf.not_equal(new, lab))

    _, lab, _ = tf.while_loop(lambda i, lab, changed: tf.logical_and(changed, i < limit), body,
                              (tf.constant(0), labels, tf.constant(True)))
    return lab


def inner_probability_tf(probs):
    """In-graph twin of ``zoo.postprocess.config.inner_probability``: channels 1..C-2 added in channel order, one
    float32 addition at a time (the same bits as numpy), clipped to [0, 1]."""
    tf = _tf()
    inner = probs[..., 1]
    for c in range(2, probs.shape[-1] - 1):
        inner = inner + probs[..., c]
    return tf.clip_by_value(inner, 0.0, 1.0)


def inner_contour_instances_tf(probs, threshold: float = 0.5, radius=None, min_size: int = 0,
                               keep_orphan_contours: bool = True, max_iters: int = 1024):
    """In-graph twin of ``zoo.postprocess.instances.instances_from_inner_contour(inner, contour, grow="dilate")``
    (8-connected; Qu et al. 2019 sec. 2.2) on inner / contour probabilities [B, H, W, C] (channel 0 background,
    1..C-2 inner parts, C-1 contour): inner components (inner > threshold and > contour), those under ``min_size``
    dropped, dilated ``radius`` rounds (None: until stable) into the predicted nucleus area (inner or contour >
    threshold), then the orphan contour blobs numbered after them. Tested equal to the numpy function."""
    tf = _tf()
    p_in, p_c = inner_probability_tf(probs), probs[..., -1]
    inner = tf.logical_and(p_in > threshold, p_in > p_c)
    fg = tf.logical_or(inner, p_c > threshold)
    labels = _remove_small_tf(label_components(inner, max_iters), min_size)
    seeds = tf.cast(labels > 0, tf.int32)
    labels = dilate_labels_tf(labels, fg, radius, max_iters)
    if not keep_orphan_contours:
        return labels
    # predicted nucleus blobs that hold no (kept) inner part: their non-inner pixels become nuclei of their own
    blobs = label_components(fg, max_iters)
    blob_seeded = _lookup(_per_label_counts(blobs, seeds) > 0, blobs)
    orphan_mask = tf.logical_and(tf.logical_and(fg, tf.logical_not(inner)), tf.logical_not(blob_seeded))
    orphans = label_components(orphan_mask, max_iters)
    top = tf.reduce_max(labels, axis=[1, 2], keepdims=True)
    return tf.where(orphans > 0, orphans + top, labels)


def instance_types_tf(instances, probs, type_channels):
    """In-graph twin of ``zoo.inference.core``'s per-pixel type (first maximum over the type channels, as
    ``np.argmax``) and per-instance type (majority of the instance's pixels, ties to the smaller type, as
    ``zoo.metrics.labels.instance_classes``): ``(type_map [B, H, W]`` = each nucleus pixel's instance type, 0
    outside nuclei, ``instance_classes [B, M + 1]``, M the batch's largest label, index 0 unused = 0).
    type_channels: the spec's ``[(channel, type 1..K)]``."""
    tf = _tf()
    (c0, t0), rest = type_channels[0], type_channels[1:]
    best, types = probs[..., c0], tf.fill(tf.shape(instances), t0)
    for c, t in rest:  # strict > keeps the first maximum, as np.argmax
        better = probs[..., c] > best
        best = tf.where(better, probs[..., c], best)
        types = tf.where(better, t, types)
    k = max(t for _, t in type_channels) + 1
    m = tf.reduce_max(instances) + 1
    b = tf.shape(instances)[0]
    keys = (tf.range(b)[:, None, None] * m + instances) * k + types * tf.cast(instances > 0, tf.int32)
    counts = tf.reshape(tf.math.bincount(tf.reshape(keys, [-1]), minlength=b * m * k, maxlength=b * m * k,
                                         dtype=tf.int32), [b, m, k])
    counts = tf.concat([tf.zeros([b, m, 1], tf.int32), counts[:, :, 1:]], axis=2)  # type 0 never votes
    top = tf.reduce_max(counts, axis=2, keepdims=True)
    first = tf.reduce_min(tf.where(tf.equal(counts, top), tf.range(k)[None, None, :], k), axis=2)
    classes = tf.where(top[..., 0] > 0, first, 0)  # no voting pixel: 0
    classes = tf.concat([tf.zeros([b, 1], tf.int32), classes[:, 1:]], axis=1)
    return _lookup(classes, instances), classes


def nucleus_probability_tf(probs):
    """In-graph twin of ``zoo.postprocess.config.nucleus_probability``."""
    tf = _tf()
    if probs.shape[-1] == 2:
        return probs[..., 1]
    return tf.clip_by_value(1.0 - probs[..., 0], 0.0, 1.0)


# --------------------------------------------------------------------------- the serving module
def output_keys(spec) -> list[str]:
    """The outputs of the predict signatures of a model exported with ``spec`` (those ``_Predictor._outputs``
    returns): probabilities and class map; instances when the post-processing runs in the graph; per-instance
    classes and the type map when, besides, the model is typed."""
    if not spec.postprocess.in_graph:
        return list(OUTPUT_KEYS[:2])
    return list(OUTPUT_KEYS) + (list(TYPED_OUTPUT_KEYS) if spec.type_channels() else [])


class _Predictor:
    """The graph pieces shared by every signature (plain Python; the ExportArchive traces its methods)."""

    def __init__(self, model, spec, max_iters):
        from zoo.inference import forward_tf, stain_normalizer

        self.model, self.spec, self.max_iters = model, spec, max_iters
        self.stain = stain_normalizer(spec)
        self.divisor = spec.divisor
        self.forward = forward_tf(model, spec, self.stain)  # the one forward pass, as zoo.inference runs it

    def from_float(self, images):
        return self._outputs(self.forward(images))

    def from_uint8(self, images):
        return self._outputs(self.forward(images))

    def _outputs(self, probs):
        tf = _tf()
        outputs = {"probabilities": probs, "class_map": tf.argmax(probs, axis=-1, output_type=tf.int32)}
        pp = self.spec.postprocess
        if pp.in_graph:  # the TF twin of the spec's method (threshold; inner_contour with grow: dilate)
            from zoo.postprocess.config import method_options

            opts = {**method_options(pp.method), **dict(pp.params)}
            if pp.method == "inner_contour":
                inst = inner_contour_instances_tf(probs, opts["threshold"], opts["radius"], opts["min_size"],
                                                  opts["keep_orphan_contours"], self.max_iters)
            else:
                inst = threshold_components_tf(nucleus_probability_tf(probs), opts["threshold"], opts["min_size"],
                                               self.max_iters)
            outputs.update(instances=inst, num_instances=tf.reduce_max(inst, axis=[1, 2]))
            type_channels = self.spec.type_channels()
            if type_channels:
                type_map, classes = instance_types_tf(inst, probs, type_channels)
                outputs.update(instance_classes=classes, type_map=type_map)
        return outputs


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


def _next_version(out_dir: str) -> int:
    versions = [int(v) for v in os.listdir(out_dir) if v.isdigit()] if os.path.isdir(out_dir) else []
    return max(versions, default=0) + 1


def new_version_dir(out_dir: str, version: int | None = None) -> tuple[int, str]:
    """(version, out_dir/<version>) for a new SavedModel version: ``version`` or one more than the largest present;
    a one-line ConfigError for a non-positive or existing version (versions are immutable)."""
    os.makedirs(out_dir, exist_ok=True)
    version = _next_version(out_dir) if version is None else int(version)
    if version < 1:
        raise ConfigError(f"version {version}: TF Serving versions are positive integers")
    final = os.path.join(out_dir, str(version))
    if os.path.exists(final):
        raise ConfigError(f"{final}: version {version} already exists (versions are immutable; pick another)")
    return version, final


def export(model, out_dir: str, version: int | None = None, *, spec=None, max_iters: int = 1024,
           metadata: dict | None = None) -> str:
    """Write ``model`` as ``out_dir/<version>/`` (a SavedModel TF Serving reads) and return that path.

    model: keras.Model, float32 [B, H, W, 3] in [0, 1] -> softmax [B, H, W, C]. spec: its ``zoo.inference
    .InferenceSpec`` (default: ``zoo.inference.default_spec(model)``): the graph applies the spec's stain
    normalisation, pads to ``spec.divisor`` and crops back, and computes instances in-graph when the spec's
    post-processing has a TF twin; the spec is stored in ``assets/histozoo.json`` and served by the
    ``histozoo_spec`` signature. version: a positive int, default one more than the largest present; an existing
    version is never overwritten. max_iters: bound on the in-graph label propagation. metadata: extra JSON-able
    entries for ``assets/histozoo.json``. The version folder is written under a temporary name and renamed
    (``zoo.atomic.atomic_dir``), so a crash leaves no partial version. A GAN model (zoo.models.gan) is written by
    serving.cluster.export_cluster_model instead (crops -> cluster probabilities, cluster, embedding; no spec), so
    ``histozoo export`` and the TFX Trainer (pipelines/trainer/module.py) export it the same way.
    """
    if hasattr(model, "sample_grid"):  # a GAN model (zoo.models.gan): crops -> clusters + embedding, its own export
        from serving.cluster import export_cluster_model

        return export_cluster_model(model, out_dir, version, metadata=metadata)
    tf = _tf()
    import keras

    from zoo.atomic import atomic_dir, write_json
    from zoo.inference import default_spec, model_channels

    if max_iters < 1:
        raise ConfigError(f"max_iters {max_iters}: expected >= 1")
    spec = spec if spec is not None else default_spec(model)
    num_classes = model_channels(model, spec.divisor)
    if num_classes != spec.num_channels:
        raise ConfigError(f"model {model.name!r} has {num_classes} output channels; its spec names "
                          f"{spec.num_channels}: {list(spec.channels)}")
    version, final = new_version_dir(out_dir, version)

    pred = _Predictor(model, spec, max_iters)
    archive = keras.export.ExportArchive()
    archive.track(model)
    if pred.stain is not None and isinstance(pred.stain, tf.Module):
        archive.track(pred.stain)
    img = lambda dt: [tf.TensorSpec([None, None, None, 3], dt, name="images")]
    strings = lambda name: [tf.TensorSpec([None], tf.string, name=name)]
    archive.add_endpoint("serving_default", lambda images: pred.from_float(images), img(tf.float32))
    archive.add_endpoint("predict_images", lambda images: pred.from_uint8(images), img(tf.uint8))
    archive.add_endpoint("predict_bytes", lambda image_bytes: pred.from_uint8(
        decode_same_size(image_bytes, _decode_image, "images")), strings("image_bytes"))
    archive.add_endpoint("predict_examples", lambda examples: pred.from_uint8(
        decode_same_size(examples, _decode_example, "examples")), strings("examples"))
    spec_json = spec.to_json()
    archive.add_endpoint(SPEC_SIGNATURE, lambda unused: {"spec": tf.constant(spec_json)},
                         [tf.TensorSpec([None], tf.int32, name="unused")])

    outputs = output_keys(spec)
    meta = dict(metadata or {})
    meta.setdefault("model_name", model.name)
    if "config" not in meta:
        try:
            meta["config"] = model.get_config()
        except Exception:  # a model without get_config still exports; its config is simply not recorded
            meta["config"] = None
    meta.update(version=version, spec=spec.to_dict(), num_classes=num_classes, max_iters=max_iters,
                instances_in_graph=spec.postprocess.in_graph,
                signatures={k: {"input": v[0], "dtype": v[1]} for k, v in SIGNATURES.items()},
                outputs=outputs, exported_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    with atomic_dir(final) as tmp:
        archive.write_out(tmp, verbose=False)
        write_json(os.path.join(tmp, "assets", METADATA_ASSET), meta, indent=2, default=str)
    return final


def read_metadata(version_dir: str) -> dict:
    """The ``assets/histozoo.json`` of an exported version folder."""
    with open(os.path.join(version_dir, "assets", METADATA_ASSET)) as f:
        return json.load(f)


def read_spec(version_dir: str):
    """The InferenceSpec stored in an exported version folder."""
    from zoo.inference import InferenceSpec

    path = os.path.join(version_dir, "assets", METADATA_ASSET)
    return InferenceSpec.from_dict(read_metadata(version_dir).get("spec") or {}, path)
