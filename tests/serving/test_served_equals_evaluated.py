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
           {"method": "inner_contour", "radius": 1, "threshold": 0.3},
           {"method": "inner_contour", "radius": 1, "threshold": 0.3, "grow": "dilate"},   # in-graph (Qu et al.)
           {"method": "inner_contour", "threshold": 0.3, "min_size": 4, "grow": "dilate"}]
IDS = ["three_class", "dynamics_watershed", "threshold", "inner_contour", "inner_contour-dilate-r1",
       "inner_contour-dilate"]


@pytest.fixture(scope="module")
def trained(quickstart_model):
    return quickstart_model


@pytest.fixture(scope="module")
def patient09(tnbc_patient09):
    return tnbc_patient09


@pytest.mark.parametrize("post", METHODS, ids=IDS)
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


def _typed_model(model):
    """The quickstart U-Net as a typed inner / contour model for two made-up types: its interior probability split
    by how red the pixel is (``dark`` / ``pale``), so the per-instance majority has real images to vote on."""
    import keras

    class SplitInterior(keras.layers.Layer):
        def call(self, image, probs):
            red = keras.ops.sigmoid(12.0 * (image[..., :1] - 0.55))
            p0, p1, p2 = probs[..., :1], probs[..., 1:2], probs[..., 2:3]
            return keras.ops.concatenate([p0, p1 * (1.0 - red), p1 * red, p2], axis=-1)

    inp = keras.Input((None, None, 3))
    return keras.Model(inp, SplitInterior()(inp, model(inp)), name="typed_quickstart")


def test_served_in_graph_types_equal_predict(trained, patient09, tmp_path):
    """Qu et al.'s exported signature (issue 17): instance map, per-instance class and class map computed in the
    SavedModel graph equal ``zoo.inference.predict``'s, over real gRPC on TNBC patient 09's images."""
    from serving.client import PredictClient, ServedForward, served_spec
    from serving.config import ModelEntry
    from serving.export import TYPED_OUTPUT_KEYS, export, read_metadata
    from serving.local_server import LocalModelServer
    from zoo.inference import predict
    from zoo.postprocess.config import PostprocessConfig

    model, spec, _ = trained
    typed = _typed_model(model)
    spec = spec.replace(channels=("background", "inner:dark", "inner:pale", "contour"), class_names=("dark", "pale"),
                        postprocess=PostprocessConfig("inner_contour", {"threshold": 0.3, "radius": 2,
                                                                        "min_size": 4, "grow": "dilate"}))
    path = export(typed, str(tmp_path / "t"), spec=spec)
    assert set(TYPED_OUTPUT_KEYS) <= set(read_metadata(path)["outputs"])
    votes = np.zeros(3, int)
    with LocalModelServer([ModelEntry("t", str(tmp_path / "t"))]) as srv, \
            PredictClient(srv.target, timeout=60, retries=0) as client:
        served = served_spec(client, "t")
        assert served == spec
        forward = ServedForward(client, "t")
        for s in patient09:
            got = predict(forward, served, s.image, mpp=s.mpp)
            want = predict(typed, spec, s.image, mpp=s.mpp)
            n = want.num_instances
            np.testing.assert_array_equal(got.instances, want.instances)
            np.testing.assert_array_equal(np.asarray(forward.last["instances"][0]), want.instances)
            classes = np.asarray(forward.last["instance_classes"][0])
            np.testing.assert_array_equal(classes[:n + 1], want.classes)
            assert (classes[n + 1:] == 0).all()
            np.testing.assert_array_equal(np.asarray(forward.last["type_map"][0]), want.classes[want.instances])
            assert sorted(forward.last) == sorted(read_metadata(path)["outputs"])  # what the metadata promises
            votes += np.bincount(want.classes[1:], minlength=3)
    assert votes[1] > 0 and votes[2] > 0  # both types won some nuclei: not a comparison of untyped maps


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
