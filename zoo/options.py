"""Keyword options checked against the signature of the function (or class) that takes them.

Loss options (``loss_config``) and dataset-reader options (``histozoo data build NAME --option key=value``) are the
keyword parameters of the loss class / reader ``__init__``. ``check`` rejects an unknown key or a value of the wrong
type with one ``ConfigError`` line that names the option and lists the accepted ones, before anything runs::

    check(options, WeightedCrossEntropy, "loss_config", "loss 'weighted_ce'")
    # ConfigError: loss_config.clas_weights: not an option of loss 'weighted_ce' (options: class_weights, ...)

The expected type of each option comes from its annotation (``int``, ``float``, ``bool``, ``str``, ``dict``,
``Sequence[...]``, unions and ``Optional`` of these) or, without one, from its default (``None`` accepts anything).
Integers are accepted where a float is expected; ``True`` / ``False`` are never accepted as numbers.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from typing import Any, Callable, Iterable, Mapping, Optional

from zoo.errors import ConfigError

_SKIP = ("self",)
_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping",
          list: "a list", type(None): "null"}


def accepted(fn: Callable, skip: Iterable[str] = _SKIP) -> dict[str, inspect.Parameter]:
    """{option: parameter} of ``fn``'s keyword parameters (``*args`` / ``**kwargs`` and ``skip`` left out).
    For a class, the parameters of its ``__init__``."""
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        sig = inspect.signature(target, eval_str=True)
    except Exception:  # noqa: BLE001 — an annotation that does not evaluate here: fall back to the defaults
        sig = inspect.signature(target)
    skip = set(skip)
    return {n: p for n, p in sig.parameters.items()
            if n not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _allowed(param: inspect.Parameter) -> Optional[tuple]:
    """The plain types a value of ``param`` may have, or None for anything."""
    ann = param.annotation
    if ann is inspect.Parameter.empty or isinstance(ann, str):
        d = param.default
        if d is inspect.Parameter.empty or d is None:
            return None
        if isinstance(d, (tuple, list)):
            return (list, tuple)
        return (type(d),) if type(d) in _WORDS else None
    return _from_annotation(ann)


def _from_annotation(ann) -> Optional[tuple]:
    if ann is Any or ann is object:
        return None
    if ann is None or ann is type(None):
        return (type(None),)
    origin = typing.get_origin(ann)
    if origin is typing.Union or origin is types.UnionType:
        out: list = []
        for a in typing.get_args(ann):
            t = _from_annotation(a)
            if t is None:
                return None
            out.extend(t)
        return tuple(out)
    if origin is not None:
        ann = origin
    if ann in (list, tuple, collections.abc.Sequence, typing.Sequence):
        return (list, tuple)
    if ann in (dict, collections.abc.Mapping, typing.Mapping):
        return (dict,)
    if ann in _WORDS:
        return (ann,)
    return None


def _ok(value, allowed: tuple) -> bool:
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int) and (int in allowed or float in allowed):
        return True
    return isinstance(value, tuple(t for t in allowed if t is not bool))


def _want(allowed: tuple) -> str:
    words = []
    for t in allowed:
        w = "a list" if t is tuple else _WORDS.get(t, t.__name__)
        if w not in words:
            words.append(w)
    return " or ".join(words)


def check(options: Mapping[str, Any], fn: Callable, section: str, owner: str, *,
          skip: Iterable[str] = _SKIP) -> dict:
    """``options`` checked against ``fn``'s keyword parameters; returns them as a dict.

    section: how the options are named in messages (``"loss_config"`` -> ``loss_config.<key>``; ``""`` -> the bare
    key); owner: what takes them (``"loss 'dice'"``, ``"dataset 'tnbc'"``)."""
    if not isinstance(options, Mapping):
        raise ConfigError(f"{section or owner}: expected a mapping of options, got {type(options).__name__}")
    params = accepted(fn, skip)
    names = ", ".join(params) or "none"
    label = (lambda k: f"{section}.{k}") if section else (lambda k: f"option {k!r}")
    for key, value in options.items():
        if key not in params:
            raise ConfigError(f"{label(key)}: not an option of {owner} (options: {names})")
        allowed = _allowed(params[key])
        if allowed is not None and not _ok(value, allowed):
            raise ConfigError(f"{label(key)} of {owner} must be {_want(allowed)}, got {value!r} (options: {names})")
    return dict(options)
