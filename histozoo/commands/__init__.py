"""One module per ``histozoo`` subcommand group; each has ``add(subparsers)`` that declares its arguments and sets
``func`` on its parsers. Modules import nothing heavy at the top: TensorFlow, ``serving`` and ``pipelines`` (tfx)
are imported inside the command functions, so ``histozoo --help`` is quick and every command that does not need
tfx runs where it is not installed. Library logic lives in ``zoo`` / ``serving`` / ``pipelines``; a command
parses, calls one function, and prints.
"""

from __future__ import annotations

import json

#: the subcommand groups, in the order ``histozoo --help`` lists them (module names under histozoo.commands)
GROUPS = ("quickstart", "models", "data", "train", "evaluate", "tune", "registry", "export", "predict", "serve",
          "pipeline", "normalize", "slide", "cluster", "synth", "annotate", "cycle")


def parse_key_values(pairs: list[str] | None, flag: str = "--option") -> dict:
    """``--option key=value`` pairs -> dict (values parsed as JSON when they parse, else strings)."""
    out = {}
    for p in pairs or []:
        if "=" not in p:
            from zoo.errors import ConfigError

            raise ConfigError(f"{flag} {p!r}: expected key=value")
        k, v = p.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def check_out(path: str, what: str = "--out") -> str:
    """``zoo.atomic.check_output_dir`` for a command's output folder: one-line ConfigError naming it, before any
    work (issue 16)."""
    from zoo.atomic import check_output_dir

    return check_output_dir(path, what)
