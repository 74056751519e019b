"""Dataset readers, registered by name. A reader turns a raw dataset folder into ``Sample`` objects.

    reader = get_reader("tnbc")(root)       # raises DataError if root is not that dataset
    for item in reader.items(): sample = reader.read(item)

Add a dataset by writing ``readers/<name>.py`` with a ``@register("<name>")`` subclass of ``Reader``
and importing it below.

A reader's options (``histozoo data build NAME --option key=value``, ``build(..., **options)``, the TFX ExampleGen's
``reader_options``) are exactly the keyword parameters of its ``__init__``: an unknown key or a value of the wrong
type is a one-line ConfigError naming the option and listing the accepted ones, raised when the reader is created
(``Reader.__new__``, so every subclass and every caller gets the check). ``reader_options(name)`` lists them.
"""

from __future__ import annotations

import os
from typing import Any

from zoo import options as _options
from zoo.data.sample import Sample
from zoo.errors import DataError
from zoo.registry import Registry

_REGISTRY = Registry("dataset")


register = _REGISTRY.register  # @register("tnbc") on a Reader subclass
available = _REGISTRY.available


def get_reader(name: str):
    """The reader class registered as ``name`` (ConfigError naming the available ones otherwise)."""
    return _REGISTRY.get(name)


def reader_options(name: str) -> dict[str, Any]:
    """{option: default} that the reader registered as ``name`` accepts (``None`` where it has no default)."""
    return {k: (None if p.default is p.empty else p.default)
            for k, p in _options.accepted(get_reader(name), _NOT_OPTIONS).items()}


_NOT_OPTIONS = ("self", "root")


class Reader:
    """Base class. Subclasses set ``class_names`` and implement ``items`` and ``read``."""

    name: str = ""
    class_names: tuple = ()
    #: a relative path that must exist under root for it to be this dataset (checked in __init__)
    marker: str = ""
    #: (path, reason) of inputs the reader left out (the folder reader's unpaired files); stored in summary.json
    skipped: tuple = ()
    #: how ``folds()`` was made, written into folds.json ("organ-holdout" for MoNuSeg's organ-disjoint split)
    fold_scheme: str = "leave-one-source-out"

    def __new__(cls, *args: Any, **options: Any):
        # every reader's options, checked against its __init__'s keyword parameters before any file is touched
        _options.check({k: v for k, v in options.items() if k != "root"}, cls, "", f"dataset {cls.name!r}",
                       skip=_NOT_OPTIONS)
        return super().__new__(cls)

    def __init__(self, root: str, **options: Any):
        self.root = os.path.abspath(root)
        self.options = options
        if not os.path.isdir(self.root):
            raise DataError(root, "dataset root is not a directory")
        if self.marker and not os.path.exists(os.path.join(self.root, self.marker)):
            raise DataError(root, f"not a {self.name} dataset folder (expected {self.marker!r} inside it)")

    def items(self) -> list:
        """A cheap list of what ``read`` takes, one per image, in a deterministic order."""
        raise NotImplementedError

    def read(self, item) -> Sample:
        raise NotImplementedError

    def describe(self, item) -> str:
        """Where ``item`` lives, for error messages (a file path; readers of packed arrays add the index)."""
        return str(item)

    def folds(self) -> list[dict] | None:
        """Cross-validation folds as ``[{"fold": k, "test": [image ids], "train": [...]}]``, or None."""
        return None

    def __iter__(self):
        for it in self.items():
            yield self.read(it)


# Import the readers so they register themselves.
from zoo.data.readers import tnbc  # noqa: E402,F401
from zoo.data.readers import monuseg  # noqa: E402,F401
from zoo.data.readers import crchistophenotypes  # noqa: E402,F401
from zoo.data.readers import bone_marrow  # noqa: E402,F401
from zoo.data.readers import consep  # noqa: E402,F401
from zoo.data.readers import pannuke  # noqa: E402,F401
from zoo.data.readers import folder  # noqa: E402,F401
