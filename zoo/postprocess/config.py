"""The typed post-processing config and its one dispatcher: probabilities -> instance map.

Every consumer (``zoo.inference.predict``, hence evaluation, export, serving clients, the TFX evaluator, slides) turns
a model's per-pixel probabilities into instances through :func:`apply` with a :class:`PostprocessConfig`; the config
travels inside the model's ``InferenceSpec``. The methods, one implementation each:

| method | function (numpy) | channels | in the SavedModel graph |
|---|---|---|---|
| ``dynamics_watershed`` | ``zoo.postprocess.watershed.dynamics_watershed`` (Naylor et al. 2017 sec. 4, eq. 1) on the nucleus posterior | >= 2 | no: the client runs it |
| ``three_class`` | ``zoo.postprocess.instances.instances_from_three_class`` (Yuan & Suh 2018 sec. 2.2) | >= 3 | no: the client runs it |
| ``inner_contour`` | ``zoo.postprocess.instances.instances_from_inner_contour`` (Qu et al. 2019 sec. 2.2) | >= 3 | with ``grow: dilate`` (8-connected): ``serving.export``; else the client runs it |
| ``threshold`` | :func:`threshold_components` (components of P(nucleus) > threshold) | >= 2 | yes (8-connected): ``serving.export`` |
| ``hovernet`` | ``zoo.postprocess.hovernet.hovernet_instances`` (Graham et al. 2019 sec. 3.4) on NP + HV maps | >= 4 | no: the client runs it |

``auto`` resolves by the number of channels: 2 -> ``dynamics_watershed``, 3 or more -> ``three_class``
(``zoo.inference.InferenceSpec`` first resolves it to ``hovernet`` when the channels include ``hv:x``).
The nucleus posterior is channel 1 for a 2-channel model and 1 - P(background) otherwise.
The keys each method accepts are exactly its function's keyword parameters, with their types taken from the
defaults: a typo or a wrong type is a one-line ``ConfigError`` naming the key, raised when the config is built.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Mapping, Optional

import numpy as np

from zoo.errors import ConfigError

AUTO = "auto"


def nucleus_probability(probs: np.ndarray) -> np.ndarray:
    """P(nucleus) from (H, W, C) softmax probabilities: channel 1 when C == 2, else 1 - P(background)."""
    p = np.asarray(probs)
    if p.ndim != 3 or p.shape[-1] < 2:
        raise ConfigError(f"probabilities must be (H, W, C>=2), got shape {p.shape}")
    if p.shape[-1] == 2:
        return p[..., 1]
    return np.clip(1.0 - p[..., 0], 0.0, 1.0)


def threshold_components(prob, threshold: float = 0.5, min_size: int = 0, connectivity: int = 8) -> np.ndarray:
    """Nuclei = connected components of ``prob > threshold`` (4- or 8-connected), numbered in raster order of each
    component's first pixel (``scipy.ndimage.label``); components smaller than ``min_size`` pixels are removed and
    the rest renumbered 1..N in the same order. Its in-graph twin is ``serving.export.threshold_components_tf``."""
    from zoo.postprocess.instances import _as_prob, label_components, relabel_sequential, remove_small

    if not 0.0 <= threshold < 1.0:
        raise ConfigError(f"threshold must be in [0, 1), got {threshold}")
    p = _as_prob(prob, "prob")
    labels = label_components(p > threshold, connectivity)
    if min_size > 1:
        labels = relabel_sequential(remove_small(labels, min_size))
    return labels


def _dynamics(probs, **kw):
    from zoo.postprocess.watershed import dynamics_watershed

    return dynamics_watershed(nucleus_probability(probs), **kw)


def _three_class(probs, **kw):
    from zoo.postprocess.instances import instances_from_three_class

    return instances_from_three_class(probs, **kw)


def _inner_contour(probs, **kw):
    """Channels: 0 background, 1..C-2 inner parts (one per nucleus type, or one), C-1 contour (Qu et al.)."""
    from zoo.postprocess.instances import instances_from_inner_contour

    p = np.asarray(probs, np.float32)
    return instances_from_inner_contour(inner_probability(p), p[..., -1], **kw)


def inner_probability(probs: np.ndarray) -> np.ndarray:
    """P(inner part of any nucleus type) of an inner / contour model: channels 1..C-2 added in channel order (one
    float32 addition at a time, as the in-graph twin ``serving.export.inner_probability_tf`` adds them, so both
    give the same bits), clipped to [0, 1]."""
    p = np.asarray(probs, np.float32)
    inner = p[..., 1]
    for c in range(2, p.shape[-1] - 1):
        inner = inner + p[..., c]
    return np.clip(inner, np.float32(0), np.float32(1))


def _hovernet(probs, **kw):
    """Channels: 0, 1 NP softmax, 2, 3 HV maps (x, y), then TP (Graham et al.; zoo.models.hovernet)."""
    from zoo.postprocess.hovernet import hovernet_instances

    return hovernet_instances(probs, **kw)


def _threshold(probs, **kw):
    return threshold_components(nucleus_probability(probs), **kw)


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered post-processing method: its runner, the function whose keyword parameters are its options,
    the fewest channels it needs, and whether ``serving.export`` can compute it in the graph."""

    run: Callable
    options_of: Callable
    min_channels: int
    in_graph: Callable[[dict], bool] = lambda params: False


def _options_fn(name: str) -> Callable:
    from zoo.postprocess import hovernet, instances, watershed

    return {"dynamics_watershed": watershed.dynamics_watershed, "three_class": instances.instances_from_three_class,
            "inner_contour": instances.instances_from_inner_contour, "threshold": threshold_components,
            "hovernet": hovernet.hovernet_instances}[name]


METHODS: dict[str, Method] = {
    "dynamics_watershed": Method(_dynamics, lambda: _options_fn("dynamics_watershed"), 2),
    "three_class": Method(_three_class, lambda: _options_fn("three_class"), 3),
    "inner_contour": Method(_inner_contour, lambda: _options_fn("inner_contour"), 3,
                            in_graph=lambda params: params.get("grow") == "dilate"
                            and params.get("connectivity", 8) == 8),
    "threshold": Method(_threshold, lambda: _options_fn("threshold"), 2,
                        in_graph=lambda params: params.get("connectivity", 8) == 8),
    "hovernet": Method(_hovernet, lambda: _options_fn("hovernet"), 4),
}


def method_options(method: str) -> dict[str, Any]:
    """{option: default} of ``method``: its function's keyword parameters (the first, the input map, excluded)."""
    return {k: d for k, (d, _) in _option_specs(method).items()}


def _option_specs(method: str) -> dict[str, tuple[Any, str]]:
    """{option: (default, annotated type name)} of ``method``."""
    fn = METHODS[method].options_of()
    params = list(inspect.signature(fn).parameters.values())[1:]
    skip = {"contour"}  # inner_contour's second map comes from the channels, not the config
    return {p.name: (p.default, p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", ""))
            for p in params if p.default is not inspect.Parameter.empty and p.name not in skip}


def _check_type(method: str, key: str, value, default, kind: str = ""):
    kind = kind.replace("Optional[", "").replace("]", "").replace(" | None", "").strip()
    if value is None and (default is None or "None" in str(kind)):
        return None
    if default is None:  # an optional option: its annotation says the type
        default = {"int": 0, "float": 0.0, "bool": False}.get(kind, default)
    if kind == "float":
        default = float(default)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        want = "true or false"
    elif isinstance(default, int):
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        want = "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        want = "a number"
    else:
        ok, want = True, ""
    if not ok:
        raise ConfigError(f"postprocess.{key} ({method}) must be {want}, got {value!r}")
    return float(value) if isinstance(default, float) else value


@dataclasses.dataclass(frozen=True)
class PostprocessConfig:
    """How probabilities become instances: ``method`` (see the module table, or ``auto``) and its options
    (``params``, exactly the method function's keyword parameters; defaults fill the rest when it runs).
    Written in YAML as one mapping: ``{method: dynamics_watershed, lam: 7, threshold: 0.5}``."""

    method: str = AUTO
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.method, str) or (self.method != AUTO and self.method not in METHODS):
            raise ConfigError(f"postprocess.method must be one of {AUTO}, {', '.join(METHODS)}; got {self.method!r}")
        params = dict(self.params or {})
        if self.method == AUTO:
            if params:
                raise ConfigError(f"postprocess: options {sorted(params)} need an explicit method "
                                  f"({', '.join(METHODS)}), not auto")
        else:
            allowed = _option_specs(self.method)
            unknown = sorted(set(params) - set(allowed))
            if unknown:
                raise ConfigError(f"postprocess.{unknown[0]}: not an option of {self.method} "
                                  f"(options: {', '.join(allowed)})")
            params = {k: _check_type(self.method, k, v, *allowed[k]) for k, v in params.items()}
        object.__setattr__(self, "params", params)

    @classmethod
    def from_dict(cls, d: Optional[Mapping | "PostprocessConfig"]) -> "PostprocessConfig":
        if isinstance(d, PostprocessConfig):
            return d
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise ConfigError(f"postprocess must be a mapping like {{method: three_class}}, got {d!r}")
        d = dict(d)
        return cls(d.pop("method", AUTO), d)

    def to_dict(self) -> dict:
        return {"method": self.method, **dict(self.params)}

    def resolve(self, num_channels: int) -> "PostprocessConfig":
        """``auto`` made concrete for a model with ``num_channels`` output channels; checks the channel count."""
        method = self.method
        if method == AUTO:
            method = "dynamics_watershed" if num_channels == 2 else "three_class"
        need = METHODS[method].min_channels
        if num_channels < need:
            raise ConfigError(f"postprocess {method} needs at least {need} output channels; the model has "
                              f"{num_channels}")
        return PostprocessConfig(method, self.params)

    @property
    def in_graph(self) -> bool:
        """True when ``serving.export`` computes this method inside the SavedModel (its TF twin exists)."""
        return self.method in METHODS and METHODS[self.method].in_graph(dict(self.params))


def apply(probs: np.ndarray, config: Optional[Mapping | PostprocessConfig] = None) -> np.ndarray:
    """THE post-processing dispatcher: (H, W, C) probabilities -> int32 instance map (0 background, 1..N)."""
    cfg = PostprocessConfig.from_dict(config).resolve(int(np.shape(probs)[-1]))
    return METHODS[cfg.method].run(np.asarray(probs), **dict(cfg.params)).astype(np.int32, copy=False)
