"""Run the pipeline locally: LocalDagRunner, an embedded sqlite ML Metadata store, Beam's DirectRunner
(multi-processing by default). ``histozoo pipeline run NAME --config ... --dataset ... --data-root ...`` calls
``run_local``; a re-run with nothing changed is served from the MLMD cache (``summarize`` shows which steps ran).
"""

from __future__ import annotations

import os
import time
from typing import Optional, Sequence

from pipelines import configs

# MLMD execution states (ml_metadata.proto.Execution.State)
_STATES = {0: "UNKNOWN", 1: "NEW", 2: "RUNNING", 3: "COMPLETE", 4: "FAILED", 5: "CACHED", 6: "CANCELED"}


def run_local(experiment, dataset: str, data_root: str, name: Optional[str] = None, home: Optional[str] = None,
              beam_args: Optional[Sequence[str]] = None, **kwargs) -> dict:
    """Create and run the pipeline with LocalDagRunner; returns ``{"pipeline_name", "paths", "wall_s", "steps"}``
    where steps is ``summarize``'s list for this run. kwargs go to ``create_pipeline``."""
    from tfx import v1 as tfx

    from pipelines.pipeline import create_pipeline, load_experiment

    cfg = load_experiment(experiment)
    name = name or configs.pipeline_name(cfg.name)
    paths = configs.local_paths(name, home)
    os.makedirs(os.path.dirname(paths.metadata_path), exist_ok=True)
    kwargs.setdefault("serving_dir", paths.serving_dir)
    pipeline = create_pipeline(cfg, data_root, dataset, paths.pipeline_root, paths.metadata_path, beam_args,
                               pipeline_name=name, **kwargs)
    t0 = time.time()
    tfx.orchestration.LocalDagRunner().run(pipeline)
    return {"pipeline_name": name, "paths": paths, "wall_s": round(time.time() - t0, 1),
            "steps": summarize(paths.metadata_path, name)}


def summarize(metadata_path: str, pipeline_name: str, run: int = -1) -> list[dict]:
    """``[{"node", "state", "execution_id"}]`` of one pipeline run in the MLMD store (run=-1: the latest run).
    state is COMPLETE for a step that ran, CACHED for one served from the cache."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = metadata_path
    cfg.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(cfg)
    runs = [c for c in store.get_contexts_by_type("pipeline_run")
            if any(p.name == pipeline_name for p in store.get_parent_contexts_by_context(c.id))]
    if not runs:
        return []
    runs.sort(key=lambda c: (c.create_time_since_epoch, c.id))
    ctx = runs[run]
    out = []
    for e in sorted(store.get_executions_by_context(ctx.id), key=lambda e: e.id):
        nodes = [c.name for c in store.get_contexts_by_execution(e.id) if c.type == "node"]
        node = nodes[0].split(".", 1)[-1] if nodes else str(e.type)
        out.append({"node": node, "state": _STATES.get(e.last_known_state, str(e.last_known_state)),
                    "execution_id": e.id})
    return out


def format_summary(result: dict) -> str:
    rows = [f"  {s['node']:34s} {s['state']}" for s in result["steps"]]
    p = result["paths"]
    return "\n".join([f"pipeline {result['pipeline_name']}: {len(result['steps'])} steps in {result['wall_s']} s",
                      *rows, f"  artifacts: {p.pipeline_root}", f"  metadata:  {p.metadata_path}",
                      f"  serving:   {p.serving_dir}"])
