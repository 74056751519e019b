"""What every benchmark script shares: the machine-load guard (DESIGN.md, "Benchmarks record the machine's load
average at start and end and flag a run above ~1.0": on a loaded machine multi-threaded peers lose more than
single-threaded code, so ratios taken under load overstate the project).

    ap = argparse.ArgumentParser(...)
    add_load_argument(ap)
    args = ap.parse_args()
    guard = start_guard(args)   # prints the start line (exits with one line if the machine is busy) and
    ...                         # prints the end line when the script exits (guard.record() for JSON output)

The 1-minute load average at start must be at most ``DEFAULT_MAX_LOAD`` (1.0), or the script refuses to run
(``SystemExit`` with one line, exit status 2). ``--max-load X`` raises the threshold; a run made with it is
flagged in its output ("FLAGGED"), as is a run whose 1-minute load at the end is above ``end_limit()`` = the
default + the number of CPUs: a benchmark that keeps every core busy raises the load to about the core count by
itself (a quiet 2-core run ends near 2), so only load above that means another job joined during the run.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import os
import sys
from typing import Optional

DEFAULT_MAX_LOAD = 1.0


def end_limit() -> float:
    """The largest 1-minute load at the end of an unflagged run: the benchmark's own cores plus the start limit."""
    return DEFAULT_MAX_LOAD + (os.cpu_count() or 1)
REFUSED_EXIT = 2


def add_load_argument(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--max-load", type=float, default=None, metavar="X",
                    help=f"run even when the 1-min load average at start is above {DEFAULT_MAX_LOAD} (up to X); "
                         "the run is flagged in its output")


def _fmt(la) -> str:
    return " ".join(f"{v:.2f}" for v in la)


@dataclasses.dataclass
class LoadGuard:
    """The load average at start (1, 5, 15 min), the threshold, and whether it was overridden."""

    start_load: tuple
    max_load: float
    override: bool
    end_load: Optional[tuple] = None

    @classmethod
    def start(cls, max_load: Optional[float] = None, out=None) -> "LoadGuard":
        """Read the load, refuse (SystemExit, one line) above the threshold, else print the start line."""
        out = out or sys.stdout
        la = tuple(float(v) for v in os.getloadavg())
        threshold = DEFAULT_MAX_LOAD if max_load is None else float(max_load)
        guard = cls(la, threshold, override=max_load is not None and threshold > DEFAULT_MAX_LOAD)
        if la[0] > threshold:
            print(f"refused: 1-min load average {la[0]:.2f} > {threshold:.2f} at start (load {_fmt(la)}); wait for a "
                  f"quiet machine, or pass --max-load X to run flagged", file=sys.stderr)
            raise SystemExit(REFUSED_EXIT)
        print(guard.start_line(), file=out, flush=True)
        return guard

    def start_line(self) -> str:
        flag = f"  FLAGGED: --max-load {self.max_load:g} overrides {DEFAULT_MAX_LOAD:g}" if self.override else ""
        return f"load average at start: {_fmt(self.start_load)} (1, 5, 15 min){flag}"

    @property
    def flagged(self) -> bool:
        return self.override or (self.end_load is not None and self.end_load[0] > end_limit())

    def reasons(self) -> list:
        out = []
        if self.override:
            out.append(f"--max-load {self.max_load:g} (start load {self.start_load[0]:.2f})")
        if self.end_load is not None and self.end_load[0] > end_limit():
            out.append(f"1-min load at end {self.end_load[0]:.2f} > {end_limit():g} (the start limit + "
                       f"{os.cpu_count()} CPUs)")
        return out

    def finish(self, out=None) -> dict:
        """Read the load at the end, print the end line (with FLAGGED and why), return the record."""
        out = out or sys.stdout
        atexit.unregister(self.finish)  # called by the script itself: not again at exit
        self.end_load = tuple(float(v) for v in os.getloadavg())
        flag = f"  FLAGGED: {'; '.join(self.reasons())}" if self.flagged else ""
        print(f"load average at end: {_fmt(self.end_load)} (1, 5, 15 min){flag}", file=out, flush=True)
        return self.record()

    def record(self) -> dict:
        return {"load_start": list(self.start_load), "load_end": list(self.end_load) if self.end_load else None,
                "max_load": self.max_load, "flagged": self.flagged, "flag_reasons": self.reasons(),
                "cpu_count": os.cpu_count()}


def start_guard(args: argparse.Namespace) -> LoadGuard:
    """``LoadGuard.start(args.max_load)``, with the end line printed when the script exits (however it exits)."""
    guard = LoadGuard.start(getattr(args, "max_load", None))
    atexit.register(guard.finish)
    return guard
