"""Run the pipeline locally: LocalDagRunner, an embedded sqlite ML Metadata store, Beam's DirectRunner
(multi-processing by default). ``histozoo pipeline run NAME --config ... --dataset ... --data-root ...`` calls
``run_local`` and ends with ``format_outcome``: whether the model was blessed and why, the serving version the Pusher
wrote (or "not pushed"), the registered model version (or "not registered"), the MLflow run, and the host paths of
what the run wrote. A re-run with nothing changed is served from the MLMD cache, and the outcome says so.

Quiet by default: the run's own output (TFX/absl INFO lines, Beam and ZetaSQL warnings, TF's C++ start-up lines,
the user-module wheel build, Keras' fit lines) goes to a log file under ``<home>/logs/<name>/``, and the terminal
gets one line per step started and every line that reports an error; on a failure the log's tail is printed.
``quiet=False`` (``histozoo --verbose pipeline run``) lets everything through as it comes.

This module imports tfx only inside its functions, so the outcome formatter runs (and is tested) without it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
from typing import Optional, Sequence, TextIO

from pipelines import configs

# MLMD execution states (ml_metadata.proto.Execution.State)
_STATES = {0: "UNKNOWN", 1: "NEW", 2: "RUNNING", 3: "COMPLETE", 4: "FAILED", 5: "CACHED", 6: "CANCELED"}
_OUTPUT_EVENT = 4  # ml_metadata.proto.Event.OUTPUT


def run_local(experiment, dataset: str, data_root: str, name: Optional[str] = None, home: Optional[str] = None,
              beam_args: Optional[Sequence[str]] = None, quiet: bool = False, progress: Optional[TextIO] = None,
              **kwargs) -> dict:
    """Create and run the pipeline with LocalDagRunner; returns ``{"pipeline_name", "paths", "wall_s", "steps",
    "outcome", "log"}`` where steps is ``summarize``'s list and outcome ``collect_outcome``'s dict for this run.

    quiet: send the run's output to a log file (``<home>/logs/<name>/<time>.log``, returned as ``log``) and write
    only step progress and error lines to ``progress`` (default stderr). kwargs go to ``create_pipeline``."""
    from pipelines.pipeline import create_pipeline
    from zoo.training import ExperimentConfig

    cfg = ExperimentConfig.coerce(experiment)
    name = name or configs.pipeline_name(cfg.name)
    paths = configs.local_paths(name, home)
    os.makedirs(os.path.dirname(paths.metadata_path), exist_ok=True)
    kwargs.setdefault("serving_dir", paths.serving_dir)
    pipeline = create_pipeline(cfg, data_root, dataset, paths.pipeline_root, paths.metadata_path, beam_args,
                               pipeline_name=name, **kwargs)
    result = execute(pipeline, name, paths, quiet, progress)
    result["steps"] = summarize(paths.metadata_path, name)
    result["outcome"] = collect_outcome(paths.metadata_path, name)
    return result


def execute(pipeline, name: str, paths, quiet: bool = False, progress: Optional[TextIO] = None) -> dict:
    """Run a built pipeline with LocalDagRunner (quiet: its output to ``<paths.log_dir>/<time>-<pid>.log``, step
    lines and errors to ``progress``) -> ``{"pipeline_name", "paths", "wall_s", "log"}``. ``run_local`` and
    ``pipelines.cycle_pipeline.run_cycle_local`` both run through it."""
    from tfx import v1 as tfx

    log = None
    if quiet:
        os.makedirs(paths.log_dir, exist_ok=True)
        log = os.path.join(paths.log_dir, time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}.log")
    t0 = time.time()
    with (_quiet_run(log, progress or sys.stderr) if quiet else contextlib.nullcontext()):
        tfx.orchestration.LocalDagRunner().run(pipeline)
    return {"pipeline_name": name, "paths": paths, "wall_s": round(time.time() - t0, 1), "log": log}


# -- the run's output ----------------------------------------------------------------------------------------------

#: the LocalDagRunner's record when a step starts (absl INFO, ``logging.info('Component %s is running.', node_id)``)
_STEP_START = "Component %s is running."
#: error lines worth showing even when quiet (the full text is in the log)
_ERROR_LINE = re.compile(r"^(Traceback \(most recent call last\)|\w+(\.\w+)*(Error|Exception): |ERROR:|E\d{4} |"
                         r"F\d{4} |CRITICAL:|Fatal Python error)")
#: error-looking lines that are not errors of the run (probing a GPU the machine does not have, ...)
_NOT_AN_ERROR = re.compile(r"failed call to cuInit|Could not find cuda drivers|GPU will not be used|"
                           r"Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|"
                           r"absl::InitializeLog")
#: a Python logging record as a handler printed it (those reach the terminal through _Progress, not the log)
_LOGGING_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):[\w.]+:")


def is_error_line(line: str) -> bool:
    """Whether a line of the run's output reports an error a quiet run must still show."""
    return bool(_ERROR_LINE.match(line)) and not _NOT_AN_ERROR.search(line)


class _Progress(logging.Handler):
    """What a quiet run shows: one line per step as it starts and every error record (a logging handler on the root
    logger, so it sees every logger's records whatever stream their own handlers write to), plus the error lines
    that raw output (C++ logs, child processes) writes to the log (``follow``)."""

    def __init__(self, out: TextIO):
        super().__init__(logging.INFO)
        self.out, self.steps, self.guard = out, 0, threading.Lock()

    def say(self, text: str) -> None:
        with self.guard:
            self.out.write(text + "\n")
            with contextlib.suppress(Exception):
                self.out.flush()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.msg == _STEP_START and record.args:
                with self.guard:
                    self.steps += 1
                    n = self.steps
                self.say(f"  [{n}] {record.args[0]} ...")
            elif record.levelno >= logging.ERROR:
                msg = record.getMessage().splitlines() or [""]
                if not _NOT_AN_ERROR.search(msg[0]):
                    self.say(f"  {record.levelname}:{record.name}: {msg[0]}")
        except Exception:  # a progress line is never worth failing the run
            pass

    def follow(self, path: str, stop: threading.Event) -> None:
        pos, buf = 0, ""
        while True:
            done = stop.is_set()
            with contextlib.suppress(OSError):
                with open(path, "rb") as fh:
                    fh.seek(pos)
                    chunk = fh.read()
                    pos += len(chunk)
                    buf += chunk.decode("utf-8", errors="replace")
            lines = buf.split("\n")
            buf = lines.pop()
            for line in lines:
                if is_error_line(line) and not _LOGGING_LINE.match(line):
                    self.say(f"  {line}")
            if done:
                return
            stop.wait(0.5)


@contextlib.contextmanager
def _quiet_run(log_path: str, progress: TextIO):
    """File descriptors 1 and 2 (this process and every child: Beam workers, the wheel build) go to ``log_path``
    for the block; ``_Progress`` writes step starts and error lines to ``progress``. On an exception ``progress`` is
    told where the log is before the exception propagates."""
    from absl import logging as absl_logging

    for s in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            s.flush()
    # progress may be our own stderr: write through a duplicate of the real terminal, not the redirected fd 2
    real = _reopen(progress)
    shown = _Progress(real)
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    old_verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)  # everything into the log; the terminal gets the filtered view
    logging.captureWarnings(True)
    root = logging.getLogger()
    stop = threading.Event()
    follower = threading.Thread(target=shown.follow, args=(log_path, stop), daemon=True)
    ok = False
    shown.say(f"  (quiet: the run's full output goes to {configs.host_path(log_path)}; "
              f"histozoo --verbose pipeline ... shows it here)")
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        root.addHandler(shown)
        follower.start()
        yield
        ok = True
    finally:
        root.removeHandler(shown)
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (*saved, fd):
            os.close(f)
        stop.set()
        follower.join(timeout=5)
        absl_logging.set_verbosity(old_verbosity)
        logging.captureWarnings(False)
        if not ok:  # the error itself propagates (the CLI prints it); the lines around it are in the log
            shown.say(f"  the run failed; its full output: {configs.host_path(log_path)}")
        if real is not progress:
            real.close()


def _reopen(stream: TextIO) -> TextIO:
    """A text stream on a duplicate of ``stream``'s file descriptor (so it keeps pointing at the terminal while fds
    1 and 2 are redirected); ``stream`` itself when it has no descriptor (a test's StringIO)."""
    try:
        return os.fdopen(os.dup(stream.fileno()), "w", buffering=1, encoding="utf-8", errors="replace")
    except (AttributeError, OSError, ValueError):
        return stream


# -- what happened: MLMD ---------------------------------------------------------------------------------------

def _store(metadata_path: str):
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = metadata_path
    cfg.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(cfg)


def _run_executions(store, pipeline_name: str, run: int = -1) -> list:
    """``[(node, execution)]`` of one pipeline run (run=-1: the latest), in execution order."""
    runs = [c for c in store.get_contexts_by_type("pipeline_run")
            if any(p.name == pipeline_name for p in store.get_parent_contexts_by_context(c.id))]
    if not runs:
        return []
    runs.sort(key=lambda c: (c.create_time_since_epoch, c.id))
    out = []
    for e in sorted(store.get_executions_by_context(runs[run].id), key=lambda e: e.id):
        nodes = [c.name for c in store.get_contexts_by_execution(e.id) if c.type == "node"]
        out.append((nodes[0].split(".", 1)[-1] if nodes else str(e.type), e))
    return out


def _step(store, node: str, e, types: dict) -> dict:
    if e.type_id not in types:
        types.update({t.id: t.name for t in store.get_execution_types_by_id([e.type_id])})
    return {"node": node, "state": _STATES.get(e.last_known_state, str(e.last_known_state)), "execution_id": e.id,
            # a resolver (the baseline lookup) runs on every run, cached or not: it is no step of its own
            "resolver": types.get(e.type_id, "").endswith(".Resolver")}


def summarize(metadata_path: str, pipeline_name: str, run: int = -1) -> list[dict]:
    """``[{"node", "state", "execution_id", "resolver"}]`` of one pipeline run in the MLMD store (run=-1: the latest
    run). state is COMPLETE for a step that ran, CACHED for one served from the cache; resolver marks the
    baseline lookup, which runs every time."""
    if not os.path.isfile(metadata_path):
        return []
    store, types = _store(metadata_path), {}
    return [_step(store, node, e, types) for node, e in _run_executions(store, pipeline_name, run)]


def _props(artifact) -> dict:
    out = {}
    for k, v in artifact.custom_properties.items():
        kind = v.WhichOneof("value")
        out[k] = getattr(v, kind) if kind in ("int_value", "double_value", "string_value") else None
    return out


def collect_outcome(metadata_path: str, pipeline_name: str, run: int = -1) -> dict:
    """What one pipeline run (run=-1: the latest) decided, read from the MLMD store and the artifacts it points at.

    ``{"steps", "blessed", "reasons", "metrics", "metrics_file", "pushed", "pushed_path", "pushed_version",
    "registered", "registered_name", "registered_version", "promoted", "run_id", "tracking_uri", "cached"}``:
    blessed / pushed / registered are True, False, or None when that step did not finish; cached lists the steps
    served from the cache (their outcome is an earlier run's: nothing new was pushed or registered)."""
    out = {"steps": [], "blessed": None, "reasons": [], "metrics": {}, "metrics_file": "", "pushed": None,
           "pushed_path": "", "pushed_version": "", "registered": None, "registered_name": "",
           "registered_version": "", "promoted": None, "run_id": "", "tracking_uri": "", "cached": []}
    if not os.path.isfile(metadata_path):
        return out
    store = _store(metadata_path)
    execs = _run_executions(store, pipeline_name, run)
    outputs = {}  # (node, key) -> artifact
    ids = [e.id for _, e in execs]
    node_of = {e.id: node for node, e in execs}
    events = store.get_events_by_execution_ids(ids) if ids else []
    by_id = {a.id: a for a in store.get_artifacts_by_id(sorted({ev.artifact_id for ev in events
                                                                 if ev.type == _OUTPUT_EVENT}))}
    for ev in events:
        if ev.type == _OUTPUT_EVENT and ev.artifact_id in by_id and ev.path.steps:
            outputs[(node_of[ev.execution_id], ev.path.steps[0].key)] = by_id[ev.artifact_id]
    types = {}
    for node, e in execs:
        step = _step(store, node, e, types)
        out["steps"].append(step)
        if step["state"] == "CACHED":
            out["cached"].append(node)

    model = outputs.get(("Trainer", "model"))
    if model is not None:
        run_file = os.path.join(model.uri, configs.MODEL_KERAS_DIR, configs.MODEL_RUN_FILE)
        with contextlib.suppress(OSError, ValueError):
            with open(run_file) as fh:
                out["run_id"] = json.load(fh).get("run_id") or ""
    blessing = outputs.get(("HistoEvaluator", "blessing"))
    if blessing is not None:
        p = _props(blessing)
        out["blessed"] = bool(p.get("blessed"))
        out["reasons"] = [r for r in (p.get("reasons") or "").split("; ") if r]
    evaluation = outputs.get(("HistoEvaluator", "evaluation"))
    if evaluation is not None:
        mf = os.path.join(evaluation.uri, "metrics.json")
        with contextlib.suppress(OSError, ValueError):
            with open(mf) as fh:
                ev = json.load(fh)
            out["metrics_file"] = mf
            out["metrics"] = dict((ev.get("current") or {}).get("mean") or {})
            out["reasons"] = list(ev.get("reasons") or out["reasons"])
            if out["blessed"] is None and "blessed" in ev:
                out["blessed"] = bool(ev["blessed"])
    pushed = outputs.get(("Pusher", "pushed_model"))
    if pushed is not None:
        p = _props(pushed)
        out["pushed"] = bool(p.get("pushed"))
        if out["pushed"]:
            out["pushed_path"] = p.get("pushed_destination") or ""
            out["pushed_version"] = str(p.get("pushed_version") or "")
    reg = outputs.get(("MlflowRegistrar", "registered_model"))
    if reg is not None:
        p = _props(reg)
        out["registered"] = bool(p.get("registered"))
        out["registered_name"] = p.get("name") or ""
        out["tracking_uri"] = p.get("tracking_uri") or ""
        if out["registered"]:
            out["registered_version"] = str(p.get("version") or "")
            out["run_id"] = p.get("run_id") or out["run_id"]
        if "promoted" in p:
            out["promoted"] = bool(p["promoted"])
    return out


# -- what happened: the printout -------------------------------------------------------------------------------

_HEADLINE_METRICS = ("aji", "pixel_dice", "pq")


def format_outcome(result: dict, verbose: bool = False, environ=None) -> str:
    """The end of ``histozoo pipeline run``: blessed or not and why, pushed version, registered version, MLflow run,
    and the host paths (``configs.host_path``) of what the run wrote. ``result``: ``run_local``'s dict (``outcome``
    from ``collect_outcome``). verbose adds every step's state."""
    o, p = result["outcome"], result["paths"]
    h = lambda path: configs.host_path(path, environ)  # noqa: E731
    every = o.get("steps") or result.get("steps") or []
    steps = [s for s in every if not s.get("resolver")]
    cached = set(o.get("cached") or []) & {s["node"] for s in steps}
    states = [s["state"] for s in steps]
    counts = ", ".join(f"{states.count(k)} {w}" for k, w in (("COMPLETE", "ran"), ("CACHED", "cached"),
                                                             ("FAILED", "failed")) if states.count(k))
    lines = [f"pipeline {result['pipeline_name']}: {len(steps)} steps ({counts or 'none'}) in {result['wall_s']} s"]
    if verbose:
        lines += [f"    {s['node']:34s} {s['state']}{' (resolver)' if s.get('resolver') else ''}" for s in every]
    if steps and len(cached) == len(steps):
        lines.append("  nothing changed since an earlier run: every step was served from the cache, so the lines "
                     "below are that run's outcome (nothing new trained, pushed or registered)")

    def was_cached(node):
        return " (cached: an earlier run's; nothing new)" if node in cached and len(cached) < len(steps) else ""

    metrics = o.get("metrics") or {}
    shown = ", ".join(f"{k}={metrics[k]:.4f}" for k in _HEADLINE_METRICS if isinstance(metrics.get(k), (int, float)))
    why = "; ".join(o.get("reasons") or [])
    if o.get("blessed") is None:
        lines.append("  blessed:     unknown (the evaluator did not finish)")
    else:
        lines.append(f"  blessed:     {'YES' if o['blessed'] else 'NO'}{' (' + shown + ')' if shown else ''}"
                     f"{was_cached('HistoEvaluator')}")
        if why:
            lines.append(f"               {why}")
    if o.get("pushed"):
        lines.append(f"  pushed:      {h(o['pushed_path'])}{was_cached('Pusher')}")
    elif o.get("pushed") is False:
        lines.append("  pushed:      not pushed (the model was not blessed)")
    else:
        lines.append("  pushed:      not pushed (the Pusher did not finish)")
    if o.get("registered"):
        promo = {True: ", promoted to champion", False: ", not promoted"}.get(o.get("promoted"), "")
        lines.append(f"  registered:  {o['registered_name']} version {o['registered_version']}{promo}"
                     f"{was_cached('MlflowRegistrar')}")
    elif o.get("registered") is False:
        as_ = f" as {o['registered_name']}" if o.get("registered_name") else ""
        lines.append(f"  registered:  not registered{as_} (nothing was pushed)")
    else:
        lines.append("  registered:  not registered (the registrar did not finish)")
    run_id = o.get("run_id")
    tracking = h(o.get("tracking_uri") or "")
    lines.append(f"  mlflow run:  {run_id or 'none recorded'}{'  (' + tracking + ')' if tracking else ''}")
    lines.append("  wrote:")
    rows = [("artifacts", p.pipeline_root), ("metrics", o.get("metrics_file") or ""),
            ("serving", p.serving_dir), ("metadata", p.metadata_path), ("log", result.get("log") or "")]
    lines += [f"    {k:10s} {h(v)}" for k, v in rows if v]
    return "\n".join(lines)


def format_failure(name: str, metadata_path: str, environ=None) -> str:
    """One line naming the step(s) that failed in the latest run of ``name`` (empty when MLMD has none)."""
    with contextlib.suppress(Exception):
        failed = [s["node"] for s in summarize(metadata_path, name) if s["state"] == "FAILED"]
        if failed:
            return f"pipeline {name}: FAILED at {', '.join(failed)} (metadata {configs.host_path(metadata_path, environ)})"
    return ""
