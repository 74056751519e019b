"""A PredictionService-compatible gRPC server (and TF Serving's REST predict API) for laptops and tests.

There is no ``tensorflow_model_server`` binary on these machines (ENVIRONMENT.md §7), so this speaks the same API
over real gRPC: ``PredictionService.Predict`` and ``GetModelMetadata`` and ``ModelService.GetModelStatus``,
loading versioned SavedModels (``base_path/<int>/``) the way TF Serving does (latest version by default, or
the listed versions, with version labels). Clients written against it (serving.client) work unchanged against
TF Serving. Malformed requests answer with a gRPC status and a one-line message, and the server keeps serving:

| problem | status |
|---|---|
| unknown model, version, label or signature | NOT_FOUND |
| unknown / missing input key, wrong dtype, wrong rank or shape, unreadable TensorProto, undecodable image bytes, unknown output_filter key | INVALID_ARGUMENT |
| message larger than ``max_message_bytes`` (gRPC itself) | RESOURCE_EXHAUSTED |
| anything else raised while running the model | the TF error's own code, else INTERNAL |
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import re
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterable

import grpc
import numpy as np

from serving.config import ModelEntry
from zoo.errors import ConfigError, DataError

log = logging.getLogger(__name__)
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024


class RequestError(Exception):
    """A request the server refuses: carries the gRPC status code and a one-line message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _tf():
    import tensorflow as tf

    return tf


def list_versions(base_path: str) -> list[int]:
    """The integer version folders under ``base_path`` that hold a saved_model.pb, ascending."""
    if not os.path.isdir(base_path):
        raise DataError(base_path, "no such model base path (expected a folder of integer version folders)")
    return sorted(int(v) for v in os.listdir(base_path)
                  if v.isdigit() and os.path.isfile(os.path.join(base_path, v, "saved_model.pb")))


@dataclasses.dataclass
class LoadedVersion:
    """One loaded SavedModel version: its callable signatures, their input specs and SignatureDefs."""

    version: int
    path: str
    module: object
    signatures: dict
    input_specs: dict  # signature -> {input key: tf.TensorSpec}
    signature_defs: dict  # signature -> SignatureDef proto (as in saved_model.pb, what TF Serving reports)

    @classmethod
    def load(cls, path: str, version: int) -> "LoadedVersion":
        tf = _tf()
        from tensorflow.core.protobuf import saved_model_pb2

        try:
            module = tf.saved_model.load(path)
        except Exception as e:
            raise DataError(path, f"cannot load the SavedModel ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
        sm = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            sm.ParseFromString(f.read())
        defs = {k: v for k, v in sm.meta_graphs[0].signature_def.items() if not k.startswith("__")}
        sigs = {k: module.signatures[k] for k in defs if k in module.signatures}
        specs = {k: dict(fn.structured_input_signature[1]) for k, fn in sigs.items()}
        return cls(version, path, module, sigs, specs, defs)


class ServedModel:
    """The loaded versions and labels of one model entry."""

    def __init__(self, entry: ModelEntry):
        self.entry = entry
        present = list_versions(entry.base_path)
        if not present:
            raise DataError(entry.base_path, "no version folders with a saved_model.pb (export one first)")
        wanted = [present[-1]] if entry.versions is None else list(entry.versions)
        missing = [v for v in wanted if v not in present]
        if missing:
            raise DataError(entry.base_path, f"model {entry.name!r}: versions {missing} not found (present: {present})")
        self.versions = {v: LoadedVersion.load(os.path.join(entry.base_path, str(v)), v) for v in wanted}
        for label, v in entry.labels.items():
            if v not in self.versions:
                raise ConfigError(f"model {entry.name!r}: label {label!r} -> version {v}, which is not served "
                                  f"(served: {sorted(self.versions)})")
        self.labels = dict(entry.labels)

    def resolve(self, version: int | None = None, label: str | None = None) -> LoadedVersion:
        name = self.entry.name
        if label:
            if label not in self.labels:
                raise RequestError(grpc.StatusCode.NOT_FOUND,
                                   f"model {name!r} has no version label {label!r} (labels: {sorted(self.labels)})")
            version = self.labels[label]
        if version is None:
            return self.versions[max(self.versions)]
        if version not in self.versions:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"model {name!r} version {version} is not served (served: {sorted(self.versions)})")
        return self.versions[version]


class ModelRegistry:
    """The models a server serves, and the request logic shared by the gRPC and REST front ends."""

    def __init__(self, entries: Iterable[ModelEntry]):
        self.models = {}
        for e in entries:
            if e.name in self.models:
                raise ConfigError(f"model {e.name!r} listed twice")
            self.models[e.name] = ServedModel(e)

    def get(self, name: str, version: int | None = None, label: str | None = None) -> LoadedVersion:
        if name not in self.models:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"model {name!r} is not served (served: {sorted(self.models)})")
        return self.models[name].resolve(version, label)

    @staticmethod
    def signature(lv: LoadedVersion, name: str):
        name = name or "serving_default"
        if name not in lv.signatures:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"signature {name!r} not found in version {lv.version} "
                               f"(signatures: {sorted(lv.signatures)})")
        return name, lv.signatures[name], lv.input_specs[name]

    @staticmethod
    def run(lv: LoadedVersion, signature: str, inputs: dict, output_filter: Iterable[str] = ()) -> tuple[str, dict]:
        """Validate numpy ``inputs`` against the signature, run it, return (signature name, numpy outputs)."""
        tf = _tf()
        sig, fn, specs = ModelRegistry.signature(lv, signature)
        unknown = sorted(set(inputs) - set(specs))
        if unknown:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"signature {sig!r} has no input {unknown[0]!r} (inputs: {sorted(specs)})")
        missing = sorted(set(specs) - set(inputs))
        if missing:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"signature {sig!r}: missing input {missing[0]!r} (inputs: {sorted(specs)})")
        feed = {}
        for key, arr in inputs.items():
            spec = specs[key]
            arr = np.asarray(arr)
            got = tf.as_dtype(arr.dtype) if arr.dtype != object else tf.string
            if got != spec.dtype:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"signature {sig!r} input {key!r}: expected dtype {spec.dtype.name}, got {got.name}")
            if not spec.shape.is_compatible_with(arr.shape):
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"signature {sig!r} input {key!r}: expected shape {_shape_str(spec.shape)}, "
                                   f"got {list(arr.shape)}")
            feed[key] = tf.constant(arr, spec.dtype)
        output_filter = list(output_filter)
        try:
            out = fn(**feed)
        except tf.errors.OpError as e:
            code = grpc.StatusCode.INVALID_ARGUMENT
            for c in grpc.StatusCode:
                if c.value[0] == e.error_code:
                    code = c
            raise RequestError(code, f"signature {sig!r}: {_first_line(e.message)}") from None
        bad = [k for k in output_filter if k not in out]
        if bad:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"signature {sig!r} has no output {bad[0]!r} (outputs: {sorted(out)})")
        keys = output_filter or list(out)
        return sig, {k: out[k].numpy() for k in keys}


def _shape_str(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape.as_list()) + "]"


def _first_line(msg: str) -> str:
    """The useful line of a TF error message: an assertion's own text, else the first line without graph noise."""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", msg)
    m = re.search(r"assertion failed: \[([^\]]*)\]", text)
    if m:
        return m.group(1)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return re.sub(r"\s*\[\[.*$", "", lines[0] if lines else text)[:300]


# ------------------------------------------------------------------------------------------ gRPC front end
def _servicers(registry: ModelRegistry):
    from google.protobuf import any_pb2  # noqa: F401  (Any.Pack lives on the message)
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                         predict_pb2, prediction_service_pb2_grpc)

    from serving.client import fill_tensor_proto, to_ndarray

    def guarded(fn):
        def wrapper(self, request, context):
            try:
                return fn(self, request, context)
            except RequestError as e:
                context.abort(e.code, e.message)
            except Exception as e:  # noqa: BLE001 - a server answers, it does not die
                log.exception("internal error")
                context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {_first_line(str(e))}")
        return wrapper

    def resolve(spec):
        choice = spec.WhichOneof("version_choice")
        return registry.get(spec.name, spec.version.value if choice == "version" else None,
                            spec.version_label if choice == "version_label" else None)

    class Prediction(prediction_service_pb2_grpc.PredictionServiceServicer):
        @guarded
        def Predict(self, request, context):
            lv = resolve(request.model_spec)
            inputs = {}
            for key, tp in request.inputs.items():
                try:
                    inputs[key] = to_ndarray(tp)
                except Exception as e:  # noqa: BLE001 - malformed TensorProto
                    raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                       f"input {key!r}: unreadable TensorProto ({_first_line(str(e))})") from None
            sig, out = registry.run(lv, request.model_spec.signature_name, inputs, request.output_filter)
            resp = predict_pb2.PredictResponse()
            resp.model_spec.name = request.model_spec.name
            resp.model_spec.version.value = lv.version
            resp.model_spec.signature_name = sig
            for k, v in out.items():
                fill_tensor_proto(resp.outputs[k], v)
            return resp

        @guarded
        def GetModelMetadata(self, request, context):
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"metadata_field must be ['signature_def'], got {fields}")
            lv = resolve(request.model_spec)
            resp = get_model_metadata_pb2.GetModelMetadataResponse()
            resp.model_spec.name = request.model_spec.name
            resp.model_spec.version.value = lv.version
            sdm = get_model_metadata_pb2.SignatureDefMap()
            for k, v in lv.signature_defs.items():
                sdm.signature_def[k].CopyFrom(v)
            resp.metadata["signature_def"].Pack(sdm)
            return resp

    class Status(model_service_pb2_grpc.ModelServiceServicer):
        @guarded
        def GetModelStatus(self, request, context):
            spec = request.model_spec
            if spec.name not in registry.models:
                raise RequestError(grpc.StatusCode.NOT_FOUND, f"model {spec.name!r} is not served")
            choice = spec.WhichOneof("version_choice")
            versions = sorted(registry.models[spec.name].versions)
            if choice:
                versions = [resolve(spec).version]
            resp = get_model_status_pb2.GetModelStatusResponse()
            for v in versions:
                s = resp.model_version_status.add()
                s.version = v
                s.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            return resp

    return Prediction(), Status()


# ------------------------------------------------------------------------------------------ REST front end
_REST_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?(?::(predict)|/(metadata))?$")


def _json_ready(arr: np.ndarray):
    if arr.dtype == object:
        return [_json_ready(a) for a in arr] if arr.ndim else {"b64": base64.b64encode(arr.item()).decode()}
    return arr.tolist()


def _from_json(value):
    """TF Serving REST JSON -> numpy (``{"b64": ...}`` leaves become bytes)."""
    def conv(v):
        if isinstance(v, dict) and "b64" in v:
            return base64.b64decode(v["b64"])
        if isinstance(v, list):
            return [conv(x) for x in v]
        return v

    v = conv(value)
    arr = np.array(v, dtype=object if _has_bytes(v) else None)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    elif arr.dtype == np.int64:
        arr = arr.astype(np.int32)
    return arr


def _coerce(arr: np.ndarray, spec, key: str) -> np.ndarray:
    """JSON numbers carry no dtype: cast them to the signature's (ints to any number type, floats to floats only)."""
    tf = _tf()
    if arr.dtype == object or spec.dtype == tf.string:
        return arr
    if arr.dtype.kind == "f" and not spec.dtype.is_floating:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input {key!r}: expected {spec.dtype.name} values, got non-integer numbers")
    return arr.astype(spec.dtype.as_numpy_dtype)


def _has_bytes(v) -> bool:
    while isinstance(v, list) and v:
        v = v[0]
    return isinstance(v, bytes)


def _rest_handler(registry: ModelRegistry, max_bytes: int):
    http_status = {grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.INVALID_ARGUMENT: 400,
                   grpc.StatusCode.RESOURCE_EXHAUSTED: 413}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _send(self, code: int, obj) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _route(self):
            m = _REST_PATH.match(self.path)
            if not m:
                raise RequestError(grpc.StatusCode.NOT_FOUND, f"no such REST path {self.path!r}")
            name, version, label, predict, metadata = m.groups()
            return name, int(version) if version else None, label, predict, metadata

        def do_GET(self):
            try:
                name, version, label, predict, metadata = self._route()
                lv = registry.get(name, version, label)
                if metadata:
                    from google.protobuf import json_format

                    sdefs = {k: json_format.MessageToDict(v) for k, v in lv.signature_defs.items()}
                    self._send(200, {"model_spec": {"name": name, "version": str(lv.version)},
                                     "metadata": {"signature_def": {"signature_def": sdefs}}})
                else:
                    self._send(200, {"model_version_status": [
                        {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
                        for v in sorted(registry.models[name].versions)]})
            except RequestError as e:
                self._send(http_status.get(e.code, 500), {"error": e.message})

        def do_POST(self):
            try:
                name, version, label, predict, _ = self._route()
                if not predict:
                    raise RequestError(grpc.StatusCode.NOT_FOUND, f"POST {self.path!r}: only :predict is served")
                n = int(self.headers.get("Content-Length", 0))
                if n > max_bytes:
                    raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"request of {n} bytes > {max_bytes}")
                try:
                    body = json.loads(self.rfile.read(n))
                except ValueError as e:
                    raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"body is not JSON ({e})") from None
                lv = registry.get(name, version, label)
                sig = body.get("signature_name", "serving_default")
                if "inputs" in body:  # columnar
                    raw = body["inputs"]
                    if not isinstance(raw, dict):
                        _, _, specs = registry.signature(lv, sig)
                        raw = {next(iter(specs)): raw}
                    _, _, specs = registry.signature(lv, sig)
                    inputs = {k: _coerce(_from_json(v), specs[k], k) if k in specs else _from_json(v)
                              for k, v in raw.items()}
                    sig, out = registry.run(lv, sig, inputs)
                    self._send(200, {"outputs": {k: _json_ready(v) for k, v in out.items()}})
                elif "instances" in body:  # row format
                    rows = body["instances"]
                    _, _, specs = registry.signature(lv, sig)
                    if rows and isinstance(rows[0], dict) and "b64" not in rows[0]:
                        inputs = {k: _from_json([r[k] for r in rows]) for k in rows[0]}
                    else:
                        inputs = {next(iter(specs)): _from_json(rows)}
                    inputs = {k: _coerce(v, specs[k], k) if k in specs else v for k, v in inputs.items()}
                    sig, out = registry.run(lv, sig, inputs)
                    preds = [{k: _json_ready(v[i]) for k, v in out.items()} for i in range(len(rows))]
                    self._send(200, {"predictions": preds})
                else:
                    raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "body needs 'instances' or 'inputs'")
            except RequestError as e:
                self._send(http_status.get(e.code, 500), {"error": e.message})
            except Exception as e:  # noqa: BLE001
                log.exception("internal error")
                self._send(500, {"error": f"{type(e).__name__}: {_first_line(str(e))}"})

    return Handler


# ------------------------------------------------------------------------------------------ the server
class LocalModelServer:
    """Serve ``entries`` over gRPC on ``host:port`` (port 0 picks a free one; ``.port`` tells which) and, when
    ``rest_port`` is not None, TF Serving's REST API on ``host:rest_port``.

    Use as a context manager, or ``start()`` / ``stop()``; ``wait()`` blocks until stopped.
    """

    def __init__(self, entries: Iterable[ModelEntry], host: str = "127.0.0.1", port: int = 0,
                 rest_port: int | None = None, max_workers: int = 8,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES):
        self.registry = ModelRegistry(entries)
        self.host, self._port, self._rest_port = host, port, rest_port
        self.max_workers, self.max_message_bytes = max_workers, max_message_bytes
        self.port = self.rest_port = None
        self._server = self._http = self._http_thread = None

    def start(self) -> "LocalModelServer":
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        opts = [("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.max_send_message_length", self.max_message_bytes),
                ("grpc.so_reuseport", 0)]
        self._server = grpc.server(futures.ThreadPoolExecutor(self.max_workers, thread_name_prefix="predict"),
                                   options=opts)
        pred, status = _servicers(self.registry)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(pred, self._server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(status, self._server)
        try:
            self.port = self._server.add_insecure_port(f"{self.host}:{self._port}")
        except RuntimeError as e:
            raise ConfigError(f"cannot listen on {self.host}:{self._port} ({e})") from None
        if not self.port:
            raise ConfigError(f"cannot listen on {self.host}:{self._port} (address in use?)")
        self._server.start()
        if self._rest_port is not None:
            self._http = ThreadingHTTPServer((self.host, self._rest_port),
                                             _rest_handler(self.registry, self.max_message_bytes))
            self._http.daemon_threads = True
            self.rest_port = self._http.server_address[1]
            self._http_thread = threading.Thread(target=self._http.serve_forever, daemon=True)
            self._http_thread.start()
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None

    def wait(self) -> None:
        if self._server is not None:
            self._server.wait_for_termination()

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
