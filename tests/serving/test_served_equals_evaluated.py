"""The one inference path (issue 14): what is served is exactly what was scored.

A U-Net trained by the project's own config (configs/quickstart.yaml, a short budget) on real TNBC patients != 09 is
exported once per post-processing method the spec allows, served by ``serving.local_server`` over real gRPC, and
asked for TNBC patient 09's images through ``serving.client.predict_files``'s path (the spec read from the server,
``zoo.inference.predict`` with the served probabilities). Every served instance map must equal the one
``zoo.evaluation.evaluate`` scores (``zoo.inference.predict`` in-process): AJI 1.0, identical label maps.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

# thresholds low enough that even the short-budget model gives nuclei on these images (the equality is the test;
# the count check only keeps it from passing on empty maps)
METHODS = [{"method": "three_class"}, {"method": "dynamics_watershed", "lam": 7, "threshold": 0.3},
           {"method": "threshold", "threshold": 0.3, "min_size": 4},
           {"method": "inner_contour", "radius": 1, "threshold": 0.3}]


@pytest.fixture(scope="module")
def trained(quickstart_model):
    return quickstart_model


@pytest.fixture(scope="module")
def patient09(tnbc_patient09):
    return tnbc_patient09


@pytest.mark.parametrize("post", METHODS, ids=[m["method"] for m in METHODS])
def test_served_instances_equal_evaluated(trained, patient09, post, tmp_path):
    from serving.client import PredictClient, ServedForward, served_spec
    from serving.config import ModelEntry
    from serving.export import export, read_spec
    from serving.local_server import LocalModelServer
    from zoo.evaluation import evaluate
    from zoo.inference import predict
    from zoo.metrics.instance import aji

    model, spec, _ = trained
    spec = spec.override({"postprocess": post}, say=lambda m: None)
    path = export(model, str(tmp_path / "m"), spec=spec)
    assert read_spec(path) == spec
    evaluated = evaluate(model, patient09, split="eval", spec=spec, hausdorff=False)
    assert [r["image_id"] for r in evaluated["per_image"]] == [s.image_id for s in patient09]
    with LocalModelServer([ModelEntry("m", str(tmp_path / "m"))]) as srv, \
            PredictClient(srv.target, timeout=60, retries=0) as client:
        served = served_spec(client, "m")
        assert served == spec
        forward = ServedForward(client, "m")
        total = 0
        for s, row in zip(patient09, evaluated["per_image"]):
            got = predict(forward, served, s.image, mpp=s.mpp)
            want = predict(model, spec, s.image, mpp=s.mpp)  # what evaluate() ran for this image
            assert got.num_instances == want.num_instances == row["instances"]
            total += got.num_instances
            np.testing.assert_array_equal(got.instances, want.instances)
            assert aji(want.instances, got.instances) == 1.0
            if spec.postprocess.in_graph:  # the TF twin inside the SavedModel gives the same map
                np.testing.assert_array_equal(np.asarray(forward.last["instances"][0]), want.instances)
            else:
                assert "instances" not in forward.last
        assert total > 0  # not a comparison of empty maps


def test_checkpoint_mlflow_model_and_savedmodel_carry_one_spec(trained, tmp_path, monkeypatch):
    import mlflow

    from serving.export import export, read_spec
    from zoo.inference import InferenceSpec
    from zoo.training.tracking import Tracker, load

    model, spec, run = trained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    tracker = Tracker(experiment="spec-test", run_name="spec")
    version = tracker.log_model(model, "spec-model", spec=spec)
    tracker.end()
    assert version == "1"
    from_registry = load("models:/spec-model/1")
    info = mlflow.models.get_model_info("models:/spec-model/1")
    assert info.signature is not None and info.saved_input_example_info is not None
    exported = read_spec(export(model, str(tmp_path / "sm"), spec=spec))
    on_disk = InferenceSpec.load(str(run / "checkpoints" / "spec.json"))
    assert from_registry.spec == exported == on_disk == spec
    assert spec.postprocess.to_dict() == {"method": "three_class"}  # the config's, resolved
    assert json.loads(spec.to_json())["channels"] == ["background", "interior", "boundary"]
