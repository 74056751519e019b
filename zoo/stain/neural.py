"""Neural stain normalizers: Yuan & Suh's colorization CNN (``colorization``) and Bhatia's ColorNormNet
(``colornormnet``), usable wherever a classical method is (``get_normalizer``, ``histozoo normalize``, the input
layer's ``stain`` option, an InferenceSpec's ``stain`` and hence the exported serving graph).

    norm = stain.get_normalizer("colorization", model="runs/colorization/checkpoints/last.keras").fit(target)
    out = norm.transform(images)              # uint8 in, uint8 out, like every zoo.stain method
    norm = stain.get_normalizer("colornormnet", model="runs/colornormnet")   # no target: the training domain is it
    norm.fit()

The networks are zoo.models.colorization's. ``model`` is a ``.keras`` file or a training run folder (its
``checkpoints/best.keras``, else ``last.keras``). Colorization's fitted parameter is the target image's 256-d
global feature vector (Yuan & Suh Fig. 6: stain transfer = the target's global features fused with the source's
low-level features); ColorNormNet has none (its target style is the domain it was trained on, Bhatia ch. 6; ``fit``
takes no target, or ignores one). Saved JSON: the method, the model path and the fitted vector.

Robustness, as the classical methods (zoo.stain.base): a tile with too little tissue (the Macenko OD rule) is returned
unchanged with ``fallback == "no_tissue"``; a tile whose output is not finite is returned unchanged with
``"degenerate"``; no NaN ever leaves a transform. The normalizer is a ``tf.Module`` holding the network, so an
exported SavedModel carries its weights. Transforms run as a ``tf.function`` without XLA (``jit`` is ignored:
compiling a conv net per tile size costs more than it saves on CPU).
"""

from __future__ import annotations

import os

import numpy as np

from zoo.errors import ConfigError, DataError
from zoo.stain.base import (FALLBACK_DEGENERATE, FALLBACK_NONE, FALLBACK_NO_TISSUE, StainNormalizer,
                            check_rgb_uint8, optical_density, register, require_target_tissue, tissue_fallback,
                            tissue_mask, to_uint8)

_MODULE_CLASSES: dict = {}


def resolve_model_path(uri: str | os.PathLike) -> str:
    """``.keras`` file, or a run folder -> its checkpoints/best.keras (else last.keras). DataError otherwise."""
    path = os.path.expanduser(os.fspath(uri))
    if os.path.isdir(path):
        for name in ("best.keras", "last.keras"):
            p = os.path.join(path, "checkpoints", name)
            if os.path.isfile(p):
                return p
        raise DataError(path, "run folder has no checkpoints/best.keras or checkpoints/last.keras")
    if not os.path.isfile(path):
        raise DataError(path, "no such model file or run folder")
    if not path.endswith(".keras"):
        raise DataError(path, "expected a .keras model file or a training run folder")
    return path


def load_network(uri: str | os.PathLike, registry_name: str):
    """The trained zoo.models network at ``uri`` (resolve_model_path); DataError unless it is ``registry_name``."""
    import keras

    import zoo.models  # noqa: F401  (registers the networks with Keras)

    path = resolve_model_path(uri)
    try:
        net = keras.saving.load_model(path, compile=False)
    except Exception as err:  # noqa: BLE001 — Keras says "wrong file" in many ways
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(path, f"not a loadable Keras model: {first}") from None
    if getattr(net, "registry_name", "") != registry_name:
        raise DataError(path, f"holds a {getattr(net, 'registry_name', '') or type(net).__name__} model, "
                              f"not {registry_name}")
    return net


def _module_class(cls):
    """``cls`` made a tf.Module too (created on first use, so importing zoo.stain does not import TensorFlow)."""
    import tensorflow as tf

    if issubclass(cls, tf.Module):
        return cls
    if cls not in _MODULE_CLASSES:
        _MODULE_CLASSES[cls] = type(cls.__name__, (cls, tf.Module), {"__module__": cls.__module__,
                                                                    "__doc__": cls.__doc__})
    return _MODULE_CLASSES[cls]


class NeuralNormalizer(StainNormalizer):
    """Shared part: the network, the tissue rule, the fallback, the tf.function transform."""

    _config_keys = ("model",)
    network = ""  # the zoo.models registry name of the network

    def __new__(cls, *args, **kwargs):
        return object.__new__(_module_class(cls))

    def __init__(self, *, model: str | os.PathLike = "", jit: bool = True, **kwargs):
        import tensorflow as tf

        tf.Module.__init__(self, name=self.name)
        super().__init__(jit=False, **kwargs)
        if not model:
            raise ConfigError(f"{self.name}: needs model=<.keras file or training run folder> (--model)")
        self.model = os.fspath(model)
        self.net = load_network(self.model, self.network)

    def _net_output(self, x, params):
        """float RGB [B, H, W, 3] in [0, 1] -> normalized float RGB in [0, 1]."""
        raise NotImplementedError

    def _tf_core(self, images, params):
        import tensorflow as tf

        b = tf.shape(images)[0]
        x = tf.cast(images, tf.float32)
        od = tf.reshape(optical_density(x, self.io), [b, -1, 3])
        no_tissue, frac = tissue_fallback(tissue_mask(od, self.beta), self.min_tissue_fraction,
                                          self.min_tissue_pixels)
        y = tf.cast(self._net_output(x / 255.0, params), tf.float32)
        bad = ~tf.reduce_all(tf.math.is_finite(y), axis=[1, 2, 3])
        y = tf.where(tf.math.is_finite(y), y, 0.0)
        out = to_uint8(y * 255.0)
        code = tf.where(no_tissue, FALLBACK_NO_TISSUE, tf.where(bad, FALLBACK_DEGENERATE, FALLBACK_NONE))
        keep = (code != FALLBACK_NONE)[:, None, None, None]
        return tf.where(keep, images, out), code, frac


@register("colorization")
class ColorizationNormalizer(NeuralNormalizer):
    """Yuan & Suh's neural stain transfer (sec. 3.1, Fig. 6): the source's luminance and low-level features, the
    target's 256-d global feature vector (the fitted parameter ``target_features``)."""

    network = "colorization"
    _param_keys = ("target_features",)

    def _estimate_target(self, target: np.ndarray) -> dict:
        import tensorflow as tf

        od = tf.reshape(optical_density(tf.constant(target[None], tf.float32), self.io), [1, -1, 3])
        no_tissue, frac = tissue_fallback(tissue_mask(od, self.beta), self.min_tissue_fraction,
                                          self.min_tissue_pixels)
        require_target_tissue(self.name, no_tissue[0], frac[0])
        g = self.net.global_features(tf.constant(target[None], tf.float32) / 255.0)
        return {"target_features": g.numpy()[0]}

    def _net_output(self, x, params):
        return self.net.transfer(x, params["target_features"])


@register("colornormnet")
class ColorNormNetNormalizer(NeuralNormalizer):
    """Bhatia's ColorNormNet (ch. 6): the network maps a tile to its training domain's stain; nothing to fit."""

    network = "colornormnet"
    _param_keys = ()

    def fit(self, target=None) -> "ColorNormNetNormalizer":
        """Nothing to estimate (the target style is the network's training domain); a given target is checked and
        otherwise ignored."""
        if target is not None:
            check_rgb_uint8(target, "target")
        return self.set_params({})

    def _estimate_target(self, target: np.ndarray) -> dict:
        return {}

    def _net_output(self, x, params):
        return self.net(x, training=False)


def needs_target(method: str) -> bool:
    """Whether ``method`` is fitted to a target image (every method but colornormnet)."""
    return method != "colornormnet"
