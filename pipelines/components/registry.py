"""MlflowRegistrar: registers the pushed model in the MLflow model registry, with the Evaluator's metrics and the
experiment config as version tags.

The Trainer's run_fn trains through ``zoo.training.train``, which logs the Keras model to its MLflow run
(``runs:/<run_id>/model``); this step registers that logged model as a new version of ``registered_model_name``
(zoo.training.tracking.register_run_model), logs the Evaluator's means into the same run as ``eval_<metric>``
(what ``histozoo registry promote --metric eval_aji`` compares), and tags the version with the TF Serving
destination the Pusher wrote. Nothing is registered when the Pusher did not push (model not blessed).
Optionally (``promote_metric``) it then runs the registry's champion/challenger promotion
(zoo.training.tracking.promote).
"""

from __future__ import annotations

import json
import os
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipelines.components.evaluator import METRICS_FILE, read_run_info
from zoo import atomic


class RegisteredModelVersion(types.Artifact):
    """A model version in the MLflow registry (custom properties: name, version, run_id, tracking_uri)."""

    TYPE_NAME = "histozoo.RegisteredModelVersion"  # <namespace>.<Name>: the form Kubeflow V2 schema titles need


class MlflowRegistrarSpec(ComponentSpec):
    PARAMETERS = {
        "registered_model_name": ExecutionParameter(type=str),
        "tracking_uri": ExecutionParameter(type=str, optional=True),
        "experiment": ExecutionParameter(type=str),  # JSON of the ExperimentConfig (a version tag)
        "promote_metric": ExecutionParameter(type=str, optional=True),
        "promote_margin": ExecutionParameter(type=float, optional=True),
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "pushed_model": ChannelParameter(type=standard_artifacts.PushedModel),
        "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
    }
    OUTPUTS = {"registered_model": ChannelParameter(type=RegisteredModelVersion)}


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        from zoo.errors import ZooError
        from zoo.training import tracking

        self._log_startup(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(input_dict["model"])
        pushed = artifact_utils.get_single_instance(input_dict["pushed_model"])
        evaluation = artifact_utils.get_single_instance(input_dict["evaluation"])
        out = artifact_utils.get_single_instance(output_dict["registered_model"])
        name = exec_properties["registered_model_name"]
        if exec_properties.get("tracking_uri"):
            os.environ["MLFLOW_TRACKING_URI"] = exec_properties["tracking_uri"]
        out.set_string_custom_property("name", name)
        out.set_string_custom_property("tracking_uri", tracking.tracking_uri())
        os.makedirs(out.uri, exist_ok=True)
        if not pushed.get_int_custom_property("pushed"):
            out.set_int_custom_property("registered", 0)
            with open(os.path.join(out.uri, "NOT_REGISTERED"), "w") as fh:
                fh.write("the Pusher did not push this model (not blessed)\n")
            return

        run_id = read_run_info(model.uri).get("run_id")
        if not run_id:
            raise ZooError(f"{model.uri}: the Trainer recorded no MLflow run (tracking disabled or unreachable at "
                           f"{tracking.tracking_uri()}); cannot register {name!r}")
        with open(os.path.join(evaluation.uri, METRICS_FILE)) as fh:
            ev = json.load(fh)
        mean = ev["current"]["mean"]
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=tracking.tracking_uri())
        for k, v in mean.items():
            client.log_metric(run_id, f"eval_{k}", float(v))
        tags = {f"metric.eval_{k}": f"{float(v):.6g}" for k, v in mean.items()}
        tags.update({
            "config": exec_properties["experiment"][:5000],
            "serving.destination": pushed.get_string_custom_property("pushed_destination"),
            "serving.version": pushed.get_string_custom_property("pushed_version"),
            "tfx.model_uri": model.uri,
            "tfx.blessing": "; ".join(ev.get("reasons", [])),
        })
        version = tracking.register_run_model(run_id, name, tags)
        out.set_int_custom_property("registered", 1)
        out.set_string_custom_property("version", str(version))
        out.set_string_custom_property("run_id", run_id)
        decision = None
        if exec_properties.get("promote_metric"):
            decision = tracking.promote(name, exec_properties["promote_metric"],
                                        float(exec_properties.get("promote_margin") or 0.0), version=str(version))
            out.set_int_custom_property("promoted", int(decision["promoted"]))
        atomic.write_json(os.path.join(out.uri, "registered.json"),
                          {"name": name, "version": str(version), "run_id": run_id, "tags": tags,
                           "promotion": decision}, indent=1, default=str)


class MlflowRegistrar(base_component.BaseComponent):
    """Registers the pushed model in the MLflow registry (see the module docstring)."""

    SPEC_CLASS = MlflowRegistrarSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, pushed_model: types.BaseChannel, evaluation: types.BaseChannel,
                 registered_model_name: str, experiment: dict, tracking_uri: str = "", promote_metric: str = "",
                 promote_margin: float = 0.0):
        spec = MlflowRegistrarSpec(
            model=model, pushed_model=pushed_model, evaluation=evaluation,
            registered_model_name=registered_model_name, tracking_uri=tracking_uri,
            experiment=json.dumps(experiment, sort_keys=True), promote_metric=promote_metric,
            promote_margin=float(promote_margin),
            registered_model=types.Channel(type=RegisteredModelVersion))
        super().__init__(spec=spec)
