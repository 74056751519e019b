"""Losses registered by name: ``@register_loss("dice")`` on a class (or factory); ``get_loss(name, **options)``.

Registered classes are also Keras-serialisable as ``histozoo>ClassName``, so a compiled ``.keras`` file reloads
in any process that has imported ``zoo.losses``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import keras

from zoo.errors import ConfigError

PACKAGE = "histozoo"
_LOSSES: dict[str, Callable[..., Any]] = {}


def register_loss(name: str):
    """Decorator: register a loss class (or a factory returning a loss) under ``name``."""

    def decorator(obj):
        if name in _LOSSES and _LOSSES[name].__qualname__ != obj.__qualname__:
            raise ValueError(f"loss name {name!r} is already registered by {_LOSSES[name].__qualname__}")
        if inspect.isclass(obj):
            keras.saving.register_keras_serializable(package=PACKAGE, name=obj.__name__)(obj)
        _LOSSES[name] = obj
        return obj

    return decorator


def available_losses() -> list[str]:
    """Registered loss names, sorted."""
    return sorted(_LOSSES)


def get_loss(name: str, **options):
    """A new loss ``name`` configured with ``options``; unknown names / options raise ConfigError."""
    if name not in _LOSSES:
        raise ConfigError(f"unknown loss {name!r} (available: {', '.join(available_losses())})")
    factory = _LOSSES[name]
    params = inspect.signature(factory).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(options) - set(params))
        if unknown:
            raise ConfigError(f"loss {name!r}: unknown option(s) {', '.join(map(repr, unknown))} "
                              f"(known: {', '.join(p for p in params if p not in ('self', 'dtype'))})")
    return factory(**options)
