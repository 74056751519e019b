"""Real gRPC (and REST) over loopback against serving.local_server: served == in-process for every signature,
error statuses, the server surviving bad requests, versions and labels, metadata, retries."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from serving.client import PredictClient, RestClient, ServingError

TOL = 1e-5


def _png(img: np.ndarray) -> bytes:
    import tensorflow as tf

    return tf.io.encode_png(img).numpy()


def _example(img: np.ndarray) -> bytes:
    from zoo.data.records import encode
    from zoo.data.sample import Sample

    return encode(Sample(image=img, image_id="x", dataset="synthetic", source_id="x"))


def _check(out, model, images_float, sv):
    probs = sv.reference(model, images_float)
    assert out["probabilities"].shape == probs.shape
    assert np.abs(out["probabilities"] - probs).max() < TOL
    np.testing.assert_array_equal(out["class_map"], probs.argmax(-1))
    ref = sv.reference_instances(probs)
    np.testing.assert_array_equal(out["instances"], ref)
    np.testing.assert_array_equal(out["num_instances"], ref.reshape(len(ref), -1).max(1))
    assert ref.max() >= 3  # the test images really have several nuclei-like objects


@pytest.mark.parametrize("name,model_key", [("binary", "binary_v2"), ("three", "three")])
def test_every_signature_matches_in_process(client, models, sv, name, model_key):
    imgs = np.stack([sv.he_like(45, 50, 0), sv.he_like(45, 50, 1)])  # 45x50: exercises padding to 4
    x = imgs.astype(np.float32) / 255.0
    model = models[model_key]
    _check(client.predict(name, {"images": x}), model, x, sv)
    _check(client.predict(name, {"images": imgs}, signature="predict_images"), model, x, sv)
    _check(client.predict_encoded(name, [_png(i) for i in imgs]), model, x, sv)
    ex = np.array([_example(i) for i in imgs], dtype=object)
    _check(client.predict(name, {"examples": ex}, signature="predict_examples"), model, x, sv)


def test_real_tnbc_image_through_bytes_signature(client, models, sv, shared_data):
    from zoo.data.imageio import read_rgb

    path = shared_data / "tnbc" / "TNBC_NucleiSegmentation" / "Slide_01" / "01_1.png"
    out = client.predict_encoded("binary", [path.read_bytes()], label="stable")
    img = read_rgb(str(path))  # RGBA on disk: the graph drops alpha the same way
    assert out["instances"].shape == (1,) + img.shape[:2]
    _check(out, models["binary_v1"], img[None].astype(np.float32) / 255.0, sv)


def test_versions_and_labels(client, models, sv):
    x = 0.5 + 0.05 * np.random.default_rng(0).standard_normal((1, 32, 32, 3)).astype(np.float32)  # ties the
    # darkness head (m = 0.5), so the random branch, which differs between the versions, decides
    v1, v2 = (sv.reference(models[k], x) for k in ("binary_v1", "binary_v2"))
    assert np.abs(v1 - v2).max() > 1e-3  # the two versions really differ
    for kw, want, version in [({}, v2, 2), ({"version": 1}, v1, 1), ({"label": "stable"}, v1, 1),
                              ({"label": "canary"}, v2, 2)]:
        out = client.predict("binary", {"images": x}, **kw)
        assert np.abs(out["probabilities"] - want).max() < TOL, kw
        assert client.last_version == version
    assert client.status("binary") == {1: "AVAILABLE", 2: "AVAILABLE"}
    assert client.status("three") == {1: "AVAILABLE"}


def test_metadata_lists_signatures(client):
    sigs = client.metadata("binary", version=1)
    assert set(sigs) == {"serving_default", "predict_images", "predict_bytes", "predict_examples", "histozoo_spec"}
    dtype = {k: (list(s.inputs), s.inputs[list(s.inputs)[0]].dtype) for k, s in sigs.items()}
    assert dtype == {"serving_default": (["images"], 1), "predict_images": (["images"], 4),  # DT_FLOAT, DT_UINT8
                     "predict_bytes": (["image_bytes"], 7), "predict_examples": (["examples"], 7),  # DT_STRING
                     "histozoo_spec": (["unused"], 3)}  # DT_INT32
    assert set(sigs.pop("histozoo_spec").outputs) == {"spec"}
    for s in sigs.values():
        assert set(s.outputs) == {"probabilities", "class_map", "instances", "num_instances"}
        assert s.method_name == "tensorflow/serving/predict"


@pytest.mark.parametrize("kwargs,code,text", [
    (dict(inputs={"images": np.zeros((1, 8, 8, 3), np.float64)}), "INVALID_ARGUMENT", "expected dtype float32"),
    (dict(inputs={"images": np.zeros((8, 8, 3), np.float32)}), "INVALID_ARGUMENT", "expected shape [?, ?, ?, 3]"),
    (dict(inputs={"images": np.zeros((1, 8, 8, 4), np.float32)}), "INVALID_ARGUMENT", "expected shape"),
    (dict(inputs={"pixels": np.zeros((1, 8, 8, 3), np.float32)}), "INVALID_ARGUMENT", "has no input 'pixels'"),
    (dict(inputs={}), "INVALID_ARGUMENT", "missing input 'images'"),
    (dict(inputs={"image_bytes": np.array([b"not an image"], object)}, signature="predict_bytes"),
     "INVALID_ARGUMENT", "Unknown image file format"),
    (dict(inputs={"examples": np.array([b"\x01garbage"], object)}, signature="predict_examples"),
     "INVALID_ARGUMENT", ""),
    (dict(inputs={"images": np.zeros((1, 8, 8, 3), np.float32)}, signature="predict_pixels"),
     "NOT_FOUND", "signature 'predict_pixels' not found"),
    (dict(model="nuclei", inputs={"images": np.zeros((1, 8, 8, 3), np.float32)}), "NOT_FOUND", "model 'nuclei'"),
    (dict(inputs={"images": np.zeros((1, 8, 8, 3), np.float32)}, version=7), "NOT_FOUND", "version 7"),
    (dict(inputs={"images": np.zeros((1, 8, 8, 3), np.float32)}, label="beta"), "NOT_FOUND", "label 'beta'"),
    (dict(inputs={"images": np.zeros((1, 8, 8, 3), np.float32)}, output_filter=["masks"]),
     "INVALID_ARGUMENT", "no output 'masks'"),
])
def test_bad_requests_get_status_and_server_keeps_serving(client, kwargs, code, text):
    kwargs = dict(kwargs)
    model = kwargs.pop("model", "binary")
    with pytest.raises(ServingError) as err:
        client.predict(model, kwargs.pop("inputs"), **kwargs)
    assert err.value.code == code
    assert text in err.value.message
    assert "\n" not in str(err.value)
    ok = client.predict("binary", {"images": np.zeros((1, 8, 8, 3), np.float32)})
    assert ok["probabilities"].shape == (1, 8, 8, 2)


def test_mixed_sizes_in_one_bytes_request(client, sv):
    blobs = [_png(sv.he_like(32, 32)), _png(sv.he_like(32, 40))]
    with pytest.raises(ServingError) as err:
        client.predict_encoded("binary", blobs)
    assert err.value.code == "INVALID_ARGUMENT" and "must share one height and width" in err.value.message


def test_output_filter_returns_only_those(client):
    out = client.predict("three", {"images": np.zeros((2, 8, 8, 3), np.float32)}, output_filter=["instances"])
    assert list(out) == ["instances"] and out["instances"].dtype == np.int32


def test_oversized_message_is_resource_exhausted(exported):
    from serving.config import ModelEntry
    from serving.local_server import LocalModelServer

    with LocalModelServer([ModelEntry("binary", str(exported["binary"]))], max_message_bytes=1 << 20) as srv:
        with PredictClient(srv.target, retries=0) as c:
            big = np.zeros((1, 512, 512, 3), np.float32)  # 3 MiB > 1 MiB
            with pytest.raises(ServingError) as err:
                c.predict("binary", {"images": big})
            assert err.value.code == "RESOURCE_EXHAUSTED"
            assert c.predict("binary", {"images": big[:, :64, :64]})["instances"].shape == (1, 64, 64)


def test_concurrent_clients_all_succeed(server, models, sv):
    x = np.stack([sv.he_like(64, 64, s) for s in range(2)]).astype(np.float32) / 255.0
    want = sv.reference(models["binary_v2"], x)
    errors, diffs = [], []

    def worker():
        with PredictClient(server.target, retries=0) as c:
            for _ in range(3):
                try:
                    diffs.append(np.abs(c.predict("binary", {"images": x})["probabilities"] - want).max())
                except Exception as e:  # noqa: BLE001
                    errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(diffs) == 18 and max(diffs) < TOL


def test_retries_with_backoff_on_unavailable(monkeypatch):
    import socket

    import serving.client as client_mod

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    sleeps = []
    monkeypatch.setattr(client_mod.time, "sleep", sleeps.append)
    with PredictClient(f"127.0.0.1:{port}", retries=3, backoff=0.1, timeout=5) as c:
        with pytest.raises(ServingError) as err:
            c.predict("binary", {"images": np.zeros((1, 8, 8, 3), np.float32)})
    assert err.value.code == "UNAVAILABLE"
    assert len(sleeps) == 3
    for k, s in enumerate(sleeps):  # exponential backoff, jittered into [0.5, 1] x 0.1 * 2**k
        assert 0.05 * 2 ** k <= s <= 0.1 * 2 ** k


def test_rest_client_matches_grpc(server, client, sv):
    rest = RestClient(f"127.0.0.1:{server.rest_port}", retries=0)
    img = sv.he_like(40, 36, 5)[None]
    g = client.predict("three", {"images": img}, signature="predict_images")
    r = rest.predict("three", {"images": img}, signature="predict_images")
    assert np.abs(r["probabilities"] - g["probabilities"]).max() < 1e-6
    np.testing.assert_array_equal(r["instances"], g["instances"])
    rb = rest.predict("binary", {"image_bytes": np.array([_png(img[0])], object)}, signature="predict_bytes",
                      label="stable")
    gb = client.predict_encoded("binary", [_png(img[0])], label="stable")
    np.testing.assert_array_equal(rb["instances"], gb["instances"])
    assert rest.status("binary") == {1: "AVAILABLE", 2: "AVAILABLE"}
    with pytest.raises(ServingError) as err:
        rest.predict("binary", {"images": img}, signature="nope")
    assert err.value.code == "HTTP 404" and "signature 'nope'" in err.value.message
    with pytest.raises(ServingError) as err:
        rest.predict("binary", {"images": img.astype(np.float32)}, signature="predict_images")
    assert err.value.code == "HTTP 400"
