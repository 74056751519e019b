"""Compile the pipeline to a Kubeflow Pipelines V2 spec (PipelineSpec JSON) with KubeflowV2DagRunner: the file
Kubeflow Pipelines 2.x uploads and Vertex AI Pipelines runs (``aiplatform.PipelineJob(template_path=FILE)``).
Compiling needs only ``kfp-pipeline-spec`` (constraints/tfx.txt), no cluster.

On the cluster every step runs in ``image`` (histozoo + its tfx extra installed), so the Trainer gets its code by
import path (configs.RUN_FN) rather than a packaged module file, the MLMD store is the orchestrator's, and the
Evaluator's baseline comes from TFX's LatestBlessedModelStrategy (the resolver policy V2 compiles).
"""

from __future__ import annotations

import json
import os
from typing import Optional

from pipelines import configs
from zoo import atomic


def compile_pipeline(experiment, dataset: str, data_root: str, out: str, target: str = "kubeflow",
                     pipeline_root: Optional[str] = None, image: str = configs.PIPELINE_IMAGE,
                     name: Optional[str] = None, allow_local: bool = False, **kwargs) -> dict:
    """Write the V2 pipeline spec of ``create_pipeline`` to ``out`` (atomically); returns the parsed JSON.
    A local data root or pipeline root, a missing pipeline root (the gs://YOUR_BUCKET placeholder) or a local MLflow
    store is a one-line ConfigError unless ``allow_local`` (configs.check_cluster_paths)."""
    from zoo.errors import ConfigError

    if target not in configs.COMPILE_TARGETS:
        raise ConfigError(f"--target must be one of {', '.join(configs.COMPILE_TARGETS)}, got {target!r}")
    configs.check_cluster_paths(data_root, pipeline_root, kwargs.get("mlflow_tracking_uri", ""), allow_local)
    from tfx import v1 as tfx

    from pipelines.pipeline import create_pipeline
    from zoo.training import ExperimentConfig

    cfg = ExperimentConfig.coerce(experiment)
    name = name or configs.pipeline_name(cfg.name)
    root = pipeline_root or os.path.join(configs.ROOT_PLACEHOLDER, name)
    kwargs.setdefault("serving_dir", os.path.join(root, "serving_model"))
    pipeline = create_pipeline(cfg, data_root, dataset, root, None, kwargs.pop("beam_args", None),
                               pipeline_name=name, module_file=None, run_fn=configs.RUN_FN, baseline="latest",
                               **kwargs)
    out = os.path.abspath(out)
    tmpdir = atomic.temp_sibling(out, keep_suffix=False)
    os.mkdir(tmpdir)
    try:
        runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
            config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
            output_dir=tmpdir, output_filename="pipeline.json")
        runner.run(pipeline, write_out=True)
        atomic.commit(os.path.join(tmpdir, "pipeline.json"), out)
    finally:
        atomic.discard(tmpdir)
    with open(out) as fh:
        return json.load(fh)


def dag_tasks(spec: dict) -> dict:
    """``{task: [upstream tasks]}`` of a compiled spec's root DAG (the tests check the wiring with it)."""
    spec = spec.get("pipelineSpec", spec)
    tasks = spec["root"]["dag"]["tasks"]
    return {k: sorted(v.get("dependentTasks", [])) for k, v in tasks.items()}
