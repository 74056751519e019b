"""`mlflow run . -e train --env-manager local` through mlflow_project.yaml (the MLproject symlink): the project's
run is the one the training core logs into, and config values the project did not set are resolved from the
experiment file."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import yaml

REPO = pathlib.Path(__file__).resolve().parents[3]


def test_mlproject_symlink_points_to_the_project_file():
    assert os.path.islink(REPO / "MLproject") and os.readlink(REPO / "MLproject") == "mlflow_project.yaml"
    spec = yaml.safe_load((REPO / "mlflow_project.yaml").read_text())
    assert "python_env" not in spec and "conda_env" not in spec
    assert {"train", "data_build", "evaluate", "main"} <= set(spec["entry_points"])


def test_mlflow_run_train_entry_point(tnbc_records, tmp_path):
    cfg = {"name": "mlproject", "model": "unet", "model_config": {"num_classes": 3, "base_filters": 4, "depth": 2},
           "data_dir": str(tnbc_records), "fold": 11,
           "input": {"patch_size": 64, "batch_size": 2, "target": "three_class", "patches_per_image": 1},
           "epochs": 3, "steps_per_epoch": 1, "postprocess": {"method": "threshold"},
           "tracking": {"enabled": True, "experiment": "ignored-under-mlflow-run", "register_as": "",
                        "log_model": False}}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(cfg))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "TF_CPP_MIN_LOG_LEVEL": "3"}
    mlflow_bin = os.path.join(os.path.dirname(sys.executable), "mlflow")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    r = subprocess.run([mlflow_bin, "run", str(REPO), "-e", "train", "-P", f"config={tmp_path / 'exp.yaml'}",
                        "-P", "epochs=1", "--env-manager", "local", "--experiment-name", "mlproject-test"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    import mlflow

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["mlproject-test"])
    assert len(runs) == 1 and runs.loc[0, "status"] == "FINISHED"
    assert runs.loc[0, "params.epochs"] == "1"               # the project parameter overrides the file's 3
    assert runs.loc[0, "params.resolved.fold"] == "11"       # fold came from the experiment file
    assert 0.0 <= runs.loc[0, "metrics.test_aji"] <= 1.0     # evaluated on patient 11
    assert runs.loc[0, "metrics.loss"] > 0


def test_mlflow_run_data_build_entry_point(shared_data, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    out = tmp_path / "bm"
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "mlflow"), "run", str(REPO), "-e",
                        "data_build", "-P", "dataset=bone_marrow", "-P",
                        f"root={shared_data / 'bone_marrow_kainz2015'}", "-P", f"out={out}", "--env-manager",
                        "local"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"]["train"]["points"] + summary["splits"]["test"]["points"] == 651  # PROVENANCE


def test_mlflow_run_trains_and_registers_the_qu_model(qu_mixed_small, qu_tiny_experiment, tmp_path):
    """Issue 17 through ``mlflow run``: Qu et al.'s ResNet34 U-Net (tiny widths) under mixed supervision on real TNBC
    instance maps + CRCHistoPhenotypes typed centres, evaluated on a held-out TNBC image, registered; the registered
    model carries the typed spec (K + 2 maps named by the CRC types) and its in-graph decoding."""
    cfg = qu_tiny_experiment("qu-mlproject", str(qu_mixed_small))
    cfg["tracking"]["register_as"] = "qu-mlproject"
    (tmp_path / "qu.yaml").write_text(yaml.safe_dump(cfg))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "mlflow"), "run", str(REPO), "-e", "train",
                        "-P", f"config={tmp_path / 'qu.yaml'}", "--env-manager", "local", "--experiment-name",
                        "qu-mlproject"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    import mlflow

    from zoo.training.tracking import load

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["qu-mlproject"])
    assert len(runs) == 1 and runs.loc[0, "status"] == "FINISHED"
    assert runs.loc[0, "params.model"] == "qu" and runs.loc[0, "params.loss"] == "qu_mixed"
    assert 0.0 <= runs.loc[0, "metrics.test_aji"] <= 1.0 and runs.loc[0, "metrics.loss"] > 0
    loaded = load("models:/qu-mlproject/1")
    assert loaded.spec.class_names == ("epithelial", "inflammatory", "fibroblast", "others")
    assert loaded.spec.channels == ("background", "inner:epithelial", "inner:inflammatory", "inner:fibroblast",
                                    "inner:others", "contour")
    assert loaded.spec.postprocess.in_graph and loaded.model.count_params() < 1_000_000
