"""One name -> class table for every pluggable kind: models, losses, dataset readers, stain methods.

    MODELS = Registry("model")
    MODELS.add("unet", UNet)        # the kinds' own ``register`` decorators call this
    MODELS.get("unett")             # ConfigError: unknown model 'unett' (available: ...)
"""

from __future__ import annotations

from typing import Any

from zoo.errors import ConfigError


class Registry:
    """Registered objects of one ``kind`` (named in errors), by name."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def add(self, name: str, obj: Any) -> Any:
        """Register ``obj`` as ``name``; registering the same class again (a module re-import) is allowed,
        another class under a taken name is a ValueError."""
        old = self._entries.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (obj.__module__, obj.__qualname__):
            raise ValueError(f"{self.kind} name {name!r} is already registered by {old.__module__}.{old.__qualname__}")
        self._entries[name] = obj
        return obj

    def register(self, name: str):
        """Class decorator: ``add`` the class as ``name`` and set its ``name`` attribute (readers, stain methods)."""

        def deco(cls):
            cls.name = name
            return self.add(name, cls)

        return deco

    def get(self, name: str) -> Any:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(f"unknown {self.kind} {name!r} (available: {', '.join(self.available())})") from None

    def available(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
