"""Size limits and small request faults of serving.local_server (issue 16): decoded pixels per image and per request
are capped (gRPC RESOURCE_EXHAUSTED / REST 413), read from the tensor's declared shape or the image header before
anything is decoded; an empty image is INVALID_ARGUMENT with a message that says so; a client of a server that is
down says "unreachable" and names the address; output file names of ``predict_files`` are safe names."""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
import urllib.request
import zlib

import numpy as np
import pytest

from serving.client import PredictClient, RestClient, ServingError

IMAGE_CAP = 64 * 64
REQUEST_CAP = 2 * 64 * 64


def _png(h: int, w: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 180, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(h: int, w: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 180, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _png_header_only(h: int, w: int) -> bytes:
    """A PNG signature and IHDR chunk claiming h x w, and no pixel data: only its header can be read."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def _example(png: bytes) -> bytes:
    import tensorflow as tf

    f = lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))  # noqa: E731
    return tf.train.Example(features=tf.train.Features(feature={"image/encoded": f(png)})).SerializeToString()


@pytest.fixture(scope="module")
def small(exported):
    """A server capped at 64x64 pixels per image and 2 such images per request."""
    from serving.config import ModelEntry
    from serving.local_server import LocalModelServer

    with LocalModelServer([ModelEntry("binary", str(exported["binary"]))], rest_port=0,
                          max_image_pixels=IMAGE_CAP, max_request_pixels=REQUEST_CAP) as srv:
        with PredictClient(srv.target, retries=0, timeout=30) as c:
            yield srv, c


def _ok(c) -> None:
    assert c.predict("binary", {"images": np.zeros((1, 8, 8, 3), np.float32)})["probabilities"].shape == (1, 8, 8, 2)


def test_documented_defaults():
    import inspect

    from serving.local_server import (DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_REQUEST_PIXELS, DEFAULT_REST_WORKERS,
                                      LocalModelServer)

    assert DEFAULT_MAX_IMAGE_PIXELS == 4096 * 4096 and DEFAULT_MAX_REQUEST_PIXELS == 4 * 4096 * 4096
    params = inspect.signature(LocalModelServer).parameters
    assert params["max_image_pixels"].default == DEFAULT_MAX_IMAGE_PIXELS
    assert params["max_request_pixels"].default == DEFAULT_MAX_REQUEST_PIXELS
    assert params["rest_workers"].default == DEFAULT_REST_WORKERS == 8


@pytest.mark.parametrize("name,inputs,signature,text", [
    ("float-image", {"images": np.zeros((1, 65, 64, 3), np.float32)}, "serving_default", "per image"),
    ("uint8-request", {"images": np.zeros((3, 64, 64, 3), np.uint8)}, "predict_images", "per request"),
    ("png", {"image_bytes": np.array([_png(65, 64)], object)}, "predict_bytes", "per image"),
    ("jpeg", {"image_bytes": np.array([_jpeg(80, 80)], object)}, "predict_bytes", "per image"),
    ("png-request", {"image_bytes": np.array([_png(64, 64)] * 3, object)}, "predict_bytes", "per request"),
    # the header claims 10000 x 10000 and there is no pixel data: only a check before decoding can say so
    ("png-header", {"image_bytes": np.array([_png_header_only(10000, 10000)], object)}, "predict_bytes",
     "10000x10000"),
    ("example", {"examples": np.array([_example(_png(100, 100))], object)}, "predict_examples", "per image"),
])
def test_over_the_pixel_cap_is_resource_exhausted(small, name, inputs, signature, text):
    _, c = small
    with pytest.raises(ServingError) as err:
        c.predict("binary", inputs, signature=signature)
    assert err.value.code == "RESOURCE_EXHAUSTED", err.value
    assert "over the limit" in err.value.message and text in err.value.message
    _ok(c)


def test_at_the_cap_is_served(small):
    _, c = small
    assert c.predict("binary", {"images": np.zeros((2, 64, 64, 3), np.uint8)},
                     signature="predict_images")["instances"].shape == (2, 64, 64)
    assert c.predict_encoded("binary", [_png(64, 64)] * 2)["instances"].shape == (2, 64, 64)


def test_declared_shape_is_checked_before_the_values_are_materialised(small):
    """A TensorProto with ONE value and a large shape is broadcast by tf.make_ndarray: the declared shape must be
    refused before that (here 1 x 128 x 128, 4x the image cap, sent in a few bytes)."""
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    import grpc

    srv, _ = small
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "binary"
    tp = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[0.5])
    for d in (1, 128, 128, 3):
        tp.tensor_shape.dim.add(size=d)
    req.inputs["images"].CopyFrom(tp)
    assert req.ByteSize() < 100
    with grpc.insecure_channel(srv.target) as ch:
        with pytest.raises(grpc.RpcError) as err:
            prediction_service_pb2_grpc.PredictionServiceStub(ch).Predict(req, timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "per image" in err.value.details()


def _rest_post(port: int, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/binary:predict", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("body,text", [
    ({"signature_name": "predict_images", "instances": np.zeros((1, 65, 64, 3), int).tolist()}, "per image"),
    ({"signature_name": "predict_images", "inputs": {"images": np.zeros((3, 64, 64, 3), int).tolist()}},
     "per request"),
    ({"signature_name": "predict_bytes", "instances": [{"b64": base64.b64encode(_png(65, 64)).decode()}]},
     "per image"),
    ({"signature_name": "predict_bytes",
      "instances": [{"b64": base64.b64encode(_png_header_only(10000, 10000)).decode()}]}, "10000x10000"),
])
def test_rest_over_the_cap_is_413(small, body, text):
    srv, c = small
    code, answer = _rest_post(srv.rest_port, body)
    assert code == 413 and "over the limit" in answer["error"] and text in answer["error"], answer
    _ok(c)
    rest = RestClient(f"127.0.0.1:{srv.rest_port}", retries=0)
    assert rest.predict("binary", {"images": np.zeros((1, 8, 8, 3), np.uint8)},
                        signature="predict_images")["instances"].shape == (1, 8, 8)


@pytest.mark.parametrize("inputs,signature", [
    ({"images": np.zeros((1, 0, 8, 3), np.float32)}, "serving_default"),
    ({"images": np.zeros((1, 8, 0, 3), np.uint8)}, "predict_images"),
    ({"images": np.zeros((1, 0, 0, 3), np.float32)}, "serving_default"),
    ({"images": np.zeros((0, 8, 8, 3), np.float32)}, "serving_default"),
    ({"image_bytes": np.array([b""], object)}, "predict_bytes"),
    ({"image_bytes": np.array([], object)}, "predict_bytes"),
])
def test_empty_image_is_invalid_argument_saying_so(client, inputs, signature):
    with pytest.raises(ServingError) as err:
        client.predict("binary", inputs, signature=signature)
    assert err.value.code == "INVALID_ARGUMENT"
    assert "empty" in err.value.message and "filter depth" not in err.value.message
    _ok(client)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


def test_server_down_is_unreachable_and_names_the_address():
    port = _closed_port()
    with PredictClient(f"127.0.0.1:{port}", retries=0, timeout=5) as c:
        with pytest.raises(ServingError) as err:
            c.predict("binary", {"images": np.zeros((1, 8, 8, 3), np.float32)})
    msg = str(err.value)
    assert err.value.code == "UNAVAILABLE" and "unreachable" in msg and f"127.0.0.1:{port}" in msg
    assert "refused" not in msg.lower() and "\n" not in msg
    rest = RestClient(f"127.0.0.1:{port}", retries=0, timeout=5)
    with pytest.raises(ServingError) as err:
        rest.predict("binary", {"images": np.zeros((1, 8, 8, 3), np.float32)})
    msg = str(err.value)
    assert err.value.code == "UNAVAILABLE" and "unreachable" in msg and f"127.0.0.1:{port}" in msg
    assert "refused" not in msg.lower()


def test_output_names_are_safe_names(tmp_path):
    from zoo.inference.outputs import output_stems
    from zoo.errors import ConfigError

    assert output_stems([str(tmp_path / ".hidden.png"), "x/a..b.tif", "p09_t0.png"]) == ["hidden", "a.b", "p09_t0"]
    with pytest.raises(ConfigError, match="share the name"):
        output_stems(["a/.x.png", "b/x.png"])  # the same output name after making it safe
