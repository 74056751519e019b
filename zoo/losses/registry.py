"""Losses registered by name: ``@register_loss("dice")`` on a class (or factory); ``get_loss(name, **options)``.

Registered classes are also Keras-serialisable as ``histozoo>ClassName``, so a compiled ``.keras`` file reloads
in any process that has imported ``zoo.losses``.
"""

from __future__ import annotations

import inspect

import keras

from zoo.errors import ConfigError
from zoo.registry import Registry

PACKAGE = "histozoo"
_LOSSES = Registry("loss")


def register_loss(name: str):
    """Decorator: register a loss class (or a factory returning a loss) under ``name``."""

    def decorator(obj):
        if inspect.isclass(obj):
            keras.saving.register_keras_serializable(package=PACKAGE, name=obj.__name__)(obj)
        return _LOSSES.add(name, obj)

    return decorator


def available_losses() -> list[str]:
    """Registered loss names, sorted."""
    return _LOSSES.available()


def loss_factory(name: str):
    """The class (or factory) registered as ``name``; its keyword parameters are the loss's options."""
    return _LOSSES.get(name)


def get_loss(name: str, **options):
    """A new loss ``name`` configured with ``options``; unknown names / options raise ConfigError."""
    factory = _LOSSES.get(name)
    params = inspect.signature(factory).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(options) - set(params))
        if unknown:
            raise ConfigError(f"loss {name!r}: unknown option(s) {', '.join(map(repr, unknown))} "
                              f"(known: {', '.join(p for p in params if p not in ('self', 'dtype'))})")
    return factory(**options)
