"""End to end in the TFX environment, on real TNBC images: HistoExampleGen (Beam, DirectRunner multi-processing)
-> StatisticsGen / SchemaGen / ExampleValidator -> Trainer (run_fn -> zoo.training.train, two steps) ->
HistoEvaluator -> Pusher -> MlflowRegistrar (sqlite MLflow store), then the same pipeline again, quiet: every step
cached, and the outcome says so; then once more with an impossible threshold: not blessed, not pushed, not
registered, and the outcome says why.

Run inside the environment: ``scripts/tfx_env.sh run python -m pytest -m tfx tests/pipelines``.
"""

from __future__ import annotations

import io
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
        progress = io.StringIO()
        second = run_local(tiny_experiment(), "tnbc", str(tnbc_small), quiet=True, progress=progress, **kw)
        second["progress"] = progress.getvalue()
    finally:
        os.chdir(cwd)
    yield first, second, home, uri


@pytest.fixture(scope="module")
def unblessed(runs, tnbc_small, tiny_experiment):
    """A third run after ``runs``: the same model (Trainer cached) held to an impossible threshold."""
    from pipelines import configs
    from pipelines.local_runner import run_local

    _, _, home, uri = runs
    cwd = os.getcwd()
    os.chdir(home)
    try:
        return run_local(tiny_experiment(), "tnbc", str(tnbc_small), name="tnbc-e2e", home=str(home),
                         beam_args=configs.direct_beam_args(2, "multi_processing"), mlflow_tracking_uri=uri,
                         registered_model_name="tnbc-e2e", thresholds={"aji": 2.0}, quiet=True,
                         progress=io.StringIO())
    finally:
        os.chdir(cwd)


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


def test_outcome_of_the_run_and_of_the_cached_rerun(runs):
    from pipelines.local_runner import format_outcome

    first, second, _, uri = runs
    o = first["outcome"]
    with open(os.path.join(_artifact_dirs(first["paths"].pipeline_root, "Trainer", "model")[0], "Format-Keras",
                           "run.json")) as fh:
        run_id = json.load(fh)["run_id"]
    (version,) = [v for v in os.listdir(first["paths"].serving_dir) if v.isdigit()]
    assert o["blessed"] is True and any("no blessed baseline" in r for r in o["reasons"])
    assert o["pushed"] is True and o["pushed_path"] == os.path.join(first["paths"].serving_dir, version)
    assert (o["registered"], o["registered_name"], o["registered_version"]) == (True, "tnbc-e2e", "1")
    assert o["run_id"] == run_id and o["tracking_uri"] == uri
    assert os.path.isfile(o["metrics_file"]) and o["metrics"]["aji"] >= 0 and o["cached"] == []
    text = format_outcome(first)
    assert "blessed:     YES" in text and f"pushed:      {o['pushed_path']}" in text
    assert "registered:  tnbc-e2e version 1" in text and run_id in text

    # the cached re-run reports the same outcome and says that nothing new happened
    o2 = second["outcome"]
    assert {k: o2[k] for k in ("blessed", "pushed_path", "registered_version", "run_id")} == \
        {k: o[k] for k in ("blessed", "pushed_path", "registered_version", "run_id")}
    assert set(o2["cached"]) >= NODES
    assert "every step was served from the cache" in format_outcome(second)


def test_quiet_run_keeps_the_noise_in_its_log(runs):
    second = runs[1]
    progress = second["progress"]
    assert second["log"] and os.path.isfile(second["log"])
    lines = progress.splitlines()
    assert lines[0].startswith("  (quiet: the run's full output goes to ") and second["log"] in lines[0]
    assert [ln.split("] ", 1)[1] for ln in lines[1:]] == \
        [f"{n} ..." for n in ("HistoExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Trainer",
                              "latest_blessed_model_resolver", "HistoEvaluator", "Pusher", "MlflowRegistrar")]
    with open(second["log"]) as fh:
        log = fh.read()
    # raw output (here the Trainer's user-module wheel build, a child process) went to the log, not the terminal;
    # Python logging records go to the log through fd 2 in the CLI (under pytest its capture holds them instead)
    assert "bdist_wheel" in log and "bdist_wheel" not in progress
    assert "WARNING" not in progress and "ZetaSQL" not in progress


def test_outcome_when_not_blessed(runs, unblessed):
    import mlflow

    from pipelines.local_runner import format_outcome

    o = unblessed["outcome"]
    states = {s["node"]: s["state"] for s in unblessed["steps"]}
    assert states["Trainer"] == "CACHED" and states["HistoEvaluator"] == "COMPLETE"
    # the Pusher and the registrar ran (COMPLETE) and did nothing: the outcome says so
    assert states["Pusher"] == "COMPLETE" and states["MlflowRegistrar"] == "COMPLETE"
    assert o["blessed"] is False and any("< threshold 2" in r for r in o["reasons"])
    assert o["pushed"] is False and o["pushed_path"] == ""
    assert o["registered"] is False and o["registered_version"] == ""
    text = format_outcome(unblessed)
    assert "blessed:     NO" in text and "< threshold 2" in text
    assert "pushed:      not pushed (the model was not blessed)" in text
    assert "registered:  not registered as tnbc-e2e (nothing was pushed)" in text
    assert len([v for v in os.listdir(unblessed["paths"].serving_dir) if v.isdigit()]) == 1
    assert len(mlflow.MlflowClient(tracking_uri=runs[3]).search_model_versions("name='tnbc-e2e'")) == 1
