"""TFX Trainer user module (GenericExecutor): ``run_fn(fn_args)`` trains with ``zoo.training.train`` -- the same
function ``histozoo train`` runs -- on the ExampleGen's train/eval records, then writes into the Model artifact:

    Format-Serving/   the TF Serving SavedModel (serving.export when present, else keras ``model.export``)
    Format-Keras/     model.keras (what the Evaluator scores), spec.json (its InferenceSpec) and run.json (MLflow run
                      id, metrics, config); the SavedModel carries the same spec

``fn_args.custom_config``: ``experiment`` (ExperimentConfig dict, required), ``mlflow_tracking_uri`` (optional),
``verbose`` (keras fit verbosity). With the Trainer's ``base_model`` input (a Model artifact this module wrote, e.g.
the previous annotation cycle's), training starts from its weights: its Format-Keras/model.keras becomes the
experiment's ``init_weights`` (:func:`base_model_weights`). The pipeline registers the model only after the
Evaluator blessed it and the Pusher pushed it, so the run's own ``register_as`` is switched off here.

TFX packages this file as a user-module wheel, so it imports only installed packages (zoo, serving, pipelines).
"""

from __future__ import annotations

import os

from pipelines.configs import MODEL_KERAS_DIR as KERAS_DIR, MODEL_KERAS_FILE as KERAS_FILE, MODEL_RUN_FILE as RUN_FILE
from zoo import atomic
from zoo.inference import SPEC_FILE


def _expand(patterns) -> list[str]:
    import tensorflow as tf

    out = []
    for p in patterns or []:
        out.extend(sorted(tf.io.gfile.glob(p)) if any(c in p for c in "*?[") else [p])
    return out


def export_serving(model, serving_model_dir: str, metadata: dict | None = None, spec=None) -> str:
    """The SavedModel TF Serving reads, written directly into ``serving_model_dir`` (the Pusher adds the version).

    Uses serving.export (bytes / uint8 / float / tf.Example signatures, in-graph instances) when it is installed,
    else ``model.export`` (float signature only). The folder appears complete or not at all (temp + rename).
    """
    tmp = atomic.temp_sibling(serving_model_dir, keep_suffix=False)
    os.mkdir(tmp)
    try:
        try:
            from serving.export import export
        except ImportError:
            export = None
        if export is not None:
            written = export(model, tmp, version=1, spec=spec, metadata=metadata)
        else:
            written = os.path.join(tmp, "1")
            model.export(written, verbose=False)
        if os.path.isdir(serving_model_dir) and not os.listdir(serving_model_dir):
            os.rmdir(serving_model_dir)
        atomic.commit(written, serving_model_dir)
    finally:
        atomic.discard(tmp)
    return serving_model_dir


def base_model_weights(base_model: str) -> str:
    """The model.keras of the Model artifact behind ``fn_args.base_model`` (TFX hands the artifact's serving
    folder, ``<uri>/Format-Serving``; the Keras model this module saved sits beside it in ``<uri>/Format-Keras``)."""
    from zoo.errors import DataError

    uri = os.path.dirname(os.path.normpath(base_model))
    path = os.path.join(uri, KERAS_DIR, KERAS_FILE)
    if not os.path.isfile(path):
        raise DataError(path, "the Trainer's base_model has no Keras model here (was it written by "
                              "pipelines/trainer/module.py?)")
    return path


def run_fn(fn_args) -> None:
    """TFX GenericExecutor entry point (``tfx.components.Trainer(module_file=...)``)."""
    from zoo.errors import ConfigError
    from zoo.training import ExperimentConfig, train

    custom = dict(fn_args.custom_config or {})
    if "experiment" not in custom:
        raise ConfigError("Trainer custom_config has no 'experiment' (the ExperimentConfig as a dict)")
    if custom.get("mlflow_tracking_uri"):
        os.environ["MLFLOW_TRACKING_URI"] = custom["mlflow_tracking_uri"]
    cfg = ExperimentConfig.from_dict(custom["experiment"])
    # the ExampleGen already applied the fold / split: train on its records as they are
    cfg = cfg.replace(data_dir="", fold=None, tracking={**cfg.tracking, "register_as": ""})
    if getattr(fn_args, "base_model", None):  # warm start from the base_model input (e.g. the previous cycle's)
        cfg = cfg.replace(init_weights=base_model_weights(fn_args.base_model))
    train_records, eval_records = _expand(fn_args.train_files), _expand(fn_args.eval_files)
    if not train_records:
        raise ConfigError(f"no training records match {fn_args.train_files}")

    result = train(cfg, train_records=train_records, eval_records=eval_records or None,
                   output_dir=fn_args.model_run_dir, verbose=int(custom.get("verbose", 2)))

    model_uri = os.path.dirname(os.path.abspath(fn_args.serving_model_dir))
    keras_dir = os.path.join(model_uri, KERAS_DIR)
    os.makedirs(keras_dir, exist_ok=True)
    with atomic.atomic_path(os.path.join(keras_dir, KERAS_FILE)) as tmp:
        result.model.save(tmp)
    info = {"run_id": result.run_id, "metrics": result.metrics, "experiment": cfg.to_dict(),
            "train_records": train_records, "eval_records": eval_records}
    atomic.write_json(os.path.join(keras_dir, RUN_FILE), info, indent=1)
    result.spec.save(os.path.join(keras_dir, SPEC_FILE))  # beside model.keras: zoo.training.tracking.load reads it
    export_serving(result.model, fn_args.serving_model_dir, spec=result.spec,
                   metadata={"experiment": cfg.to_dict(), "mlflow_run_id": result.run_id})
