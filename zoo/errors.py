"""The project's own exceptions. Every user mistake surfaces as one of these, with a message that
names the file (or option) and the problem in one line; the CLI prints ``str(err)`` and exits 2."""

from __future__ import annotations

import os


class ZooError(Exception):
    """Base class of every error histozoo raises on purpose."""


class DataError(ZooError):
    """A dataset file is missing, unreadable, or not what the reader expects."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(ZooError):
    """An experiment config or a command-line option is invalid."""
