"""Shared machinery of the classical stain normalizers: input checks, the tissue mask, histogram percentiles,
the fit / transform / save / load API and the method registry.

Every normalizer transforms with TensorFlow ops on a batch ``[B, H, W, 3]`` uint8 (``tf_transform``: plain ops,
no ``numpy_function``, so it can be traced into any ``tf.function`` or SavedModel). ``transform`` runs the very
same function, XLA-compiled by default (``jit=True``), and accepts numpy or tensors, one image or a batch.

Robustness: an image with too little tissue (fewer than ``max(min_tissue_pixels, min_tissue_fraction * H * W)``
pixels whose optical density is at least ``beta`` in every channel, the Macenko et al. 2009 tissue rule) is
returned unchanged and flagged ``fallback == "no_tissue"`` in the info; so is an image whose stain estimate is
degenerate (``"degenerate"``). No NaN ever leaves a transform.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from zoo import atomic
from zoo.errors import ConfigError, DataError
from zoo.registry import Registry
from zoo.stain.deconvolution import optical_density, to_uint8  # noqa: F401 (one definition each, re-exported)

FORMAT = "histozoo-stain-params"
VERSION = 1
_REGISTRY = Registry("stain method")

# Fallback codes in the info tensor (int32 per image) and their names in transform()'s per-image dicts.
FALLBACK_NONE, FALLBACK_NO_TISSUE, FALLBACK_DEGENERATE = 0, 1, 2
FALLBACK_NAMES = {FALLBACK_NONE: None, FALLBACK_NO_TISSUE: "no_tissue", FALLBACK_DEGENERATE: "degenerate"}


register = _REGISTRY.register  # @register("macenko") on a StainNormalizer subclass
available = _REGISTRY.available


def get_normalizer(name: str, **config) -> "StainNormalizer":
    """A new, unfitted normalizer by method name (``reinhard``, ``macenko``, ``vahadane``)."""
    return _REGISTRY.get(name)(**config)


# ----------------------------------------------------------------------------------------------- inputs
def check_rgb_uint8(image: Any, what: str = "image") -> np.ndarray:
    """A numpy ``(H, W, 3)`` uint8 image or raise ``ConfigError`` naming the problem."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ConfigError(f"{what}: expected uint8 RGB, got dtype {a.dtype}")
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ConfigError(f"{what}: expected shape (H, W, 3), got {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ConfigError(f"{what}: empty image {a.shape}")
    return a


def _as_batch(images):
    """-> (uint8 tensor [B, H, W, 3], was_single, was_numpy)."""
    import tensorflow as tf

    is_tensor = tf.is_tensor(images)
    if not is_tensor:
        images = np.asarray(images)
    dtype = images.dtype if is_tensor else images.dtype
    if (tf.as_dtype(dtype) if is_tensor else dtype) != (tf.uint8 if is_tensor else np.uint8):
        raise ConfigError(f"images: expected uint8 RGB, got dtype {dtype.name if is_tensor else dtype}")
    shape = tuple(images.shape)
    if len(shape) not in (3, 4) or shape[-1] != 3:
        raise ConfigError(f"images: expected shape (H, W, 3) or (B, H, W, 3), got {shape}")
    if any(s == 0 for s in shape[-3:-1]):
        raise ConfigError(f"images: empty image of shape {shape}")
    single = len(shape) == 3
    t = tf.convert_to_tensor(images)
    return (t[None] if single else t), single, not is_tensor


# --------------------------------------------------------------------------------------------- TF helpers
def tissue_mask(od, beta: float):
    """Pixels whose OD is at least ``beta`` in every channel (Macenko et al. 2009: transparent pixels excluded)."""
    import tensorflow as tf

    return tf.reduce_all(od >= beta, axis=-1)


def tissue_fallback(mask, min_fraction: float, min_pixels: int):
    """(no_tissue bool [B], tissue fraction [B]) for a mask [B, N]."""
    import tensorflow as tf

    m = tf.cast(mask, tf.float32)
    n = tf.reduce_sum(m, axis=1)
    total = tf.cast(tf.shape(mask)[1], tf.float32)
    need = tf.maximum(float(min_pixels), min_fraction * total)
    return n < need, n / total


def require_target_tissue(method: str, no_tissue, fraction) -> None:
    """The one no-tissue rule for a fit target, shared by every method (Reinhard, Macenko, Vahadane): a target
    that ``tissue_fallback`` flags has no stain to match, so fitting to it raises instead of normalising every
    tile towards background."""
    if bool(no_tissue):
        raise ConfigError(f"{method} target has no tissue (tissue fraction {float(fraction):.4f}); "
                          "choose a target tile with tissue")


def hist_percentiles(values, qs, weights=None, nbins: int = 65536):
    """Per-row percentiles ``[B, len(qs)]`` of ``values [B, N]`` (optionally ``weights`` 0/1), with numpy's
    linear rule ``rank = q/100 * (n - 1)``, read from a ``nbins`` histogram over each row's [min, max]
    (uniform within a bin), so the answer is within one bin width (range / 65536) of ``np.percentile``.
    A full sort of 10^6 values per image is ~50x slower on CPU; XLA-compilable (segment sum, no sort)."""
    import tensorflow as tf

    values = tf.convert_to_tensor(values, tf.float32)
    b = tf.shape(values)[0]
    big = tf.constant(3.0e38, tf.float32)
    if weights is None:
        w = tf.ones_like(values)
        lo, hi = tf.reduce_min(values, 1), tf.reduce_max(values, 1)
    else:
        w = tf.cast(weights, tf.float32)
        lo = tf.reduce_min(tf.where(w > 0, values, big), 1)
        hi = tf.reduce_max(tf.where(w > 0, values, -big), 1)
        lo = tf.where(lo > hi, tf.zeros_like(lo), lo)
        hi = tf.where(lo > hi, tf.zeros_like(hi), hi)
    width = tf.maximum(hi - lo, 1e-12) / nbins
    idx = tf.clip_by_value(tf.cast(tf.floor((values - lo[:, None]) / width[:, None]), tf.int32), 0, nbins - 1)
    seg = idx + tf.range(b)[:, None] * nbins
    counts = tf.reshape(tf.math.unsorted_segment_sum(tf.reshape(w, [-1]), tf.reshape(seg, [-1]), b * nbins),
                        [b, nbins])
    cum = tf.cumsum(counts, axis=1)
    n = cum[:, -1]
    out = []
    for q in qs:
        rank = q / 100.0 * tf.maximum(n - 1.0, 0.0)  # 0-based rank of the wanted order statistic
        j = tf.reduce_sum(tf.cast(cum <= rank[:, None], tf.int32), axis=1)  # first bin with cum > rank
        j = tf.minimum(j, nbins - 1)
        before = tf.where(j > 0, tf.gather(cum, tf.maximum(j - 1, 0), batch_dims=1), tf.zeros_like(rank))
        inbin = tf.maximum(tf.gather(counts, j, batch_dims=1), 1.0)
        frac = tf.clip_by_value((rank - before + 0.5) / inbin, 0.0, 1.0)
        out.append(lo + (tf.cast(j, tf.float32) + frac) * width)
    return tf.stack(out, axis=1)


# ----------------------------------------------------------------------------------------------- base class
class StainNormalizer:
    """Base class: subclasses set ``_config_keys`` / ``_param_keys`` and implement ``_estimate_target`` (numpy
    target -> params dict) and ``_tf_core(images uint8 [B,H,W,3], params tensors) -> (out, code, tissue)``."""

    name = "base"
    _config_keys: tuple[str, ...] = ()
    _param_keys: tuple[str, ...] = ()

    def __init__(self, *, io: float = 240.0, beta: float = 0.15, min_tissue_fraction: float = 0.01,
                 min_tissue_pixels: int = 64, jit: bool = True):
        if not io > 0 or not beta >= 0 or not 0 <= min_tissue_fraction <= 1 or min_tissue_pixels < 1:
            raise ConfigError(f"{self.name}: invalid settings io={io}, beta={beta}, "
                              f"min_tissue_fraction={min_tissue_fraction}, min_tissue_pixels={min_tissue_pixels}")
        self.io = float(io)
        self.beta = float(beta)
        self.min_tissue_fraction = float(min_tissue_fraction)
        self.min_tissue_pixels = int(min_tissue_pixels)
        self.jit = bool(jit)
        self.params: dict[str, np.ndarray] | None = None
        self._compiled = None

    # -- config / params
    def get_config(self) -> dict:
        keys = ("io", "beta", "min_tissue_fraction", "min_tissue_pixels") + self._config_keys
        return {k: getattr(self, k) for k in keys}

    @property
    def fitted(self) -> bool:
        return self.params is not None

    def _require_fitted(self):
        if self.params is None:
            raise ConfigError(f"{self.name} normalizer is not fitted: call fit(target) or load(params.json) first")

    def set_params(self, params: dict) -> "StainNormalizer":
        missing = [k for k in self._param_keys if k not in params]
        if missing:
            raise ConfigError(f"{self.name}: missing fitted parameters {missing}")
        p = {k: np.asarray(params[k], dtype=np.float32) for k in self._param_keys}
        if not all(np.all(np.isfinite(v)) for v in p.values()):
            raise ConfigError(f"{self.name}: fitted parameters are not finite")
        self.params = p
        self._compiled = None
        return self

    # -- fit
    def fit(self, target) -> "StainNormalizer":
        """Estimate the reference parameters from one target image ``(H, W, 3)`` uint8."""
        target = check_rgb_uint8(target, "target")
        return self.set_params(self._estimate_target(target))

    def _estimate_target(self, target: np.ndarray) -> dict:
        raise NotImplementedError

    # -- transform
    def _param_tensors(self):
        import tensorflow as tf

        return {k: tf.constant(v, tf.float32) for k, v in self.params.items()}

    def tf_transform(self, images, return_info: bool = False):
        """Pure-TF transform of a uint8 batch ``[B, H, W, 3]`` -> uint8 ``[B, H, W, 3]``. With ``return_info``
        also ``{"fallback": int32 [B] (0 none, 1 no_tissue, 2 degenerate), "tissue_fraction": float32 [B]}``."""
        import tensorflow as tf

        self._require_fitted()
        images = tf.convert_to_tensor(images)
        if images.dtype != tf.uint8:
            raise ConfigError(f"{self.name}.tf_transform: expected a uint8 tensor, got {images.dtype.name}")
        out, code, frac = self._tf_core(images, self._param_tensors())
        if return_info:
            return out, {"fallback": code, "tissue_fraction": frac}
        return out

    def _tf_core(self, images, params):
        raise NotImplementedError

    def _compiled_fn(self):
        if self._compiled is None:
            import tensorflow as tf

            params = self._param_tensors()
            self._compiled = tf.function(lambda x: self._tf_core(x, params), jit_compile=self.jit,
                                         reduce_retracing=True)
        return self._compiled

    def transform(self, images, return_info: bool = False):
        """Normalize one image ``(H, W, 3)`` or a batch ``(B, H, W, 3)`` of uint8 (numpy or tf.Tensor); returns the
        same type and shape. With ``return_info`` also per-image dicts ``{"fallback": None | "no_tissue" |
        "degenerate", "tissue_fraction": float}`` (one dict for a single image)."""
        self._require_fitted()
        batch, single, was_numpy = _as_batch(images)
        out, code, frac = self._compiled_fn()(batch)
        if was_numpy:
            out = out.numpy()
        if single:
            out = out[0]
        if not return_info:
            return out
        infos = [{"fallback": FALLBACK_NAMES[int(c)], "tissue_fraction": float(f)}
                 for c, f in zip(code.numpy(), frac.numpy())]
        return out, (infos[0] if single else infos)

    def fit_transform(self, target, images, return_info: bool = False):
        """``fit(target)`` then ``transform(images)``."""
        return self.fit(target).transform(images, return_info=return_info)

    # -- persistence
    def to_json(self) -> dict:
        self._require_fitted()
        return {"format": FORMAT, "version": VERSION, "method": self.name, "config": self.get_config(),
                "params": {k: v.astype(np.float64).tolist() for k, v in self.params.items()}}

    def save(self, path: str | os.PathLike) -> str:
        """Write the method, settings and fitted parameters as JSON (atomically: temp file + rename)."""
        return atomic.write_text(os.fspath(path), json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike, jit: bool = True) -> "StainNormalizer":
        """Read a file written by ``save``; on a subclass, the file must be of that method."""
        norm = load(path, jit=jit)
        if cls is not StainNormalizer and not isinstance(norm, cls):
            raise DataError(path, f"holds {norm.name} parameters, not {cls.name}")
        return norm


class StainMatrixNormalizer(StainNormalizer):
    """Shared part of Macenko and Vahadane: per-image stain matrix + 99th-percentile concentrations
    (``tf_estimate``), source concentrations scaled to the target's and recomposed with the target's stain
    matrix, ``I' = Io exp(-(C * maxC_ref / maxC) W_ref)``. Fitted parameters: ``stain_matrix`` [2, 3] (rows H, E)
    and ``max_conc`` [2]."""

    _param_keys = ("stain_matrix", "max_conc")

    def _od_mask(self, images):
        import tensorflow as tf

        b = tf.shape(images)[0]
        od = tf.reshape(optical_density(tf.cast(images, tf.float32), self.io), [b, -1, 3])
        return od, tissue_mask(od, self.beta)

    def _stains(self, od, mask):
        """-> (stain matrices [B, 2, 3], degenerate bool [B])."""
        raise NotImplementedError

    def _concentrations(self, od, he):
        """-> concentrations [B, N, 2] of OD [B, N, 3] on stain rows he [B, 2, 3]."""
        raise NotImplementedError

    def tf_estimate(self, images):
        """Per-image ``(stain_matrix [B, 2, 3], max_conc [B, 2], fallback code [B], tissue fraction [B],
        concentrations [B, N, 2])`` of a uint8 batch."""
        import tensorflow as tf

        od, mask = self._od_mask(images)
        no_tissue, frac = tissue_fallback(mask, self.min_tissue_fraction, self.min_tissue_pixels)
        he, degenerate = self._stains(od, mask)
        c = self._concentrations(od, he)
        b, k = tf.shape(c)[0], tf.shape(c)[2]
        flat = tf.reshape(tf.transpose(c, [0, 2, 1]), [b * k, -1])
        maxc = tf.reshape(hist_percentiles(flat, [self.max_percentile])[:, 0], [b, k])
        bad = (degenerate | tf.reduce_any(~(maxc > 1e-6), axis=1)
               | tf.reduce_any(~tf.math.is_finite(he), [1, 2]) | (tf.reduce_sum(he[:, 0] * he[:, 1], -1) > 1 - 1e-6))
        code = tf.where(no_tissue, FALLBACK_NO_TISSUE, tf.where(bad, FALLBACK_DEGENERATE, FALLBACK_NONE))
        return he, maxc, code, frac, c

    def estimate(self, image: np.ndarray) -> dict:
        """Stain matrix, max concentrations, fallback code and tissue fraction of one uint8 image (numpy)."""
        import tensorflow as tf

        he, maxc, code, frac, _ = self.tf_estimate(tf.constant(check_rgb_uint8(image)[None]))
        return {"stain_matrix": he.numpy()[0], "max_conc": maxc.numpy()[0], "fallback": int(code[0]),
                "tissue_fraction": float(frac[0])}

    def _estimate_target(self, target: np.ndarray) -> dict:
        est = self.estimate(target)
        require_target_tissue(self.name, est["fallback"] == FALLBACK_NO_TISSUE, est["tissue_fraction"])
        if est["fallback"] != FALLBACK_NONE:
            raise ConfigError(f"{self.name} target has a degenerate stain estimate (tissue fraction "
                              f"{est['tissue_fraction']:.4f}); choose a target tile with tissue")
        return {"stain_matrix": est["stain_matrix"], "max_conc": est["max_conc"]}

    def _tf_core(self, images, params):
        import tensorflow as tf

        he, maxc, code, frac, c = self.tf_estimate(images)
        scale = params["max_conc"][None, :] / tf.maximum(maxc, 1e-6)  # [B, 2]
        od_out = tf.einsum("bnk,kc->bnc", c * scale[:, None, :], params["stain_matrix"])
        out = tf.reshape(to_uint8(self.io * tf.exp(-od_out)), tf.shape(images))
        keep = (code != FALLBACK_NONE)[:, None, None, None]
        return tf.where(keep, images, out), code, frac

    def deconvolve(self, images):
        """Per-image colour deconvolution with this method's own stain estimate: ``(concentrations float32
        [B, H, W, 2] (H, E), stain_matrix [B, 2, 3], fallback code [B])`` (no batch axis for one image). An
        image that falls back is deconvolved with the fitted reference matrix, or Ruifrok's H&E if unfitted."""
        import tensorflow as tf

        from zoo.stain.deconvolution import RGB_FROM_HED

        images, single, _ = _as_batch(images)
        he, _, code, _, _ = self.tf_estimate(images)
        ref = self.params["stain_matrix"] if self.fitted else (
            RGB_FROM_HED[:2] / np.linalg.norm(RGB_FROM_HED[:2], axis=1, keepdims=True))
        he = tf.where((code != FALLBACK_NONE)[:, None, None], tf.constant(ref, tf.float32)[None], he)
        od, _ = self._od_mask(images)
        c = tf.reshape(self._concentrations(od, he), tf.concat([tf.shape(images)[:3], [2]], 0))
        return (c[0], he[0], code[0]) if single else (c, he, code)


def load(path: str | os.PathLike, jit: bool = True) -> StainNormalizer:
    """The fitted normalizer saved at ``path`` (any method)."""
    path = os.fspath(path)
    return from_json(atomic.read_json(path, "JSON stain parameter file"), path, jit=jit)


def from_json(d: dict, source: str = "stain parameters", jit: bool = True) -> StainNormalizer:
    """The fitted normalizer described by ``d`` (``StainNormalizer.to_json()``, e.g. from a model's InferenceSpec);
    ``source`` names where it came from in errors."""
    path = source
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise DataError(path, f"not a histozoo stain parameter file (format != {FORMAT!r})")
    if d.get("version") != VERSION:
        raise DataError(path, f"unsupported version {d.get('version')!r} (this histozoo reads {VERSION})")
    method = d.get("method")
    if method not in _REGISTRY:
        raise DataError(path, f"unknown stain method {method!r}")
    try:
        norm = _REGISTRY.get(method)(**d.get("config", {}), jit=jit)
        norm.set_params(d.get("params", {}))
    except (ConfigError, TypeError, ValueError) as e:
        raise DataError(path, f"invalid {method} parameters ({e})") from None
    return norm


def normalize(image: np.ndarray, method: str, target: np.ndarray, return_info: bool = False, **config):
    """Numpy in, numpy out: normalize ``image`` (or a batch) to the stain of ``target`` with ``method``."""
    return get_normalizer(method, **config).fit(target).transform(np.asarray(image), return_info=return_info)
