"""The InferenceSpec: a trained model's contract (see the package docstring), how it is made and serialised."""

from __future__ import annotations

import dataclasses
import json
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
        pp = PostprocessConfig.from_dict(self.postprocess)
        if pp.method == "auto" and "hv:x" in self.channels:  # HoVer-Net's NP / HV maps: its own watershed
            pp = PostprocessConfig("hovernet", pp.params)
        pp = pp.resolve(len(self.channels))
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
    """The output channel names of a model trained on ``target`` (zoo.data.targets) with ``num_channels`` outputs.

    ``hovernet`` (zoo.models.hovernet): ``background, nucleus`` (NP softmax), ``hv:x, hv:y`` (HV maps), then the TP
    softmax ``tp:background`` and ``type:<name>`` per nucleus type (``tp:<i>`` when the type names are unknown)."""
    if target == "hovernet" and num_channels >= 4:
        names = ("background", "nucleus", "hv:x", "hv:y")
        if num_channels == 4:
            return names
        if class_names and num_channels == len(class_names) + 5:
            return names + ("tp:background",) + tuple(f"type:{c}" for c in class_names)
        return names + ("tp:background",) + tuple(f"tp:{i}" for i in range(1, num_channels - 4))
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


