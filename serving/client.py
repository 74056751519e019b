"""Clients of TF Serving (or serving.local_server): gRPC ``PredictionService`` and the REST JSON API (:8501).

Both retry with exponential backoff on transient failures (gRPC UNAVAILABLE / DEADLINE_EXCEEDED; REST connection
errors and HTTP 503) and raise ``ServingError`` (a ZooError: one line, the server's own message) otherwise.
gRPC limits messages to 4 MiB by default; a 1000x1000 tile's float probabilities are ~8 MB per class, so the
client raises both limits to ``max_message_bytes`` (256 MiB by default). tensorflow_model_server accepts
messages up to 2 GiB; serving.local_server up to its own ``max_message_bytes``.

``predict_files`` is what ``histozoo predict --server`` runs: the served model's spec is read once (``served_spec``),
then each image goes through ``zoo.inference.predict`` with the server as its probability function
(``ServedForward``): one request per image, the spec's post-processing on this side, and the files of
``zoo.inference.outputs`` (instance map, overlay, QuPath GeoJSON, per-nucleus CSV, summary.json) written atomically.
"""

from __future__ import annotations

import base64
import json
import os
import random
import time
import urllib.error
import urllib.request
from typing import Iterable, Sequence

import grpc
import numpy as np

from zoo import atomic
from zoo.errors import ZooError

DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
INPUT_KEYS = {"serving_default": "images", "predict_images": "images", "predict_bytes": "image_bytes",
              "predict_examples": "examples"}


class ServingError(ZooError):
    """A prediction server refused a request or could not be reached: ``code`` is the gRPC status name."""

    def __init__(self, target: str, code: str, message: str):
        self.target, self.code, self.message = target, code, message
        super().__init__(f"{target}: {code}: {message}")


def _tf():
    import tensorflow as tf

    return tf


def fill_tensor_proto(tp, value) -> None:
    """Write numpy ``value`` into the TensorProto ``tp`` in place (numbers as one ``tensor_content`` buffer, no
    intermediate proto copy; strings through tf.make_tensor_proto)."""
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind in "SU":
        tp.CopyFrom(_tf().make_tensor_proto(arr))
        return
    tf = _tf()
    tp.dtype = tf.as_dtype(arr.dtype).as_datatype_enum
    for d in arr.shape:
        tp.tensor_shape.dim.add(size=d)
    tp.tensor_content = np.ascontiguousarray(arr).tobytes()


def to_ndarray(tp) -> np.ndarray:
    """TensorProto -> numpy; a zero-copy (read-only) view when the data is in ``tensor_content``."""
    tf = _tf()
    dtype = tf.as_dtype(tp.dtype)
    if tp.tensor_content and dtype != tf.string:
        shape = [d.size for d in tp.tensor_shape.dim]
        return np.frombuffer(tp.tensor_content, dtype.as_numpy_dtype).reshape(shape)
    return tf.make_ndarray(tp)


def unreachable(address: str, detail: str | None = None) -> str:
    """The one-line message for a server that cannot be reached: says so and names the address (a connection
    refused, reset or timed out all mean the same to a user: nothing is serving there)."""
    return (f"server unreachable at {address} ({detail or 'nothing answered'}; is it running, and is the "
            "address right?)")


def _connect_failure(details: str) -> bool:
    """Whether a gRPC UNAVAILABLE's details say the channel never connected (rather than a server's own
    UNAVAILABLE answer)."""
    d = details.lower()
    return any(w in d for w in ("failed to connect", "connection refused", "connect failed", "unreachable",
                                "name resolution", "dns resolution", "socket closed", "connection reset"))


def _backoff(attempt: int, base: float) -> float:
    return base * (2 ** attempt) * (0.5 + random.random() / 2)


class PredictClient:
    """gRPC client of ``tensorflow.serving.PredictionService`` (and ``ModelService``) at ``target`` (HOST:PORT).

    timeout: seconds per attempt; retries: extra attempts on UNAVAILABLE / DEADLINE_EXCEEDED, waiting
    ``backoff * 2**attempt`` (jittered) between them.
    """

    def __init__(self, target: str, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, timeout: float = 60.0,
                 retries: int = 3, backoff: float = 0.2):
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.target, self.timeout, self.retries, self.backoff = target, timeout, retries, backoff
        self._channel = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes)])
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def _call(self, method, request):
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as e:
                code = e.code()
                if code in RETRY_CODES and attempt < self.retries:
                    time.sleep(_backoff(attempt, self.backoff))
                    continue
                if code == grpc.StatusCode.UNAVAILABLE and _connect_failure(e.details() or ""):
                    raise ServingError(self.target, code.name, unreachable(self.target)) from None
                raise ServingError(self.target, code.name, (e.details() or "").splitlines()[0] if e.details()
                                   else code.name) from None

    @staticmethod
    def _spec(spec, model: str, version: int | None, label: str | None, signature: str | None = None):
        spec.name = model
        if version is not None and label is not None:
            raise ValueError("give a version or a label, not both")
        if version is not None:
            spec.version.value = int(version)
        if label is not None:
            spec.version_label = label
        if signature is not None:
            spec.signature_name = signature

    def predict(self, model: str, inputs: dict, *, signature: str = "serving_default", version: int | None = None,
                label: str | None = None, output_filter: Sequence[str] = ()) -> dict:
        """Send numpy ``inputs`` ({input key: array}) and return {output key: numpy array}; the served version is
        in ``self.last_version``."""
        from tensorflow_serving.apis import predict_pb2

        req = predict_pb2.PredictRequest()
        self._spec(req.model_spec, model, version, label, signature)
        for k, v in inputs.items():
            fill_tensor_proto(req.inputs[k], v)
        req.output_filter.extend(output_filter)
        resp = self._call(self._predict.Predict, req)
        self.last_version = resp.model_spec.version.value
        return {k: to_ndarray(v) for k, v in resp.outputs.items()}

    def predict_images(self, model: str, images: np.ndarray, **kw) -> dict:
        """uint8 [B, H, W, 3] -> ``predict_images``; float [B, H, W, 3] in [0, 1] -> ``serving_default``."""
        images = np.asarray(images)
        sig = "predict_images" if images.dtype == np.uint8 else "serving_default"
        return self.predict(model, {"images": images if sig == "predict_images" else images.astype(np.float32)},
                            signature=sig, **kw)

    def predict_encoded(self, model: str, blobs: Sequence[bytes], **kw) -> dict:
        """Encoded PNG/JPEG images (one size per call) -> ``predict_bytes``."""
        return self.predict(model, {"image_bytes": np.array(list(blobs), dtype=object)},
                            signature="predict_bytes", **kw)

    def metadata(self, model: str, *, version: int | None = None, label: str | None = None) -> dict:
        """{signature name: SignatureDef proto} of the served version (GetModelMetadata)."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        req = get_model_metadata_pb2.GetModelMetadataRequest()
        self._spec(req.model_spec, model, version, label)
        req.metadata_field.append("signature_def")
        resp = self._call(self._predict.GetModelMetadata, req)
        sdm = get_model_metadata_pb2.SignatureDefMap()
        resp.metadata["signature_def"].Unpack(sdm)
        return dict(sdm.signature_def)

    def status(self, model: str) -> dict:
        """{version: state name} of a model (ModelService.GetModelStatus)."""
        from tensorflow_serving.apis import get_model_status_pb2

        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = model
        resp = self._call(self._models.GetModelStatus, req)
        return {s.version: get_model_status_pb2.ModelVersionStatus.State.Name(s.state)
                for s in resp.model_version_status}

    def close(self) -> None:
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RestClient:
    """Client of TF Serving's REST API (``http://HOST:8501``), columnar ``inputs`` / ``outputs`` format; string
    inputs travel as ``{"b64": ...}`` as the API requires."""

    def __init__(self, base_url: str, *, timeout: float = 60.0, retries: int = 3, backoff: float = 0.2):
        if "://" not in base_url:
            base_url = "http://" + base_url
        self.base_url, self.timeout, self.retries, self.backoff = base_url.rstrip("/"), timeout, retries, backoff

    def _url(self, model: str, version: int | None, label: str | None, suffix: str = "") -> str:
        url = f"{self.base_url}/v1/models/{model}"
        if version is not None:
            url += f"/versions/{int(version)}"
        elif label is not None:
            url += f"/labels/{label}"
        return url + suffix

    def _request(self, url: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    return json.loads(r.read())
            except urllib.error.HTTPError as e:
                if e.code == 503 and attempt < self.retries:
                    time.sleep(_backoff(attempt, self.backoff))
                    continue
                try:
                    msg = json.loads(e.read()).get("error", "")
                except ValueError:
                    msg = e.reason
                raise ServingError(self.base_url, f"HTTP {e.code}", str(msg).splitlines()[0] if msg else "") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                if attempt < self.retries:
                    time.sleep(_backoff(attempt, self.backoff))
                    continue
                timed_out = isinstance(getattr(e, "reason", e), TimeoutError)
                detail = f"no answer within {self.timeout:g} s" if timed_out else None
                raise ServingError(self.base_url, "UNAVAILABLE", unreachable(self.base_url, detail)) from None

    def predict(self, model: str, inputs: dict, *, signature: str = "serving_default", version: int | None = None,
                label: str | None = None) -> dict:
        """Send {input key: numpy array} and return {output key: numpy array}."""
        def enc(a):
            a = np.asarray(a)
            if a.dtype == object or a.dtype.kind == "S":
                return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode()}, otypes=[object])(a).tolist()
            return a.tolist()

        body = {"signature_name": signature, "inputs": {k: enc(v) for k, v in inputs.items()}}
        out = self._request(self._url(model, version, label, ":predict"), body)["outputs"]
        if not isinstance(out, dict):  # a single output comes back unnamed
            out = {"output": out}
        return {k: np.asarray(v) for k, v in out.items()}

    def status(self, model: str) -> dict:
        resp = self._request(self._url(model, None, None))
        return {int(s["version"]): s["state"] for s in resp["model_version_status"]}


# ------------------------------------------------------------------------------------------ files in, PNGs out
def served_spec(client, model: str, *, version: int | None = None, label: str | None = None):
    """The InferenceSpec of a served model, from its ``histozoo_spec`` signature (``serving.export``)."""
    from serving.export import SPEC_SIGNATURE
    from zoo.inference import InferenceSpec

    try:
        out = client.predict(model, {"unused": np.zeros([1], np.int32)}, signature=SPEC_SIGNATURE, version=version,
                             label=label)
    except ServingError as e:
        raise ServingError(e.target, e.code, f"model {model!r} serves no inference spec ({e.message}); export it "
                                             "with this histozoo version") from None
    raw = np.asarray(out["spec"]).reshape(-1)[0]
    raw = raw.decode() if isinstance(raw, bytes) else str(raw)
    return InferenceSpec.from_dict(json.loads(raw), f"{model} ({SPEC_SIGNATURE} signature)")


class ServedForward:
    """A served model as ``zoo.inference.predict``'s probability function: uint8 [B, H, W, 3] at the model's
    resolution -> probabilities [B, H, W, C], over ``signature`` (predict_images sends uint8, serving_default floats
    in [0, 1], predict_bytes PNG-encoded images). ``last`` keeps the last response (e.g. the in-graph instances)."""

    is_forward = True

    def __init__(self, client, model: str, *, signature: str = "predict_images", version: int | None = None,
                 label: str | None = None):
        from zoo.errors import ConfigError

        if signature not in ("predict_images", "serving_default", "predict_bytes"):
            raise ConfigError(f"signature {signature!r}: expected predict_images, serving_default or predict_bytes")
        self.client, self.model, self.signature = client, model, signature
        self.version, self.label, self.last = version, label, None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.uint8)
        if self.signature == "predict_images":
            value = images
        elif self.signature == "serving_default":
            value = images.astype(np.float32) / 255.0
        else:
            import io

            from PIL import Image

            blobs = []
            for im in images:
                buf = io.BytesIO()
                Image.fromarray(im).save(buf, format="PNG", compress_level=1)
                blobs.append(buf.getvalue())
            value = np.array(blobs, dtype=object)
        self.last = self.client.predict(self.model, {INPUT_KEYS[self.signature]: value}, signature=self.signature,
                                        version=self.version, label=self.label)
        return np.asarray(self.last["probabilities"], np.float32)


def predict_files(client, model: str, paths: Iterable[str], out_dir: str, *, signature: str = "predict_images",
                  version: int | None = None, label: str | None = None, progress: bool = True,
                  mpp: float | None = None) -> dict:
    """``zoo.inference.outputs.predict_files`` with a served model: its InferenceSpec read from the server, its
    probabilities through ``ServedForward`` (``signature`` picks the wire form), the spec's post-processing on this
    side, so the instances are exactly those evaluation scores. Writes the instance map, probability and overlay
    PNGs, a QuPath GeoJSON and a per-nucleus CSV per image, and ``summary.json`` (``zoo.inference.outputs``).
    ``mpp``: the images' microns per pixel (None: taken to be the model's own; otherwise resampled to it and back).
    """
    from zoo.errors import ConfigError
    from zoo.inference.outputs import predict_files as predict_local

    if signature not in INPUT_KEYS:
        raise ConfigError(f"--signature {signature!r}: expected one of {sorted(INPUT_KEYS)}")
    if signature == "predict_examples":
        raise ConfigError("--signature predict_examples takes serialized tf.Examples, not image files")
    atomic.check_output_dir(out_dir)
    spec = served_spec(client, model, version=version, label=label)
    forward = ServedForward(client, model, signature=signature, version=version, label=label)
    summary = predict_local(forward, spec, paths, out_dir, mpp=mpp, progress=progress,
                            extra={"model": model, "signature": signature, "version": version, "label": label})
    summary["served_version"] = getattr(client, "last_version", None)
    atomic.write_json(os.path.join(out_dir, "summary.json"), summary, indent=2)
    return summary
