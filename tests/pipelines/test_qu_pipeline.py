"""Issue 17 through the whole system, in the TFX environment: Qu et al.'s ResNet34 U-Net (tiny widths) trained by the
pipeline under mixed supervision on real images (``--dataset records`` over a folder of TNBC instance maps +
CRCHistoPhenotypes typed centres: HistoRecordsGen -> Statistics / Schema / Validator -> Trainer (run_fn ->
zoo.training.train, the CLI's core) -> HistoEvaluator (held-out TNBC image) -> Pusher -> MlflowRegistrar). The pushed
SavedModel returns, computed in its graph, the instance map, the per-instance class and the class map, equal to
``zoo.inference.predict`` of the Trainer's Keras model.

Run inside the environment: ``scripts/tfx_env.sh run python -m pytest -m tfx tests/pipelines``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytestmark = pytest.mark.tfx

NODES = {"HistoRecordsGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Trainer", "HistoEvaluator", "Pusher",
         "MlflowRegistrar"}
CRC_TYPES = ("epithelial", "inflammatory", "fibroblast", "others")


def test_pipeline_trains_pushes_and_registers_a_typed_qu_model(qu_mixed_small, qu_tiny_experiment, tmp_path,
                                                               monkeypatch):
    import mlflow
    import tensorflow as tf

    from pipelines import configs
    from pipelines.local_runner import run_local
    from serving.export import TYPED_OUTPUT_KEYS, read_metadata
    from zoo.data import records
    from zoo.evaluation import iter_eval_samples
    from zoo.inference import predict
    from zoo.training.tracking import load

    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is relative to the working directory
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = run_local(qu_tiny_experiment("qu-e2e"), "records", str(qu_mixed_small), name="qu-e2e",
                       home=str(tmp_path), beam_args=configs.direct_beam_args(2, "multi_processing"),
                       mlflow_tracking_uri=uri, registered_model_name="qu-e2e")
    assert {s["node"] for s in result["steps"]} >= NODES
    assert all(s["state"] == "COMPLETE" for s in result["steps"] if s["node"] in NODES), result["steps"]

    root, serving = result["paths"].pipeline_root, result["paths"].serving_dir
    (examples,) = os.listdir(os.path.join(root, "HistoRecordsGen", "examples"))
    train = sorted(os.listdir(os.path.join(root, "HistoRecordsGen", "examples", examples, "Split-train")))
    assert train == sorted(os.path.basename(p) for p in records.list_shards(str(qu_mixed_small), "train"))
    assert {name.split("-")[1] for name in train} == {"crc", "tnbc"}  # both kinds of supervision reached the Trainer

    # the Trainer's model: the typed spec of the training core (K + 2 maps named by the CRC types)
    (model_dir,) = os.listdir(os.path.join(root, "Trainer", "model"))
    loaded = load(os.path.join(root, "Trainer", "model", model_dir, "Format-Keras", "model.keras"))
    assert loaded.spec.class_names == CRC_TYPES and len(loaded.spec.channels) == len(CRC_TYPES) + 2
    assert loaded.spec.postprocess.in_graph

    # the Evaluator scored the held-out TNBC image
    (ev_dir,) = os.listdir(os.path.join(root, "HistoEvaluator", "evaluation"))
    with open(os.path.join(root, "HistoEvaluator", "evaluation", ev_dir, "metrics.json")) as fh:
        ev = json.load(fh)
    assert ev["current"]["images"] == 1 and 0.0 <= ev["current"]["mean"]["aji"] <= 1.0 and ev["blessed"] is True

    # the pushed SavedModel returns instances, per-instance classes and the class map from its graph, equal to
    # zoo.inference.predict of the Trainer's model on the held-out image
    (version,) = [v for v in os.listdir(serving) if v.isdigit()]
    path = os.path.join(serving, version)
    assert set(TYPED_OUTPUT_KEYS) <= set(read_metadata(path)["outputs"])
    (sample,) = list(iter_eval_samples(str(qu_mixed_small), "test"))
    want = predict(loaded.model, loaded.spec, sample.image, mpp=sample.mpp)
    got = tf.saved_model.load(path).signatures["predict_images"](images=tf.constant(sample.image[None]))
    np.testing.assert_array_equal(got["instances"].numpy()[0], want.instances)
    n = want.num_instances
    classes = got["instance_classes"].numpy()[0]
    np.testing.assert_array_equal(classes[:n + 1], want.classes)
    np.testing.assert_array_equal(got["type_map"].numpy()[0], want.classes[want.instances])

    # registered in MLflow with the Evaluator's AJI and the Qu config
    client = mlflow.MlflowClient(tracking_uri=uri)
    (mv,) = client.search_model_versions("name='qu-e2e'")
    assert float(mv.tags["metric.eval_aji"]) == pytest.approx(ev["current"]["mean"]["aji"], abs=1e-5)
    assert json.loads(mv.tags["config"])["model"] == "qu"
