"""Models registered by name: ``@register("unet")`` on a SegmentationModel subclass; ``get``, ``available``, ``build``.

Registering also makes the class Keras-serialisable as ``histozoo>ClassName``, so a ``.keras`` file loads in any
process that has imported ``zoo.models``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Optional

import keras

from zoo.registry import Registry

PACKAGE = "histozoo"
_MODELS = Registry("model")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def register(name: str):
    """Class decorator: register a SegmentationModel subclass under ``name`` (lower-case, digits, underscores)."""
    if not _NAME.match(name):
        raise ValueError(f"model name must match {_NAME.pattern}, got {name!r}")

    def decorator(cls):
        cls.registry_name = name
        cls.config_class.model_name = name
        keras.saving.register_keras_serializable(package=PACKAGE, name=cls.__name__)(cls)
        return _MODELS.add(name, cls)

    return decorator


def get(name: str) -> type:
    """The model class registered as ``name``."""
    return _MODELS.get(name)


def available() -> list[str]:
    """Registered model names, sorted."""
    return _MODELS.available()


def build(name: str, config: Optional[Mapping[str, Any] | Any] = None) -> keras.Model:
    """A fresh model: ``config`` is a dict of options, the model's config dataclass, or None for the defaults.
    Pretrained encoder weights named in the config are loaded here."""
    return get(name)(config)
