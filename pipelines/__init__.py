"""histozoo's TFX pipelines -- the only package that imports tfx (DESIGN.md).

    pipelines.configs         constants and local paths (no tfx import)
    pipelines.ingest          split rules + one image's read/encode (no tfx import)
    pipelines.blessing        the Evaluator's blessing rule (no tfx import)
    pipelines.pipeline        create_pipeline(experiment, data_root, dataset, pipeline_root, metadata_path, beam_args)
    pipelines.local_runner    run_local: LocalDagRunner + sqlite MLMD
    pipelines.kubeflow_runner compile_pipeline: Kubeflow V2 / Vertex spec
    pipelines.components      HistoExampleGen, HistoEvaluator, MlflowRegistrar, StableBaselineStrategy
    pipelines.trainer.module  the Trainer's run_fn -> zoo.training.train

TFX 1.21 needs glibc >= 2.39; elsewhere run through scripts/tfx_env.sh (docs/tfx.md).
"""


def require_tfx() -> None:
    """Raise a one-line ZooError when tfx is not importable here, saying how to get it."""
    import importlib.util

    if importlib.util.find_spec("tfx") is None:
        from zoo.errors import ZooError

        raise ZooError("tfx is not installed in this environment: on glibc >= 2.39 `pip install -e \".[tfx]\" "
                       "-c constraints/tfx.txt`; elsewhere run the command through `sudo scripts/tfx_env.sh run "
                       "histozoo pipeline ...` (docs/tfx.md)")
