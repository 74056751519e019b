"""The model's contract (``InferenceSpec``) and THE inference function (``predict``).

Every consumer of a trained model goes through here: ``zoo.evaluation.evaluate``, ``serving.export`` (which writes the
spec into the SavedModel), ``serving.client`` / ``histozoo predict`` (which run ``predict`` with the served model's
probabilities), the TFX evaluator and, later, whole slides. What is served is therefore exactly what was scored.

The spec (TIAToolbox's IOConfig and StarDist's Config play the same role there) says:

- ``mpp``: the microns per pixel the model works at. An image of another known resolution is resampled to it, the
  instances are made at the model's resolution (post-processing parameters are in the model's pixels), and the outputs
  are resampled back to the image's own grid (probabilities bilinear, instances and classes nearest). 0 = unknown:
  images are used as they come.
- ``divisor``: inputs are padded at the bottom/right to a multiple of it (``zoo.models.base.pad_to_multiple``:
  symmetric reflection, white for images smaller than the padding) and the outputs cropped back.
- ``channels``: the name of each output channel (``background``, ``nucleus`` | ``interior``, ``boundary`` |
  ``inner:<type>``..., ``contour``) and ``class_names``: the nucleus type names 1..K from the records'
  ``meta/class_names`` (``()`` = untyped).
- ``stain``: the fitted stain normalizer the model was trained with (``StainNormalizer.to_json()``) or None.
- ``postprocess``: the typed :class:`zoo.postprocess.config.PostprocessConfig` (``auto`` is resolved when the spec is
  made, so the spec states the method that runs).

It is written at training time into ``<run>/checkpoints/spec.json`` (beside ``last.keras``), into the logged MLflow
model's metadata (``histozoo_spec``) and into the SavedModel (``assets/histozoo.json`` and the ``histozoo_spec``
signature). ``zoo.training.tracking.load`` is the one model loader (a ``.keras`` file, a run folder, an MLflow run
id, ``runs:/`` or ``models:/`` URI -> model + spec); its local half is :func:`load_local`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from zoo.errors import ConfigError, DataError
from zoo.postprocess.config import PostprocessConfig

SPEC_FILE = "spec.json"
SPEC_FORMAT = "histozoo.inference_spec"
SPEC_VERSION = 1
MLFLOW_METADATA_KEY = "histozoo_spec"
MPP_TOLERANCE = 0.02  # relative: resolutions closer than 2 % are treated as equal (no resampling)


@dataclasses.dataclass(frozen=True)
class InferenceSpec:
    """A trained model's contract; see the module docstring for each field.

    model: the registered zoo model name (informational).  mpp: µm/px the model works at (0 = unknown).
    divisor: padding multiple.  tile_size: 0 = whole images in one pass; else images larger than it run in tiles
    overlapping by tile_overlap pixels, averaged (whole-slide inference tiles at this size too).
    channels: output channel names.  class_names: nucleus type names 1..K.  stain: fitted normalizer JSON or None.
    postprocess: PostprocessConfig (resolved, never ``auto``).
    """

    channels: tuple = ("background", "nucleus")
    class_names: tuple = ()
    mpp: float = 0.0
    divisor: int = 32
    tile_size: int = 0
    tile_overlap: int = 32
    stain: Optional[dict] = None
    postprocess: PostprocessConfig = dataclasses.field(default_factory=PostprocessConfig)
    model: str = ""

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(str(c) for c in self.channels))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if len(self.channels) < 2:
            raise ConfigError(f"spec.channels: a model has at least 2 output channels, got {list(self.channels)}")
        if not isinstance(self.mpp, (int, float)) or isinstance(self.mpp, bool) or self.mpp < 0:
            raise ConfigError(f"spec.mpp must be a number >= 0 (0 = unknown), got {self.mpp!r}")
        object.__setattr__(self, "mpp", float(self.mpp))
        for k in ("divisor", "tile_size", "tile_overlap"):
            v = getattr(self, k)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < (1 if k == "divisor" else 0):
                raise ConfigError(f"spec.{k} must be an integer >= {1 if k == 'divisor' else 0}, got {v!r}")
        if self.tile_size and not self.tile_overlap < self.tile_size:
            raise ConfigError(f"spec.tile_overlap must be smaller than tile_size, got {self.tile_overlap} >= "
                              f"{self.tile_size}")
        if self.stain is not None and not isinstance(self.stain, Mapping):
            raise ConfigError(f"spec.stain must be a fitted stain normalizer's JSON or null, got {self.stain!r}")
        pp = PostprocessConfig.from_dict(self.postprocess).resolve(len(self.channels))
        object.__setattr__(self, "postprocess", pp)
        for name in self.type_channel_names():
            if name not in self.class_names:
                raise ConfigError(f"spec.channels names type {name!r}, which is not in class_names "
                                  f"{list(self.class_names)}")

    # -------------------------------------------------------------------------------------- channels and types
    @property
    def num_channels(self) -> int:
        return len(self.channels)

    def type_channel_names(self) -> list[str]:
        return [c.split(":", 1)[1] for c in self.channels if c.startswith(("inner:", "type:"))]

    def type_channels(self) -> list[tuple[int, int]]:
        """[(channel index, nucleus type 1..K)] of the channels that carry a nucleus type."""
        out = []
        for i, c in enumerate(self.channels):
            if c.startswith(("inner:", "type:")):
                out.append((i, self.class_names.index(c.split(":", 1)[1]) + 1))
        return out

    # -------------------------------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        return {"format": SPEC_FORMAT, "version": SPEC_VERSION, "model": self.model, "mpp": self.mpp,
                "divisor": int(self.divisor), "tile_size": int(self.tile_size),
                "tile_overlap": int(self.tile_overlap), "channels": list(self.channels),
                "class_names": list(self.class_names), "stain": self.stain,
                "postprocess": self.postprocess.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "spec") -> "InferenceSpec":
        if not isinstance(d, Mapping) or d.get("format") != SPEC_FORMAT:
            raise DataError(source, f"not a histozoo inference spec (format != {SPEC_FORMAT!r})")
        if d.get("version") != SPEC_VERSION:
            raise DataError(source, f"unsupported inference spec version {d.get('version')!r} "
                                    f"(this histozoo reads {SPEC_VERSION})")
        known = {f.name for f in dataclasses.fields(cls)}
        body = {k: v for k, v in d.items() if k not in ("format", "version")}
        unknown = sorted(set(body) - known)
        if unknown:
            raise DataError(source, f"unknown inference spec keys {unknown}")
        try:
            return cls(**body)
        except ConfigError as e:
            raise DataError(source, str(e)) from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def save(self, path: str) -> str:
        from zoo.atomic import write_json

        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str) -> "InferenceSpec":
        from zoo.atomic import read_json

        return cls.from_dict(read_json(path, "JSON inference spec"), path)

    def replace(self, **changes) -> "InferenceSpec":
        return dataclasses.replace(self, **changes)

    def override(self, changes: Mapping[str, Any], say: Callable[[str], None] | None = None) -> "InferenceSpec":
        """The spec with ``changes`` applied (a CLI flag overriding a field), each change reported in one line."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown inference spec fields {unknown}")
        say = say or (lambda m: print(m, file=sys.stderr))
        for k, v in changes.items():
            old = getattr(self, k)
            shown_old = old.to_dict() if isinstance(old, PostprocessConfig) else old
            shown_new = v.to_dict() if isinstance(v, PostprocessConfig) else v
            say(f"histozoo: overriding the model's inference spec: {k} {shown_old!r} -> {shown_new!r}")
        return dataclasses.replace(self, **changes)


def channel_names(num_channels: int, target: str = "", class_names: Sequence[str] = ()) -> tuple:
    """The output channel names of a model trained on ``target`` (zoo.data.targets) with ``num_channels`` outputs."""
    if num_channels == 2:
        return ("background", "nucleus")
    if target == "inner_contour" and class_names and num_channels == len(class_names) + 2:
        return ("background", *[f"inner:{c}" for c in class_names], "contour")
    if target == "inner_contour":
        return ("background", "inner", "contour") + tuple(f"channel_{i}" for i in range(3, num_channels))
    return ("background", "interior", "boundary") + tuple(f"channel_{i}" for i in range(3, num_channels))


# ------------------------------------------------------------------------------------------- data properties
def describe_data(source, split: str = "train", fold: Optional[int] = None) -> tuple[tuple, float]:
    """(class_names, mpp) of a built data folder or shard list: the records' ``meta/class_names`` and the median of
    their non-zero ``meta/mpp`` (0.0 when none is known). Reads only the small meta features."""
    import tensorflow as tf

    from zoo.data import records

    if isinstance(source, (list, tuple)):
        paths, keep = list(source), None
    else:
        from zoo.data.build import select

        paths, keep = select(source, split, fold)
    names: tuple = ()
    mpps = []
    for raw in records.iter_records(paths):
        ex = tf.train.Example.FromString(raw).features.feature
        if keep is not None and ex["meta/image_id"].bytes_list.value[0].decode() not in keep:
            continue
        if not names and ex["meta/class_names"].bytes_list.value:
            names = tuple(json.loads(ex["meta/class_names"].bytes_list.value[0].decode() or "[]"))
        v = ex["meta/mpp"].float_list.value
        if v and v[0] > 0:
            mpps.append(float(v[0]))
    return names, (round(float(np.median(mpps)), 4) if mpps else 0.0)


def model_channels(model, divisor: int) -> int:
    """The number of output channels, from one forward pass on a tiny image."""
    out = model(np.full((1, divisor, divisor, 3), 0.5, np.float32), training=False)
    if isinstance(out, dict):
        out = out["probabilities"]
    shape = tuple(out.shape)
    if len(shape) != 4 or shape[3] < 2:
        raise ConfigError(f"model {getattr(model, 'name', model)!r}: expected softmax output [B, H, W, C>=2], "
                          f"got {list(shape)}")
    return int(shape[3])


def model_divisor(model) -> int:
    d = getattr(model, "min_divisor", None)
    return int(d) if d else 32


def default_spec(model, postprocess=None, **fields) -> InferenceSpec:
    """A spec for a model that carries none (an old checkpoint, a plain Keras model): its channel count and divisor,
    mpp unknown, untyped; ``fields`` override."""
    divisor = fields.pop("divisor", None) or model_divisor(model)
    c = model_channels(model, divisor)
    fields.setdefault("channels", channel_names(c))
    return InferenceSpec(divisor=divisor, postprocess=PostprocessConfig.from_dict(postprocess),
                         model=fields.pop("model", getattr(model, "registry_name", "") or getattr(model, "name", "")),
                         **fields)


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


# ------------------------------------------------------------------------------------------- THE function
@dataclasses.dataclass
class Prediction:
    """probabilities (H, W, C) float32; instances (H, W) int32 0..N; classes (N + 1,) int64: the nucleus type of
    each instance id (index 0 unused; 0 = untyped / unknown); class_names: the spec's type names (type t is
    class_names[t - 1]); mpp: the resolution the outputs are on (the image's own)."""

    probabilities: np.ndarray
    instances: np.ndarray
    classes: np.ndarray
    class_names: tuple
    mpp: float

    @property
    def num_instances(self) -> int:
        return int(self.instances.max()) if self.instances.size else 0


def resample_factor(spec: InferenceSpec, mpp: Optional[float]) -> float:
    """How much to scale an image of ``mpp`` µm/px to reach the model's resolution (1.0 when either is unknown or
    they agree within ``MPP_TOLERANCE``)."""
    if not mpp or not spec.mpp:
        return 1.0
    f = float(mpp) / spec.mpp
    return 1.0 if abs(f - 1.0) <= MPP_TOLERANCE else f


def _resize(a: np.ndarray, shape: tuple, order: int) -> np.ndarray:
    from skimage.transform import resize

    down = shape[0] < a.shape[0]
    return resize(a, shape + a.shape[2:], order=order, mode="edge", preserve_range=True,
                  anti_aliasing=bool(order > 0 and down))


def predict(model, spec: InferenceSpec, image: np.ndarray, mpp: Optional[float] = None,
            probabilities: Optional[np.ndarray] = None) -> Prediction:
    """THE inference function: one uint8 RGB image (H, W, 3) -> probabilities, instance map, per-instance class.

    model: a Keras model (run through :class:`KerasForward`) or a probability function (uint8 [B, H, W, 3] at the
    model's resolution -> [B, H, W, C]), e.g. a TF Serving client. mpp: the image's µm/px (None/0 = assume the
    model's). probabilities: skip the forward pass and post-process these (already at the model's resolution).
    """
    from zoo.postprocess.config import apply

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ConfigError(f"predict: expected a uint8 RGB image (H, W, 3), got shape {img.shape} dtype {img.dtype}")
    h, w = img.shape[:2]
    f = resample_factor(spec, mpp)
    x = img
    if f != 1.0:
        size = (max(1, int(round(h * f))), max(1, int(round(w * f))))
        x = np.clip(np.round(_resize(img, size, 1)), 0, 255).astype(np.uint8)
    if probabilities is None:
        probabilities = forward_image(as_forward(model, spec), spec, x)
    probs = np.asarray(probabilities, np.float32)
    if probs.shape[:2] != x.shape[:2] or probs.shape[2] != spec.num_channels:
        raise ConfigError(f"the model returned probabilities of shape {probs.shape} for an input of {x.shape[:2]}; "
                          f"the spec expects {spec.num_channels} channels {list(spec.channels)}")
    inst = apply(probs, spec.postprocess)
    types = _type_map(probs, spec)
    if f != 1.0:
        from zoo.postprocess.instances import relabel_sequential

        probs = _resize(probs, (h, w), 1).astype(np.float32)
        inst = relabel_sequential(_resize(inst, (h, w), 0).astype(np.int32))
        types = None if types is None else _resize(types, (h, w), 0).astype(np.int64)
    return Prediction(probs, inst, _instance_types(inst, types), spec.class_names,
                      float(mpp) if mpp else spec.mpp)


def _type_map(probs: np.ndarray, spec: InferenceSpec) -> Optional[np.ndarray]:
    """Per-pixel nucleus type (1..K) by argmax over the type channels, or None for an untyped model."""
    tc = spec.type_channels()
    if not tc:
        return None
    idx = np.array([i for i, _ in tc])
    types = np.array([t for _, t in tc], np.int64)
    return types[probs[..., idx].argmax(-1)]


def _instance_types(instances: np.ndarray, types: Optional[np.ndarray]) -> np.ndarray:
    n = int(instances.max()) if instances.size else 0
    if types is None or n == 0:
        return np.zeros(n + 1, np.int64)
    from zoo.metrics.instance import instance_classes

    out = np.zeros(n + 1, np.int64)
    out[1:] = instance_classes(np.where(instances > 0, types, 0), np.arange(1, n + 1), instances)
    return out


# ------------------------------------------------------------------------------------------- the one loader
@dataclasses.dataclass
class LoadedModel:
    model: Any
    spec: InferenceSpec
    source: str


def load_local(path: str, postprocess=None, default: bool = True) -> LoadedModel:
    """The local half of the one model loader (``zoo.training.tracking.load`` adds MLflow URIs): a ``.keras`` file
    (its ``spec.json`` beside it) or a run folder (``<run>/checkpoints/last.keras``) -> the Keras model and its
    InferenceSpec. A model saved without a spec gets :func:`default_spec` (``postprocess`` applies only then) and a
    one-line note, or None with ``default=False``."""
    import keras

    import zoo.models  # noqa: F401 — registers the zoo's models for deserialisation

    uri = os.fspath(path)
    if os.path.isdir(uri):
        for cand in (os.path.join(uri, "checkpoints", "last.keras"), os.path.join(uri, "last.keras")):
            if os.path.isfile(cand):
                return load_local(cand, postprocess, default)
        raise DataError(uri, "a folder without checkpoints/last.keras (give a .keras file or a training run folder)")
    if not os.path.isfile(uri):
        raise DataError(uri, "no such model file (expected a .keras file, a run folder, a run id, or runs:/... / "
                             "models:/...)")
    if not uri.endswith(".keras"):
        raise DataError(uri, "not a .keras file (expected a .keras file, a run folder, or an MLflow URI "
                             "runs:/... / models:/...)")
    try:
        model = keras.models.load_model(uri, compile=False)
    except Exception as e:  # noqa: BLE001 — a corrupt or foreign file: say which and why, in one line
        raise DataError(uri, f"cannot load the Keras model ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    spec_path = os.path.join(os.path.dirname(os.path.abspath(uri)), SPEC_FILE)
    if os.path.isfile(spec_path):
        return LoadedModel(model, InferenceSpec.load(spec_path), uri)
    if not default:
        return LoadedModel(model, None, uri)
    print(f"histozoo: note: {uri} has no {SPEC_FILE} beside it; using a default inference spec "
          "(mpp unknown, untyped)", file=sys.stderr)
    return LoadedModel(model, default_spec(model, postprocess), uri)
