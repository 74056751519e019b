"""Issue 20 through the whole system, in the TFX environment: a GAN (Hu et al.'s InfoWGAN-GP, tiny widths) trained by
the pipeline on nucleus crops of real CRCHistoPhenotypes images (``--dataset records``: HistoRecordsGen -> Statistics
/ Schema / Validator -> Trainer (run_fn -> zoo.training.train, the CLI's core) -> HistoEvaluator (Q's clusters of the
held-out images' crops: purity / entropy / F) -> Pusher (the Q classifier's SavedModel) -> MlflowRegistrar).

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


def _experiment() -> dict:
    return {"name": "gan-e2e", "model": "infowgan_gp",
            "model_config": {"image_size": 32, "categories": 4, "noise_dim": 4, "g_filters": 4, "d_filters": 4,
                             "q_filters": 4},
            "train_split": "train", "val_split": "test",
            "input": {"patch_size": 32, "batch_size": 10, "patches_per_image": 1, "target": "points", "flip": False,
                      "rot90": True,
                      "shuffle_buffer": 1},
            "loss": "infowgan_gp", "optimizer": "adam", "learning_rate": 2e-4, "epochs": 1, "steps_per_epoch": 2,
            "tracking": {"enabled": True, "experiment": "histozoo-tfx-gan", "register_as": "", "log_model": True}}


def test_pipeline_trains_evaluates_pushes_and_registers_a_gan(crc_crops_small, tmp_path, monkeypatch):
    import keras
    import mlflow
    import tensorflow as tf

    from pipelines import configs
    from pipelines.local_runner import run_local
    from serving.export import read_metadata
    from zoo.data import records
    from zoo.evaluation.cluster import read_crops
    from zoo.metrics.clustering import clustering_report

    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is relative to the working directory
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = run_local(_experiment(), "records", str(crc_crops_small), name="gan-e2e", home=str(tmp_path),
                       beam_args=configs.direct_beam_args(2, "multi_processing"), mlflow_tracking_uri=uri,
                       registered_model_name="gan-e2e")
    assert {s["node"] for s in result["steps"]} >= NODES
    assert all(s["state"] == "COMPLETE" for s in result["steps"] if s["node"] in NODES), result["steps"]

    root, serving = result["paths"].pipeline_root, result["paths"].serving_dir
    (examples,) = os.listdir(os.path.join(root, "HistoRecordsGen", "examples"))
    held_out = sorted(os.listdir(os.path.join(root, "HistoRecordsGen", "examples", examples, "Split-eval")))
    assert held_out == sorted(os.path.basename(p) for p in records.list_shards(str(crc_crops_small), "test"))

    (model_dir,) = os.listdir(os.path.join(root, "Trainer", "model"))
    model_uri = os.path.join(root, "Trainer", "model", model_dir)
    model = keras.saving.load_model(os.path.join(model_uri, "Format-Keras", "model.keras"))
    assert int(model.g_optimizer.iterations) == 2 and int(model.d_optimizer.iterations) == 10  # 2 x (5 D + 1 G)

    # the Evaluator scored Q's clusters of the held-out images' crops, as the CLI's core does
    (ev_dir,) = os.listdir(os.path.join(root, "HistoEvaluator", "evaluation"))
    with open(os.path.join(root, "HistoEvaluator", "evaluation", ev_dir, "metrics.json")) as fh:
        ev = json.load(fh)
    test = read_crops(str(crc_crops_small), "test")
    clusters = np.asarray(model(test["images"] / 255.0)["probabilities"]).argmax(1)
    typed = test["type"] > 0  # crops of detected but untyped nuclei are clustered, not scored
    ref = clustering_report(clusters[typed], test["type"][typed])
    assert ev["compare_metric"] == "purity" and ev["thresholds"] == {"purity": 0.0} and ev["blessed"] is True
    assert ev["current"]["images"] == len(test["type"]) and ev["current"]["mean"]["n"] == typed.sum() > 0
    assert ev["current"]["mean"]["purity"] == pytest.approx(ref["purity"])
    assert ev["current"]["mean"]["f_score"] == pytest.approx(ref["f1_weighted"])

    # the Pusher pushed the Q classifier's SavedModel; TF Serving's signature gives the model's clusters
    (version,) = [v for v in os.listdir(serving) if v.isdigit()]
    path = os.path.join(serving, version)
    assert read_metadata(path)["kind"] == "cluster_classifier"
    served = tf.saved_model.load(path).signatures["predict_images"](crops=tf.constant(test["images"][:16]))
    np.testing.assert_array_equal(served["cluster"].numpy(), clusters[:16])

    # registered in MLflow with the Evaluator's purity
    client = mlflow.MlflowClient(tracking_uri=uri)
    (mv,) = client.search_model_versions("name='gan-e2e'")
    assert float(mv.tags["metric.eval_purity"]) == pytest.approx(ev["current"]["mean"]["purity"], abs=1e-5)
    assert json.loads(mv.tags["config"])["model"] == "infowgan_gp"
