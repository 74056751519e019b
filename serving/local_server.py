"""A PredictionService-compatible gRPC server (and TF Serving's REST predict API) for laptops and tests.

There is no ``tensorflow_model_server`` binary on these machines (ENVIRONMENT.md §7), so this speaks the same API
over real gRPC: ``PredictionService.Predict`` and ``GetModelMetadata`` and ``ModelService.GetModelStatus``,
loading versioned SavedModels (``base_path/<int>/``) the way TF Serving does (latest version by default, or
the listed versions, with version labels). Clients written against it (serving.client) work unchanged against
TF Serving. Malformed requests answer with a gRPC status (REST: an HTTP status and ``{"error": "<one line>"}``)
and the server keeps serving:

| problem | gRPC status | REST |
|---|---|---|
| unknown model, version, label or signature | NOT_FOUND | 404 |
| unknown / missing input key, wrong dtype, wrong rank or shape, unreadable TensorProto, undecodable image bytes, unknown output_filter key, an empty image (a dimension of 0) | INVALID_ARGUMENT | 400 |
| REST only: a body that is not a JSON object, ``instances`` / ``inputs`` of the wrong kind, ragged lists, bad base64, integers outside the input type's range (e.g. 300 for uint8), non-integers for an integer input | | 400 |
| REST only: no ``Content-Length`` (or chunked) / a negative or non-numeric one | | 411 / 400 |
| more decoded pixels than ``max_image_pixels`` in one image or ``max_request_pixels`` in one request | RESOURCE_EXHAUSTED | 413 |
| message larger than ``max_message_bytes`` (gRPC itself; REST: the body) | RESOURCE_EXHAUSTED | 413 |
| REST only: every worker busy and ``rest_queue`` connections already waiting | | 503 |
| anything else raised while running the model | the TF error's own code, else INTERNAL | 500 |

Size limits (``LocalModelServer`` arguments; defaults ``DEFAULT_MAX_IMAGE_PIXELS`` = 4096 * 4096 per image and
``DEFAULT_MAX_REQUEST_PIXELS`` = 4 * 4096 * 4096 per request): pixels are height x width of each image, counted
BEFORE anything is decoded or computed: from the tensor's declared shape (gRPC: the TensorProto's shape, before
its values are materialised; REST: the nested lists' lengths, before they become an array), and for encoded images
(``predict_bytes``; ``predict_examples``' ``image/encoded``) from the PNG / JPEG / GIF / BMP header alone
(``image_size``: PIL's lazy open, no pixel is decoded). A header that cannot be read is left to the graph, which
answers INVALID_ARGUMENT.

REST threads: at most ``rest_workers`` requests are handled at once (a fixed pool, default 8); up to ``rest_queue``
further connections (default 32) wait in order for a free worker; a connection beyond those is answered 503 at
once and closed. A connection idle (or sending its body) for more than ``rest_timeout`` seconds (default 30) is
closed, so no client holds a worker for ever.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import logging
import os
import re
import socket
import struct
import threading
import warnings
from concurrent import futures
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Iterable

import grpc
import numpy as np

from serving.config import ModelEntry
from zoo.errors import ConfigError, DataError

log = logging.getLogger(__name__)
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
DEFAULT_MAX_REQUEST_PIXELS = 4 * DEFAULT_MAX_IMAGE_PIXELS
DEFAULT_REST_WORKERS = 8
DEFAULT_REST_QUEUE = 32
DEFAULT_REST_TIMEOUT = 30.0
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_DECODED_FORMATS = ("PNG", "JPEG", "GIF", "BMP")  # what tf.io.decode_image reads


class RequestError(Exception):
    """A request the server refuses: carries the gRPC status code and a one-line message (and, for REST-only
    problems, the HTTP status to answer)."""

    def __init__(self, code: grpc.StatusCode, message: str, http: int | None = None):
        super().__init__(message)
        self.code, self.message, self.http = code, message, http


def _invalid(message: str, http: int | None = None) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message, http)


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-request size limits, in decoded pixels (height x width; channels not counted)."""

    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS

    def __post_init__(self):
        if self.max_image_pixels < 1 or self.max_request_pixels < 1:
            raise ConfigError(f"pixel limits must be >= 1, got max_image_pixels={self.max_image_pixels}, "
                              f"max_request_pixels={self.max_request_pixels}")

    @property
    def max_elements(self) -> int:
        """Cap on the values a tensor of any rank may declare (4 per pixel of the request limit)."""
        return 4 * self.max_request_pixels

    def check_image(self, key: str, index: int, h: int, w: int) -> None:
        if h * w > self.max_image_pixels:
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"input {key!r}: image {index} is {h}x{w} = {h * w} pixels, over the limit of "
                               f"{self.max_image_pixels} pixels per image")

    def check_request(self, key: str, total: int) -> None:
        if total > self.max_request_pixels:
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"input {key!r}: {total} pixels in this request, over the limit of "
                               f"{self.max_request_pixels} pixels per request")

    def check_shape(self, key: str, shape, image_rank: int | None = 4) -> None:
        """Declared ``shape`` of a numeric input: empty images -> INVALID_ARGUMENT; [B, H, W, C] over the pixel
        limits (or any tensor over ``max_elements``) -> RESOURCE_EXHAUSTED. Nothing is allocated."""
        shape = [int(d) for d in shape]
        if image_rank and len(shape) == image_rank and image_rank >= 3:
            b, h, w = shape[-4] if image_rank == 4 else 1, shape[-3], shape[-2]
            if b == 0:
                raise _invalid(f"input {key!r}: the request is empty (shape {shape}: no images)")
            if h == 0 or w == 0:
                raise _invalid(f"input {key!r}: the image is empty (shape {shape}: height and width must be >= 1)")
            self.check_image(key, 0, h, w)
            self.check_request(key, b * h * w)
        n = 1
        for d in shape:
            n *= max(d, 0)
        if n > self.max_elements:
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"input {key!r}: shape {shape} holds {n} values, over the limit of "
                               f"{self.max_elements} values per input")

    def check_encoded(self, key: str, blobs) -> None:
        """String inputs (encoded images or serialized tf.Examples): empty -> INVALID_ARGUMENT; header sizes over
        the limits -> RESOURCE_EXHAUSTED, before anything is decoded."""
        blobs = list(blobs)
        if not blobs:
            raise _invalid(f"input {key!r}: the request is empty (no images)")
        total = 0
        for i, blob in enumerate(blobs):
            if not isinstance(blob, (bytes, bytearray)):
                continue
            if not blob:
                raise _invalid(f"input {key!r}: image {i} is empty (0 bytes)")
            size = image_size(blob)
            if size is None:
                size = _example_image_size(blob)
            if size is None:
                continue  # not a format we can read the size of: the graph answers for it
            h, w = size
            if h == 0 or w == 0:
                raise _invalid(f"input {key!r}: image {i} is empty ({h}x{w})")
            self.check_image(key, i, h, w)
            total += h * w
        self.check_request(key, total)


class _TooLarge(Exception):
    pass


def image_size(blob: bytes) -> tuple[int, int] | None:
    """(height, width) of an encoded PNG / JPEG / GIF / BMP from its header alone (no pixel decoded), or None when
    the bytes are none of those. PNG is read directly (IHDR); the others through PIL's lazy ``Image.open``."""
    if blob[:8] == _PNG_SIGNATURE and len(blob) >= 24 and blob[12:16] == b"IHDR":
        w, h = struct.unpack(">II", blob[16:24])
        return int(h), int(w)
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(blob), formats=_DECODED_FORMATS) as im:
                w, h = im.size
        return int(h), int(w)
    except Image.DecompressionBombError:  # more than 2 x PIL's own limit: far over any sensible cap
        return (1 << 31) - 1, (1 << 31) - 1
    except Exception:  # noqa: BLE001 - not an image PIL can size: the graph's decoder answers
        return None


def _example_image_size(blob: bytes) -> tuple[int, int] | None:
    """(height, width) of a serialized tf.Example's ``image/encoded`` (the record schema) from its header."""
    try:
        from tensorflow.core.example import example_pb2

        ex = example_pb2.Example.FromString(blob)
        values = ex.features.feature["image/encoded"].bytes_list.value
    except Exception:  # noqa: BLE001
        return None
    return image_size(values[0]) if len(values) == 1 and values[0] else None


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

    def __init__(self, entries: Iterable[ModelEntry], limits: Limits | None = None):
        self.limits = limits or Limits()
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

    def run(self, lv: LoadedVersion, signature: str, inputs: dict,
            output_filter: Iterable[str] = ()) -> tuple[str, dict]:
        """Validate numpy ``inputs`` against the signature and the size limits, run it, return (signature name,
        numpy outputs)."""
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
            if spec.dtype == tf.string:
                self.limits.check_encoded(key, arr.ravel())
            else:
                self.limits.check_shape(key, arr.shape, spec.shape.rank)
        for key, arr in inputs.items():
            feed[key] = tf.constant(np.asarray(arr), specs[key].dtype)
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
            _, _, specs = registry.signature(lv, request.model_spec.signature_name)
            inputs = {}
            for key, tp in request.inputs.items():
                # the declared shape first: a TensorProto with one value and a huge shape would be broadcast
                spec = specs.get(key)
                image_rank = spec.shape.rank if spec is not None and spec.dtype != _tf().string else None
                registry.limits.check_shape(key, [d.size for d in tp.tensor_shape.dim], image_rank)
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
_HTTP_STATUS = {grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.INVALID_ARGUMENT: 400,
                grpc.StatusCode.RESOURCE_EXHAUSTED: 413}


def _json_ready(arr: np.ndarray):
    if arr.dtype == object:
        return [_json_ready(a) for a in arr] if arr.ndim else {"b64": base64.b64encode(arr.item()).decode()}
    return arr.tolist()


def _kind(v) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number")


def _nested_shape(v) -> list[int]:
    """The shape of nested JSON lists read along their first elements (the array np.array would make, when the
    lists are not ragged): cheap, so the size limits apply before any array is built."""
    shape = []
    while isinstance(v, list):
        shape.append(len(v))
        if not v:
            break
        v = v[0]
    return shape


def _from_json(key: str, value) -> np.ndarray:
    """TF Serving REST JSON -> numpy (``{"b64": ...}`` leaves become bytes). Numbers stay int64 / float64 here;
    ``_coerce`` casts them to the signature's type after checking their range."""
    def conv(v):
        if isinstance(v, dict):
            if set(v) != {"b64"} or not isinstance(v["b64"], str):
                raise _invalid(f"input {key!r}: an object in a tensor must be {{\"b64\": \"<base64 string>\"}}")
            try:
                return base64.b64decode(v["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise _invalid(f"input {key!r}: invalid base64 in a {{\"b64\": ...}} value") from None
        if isinstance(v, list):
            return [conv(x) for x in v]
        return v

    v = conv(value)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", np.exceptions.VisibleDeprecationWarning)
            arr = np.array(v, dtype=object if _has_bytes(v) else None)
    except (ValueError, TypeError, OverflowError, np.exceptions.VisibleDeprecationWarning):
        raise _invalid(f"input {key!r}: ragged lists (every row of a tensor must have the same length)") from None
    if arr.dtype == object and arr.size and not all(isinstance(x, bytes) for x in arr.ravel()):
        if all(isinstance(x, int) and not isinstance(x, bool) for x in arr.ravel()):
            return arr  # integers beyond int64: _coerce names the range
        raise _invalid(f"input {key!r}: ragged or mixed lists (every row must have the same length, and values "
                       "must be all numbers or all {\"b64\": ...} strings)")
    return arr


def _coerce(arr: np.ndarray, spec, key: str) -> np.ndarray:
    """JSON numbers carry no dtype: cast them to the signature's, never wrapping: integers must lie in the integer
    type's range (e.g. 0..255 for uint8), floats go to float types only; strings must be bytes."""
    tf = _tf()
    if spec.dtype == tf.string:
        if arr.dtype.kind == "U":  # plain JSON strings for a string input: their UTF-8 bytes
            return np.vectorize(lambda s: s.encode(), otypes=[object])(arr) if arr.size else arr.astype(object)
        if arr.dtype != object and arr.size:
            raise _invalid(f"input {key!r}: expected strings ({{\"b64\": ...}}), got numbers")
        return arr
    want = spec.dtype.as_numpy_dtype
    if spec.dtype.is_integer:
        info = np.iinfo(want)
        rng = f"integers in [{info.min}, {info.max}]"
        if arr.dtype == object and arr.size:
            bad = next(x for x in arr.ravel() if not info.min <= x <= info.max)
            raise _invalid(f"input {key!r}: {spec.dtype.name} values must be {rng}, got {bad}")
        if arr.dtype.kind == "f":
            bad = arr[arr != np.round(arr)] if arr.size else arr
            raise _invalid(f"input {key!r}: {spec.dtype.name} values must be {rng}, got non-integer numbers"
                           + (f" (e.g. {bad.ravel()[0]})" if bad.size else ""))
        if arr.size and arr.dtype.kind in "iu":
            lo, hi = arr.min(), arr.max()
            if lo < info.min or hi > info.max:
                raise _invalid(f"input {key!r}: {spec.dtype.name} values must be {rng}, got "
                               f"{lo if lo < info.min else hi}")
    if arr.size and (arr.dtype == object or arr.dtype.kind not in "iuf"):
        got = ("strings" if arr.dtype.kind in "US" else "values that are not numbers" if arr.dtype == object
               else f"{arr.dtype.name} values")
        raise _invalid(f"input {key!r}: expected {spec.dtype.name} numbers, got {got}")
    return arr.astype(want)


def _has_bytes(v) -> bool:
    while isinstance(v, list) and v:
        v = v[0]
    return isinstance(v, bytes)


class _PooledHTTPServer(HTTPServer):
    """An HTTPServer whose connections are handled by a fixed pool of ``workers`` threads; up to ``queue`` more
    connections wait for a free worker, and one beyond those is answered 503 and closed at once."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, workers: int, queue: int):
        if workers < 1 or queue < 0:
            raise ConfigError(f"REST server: need rest_workers >= 1 and rest_queue >= 0, got {workers}, {queue}")
        super().__init__(address, handler)
        self.workers, self.queue = workers, queue
        self._pool = futures.ThreadPoolExecutor(workers, thread_name_prefix=f"rest:{self.server_address[1]}")
        self._slots = threading.BoundedSemaphore(workers + queue)
        self._active, self._active_lock = set(), threading.Lock()
        self.rejected = 0

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.rejected += 1
            self._reject(request)
            return
        try:
            self._pool.submit(self._work, request, client_address)
        except RuntimeError:  # pool shut down
            self._slots.release()
            self.shutdown_request(request)

    def _work(self, request, client_address):
        with self._active_lock:
            self._active.add(request)
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001
            self.handle_error(request, client_address)
        finally:
            with self._active_lock:
                self._active.discard(request)
            self.shutdown_request(request)
            self._slots.release()

    def _reject(self, request) -> None:
        body = json.dumps({"error": f"server busy: {self.workers} requests in progress and {self.queue} waiting; "
                                    "retry later"}).encode()
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
                "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n").encode()
        try:
            request.setblocking(False)
            try:  # read what already arrived, so closing does not reset the connection before the answer is read
                while request.recv(65536):
                    pass
            except (BlockingIOError, OSError):
                pass
            request.setblocking(True)
            request.settimeout(1.0)
            request.sendall(head + body)
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request, client_address):
        log.exception("REST connection from %s failed", client_address)

    def server_close(self):
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._active_lock:  # wake workers blocked on idle keep-alive connections, so they end now
            active = list(self._active)
        for request in active:
            try:
                request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _rest_handler(registry: ModelRegistry, max_bytes: int, timeout: float | None = DEFAULT_REST_TIMEOUT):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _send(self, code: int, obj, close: bool = False) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if close:
                self.close_connection = True
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def _fail(self, e: RequestError, close: bool = False) -> None:
            self._send(e.http or _HTTP_STATUS.get(e.code, 500), {"error": e.message}, close)

        def _route(self):
            m = _REST_PATH.match(self.path)
            if not m:
                raise RequestError(grpc.StatusCode.NOT_FOUND, f"no such REST path {self.path[:200]!r}")
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
                self._fail(e)

        def _read_body(self) -> dict:
            """The JSON object body; every refusal before the body is read closes the connection (its unread
            bytes must not be taken for the next request)."""
            if self.headers.get("Transfer-Encoding"):
                raise _invalid("Transfer-Encoding is not supported: send the body with a Content-Length", 411)
            raw = self.headers.get("Content-Length")
            if raw is None:
                raise _invalid("Content-Length required", 411)
            if not raw.strip().isdigit():
                raise _invalid(f"Content-Length must be a non-negative integer, got {raw.strip()[:40]!r}")
            n = int(raw)
            if n > max_bytes:
                raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   f"request body of {n} bytes is over the limit of {max_bytes} bytes")
            try:
                data = self.rfile.read(n)
            except (TimeoutError, socket.timeout):
                raise RequestError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                   f"the body did not arrive within {timeout} s", 408) from None
            if len(data) < n:
                raise _invalid(f"body ended after {len(data)} of {n} bytes (Content-Length)")
            try:
                body = json.loads(data)
            except (ValueError, RecursionError) as e:
                raise _invalid(f"body is not JSON ({_first_line(str(e))})") from None
            if not isinstance(body, dict):
                raise _invalid(f"body must be a JSON object with 'instances' or 'inputs', got {_kind(body)}")
            return body

        def _arrays(self, columns: dict, specs: dict) -> dict:
            out = {}
            for k, v in columns.items():
                spec = specs.get(k)
                if spec is not None and spec.dtype != _tf().string:  # sizes before any array is built
                    registry.limits.check_shape(k, _nested_shape(v), spec.shape.rank)
                arr = _from_json(k, v)
                out[k] = _coerce(arr, spec, k) if spec is not None else arr
            return out

        def do_POST(self):
            body_read = False
            try:
                name, version, label, predict, _ = self._route()
                if not predict:
                    raise RequestError(grpc.StatusCode.NOT_FOUND, f"POST {self.path[:200]!r}: only :predict is served")
                body = self._read_body()
                body_read = True
                lv = registry.get(name, version, label)
                sig = body.get("signature_name", "serving_default")
                if not isinstance(sig, str):
                    raise _invalid(f"'signature_name' must be a string, got {_kind(sig)}")
                sig, _, specs = registry.signature(lv, sig)
                if "inputs" in body and "instances" in body:
                    raise _invalid("give 'instances' (row format) or 'inputs' (columnar), not both")
                if "inputs" in body:  # columnar
                    raw = body["inputs"]
                    if not isinstance(raw, dict):
                        if len(specs) != 1:
                            raise _invalid(f"signature {sig!r} has {len(specs)} inputs: name them in 'inputs'")
                        raw = {next(iter(specs)): raw}
                    sig, out = registry.run(lv, sig, self._arrays(raw, specs))
                    self._send(200, {"outputs": {k: _json_ready(v) for k, v in out.items()}})
                elif "instances" in body:  # row format
                    rows = body["instances"]
                    if not isinstance(rows, list) or not rows:
                        raise _invalid("'instances' must be a non-empty list (one entry per instance), got "
                                       + ("an empty list" if isinstance(rows, list) else _kind(rows)))
                    if isinstance(rows[0], dict) and "b64" not in rows[0]:
                        keys = list(rows[0])
                        if not all(isinstance(r, dict) and list(r) == keys for r in rows):
                            raise _invalid(f"every instance must be an object with the keys {keys}")
                        columns = {k: [r[k] for r in rows] for k in keys}
                    else:
                        if len(specs) != 1:
                            raise _invalid(f"signature {sig!r} has {len(specs)} inputs: give each instance as an "
                                           "object of named inputs")
                        columns = {next(iter(specs)): rows}
                    sig, out = registry.run(lv, sig, self._arrays(columns, specs))
                    preds = [{k: _json_ready(v[i]) for k, v in out.items()} for i in range(len(rows))]
                    self._send(200, {"predictions": preds})
                else:
                    raise _invalid("body needs 'instances' or 'inputs'")
            except RequestError as e:
                self._fail(e, close=not body_read)
            except Exception as e:  # noqa: BLE001
                log.exception("internal error")
                self._send(500, {"error": f"{type(e).__name__}: {_first_line(str(e))}"}, close=not body_read)

    Handler.timeout = timeout  # socket timeout: an idle or stalled connection is closed, freeing its worker
    return Handler


# ------------------------------------------------------------------------------------------ the server
class LocalModelServer:
    """Serve ``entries`` over gRPC on ``host:port`` (port 0 picks a free one; ``.port`` tells which) and, when
    ``rest_port`` is not None, TF Serving's REST API on ``host:rest_port``. Binds 127.0.0.1 unless told otherwise;
    neither door has authentication (docs/serving.md, Security).

    max_workers: gRPC worker threads. max_message_bytes: the largest gRPC message (each way) and REST body.
    max_image_pixels / max_request_pixels: decoded pixels per image / per request (module docstring), checked
    before decoding. rest_workers / rest_queue / rest_timeout: the REST thread pool, how many connections may wait
    for it before the next gets 503, and the idle / body-read timeout in seconds.

    Use as a context manager, or ``start()`` / ``stop()``; ``wait()`` blocks until stopped.
    """

    def __init__(self, entries: Iterable[ModelEntry], host: str = "127.0.0.1", port: int = 0,
                 rest_port: int | None = None, max_workers: int = 8,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, *,
                 max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                 max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS,
                 rest_workers: int = DEFAULT_REST_WORKERS, rest_queue: int = DEFAULT_REST_QUEUE,
                 rest_timeout: float = DEFAULT_REST_TIMEOUT):
        if rest_workers < 1 or rest_queue < 0 or not rest_timeout > 0:
            raise ConfigError(f"need rest_workers >= 1, rest_queue >= 0 and rest_timeout > 0, got {rest_workers}, "
                              f"{rest_queue}, {rest_timeout}")
        self.limits = Limits(int(max_image_pixels), int(max_request_pixels))
        self.registry = ModelRegistry(entries, self.limits)
        self.host, self._port, self._rest_port = host, port, rest_port
        self.max_workers, self.max_message_bytes = max_workers, max_message_bytes
        self.rest_workers, self.rest_queue, self.rest_timeout = int(rest_workers), int(rest_queue), float(rest_timeout)
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
            try:
                self._http = _PooledHTTPServer(
                    (self.host, self._rest_port),
                    _rest_handler(self.registry, self.max_message_bytes, self.rest_timeout),
                    self.rest_workers, self.rest_queue)
            except OSError as e:
                self._server.stop(None)
                self._server = None
                raise ConfigError(f"cannot listen on {self.host}:{self._rest_port} for REST ({e.strerror})") from None
            self.rest_port = self._http.server_address[1]
            self._http_thread = threading.Thread(target=self._http.serve_forever, daemon=True, name="rest-accept")
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
