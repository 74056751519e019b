"""THE inference function ``predict`` (resampling, post-processing, per-instance class) and the local model loader."""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Optional

import numpy as np

from zoo.errors import ConfigError, DataError
from zoo.inference.forward import as_forward, forward_image
from zoo.inference.spec import SPEC_FILE, InferenceSpec, MPP_TOLERANCE, default_spec

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


def resize(a: np.ndarray, shape: tuple, order: int) -> np.ndarray:
    """``a`` (H, W[, C]) resized to ``shape`` (order 0 nearest, 1 bilinear; anti-aliased when shrinking), values kept."""
    from skimage.transform import resize

    down = shape[0] < a.shape[0]
    return resize(a, shape + a.shape[2:], order=order, mode="edge", preserve_range=True,
                  anti_aliasing=bool(order > 0 and down))


def to_model_resolution(spec: InferenceSpec, image: np.ndarray, mpp: Optional[float]) -> np.ndarray:
    """A uint8 image of ``mpp`` µm/px resampled (bilinear, anti-aliased when shrinking) to the spec's resolution; the
    image itself when no resampling is needed (:func:`resample_factor`)."""
    f = resample_factor(spec, mpp)
    if f == 1.0:
        return image
    size = (max(1, int(round(image.shape[0] * f))), max(1, int(round(image.shape[1] * f))))
    return np.clip(np.round(resize(image, size, 1)), 0, 255).astype(np.uint8)


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
    x = to_model_resolution(spec, img, mpp)
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

        probs = resize(probs, (h, w), 1).astype(np.float32)
        inst = relabel_sequential(resize(inst, (h, w), 0).astype(np.int32))
        types = None if types is None else resize(types, (h, w), 0).astype(np.int64)
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
