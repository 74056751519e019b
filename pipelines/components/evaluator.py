"""HistoEvaluator: scores the trained model on the eval split with the papers' metrics and blesses it.

Metrics come from ``zoo.evaluation.evaluate`` -- the same evaluation the CLI runs: ``zoo.inference.predict`` with the
model's InferenceSpec (written by the Trainer beside model.keras and inside the pushed SavedModel: its resolution and
post-processing, so the blessed numbers describe the served model), then ``zoo.metrics.segmentation_report`` (pixel
Dice/IoU; AJI, Kumar et al. 2017, TMI 36(7):1550-1560, eq. 1; PQ, Kirillov et al. 2019, CVPR, eq. 1). When the
latest blessed model is given as ``baseline_model`` (a LatestBlessedModelStrategy resolver), it is scored on the
same eval images and the candidate must beat it (pipelines/blessing.py). Outputs a ``ModelEvaluation``
(``metrics.json``: both models' means and per-image rows, the thresholds and the reasons) and a ``ModelBlessing``
(a GAN model, zoo.models.gan, is scored by its clusters of the eval crops instead: :func:`score`)
with the custom properties the standard Pusher and the resolver read (``blessed``, ``current_model_id``, ...).
"""

from __future__ import annotations

import json
import os
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipelines import blessing
from zoo.atomic import write_json
from pipelines.components.example_gen import split_files

from pipelines.configs import MODEL_KERAS_DIR as KERAS_DIR, MODEL_KERAS_FILE as KERAS_FILE, MODEL_RUN_FILE as RUN_FILE

METRICS_FILE = "metrics.json"


class HistoEvaluatorSpec(ComponentSpec):
    PARAMETERS = {
        "experiment": ExecutionParameter(type=str),  # JSON of the ExperimentConfig (recorded; the spec rules)
        "thresholds": ExecutionParameter(type=str),  # JSON {metric: minimum}
        "compare_metric": ExecutionParameter(type=str),
        "min_improvement": ExecutionParameter(type=float),
        "eval_split": ExecutionParameter(type=str),
        "max_images": ExecutionParameter(type=int),
    }
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "model": ChannelParameter(type=standard_artifacts.Model),
        "baseline_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
        "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


def keras_model_path(model_uri: str) -> str:
    return os.path.join(model_uri, KERAS_DIR, KERAS_FILE)


def read_run_info(model_uri: str) -> dict:
    """What the Trainer's run_fn recorded beside the model: MLflow run id, training metrics, experiment."""
    p = os.path.join(model_uri, KERAS_DIR, RUN_FILE)
    if not os.path.isfile(p):
        return {}
    with open(p) as fh:
        return json.load(fh)


def load_model_artifact(model_uri: str):
    """The Keras model and InferenceSpec stored in a Trainer's Model artifact, by the one loader
    (``zoo.training.tracking.load``: model.keras + spec.json beside it); a one-line DataError when there is none."""
    from zoo.errors import DataError
    from zoo.training.tracking import load

    path = keras_model_path(model_uri)
    if not os.path.isfile(path):
        raise DataError(path, "no Keras model in this Model artifact (was it written by pipelines/trainer/module.py?)")
    return load(path)


def score(model_uri: str, records: list[str], max_images: int = 0) -> dict:
    """zoo.evaluation.evaluate of the Keras model stored in a Model artifact, through its own InferenceSpec
    (:func:`load_model_artifact`): the blessing scores exactly what the Pusher pushes and TF Serving serves. A model
    that clusters nucleus crops (zoo.models.gan) is scored as the training core scores it
    (``zoo.training.train.evaluators``: purity / entropy / F-score of Q's clusters of the eval crops)."""
    from zoo.training.train import evaluators

    loaded = load_model_artifact(model_uri)
    evaluate = evaluators(loaded.model)[0]
    return evaluate(loaded.model, records, split="eval", spec=loaded.spec, max_images=max_images)


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        from zoo.errors import DataError

        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        model = artifact_utils.get_single_instance(input_dict["model"])
        baseline = (input_dict.get("baseline_model") or [None])[0]
        evaluation = artifact_utils.get_single_instance(output_dict["evaluation"])
        bless_art = artifact_utils.get_single_instance(output_dict["blessing"])

        thresholds = blessing.check_thresholds(json.loads(exec_properties["thresholds"]))
        compare, min_imp = exec_properties["compare_metric"], float(exec_properties["min_improvement"])
        split, max_images = exec_properties["eval_split"], int(exec_properties["max_images"])
        records = split_files(examples.uri, split)
        if not records:
            raise DataError(examples.uri, f"no records in split {split!r}")

        current = score(model.uri, records, max_images)
        base = None
        if baseline is not None and baseline.id != model.id:
            if os.path.isfile(keras_model_path(baseline.uri)):
                base = score(baseline.uri, records, max_images)
        blessed, reasons = blessing.decide(current["mean"], thresholds, base["mean"] if base else None,
                                           compare, min_imp)

        os.makedirs(evaluation.uri, exist_ok=True)
        write_json(os.path.join(evaluation.uri, METRICS_FILE), {
            "split": split, "records": records, "thresholds": thresholds, "compare_metric": compare,
            "min_improvement": min_imp, "blessed": blessed, "reasons": reasons,
            "current": current, "baseline": base, "baseline_model_uri": baseline.uri if base else None})
        for k, v in current["mean"].items():
            evaluation.set_float_custom_property(k, float(v))
        evaluation.set_int_custom_property("images", int(current["images"]))

        os.makedirs(bless_art.uri, exist_ok=True)
        with open(os.path.join(bless_art.uri, "BLESSED" if blessed else "NOT_BLESSED"), "w") as fh:
            fh.write("\n".join(reasons) + "\n")
        # the keys the Pusher (blessed) and LatestBlessedModelStrategy (blessed, current_model_id) read
        bless_art.set_int_custom_property("blessed", int(blessed))
        bless_art.set_string_custom_property("current_model", model.uri)
        bless_art.set_int_custom_property("current_model_id", model.id)
        # the baseline this evaluation was GIVEN (0 = none): StableBaselineStrategy hands it again on a re-run
        bless_art.set_int_custom_property("baseline_model_id", baseline.id if baseline is not None else 0)
        if baseline is not None:
            bless_art.set_string_custom_property("baseline_model", baseline.uri)
        bless_art.set_string_custom_property("reasons", "; ".join(reasons))


class HistoEvaluator(base_component.BaseComponent):
    """Segmentation evaluator + blessing (see the module docstring)."""

    SPEC_CLASS = HistoEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel, experiment: dict,
                 thresholds: dict, compare_metric: str = "aji", min_improvement: float = 0.0,
                 baseline_model: types.BaseChannel | None = None, eval_split: str = "eval", max_images: int = 0):
        spec = HistoEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model,
            experiment=json.dumps(experiment, sort_keys=True),
            thresholds=json.dumps(blessing.check_thresholds(thresholds), sort_keys=True),
            compare_metric=compare_metric, min_improvement=float(min_improvement), eval_split=eval_split,
            max_images=int(max_images),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing))
        super().__init__(spec=spec)
