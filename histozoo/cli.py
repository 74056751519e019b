"""``histozoo`` console script: ``main``, the parser builder and the error handling; each subcommand group lives in
its own module under ``histozoo/commands/`` (``add(subparsers)`` declares its arguments and sets ``func``).

Heavy imports (TensorFlow, tfx) happen inside the command functions, so ``histozoo --help`` is quick and commands
that do not need tfx run where it is not installed. A ``ZooError`` (a user's mistake) is printed as one line,
exit status 2. TensorFlow's C++ start-up chatter (oneDNN, CUDA probing, absl's pre-initialisation warning) is kept
off stderr unless ``--verbose`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from typing import Mapping

from histozoo.commands import GROUPS, parse_key_values

__all__ = ["main", "build_parser", "parse_key_values", "quiet_env", "GROUPS"]

#: what the environment gets unless --verbose: TF's C++ logging shows only FATAL (no cuInit / oneDNN INFO/ERROR)
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3"}

# Lines TensorFlow's shared libraries write while ``import tensorflow`` runs, before absl logging is initialised:
# TF_CPP_MIN_LOG_LEVEL does not reach them, so they are filtered out of the import's stderr instead.
_NOISE = re.compile(r"(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
                    r"|[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\s\]]+:\d+\] "
                    r"|To enable the following instructions: .*rebuild TensorFlow)")


def quiet_env(verbose: bool, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables a command sets before TensorFlow is imported: none with ``verbose``; otherwise
    ``QUIET_ENV``, less any variable the user's environment already sets (an explicit value wins)."""
    if verbose:
        return {}
    environ = os.environ if environ is None else environ
    return {k: v for k, v in QUIET_ENV.items() if k not in environ}


@contextlib.contextmanager
def _filtered_stderr():
    """Send file descriptor 2 to a temporary file for the block, then replay to stderr every line that is not
    TensorFlow start-up noise (so a real error printed meanwhile is still shown)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            kept = "".join(line for line in text.splitlines(keepends=True) if not _NOISE.match(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        with _filtered_stderr():
            self.inner.exec_module(module)

    def __getattr__(self, name):  # get_resource_reader, is_package, ... of the real loader
        return getattr(self.inner, name)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Meta-path finder that wraps the first ``import tensorflow`` (by a command, Keras or anything else) in
    ``_filtered_stderr``; it removes itself once used. Commands that never import TensorFlow pay nothing."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        self.uninstall()
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec

    def install(self) -> None:
        if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
            sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)


def quiet_tensorflow(verbose: bool = False) -> None:
    """Before TensorFlow is imported: set ``quiet_env`` and filter the import's start-up lines (unless verbose)."""
    os.environ.update(quiet_env(verbose))
    if not verbose:
        _QuietTensorFlowImport().install()


def _add_verbose(parser: argparse.ArgumentParser, top: bool) -> None:
    help_ = ("show TensorFlow's C++ start-up logging (oneDNN, CUDA probing) and, for 'pipeline run', the whole "
             "TFX/Beam output on the terminal (else in its log file); hidden by default")
    parser.add_argument("--verbose", action="store_true", default=False if top else argparse.SUPPRESS, help=help_)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_verbose(child, top=False)


def build_parser() -> argparse.ArgumentParser:
    """The ``histozoo`` parser: one subcommand group per ``histozoo.commands.<group>`` module, in ``GROUPS`` order;
    ``--verbose`` is accepted before or after the subcommand."""
    from zoo import __version__

    parser = argparse.ArgumentParser(
        prog="histozoo",
        description="histozoo: H&E histopathology model zoo (data, stain, segmentation, TFX, MLflow, TF Serving).")
    parser.add_argument("--version", action="version", version=f"histozoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        importlib.import_module(f"histozoo.commands.{group}").add(sub)
    _add_verbose(parser, top=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow(verbose=args.verbose)
    from zoo.errors import ZooError

    try:
        return int(args.func(args) or 0)
    except ZooError as e:
        print(f"histozoo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("histozoo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
