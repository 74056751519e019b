"""``histozoo quickstart --tfx`` inside the TFX environment: the packaged sample through the real pipeline
(ingest -> statistics -> schema -> validation -> Trainer (fine-tuning the shipped model) -> evaluator -> Pusher ->
MLflow registry), in a fresh folder with its own MLflow store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.tfx


def test_quickstart_through_the_tfx_pipeline(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    proc = subprocess.run([sys.executable, "-m", "histozoo", "quickstart", "--tfx", "--steps", "10", "--out", "qs"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "blessed:     YES" in proc.stdout and "registered:  histozoo-quickstart version 1" in proc.stdout
    serving = tmp_path / "qs" / "tfx_root" / "serving" / "quickstart"
    versions = [d for d in serving.iterdir() if d.name.isdigit()]
    assert len(versions) == 1 and (versions[0] / "saved_model.pb").is_file()
    spec = json.loads((versions[0] / "assets" / "histozoo.json").read_text())
    assert spec["spec"]["postprocess"]["method"] == "dynamics_watershed"  # the shipped model's tuned setting
