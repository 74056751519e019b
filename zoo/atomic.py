"""Atomic file writes (DESIGN.md: a crash never leaves a half-written file under its real name)."""

from __future__ import annotations

import json
import os


def write_json(path: str, obj, indent: int = 1) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file and an atomic rename (numpy scalars as floats)."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=indent, default=float)
    os.replace(tmp, path)
