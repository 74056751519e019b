"""``create_pipeline``: the histozoo TFX pipeline (wiring only; constants in configs.py, orchestrators in the runners).

    HistoExampleGen (raw folder -> our records, Beam) -> StatisticsGen -> SchemaGen -> ExampleValidator
       [with ``dataset="records"``: HistoRecordsGen (a built records folder, e.g. ``histozoo data crops``, as it is)]
    -> Trainer (GenericExecutor, pipelines/trainer/module.py: run_fn -> zoo.training.train)
       [with ``synth``: HistoSynthGen (``histozoo synth`` as a step) -> Trainer, which then trains on synthetic
        records only; the statistics, schema and Evaluator stay on the real dataset]
    -> HistoEvaluator (zoo.evaluation on the eval split; blesses vs thresholds and the blessed baseline)
    -> Pusher (gated on the blessing; versioned serving directory) -> MlflowRegistrar (MLflow model registry)
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

from tfx import v1 as tfx

from pipelines import configs, ingest
from pipelines.components.baseline import StableBaselineStrategy
from pipelines.components.evaluator import HistoEvaluator
from pipelines.components.example_gen import HistoExampleGen
from pipelines.components.records_gen import HistoRecordsGen
from pipelines.components.registry import MlflowRegistrar
from pipelines.components.synth_gen import HistoSynthGen

#: keys of ``create_pipeline(synth=...)``: HistoSynthGen's parameters (histozoo synth's --images, --n, --seed,
#: --option KEY=VALUE, --refiner)
SYNTH_KEYS = ("images", "n", "seed", "options", "refiner")


def create_pipeline(experiment, data_root: str, dataset: str, pipeline_root: str,
                    metadata_path: Optional[str] = None, beam_args: Optional[Sequence[str]] = None, *,
                    pipeline_name: Optional[str] = None, serving_dir: Optional[str] = None,
                    reader_options: Optional[dict] = None, eval_fraction: float = configs.EVAL_FRACTION,
                    thresholds: Optional[dict] = None, compare_metric: Optional[str] = None,
                    min_improvement: float = configs.MIN_IMPROVEMENT, eval_max_images: int = 0,
                    registered_model_name: Optional[str] = None, mlflow_tracking_uri: str = "",
                    promote_metric: str = "", promote_margin: float = 0.0,
                    module_file: Optional[str] = configs.MODULE_FILE, run_fn: Optional[str] = None,
                    baseline: str = "stable", enable_cache: bool = True, verbose: int = 2,
                    synth: Optional[dict] = None) -> tfx.dsl.Pipeline:
    """The histozoo pipeline for one experiment (any zoo model) on one raw dataset folder.

    experiment: ExperimentConfig, dict or YAML/JSON path (model, input, loss, epochs, fold/splits, postprocess,
    tracking). data_root / dataset: the raw folder and its zoo.data.readers name. pipeline_root: where artifacts
    go. dataset ``records`` (configs.RECORDS_DATASET): data_root is a built records folder read as it is
    (HistoRecordsGen: the experiment's train_split -> train, val_split -> eval), e.g. nucleus crops for a GAN.
    metadata_path: sqlite MLMD file (None: the orchestrator's own store, e.g. on Kubeflow). beam_args: Beam pipeline
    args (default: DirectRunner multi-processing, configs.BEAM_PIPELINE_ARGS). serving_dir: the Pusher's
    base directory (default ``<pipeline_root>/serving_model``). thresholds: {metric: minimum} for blessing;
    compare_metric / min_improvement: beating the blessed baseline (defaults: configs.eval_defaults, i.e. pixel Dice
    and AJI for segmentation models, purity for the GAN models). registered_model_name: MLflow registry name
    (``configs.registered_model_name``: this argument, else the experiment's ``tracking.register_as``, else the
    pipeline name). module_file or run_fn: the Trainer's user
    code. baseline: ``stable`` (StableBaselineStrategy, cache-friendly) or ``latest`` (TFX's
    LatestBlessedModelStrategy, what Kubeflow V2 compiles). synth: ``{"images": DIR, "n": N, "seed", "options",
    "refiner"}`` puts HistoSynthGen in front of the Trainer: it trains on N synthetic images made from the real
    images in DIR (``histozoo synth``; its train/val split -> the Trainer's train/eval), never on the dataset's
    labels; the Evaluator still scores the real dataset's eval split.
    """
    from zoo.errors import ConfigError
    from zoo.training import ExperimentConfig

    cfg = ExperimentConfig.coerce(experiment)
    name = pipeline_name or configs.pipeline_name(cfg.name)
    split = ingest.SplitSpec.for_experiment(cfg, eval_fraction)
    if baseline not in ("stable", "latest"):
        raise ConfigError(f"baseline must be 'stable' or 'latest', got {baseline!r}")
    track = cfg.tracking_config()
    if not (track.enabled and track.log_model):
        raise ConfigError(f"experiment {cfg.name!r}: the pipeline's MlflowRegistrar registers the model the Trainer's "
                          f"MLflow run logged: set tracking.enabled and tracking.log_model to true")
    default_thresholds, default_compare = configs.eval_defaults(cfg.model)
    thresholds = default_thresholds if thresholds is None else thresholds
    compare_metric = compare_metric or default_compare
    if dataset != configs.RECORDS_DATASET and os.path.isdir(data_root):  # check it is that dataset now, not in Beam
        from zoo.data.readers import get_reader

        get_reader(dataset)(data_root, **(reader_options or {}))
    experiment_dict = cfg.to_dict()
    synth_gen = None
    if synth:
        unknown = sorted(set(synth) - set(SYNTH_KEYS))
        if unknown or not synth.get("images") or not synth.get("n"):
            raise ConfigError(f"synth: needs images and n (keys {', '.join(SYNTH_KEYS)}), got {dict(synth)}")
        if "://" not in str(synth["images"]):
            from zoo.synthesis.dataset import list_images

            list_images(synth["images"])  # a local folder: check it holds images now, not inside the step
        synth_gen = HistoSynthGen(images=synth["images"], n=int(synth["n"]), seed=int(synth.get("seed") or 0),
                                  options=synth.get("options"), refiner=synth.get("refiner") or "",
                                  input_fingerprint=ingest.input_fingerprint(synth["images"]))

    if dataset == configs.RECORDS_DATASET:
        example_gen = HistoRecordsGen(records=data_root, splits={ingest.TRAIN: split.train_split,
                                                                 ingest.EVAL: split.eval_split},
                                      input_fingerprint=ingest.input_fingerprint(data_root))
    else:
        example_gen = HistoExampleGen(dataset=dataset, data_root=data_root, split_spec=split,
                                      reader_options=reader_options,
                                      input_fingerprint=ingest.input_fingerprint(data_root))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=False)
    example_validator = tfx.components.ExampleValidator(statistics=statistics_gen.outputs["statistics"],
                                                        schema=schema_gen.outputs["schema"])
    custom_config = {"experiment": experiment_dict, "mlflow_tracking_uri": mlflow_tracking_uri, "verbose": verbose}
    train_examples = (example_gen if synth_gen is None else synth_gen).outputs["examples"]
    trainer = tfx.components.Trainer(
        module_file=module_file if not run_fn else None, run_fn=run_fn or None,
        examples=train_examples, schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=[ingest.TRAIN], num_steps=cfg.epochs * cfg.steps_per_epoch),
        eval_args=tfx.proto.EvalArgs(splits=[ingest.EVAL]),
        custom_config=custom_config)
    if baseline == "stable":
        resolver = tfx.dsl.Resolver(
            strategy_class=StableBaselineStrategy,
            model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
            model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
            candidate=trainer.outputs["model"]).with_id("latest_blessed_model_resolver")
    else:
        resolver = tfx.dsl.Resolver(
            strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
            model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
            model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
        ).with_id("latest_blessed_model_resolver")
    evaluator = HistoEvaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        baseline_model=resolver.outputs["model"], experiment=experiment_dict,
        thresholds=thresholds,
        compare_metric=compare_metric, min_improvement=min_improvement, max_images=eval_max_images)
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(filesystem=tfx.proto.PushDestination.Filesystem(
            base_directory=serving_dir or os.path.join(pipeline_root, "serving_model"))))
    registrar = MlflowRegistrar(
        model=trainer.outputs["model"], pushed_model=pusher.outputs["pushed_model"],
        evaluation=evaluator.outputs["evaluation"],
        registered_model_name=configs.registered_model_name(name, cfg.tracking, registered_model_name)[0],
        experiment=experiment_dict, tracking_uri=mlflow_tracking_uri, promote_metric=promote_metric,
        promote_margin=promote_margin)

    return tfx.dsl.Pipeline(
        pipeline_name=name, pipeline_root=pipeline_root,
        components=[example_gen, *([] if synth_gen is None else [synth_gen]), statistics_gen, schema_gen,
                    example_validator, trainer, resolver, evaluator, pusher, registrar],
        enable_cache=enable_cache,
        metadata_connection_config=(tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
                                    if metadata_path else None),
        beam_pipeline_args=list(configs.BEAM_PIPELINE_ARGS if beam_args is None else beam_args))
