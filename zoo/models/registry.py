"""Models registered by name: ``@register("unet")`` on a SegmentationModel subclass; ``get``, ``available``, ``build``.

Registering also makes the class Keras-serialisable as ``histozoo>ClassName``, so a ``.keras`` file loads in any
process that has imported ``zoo.models``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Optional

import keras

from zoo.errors import ConfigError

PACKAGE = "histozoo"
_MODELS: dict[str, type] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def register(name: str):
    """Class decorator: register a SegmentationModel subclass under ``name`` (lower-case, digits, underscores)."""
    if not _NAME.match(name):
        raise ValueError(f"model name must match {_NAME.pattern}, got {name!r}")

    def decorator(cls):
        old = _MODELS.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"model name {name!r} is already registered by {old.__module__}.{old.__qualname__}")
        cls.registry_name = name
        cls.config_class.model_name = name
        keras.saving.register_keras_serializable(package=PACKAGE, name=cls.__name__)(cls)
        _MODELS[name] = cls
        return cls

    return decorator


def get(name: str) -> type:
    """The model class registered as ``name``."""
    try:
        return _MODELS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model {name!r} (available: {', '.join(available())})") from None


def available() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)


def build(name: str, config: Optional[Mapping[str, Any] | Any] = None) -> keras.Model:
    """A fresh model: ``config`` is a dict of options, the model's config dataclass, or None for the defaults.
    Pretrained encoder weights named in the config are loaded here."""
    return get(name)(config)
