"""End to end in the TFX environment, on real TNBC images: HistoExampleGen (Beam, DirectRunner multi-processing)
-> StatisticsGen / SchemaGen / ExampleValidator -> Trainer (run_fn -> zoo.training.train, two steps) ->
HistoEvaluator -> Pusher -> MlflowRegistrar (sqlite MLflow store), then the same pipeline again: every step cached.

Run inside the environment: ``scripts/tfx_env.sh run python -m pytest -m tfx tests/pipelines``.
"""

from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.tfx

NODES = {"HistoExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Trainer", "HistoEvaluator",
         "Pusher", "MlflowRegistrar"}


@pytest.fixture(scope="module")
def runs(tnbc_small, tiny_experiment, tmp_path_factory):
    """The pipeline run twice with nothing changed; yields (first, second, home, tracking_uri)."""
    from pipelines import configs
    from pipelines.local_runner import run_local

    home = tmp_path_factory.mktemp("tfx_home")
    uri = f"sqlite:///{home}/mlflow.db"
    cwd = os.getcwd()
    os.chdir(home)  # MLflow's default artifact root is relative to the working directory
    try:
        kw = dict(name="tnbc-e2e", home=str(home), beam_args=configs.direct_beam_args(2, "multi_processing"),
                  mlflow_tracking_uri=uri, registered_model_name="tnbc-e2e")
        first = run_local(tiny_experiment(), "tnbc", str(tnbc_small), **kw)
        second = run_local(tiny_experiment(), "tnbc", str(tnbc_small), **kw)
    finally:
        os.chdir(cwd)
    yield first, second, home, uri


def _artifact_dirs(root, component, key):
    base = os.path.join(root, component, key)
    return sorted(os.path.join(base, d) for d in os.listdir(base))


def test_first_run_executes_every_step(runs):
    first = runs[0]
    assert {s["node"] for s in first["steps"]} >= NODES
    assert all(s["state"] == "COMPLETE" for s in first["steps"] if s["node"] in NODES), first["steps"]


def test_examples_are_our_records_split_by_fold(runs, tnbc_small, small_tnbc_ids):
    from zoo.data import records
    from zoo.data.readers import get_reader

    (uri,) = _artifact_dirs(runs[0]["paths"].pipeline_root, "HistoExampleGen", "examples")
    reader = get_reader("tnbc")(str(tnbc_small))
    truth = {os.path.splitext(os.path.basename(p))[0]: reader.read(p) for p in reader.items()}
    got = {}
    for split in ("train", "eval"):
        files = sorted(f for f in os.listdir(os.path.join(uri, f"Split-{split}")) if f.endswith(".tfrecord.gz"))
        assert files, split
        for s in records.read_samples([os.path.join(uri, f"Split-{split}", f) for f in files]):
            got[s.image_id] = split
            assert s.num_instances == truth[s.image_id].num_instances  # decoded labels equal the reader's
            assert (s.image == truth[s.image_id].image).all()
    # fold 1 leaves patient 01 out
    assert got == {**{i: "eval" for i in small_tnbc_ids["01"]}, **{i: "train" for i in small_tnbc_ids["02"]}}


def test_statistics_schema_and_validator(runs):
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    from tfx.utils import io_utils
    from tensorflow_metadata.proto.v0 import schema_pb2

    root = runs[0]["paths"].pipeline_root
    (schema_dir,) = _artifact_dirs(root, "SchemaGen", "schema")
    schema = io_utils.parse_pbtxt_file(os.path.join(schema_dir, "schema.pbtxt"), schema_pb2.Schema())
    types = {f.name: schema_pb2.FeatureType.Name(f.type) for f in schema.feature}
    assert types["image/encoded"] == "BYTES" and types["label/instances"] == "BYTES"
    assert types["image/height"] == "INT" and types["meta/mpp"] == "FLOAT"
    (anom_dir,) = _artifact_dirs(root, "ExampleValidator", "anomalies")
    for split in ("train", "eval"):
        a = anomalies_pb2.Anomalies()
        with open(os.path.join(anom_dir, f"Split-{split}", "SchemaDiff.pb"), "rb") as fh:
            a.ParseFromString(fh.read())
        assert not a.anomaly_info, (split, dict(a.anomaly_info))


def test_trainer_evaluator_pusher_registry(runs, tiny_experiment, small_tnbc_ids):
    import keras
    import mlflow
    import tensorflow as tf

    import zoo.models  # noqa: F401
    from zoo.evaluation import evaluate

    first, _, home, uri = runs
    root, serving = first["paths"].pipeline_root, first["paths"].serving_dir
    (model_uri,) = _artifact_dirs(root, "Trainer", "model")
    assert os.path.isfile(os.path.join(model_uri, "Format-Serving", "saved_model.pb"))
    with open(os.path.join(model_uri, "Format-Keras", "run.json")) as fh:
        run = json.load(fh)
    assert run["run_id"] and len(run["train_records"]) >= 1

    # the Evaluator's numbers are zoo.evaluation's on the same model and eval records
    (ev_dir,) = _artifact_dirs(root, "HistoEvaluator", "evaluation")
    with open(os.path.join(ev_dir, "metrics.json")) as fh:
        ev = json.load(fh)
    model = keras.models.load_model(os.path.join(model_uri, "Format-Keras", "model.keras"), compile=False)
    again = evaluate(model, ev["records"], split="eval", postprocess=tiny_experiment()["postprocess"])
    assert ev["current"]["images"] == len(small_tnbc_ids["01"])
    for k in ("pixel_dice", "aji", "pq"):
        assert ev["current"]["mean"][k] == pytest.approx(again["mean"][k])
    assert ev["blessed"] is True and ev["baseline"] is None
    (bless_dir,) = _artifact_dirs(root, "HistoEvaluator", "blessing")
    assert os.listdir(bless_dir) == ["BLESSED"]

    # one versioned SavedModel in the serving directory, loadable with its serving signature
    versions = [v for v in os.listdir(serving) if v.isdigit()]
    assert len(versions) == 1
    loaded = tf.saved_model.load(os.path.join(serving, versions[0]))
    assert "serving_default" in loaded.signatures

    # registered in MLflow with the Evaluator's metrics, the config and the serving destination
    client = mlflow.MlflowClient(tracking_uri=uri)
    (mv,) = client.search_model_versions("name='tnbc-e2e'")
    assert mv.run_id == run["run_id"]
    assert float(mv.tags["metric.eval_aji"]) == pytest.approx(ev["current"]["mean"]["aji"], abs=1e-5)
    assert mv.tags["serving.destination"] == os.path.join(serving, versions[0])
    assert json.loads(mv.tags["config"])["model"] == "unet"
    assert client.get_run(run["run_id"]).data.metrics["eval_aji"] == pytest.approx(ev["current"]["mean"]["aji"])


def test_rerun_with_nothing_changed_is_fully_cached(runs):
    import mlflow

    first, second, _, uri = runs
    states = {s["node"]: s["state"] for s in second["steps"]}
    assert set(states) >= NODES and all(states[n] == "CACHED" for n in NODES), second["steps"]
    assert len([v for v in os.listdir(second["paths"].serving_dir) if v.isdigit()]) == 1  # no second push
    assert len(mlflow.MlflowClient(tracking_uri=uri).search_model_versions("name='tnbc-e2e'")) == 1
