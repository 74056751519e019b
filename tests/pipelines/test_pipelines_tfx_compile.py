"""TFX environment: the Kubeflow V2 / Vertex compile (DAG checked, no cluster) and the baseline resolver policy.

Run inside the environment: ``scripts/tfx_env.sh run python -m pytest -m tfx tests/pipelines``.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.tfx

RESOLVER = "latest_blessed_model_resolver"


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_compile_writes_the_v2_dag(tmp_path, tiny_experiment, target):
    from pipelines.kubeflow_runner import compile_pipeline, dag_tasks

    out = tmp_path / f"{target}.json"
    spec = compile_pipeline(tiny_experiment("tnbc-unet"), "tnbc", "gs://bucket/tnbc", str(out), target=target,
                            pipeline_root="gs://bucket/root", image="registry.example/histozoo-tfx:1")
    assert out.is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".compile-")]
    dag = dag_tasks(spec)
    resolvers = [t for t in dag if t.startswith(RESOLVER)]
    assert len(resolvers) == 2  # V2 splits LatestBlessedModelStrategy into a model and a blessing resolver task
    assert dag["HistoExampleGen"] == []
    assert dag["StatisticsGen"] == ["HistoExampleGen"]
    assert dag["SchemaGen"] == ["StatisticsGen"]
    assert dag["ExampleValidator"] == ["SchemaGen", "StatisticsGen"]
    assert dag["Trainer"] == ["HistoExampleGen", "SchemaGen"]
    assert set(dag["HistoEvaluator"]) == {"HistoExampleGen", "Trainer"} | {r for r in resolvers if "model-resolver" in r
                                                                           and "blessing" not in r}
    assert dag["Pusher"] == ["HistoEvaluator", "Trainer"]
    assert dag["MlflowRegistrar"] == ["HistoEvaluator", "Pusher", "Trainer"]
    # every step runs in the given image; the Trainer gets its code by import path, not a packaged module file
    spec = spec.get("pipelineSpec", spec)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values() if "container" in e}
    assert images == {"registry.example/histozoo-tfx:1"}
    trainer_params = spec["components"]["Trainer"]["inputDefinitions"]["parameters"]
    assert "run_fn" in trainer_params
    text = out.read_text()
    assert "pipelines.trainer.module.run_fn" in text and "gs://bucket/root" in text


def test_compile_rejects_an_unknown_target(tmp_path, tiny_experiment):
    from pipelines.kubeflow_runner import compile_pipeline
    from zoo.errors import ConfigError

    with pytest.raises(ConfigError, match="--target must be one of kubeflow, vertex"):
        compile_pipeline(tiny_experiment(), "tnbc", "gs://b/t", str(tmp_path / "x.json"), target="airflow")


@pytest.mark.parametrize("register_as,explicit,want", [
    ("", None, "tnbc-unet"),                      # neither: the pipeline name
    ("histozoo-unet", None, "histozoo-unet"),     # the config's tracking.register_as wins over the pipeline name
    ("histozoo-unet", "prod-unet", "prod-unet"),  # --registered-model wins over both
])
def test_registered_model_name_rule(tiny_experiment, register_as, explicit, want):
    from pipelines.pipeline import create_pipeline

    exp = tiny_experiment("some-experiment")
    exp["tracking"]["register_as"] = register_as
    p = create_pipeline(exp, "gs://bucket/tnbc", "tnbc", "gs://bucket/root", pipeline_name="tnbc-unet",
                        registered_model_name=explicit)
    (registrar,) = [c for c in p.components if c.id == "MlflowRegistrar"]
    assert registrar.exec_properties["registered_model_name"] == want


def _model(i):
    from tfx.types import standard_artifacts

    m = standard_artifacts.Model()
    m.id = i
    return m


def _blessing(i, model_id, blessed, baseline_id=0):
    from tfx.types import standard_artifacts

    b = standard_artifacts.ModelBlessing()
    b.id = i
    b.set_int_custom_property("current_model_id", model_id)
    b.set_int_custom_property("blessed", int(blessed))
    b.set_int_custom_property("baseline_model_id", baseline_id)
    return b


def test_stable_baseline_strategy():
    from pipelines.components.baseline import StableBaselineStrategy

    s = StableBaselineStrategy()
    m1, m2, m3 = _model(1), _model(2), _model(3)
    blessings = [_blessing(10, 1, True), _blessing(11, 2, False, 1)]
    resolve = lambda cand: s.resolve_artifacts(None, {"model": [m1, m2, m3], "model_blessing": blessings,
                                                      "candidate": [cand]})
    # a new candidate gets the latest blessed model
    assert [m.id for m in resolve(m3)["model"]] == [1]
    assert [b.id for b in resolve(m3)["model_blessing"]] == [10]
    # an already evaluated candidate gets the baseline of its first evaluation again (cache hit on re-runs)...
    assert [m.id for m in resolve(m2)["model"]] == [1]
    # ...and the first blessed model, evaluated with no baseline, gets none (never itself)
    assert resolve(m1)["model"] == [] and resolve(m1)["candidate"] == [m1]
    # no models or blessings yet: nothing
    assert s.resolve_artifacts(None, {"model": [], "model_blessing": [], "candidate": [m1]})["model"] == []


def test_records_dataset_and_the_evaluators_defaults_per_model_kind(tiny_experiment, tmp_path):
    """``--dataset records``: HistoRecordsGen reads the experiment's train_split / val_split of a built folder; the
    Evaluator blesses a GAN by purity and a segmentation model by pixel Dice / AJI unless told otherwise."""
    from pipelines.pipeline import create_pipeline
    from zoo.errors import ConfigError

    gan = {"name": "g", "model": "infowgan_gp", "model_config": {"image_size": 8, "categories": 2},
           "loss": "infowgan_gp", "train_split": "train", "val_split": "test", "input": {"patch_size": 8, "target": "points"},
           "tracking": {"enabled": True, "experiment": "x", "register_as": "", "log_model": True}}
    p = create_pipeline(gan, "gs://bucket/crops", "records", "gs://bucket/root", pipeline_name="crc-gan")
    by_id = {c.id: c for c in p.components}
    assert "HistoExampleGen" not in by_id
    assert json.loads(by_id["HistoRecordsGen"].exec_properties["splits"]) == {"eval": "test", "train": "train"}
    ev = by_id["HistoEvaluator"].exec_properties
    assert json.loads(ev["thresholds"]) == {"purity": 0.0} and ev["compare_metric"] == "purity"
    p = create_pipeline(gan, "gs://bucket/crops", "records", "gs://bucket/root", pipeline_name="crc-gan",
                        thresholds={"purity": 0.4}, compare_metric="f_score")
    ev = {c.id: c for c in p.components}["HistoEvaluator"].exec_properties
    assert json.loads(ev["thresholds"]) == {"purity": 0.4} and ev["compare_metric"] == "f_score"

    p = create_pipeline(tiny_experiment(), "gs://bucket/tnbc", "tnbc", "gs://bucket/root", pipeline_name="t")
    ev = {c.id: c for c in p.components}["HistoEvaluator"].exec_properties
    assert json.loads(ev["thresholds"]) == {"pixel_dice": 0.0, "aji": 0.0} and ev["compare_metric"] == "aji"

    # the registrar registers the run's logged model: a config that logs none is refused before anything runs
    exp = tiny_experiment()
    exp["tracking"]["log_model"] = False
    with pytest.raises(ConfigError, match="tracking.log_model"):
        create_pipeline(exp, "gs://bucket/tnbc", "tnbc", "gs://bucket/root", pipeline_name="t")
