"""What every histozoo segmentation model shares: the frozen config dataclass, input normalisation, padding to the
model's stride, the float32 softmax head and Keras (de)serialisation.

The contract (zoo.training and zoo.evaluation rely on it):

- input: float32 ``[B, H, W, 3]`` RGB in ``[0, 1]``; the model normalises inside itself (``normalization``:
  ``"caffe"`` = BGR, 0-255, minus the ImageNet mean, what ``keras.applications.VGG16`` ImageNet weights expect;
  ``"imagenet"`` = per-channel ImageNet mean / std on ``[0, 1]``, what keras-hub ResNet presets expect; ``"none"``).
- any ``H, W``: the model pads the image at the bottom/right by symmetric reflection to the next multiple of
  ``model.min_divisor`` (its total stride: 32 for the VGG16 networks, ``2**depth`` for the U-Net, 1 for PangNet) and
  crops the output back, so the output always has the input's size. Padding is a no-op for divisible sizes (training
  patches); each padded side must not exceed the image side (true for any image at least ``min_divisor`` wide).
- output: float32 softmax probabilities ``[B, H, W, num_classes]``, ``num_classes >= 2`` (binary = 2).
- ``get_config()`` is the config dict (``model.config.to_dict()``) plus Keras' ``name`` / ``trainable`` / ``dtype``;
  ``from_config`` rebuilds the model. ``from_config`` never loads pretrained encoder weights (when a saved model is
  loaded its own weights follow; no download, no dependency on the weights file of the machine that trained it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Optional

import keras
import tensorflow as tf

from zoo.errors import ConfigError

NORMALIZATIONS = ("caffe", "imagenet", "none")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB on [0, 1] (torchvision / keras-hub ImageNet presets)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # keras.applications.imagenet_utils "caffe" mode, 0-255 BGR
_KERAS_KEYS = ("name", "trainable", "dtype")


# ----------------------------------------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base of every model config: a frozen dataclass validated at construction (``validate`` raises ConfigError),
    built from plain dicts (JSON/YAML) with ``from_dict`` and written back with ``to_dict``."""

    model_name: ClassVar[str] = "model"  # set by zoo.models.register to the registered name

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check every field; raise ConfigError naming the model, the option and the problem."""

    # ---- plain-dict round trip
    @classmethod
    def from_dict(cls, data: Optional[Mapping[str, Any] | "ModelConfig"] = None) -> "ModelConfig":
        """Config from a dict (unknown keys are an error), from an instance of this class, or defaults for None."""
        if data is None:
            return cls()
        if isinstance(data, cls):
            return data
        if isinstance(data, ModelConfig):
            raise ConfigError(f"model {cls.model_name!r}: got a {type(data).__name__}, expected {cls.__name__}")
        if not isinstance(data, Mapping):
            raise ConfigError(f"model {cls.model_name!r}: config must be a mapping of options, "
                              f"got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"model {cls.model_name!r}: unknown option(s) {', '.join(map(repr, unknown))} "
                              f"(known: {', '.join(sorted(known))})")
        return cls(**{k: cls._coerce(k, v) for k, v in data.items()})

    @classmethod
    def _coerce(cls, key: str, value: Any) -> Any:
        """Plain value -> field value (lists from JSON/YAML become tuples; override for nested configs)."""
        return tuple(value) if isinstance(value, list) else value

    def to_dict(self) -> dict:
        """JSON-friendly dict (tuples -> lists, nested configs -> dicts) that ``from_dict`` reads back."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return self.from_dict({**self.to_dict(), **changes})

    # ---- validation helpers
    def _fail(self, option: str, problem: str):
        raise ConfigError(f"model {self.model_name!r}: option {option!r} {problem}")

    def _check_int(self, option: str, minimum: int) -> None:
        v = getattr(self, option)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            self._fail(option, f"must be an integer >= {minimum}, got {v!r}")

    def _check_float(self, option: str, low: float, high: float, *, low_open: bool = False,
                     high_open: bool = False) -> None:
        v = getattr(self, option)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
        if not ok:
            lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
            self._fail(option, f"must be a number in {lo}{low}, {high}{hi}, got {v!r}")

    def _check_choice(self, option: str, choices: tuple) -> None:
        v = getattr(self, option)
        if v not in choices:
            self._fail(option, f"must be one of {', '.join(map(repr, choices))}, got {v!r}")

    def _check_bool(self, option: str) -> None:
        v = getattr(self, option)
        if not isinstance(v, bool):
            self._fail(option, f"must be true or false, got {v!r}")

    def _check_encoder_weights(self, option: str = "encoder_weights", *, full_width: bool = True) -> None:
        """``"imagenet"``, ``None`` (random init) or a path to a local weights file (.h5 / .weights.h5 / .keras);
        pretrained weights need the encoder at its published width."""
        v = getattr(self, option)
        if v is None:
            return
        if not isinstance(v, str) or not v:
            self._fail(option, f"must be 'imagenet', null or a weights file path, got {v!r}")
        if v != "imagenet" and not v.endswith((".h5", ".keras")):
            self._fail(option, f"must be 'imagenet', null or a .h5 / .weights.h5 / .keras file, got {v!r}")
        if not full_width:
            self._fail(option, f"needs the encoder at full width (width_multiplier 1.0) to load {v!r}")


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):  # ModelConfig and nested specs such as EnsembleMember
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def scaled(filters: int, width_multiplier: float) -> int:
    """``filters * width_multiplier`` rounded, at least 1 (the width knob of the VGG16 networks)."""
    return max(1, int(round(filters * width_multiplier)))


# ------------------------------------------------------------------------------------------------------ input side
def normalize_input(x, mode: str):
    """[0, 1] RGB -> the network's input space (see module docstring); constants only, no weights."""
    if mode == "none":
        return x
    if mode == "imagenet":
        mean = tf.constant(IMAGENET_MEAN, dtype=x.dtype)
        std = tf.constant(IMAGENET_STD, dtype=x.dtype)
        return (x - mean) / std
    if mode == "caffe":
        bgr = x[..., ::-1] * tf.constant(255.0, dtype=x.dtype)
        return bgr - tf.constant(CAFFE_MEAN_BGR, dtype=x.dtype)
    raise ConfigError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {mode!r}")


def pad_to_multiple(x, divisor: int):
    """Pad ``[B, H, W, C]`` at the bottom/right (symmetric reflection; white for images smaller than the padding)
    to multiples of ``divisor``.
    Returns the padded tensor and the original (H, W) as scalar tensors, for ``crop_to``."""
    shape = tf.shape(x)
    h, w = shape[1], shape[2]
    if divisor == 1:
        return x, h, w
    ph, pw = (-h) % divisor, (-w) % divisor
    pads = [[0, 0], [0, ph], [0, pw], [0, 0]]
    # symmetric reflection needs the padding to fit inside the image; smaller images are padded with 1.0 (white)
    x = tf.cond(tf.logical_and(ph <= h, pw <= w), lambda: tf.pad(x, pads, mode="SYMMETRIC"),
                lambda: tf.pad(x, pads, constant_values=1.0))
    return x, h, w


def crop_to(x, h, w):
    """Undo ``pad_to_multiple``."""
    return x[:, :h, :w, :]


def load_encoder_weights(encoder: keras.Model, source: str, what: str, load) -> None:
    """Copy weights into ``encoder`` from the local file ``source`` (a model config's ``encoder_weights``):
    ``load(encoder, path, saved)`` does the model-specific copy, with ``saved`` the Keras model loaded from a ``.keras``
    file (zoo models registered) or None for a weights file. A missing file, or any failure of the copy (h5py and Keras
    say "wrong file" in many ways), is a one-line DataError naming the file and ``what`` it should have held."""
    import os

    from zoo.errors import DataError

    path = os.path.expanduser(source)
    if not os.path.isfile(path):
        raise DataError(path, "encoder weights file not found")
    try:
        saved = None
        if path.endswith(".keras"):
            import zoo.models  # noqa: F401  (registers the zoo's models for the load)

            saved = keras.saving.load_model(path, compile=False)
        load(encoder, path, saved)
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(path, f"not weights of this {what}: {first}") from None


# ------------------------------------------------------------------------------------------------------------ model
class SegmentationModel(keras.Model):
    """Base of the registered models: normalise -> pad to ``min_divisor`` -> ``forward`` (logits) -> float32
    softmax -> crop. Subclasses set ``config_class``, create their layers in ``__init__`` and implement
    ``forward(x, training)``; models whose output is already probabilities (the ensemble) override ``call``."""

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    registry_name: ClassVar[str] = ""  # set by zoo.models.register

    def __init__(self, config: Optional[Mapping | ModelConfig] = None, *, load_pretrained: bool = True, **kwargs):
        cfg = self.config_class.from_dict(config)
        super().__init__(**kwargs)
        self._config = cfg
        self._load_pretrained = bool(load_pretrained)

    @property
    def config(self) -> ModelConfig:
        """The validated, frozen config this model was built from."""
        return self._config

    @property
    def num_classes(self) -> int:
        return self._config.num_classes

    @property
    def min_divisor(self) -> int:
        """Total stride: inputs whose H and W are multiples of it are not padded."""
        return 1

    def build(self, input_shape):
        """Create every weight by running the model once, eagerly, on one zero image of ``min_divisor`` pixels
        square (weights do not depend on H, W); ``model.build((None, None, None, 3))`` works."""
        if self.built:
            return
        side = self.min_divisor
        with tf.init_scope():
            self.call(tf.zeros((1, side, side, input_shape[-1] or 3)), training=False)
        self.built = True

    def forward(self, x, training=None):
        raise NotImplementedError

    def call(self, inputs, training=None):
        x = keras.ops.cast(inputs, self.compute_dtype)
        x = normalize_input(x, self._config.normalization)
        x, h, w = pad_to_multiple(x, self.min_divisor)
        logits = keras.ops.cast(self.forward(x, training=training), "float32")
        probs = keras.ops.softmax(logits, axis=-1)
        return crop_to(probs, h, w)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_classes,)

    # ---- serialisation
    def get_config(self) -> dict:
        return {**self._config.to_dict(), "name": self.name, "trainable": self.trainable,
                "dtype": keras.dtype_policies.serialize(self.dtype_policy)}

    @classmethod
    def from_config(cls, config: dict) -> "SegmentationModel":
        config = dict(config)
        keras_kwargs = {k: config.pop(k) for k in _KERAS_KEYS if k in config}
        if isinstance(keras_kwargs.get("dtype"), dict):
            keras_kwargs["dtype"] = keras.dtype_policies.deserialize(keras_kwargs["dtype"])
        return cls(config, load_pretrained=False, **keras_kwargs)

