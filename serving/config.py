"""TF Serving configuration: the ``--model_config_file`` text proto (model_config_list with version policies and
labels), the ``--batching_parameters_file`` text proto, and the ``tensorflow_model_server`` command line.

The model config is built with ``tensorflow_serving.config.model_server_config_pb2`` (shipped in
tensorflow-serving-api) and printed with ``text_format``, so it is exactly what the server parses.
tensorflow-serving-api does not ship ``session_bundle_config.proto`` (where BatchingParameters lives), so
``BATCHING_FIELDS`` mirrors its fields and numbers (tensorflow_serving/servables/tensorflow/
session_bundle_config.proto) and ``parse_batching_parameters`` validates a file against a message built from
them. docs/serving.md shows the whole GPU deployment.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Mapping

from zoo import atomic
from zoo.errors import ConfigError, DataError

# BatchingParameters (session_bundle_config.proto): name -> (field number, wrapper type or scalar kind)
BATCHING_FIELDS = {
    "max_batch_size": (1, "Int64Value"),
    "batch_timeout_micros": (2, "Int64Value"),
    "num_batch_threads": (3, "Int64Value"),
    "max_enqueued_batches": (4, "Int64Value"),
    "allowed_batch_sizes": (6, "repeated int64"),
    "pad_variable_length_inputs": (7, "bool"),
    "thread_pool_name": (8, "StringValue"),
}


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One served model: ``name``, ``base_path`` (the folder holding the integer version folders), ``versions``
    (the versions to serve; None = only the latest, TF Serving's default policy) and ``labels`` (e.g.
    ``{"stable": 1, "canary": 2}``; each label must name a served version)."""

    name: str
    base_path: str
    versions: tuple[int, ...] | None = None
    labels: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.name or "/" in self.name:
            raise ConfigError(f"model name {self.name!r}: must be non-empty and contain no '/'")
        if self.versions is not None:
            object.__setattr__(self, "versions", tuple(sorted({int(v) for v in self.versions})))
            if not self.versions or min(self.versions) < 1:
                raise ConfigError(f"model {self.name!r}: versions must be positive integers, got {self.versions}")
        object.__setattr__(self, "labels", dict(self.labels))
        for label, v in self.labels.items():
            if self.versions is not None and v not in self.versions:
                raise ConfigError(f"model {self.name!r}: label {label!r} -> version {v}, which is not among the "
                                  f"served versions {list(self.versions)}")


@dataclasses.dataclass(frozen=True)
class BatchingConfig:
    """Server-side batching (``--enable_batching``). A good start on one GPU: max_batch_size = the largest batch
    that fits, batch_timeout_micros a few ms, num_batch_threads = number of GPUs x 2 (or CPU cores),
    max_enqueued_batches large enough to absorb bursts (requests beyond it get UNAVAILABLE)."""

    max_batch_size: int = 16
    batch_timeout_micros: int = 5000
    num_batch_threads: int = 4
    max_enqueued_batches: int = 100
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False

    def __post_init__(self):
        for f in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
            if getattr(self, f) < 1:
                raise ConfigError(f"batching {f}={getattr(self, f)}: must be >= 1")
        if self.batch_timeout_micros < 0:
            raise ConfigError(f"batching batch_timeout_micros={self.batch_timeout_micros}: must be >= 0")
        a = tuple(self.allowed_batch_sizes)
        if a and (list(a) != sorted(set(a)) or a[-1] != self.max_batch_size):
            raise ConfigError(f"batching allowed_batch_sizes={list(a)}: must increase and end with "
                              f"max_batch_size={self.max_batch_size}")


# ------------------------------------------------------------------------------------------ model config
def model_server_config(entries: Iterable[ModelEntry]):
    """The ``ModelServerConfig`` proto for ``entries``."""
    from tensorflow_serving.config import model_server_config_pb2

    cfg = model_server_config_pb2.ModelServerConfig()
    names = set()
    for e in entries:
        if e.name in names:
            raise ConfigError(f"model {e.name!r} listed twice")
        names.add(e.name)
        c = cfg.model_config_list.config.add()
        c.name, c.base_path, c.model_platform = e.name, os.path.abspath(e.base_path), "tensorflow"
        if e.versions is None:
            c.model_version_policy.latest.num_versions = 1
        else:
            c.model_version_policy.specific.versions.extend(e.versions)
        for label, v in sorted(e.labels.items()):
            c.version_labels[label] = v
    return cfg


def model_config_text(entries: Iterable[ModelEntry]) -> str:
    """The text proto TF Serving reads with ``--model_config_file``."""
    from google.protobuf import text_format

    return text_format.MessageToString(model_server_config(entries))


def write_model_config(path: str, entries: Iterable[ModelEntry]) -> str:
    """Write the model config file atomically; returns ``path``."""
    return atomic.write_text(path, model_config_text(entries))


def read_model_config(path: str) -> list[ModelEntry]:
    """Parse a ``--model_config_file`` (text ModelServerConfig) into ModelEntry objects."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise DataError(path, f"cannot read the model config ({e.strerror})") from None
    cfg = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, cfg)
    except text_format.ParseError as e:
        raise DataError(path, f"not a ModelServerConfig text proto ({e})") from None
    out = []
    for c in cfg.model_config_list.config:
        if c.model_platform not in ("", "tensorflow"):
            raise DataError(path, f"model {c.name!r}: platform {c.model_platform!r} is not served here")
        if c.base_path == "":
            raise DataError(path, f"model {c.name!r}: base_path is empty")
        policy = c.model_version_policy.WhichOneof("policy_choice")
        if policy == "all":
            raise DataError(path, f"model {c.name!r}: the 'all' version policy is not supported here; "
                                  "list the versions under 'specific'")
        if policy == "latest" and c.model_version_policy.latest.num_versions > 1:
            raise DataError(path, f"model {c.name!r}: latest.num_versions > 1 is not supported here")
        versions = tuple(c.model_version_policy.specific.versions) if policy == "specific" else None
        try:
            out.append(ModelEntry(c.name, c.base_path, versions, dict(c.version_labels)))
        except ConfigError as e:
            raise DataError(path, str(e)) from None
    if not out:
        raise DataError(path, "no model_config_list entries")
    return out


# ------------------------------------------------------------------------------------------ batching
def batching_text(cfg: BatchingConfig) -> str:
    """The text proto TF Serving reads with ``--batching_parameters_file``."""
    lines = [f"max_batch_size {{ value: {cfg.max_batch_size} }}",
             f"batch_timeout_micros {{ value: {cfg.batch_timeout_micros} }}",
             f"num_batch_threads {{ value: {cfg.num_batch_threads} }}",
             f"max_enqueued_batches {{ value: {cfg.max_enqueued_batches} }}"]
    lines += [f"allowed_batch_sizes: {b}" for b in cfg.allowed_batch_sizes]
    if cfg.pad_variable_length_inputs:
        lines.append("pad_variable_length_inputs: true")
    return "\n".join(lines) + "\n"


def write_batching_parameters(path: str, cfg: BatchingConfig) -> str:
    """Write the batching parameters file atomically; returns ``path``."""
    text = batching_text(cfg)
    parse_batching_parameters(text)  # never write what the server would reject
    return atomic.write_text(path, text)


_BATCHING_CLASS = None


def _batching_message_class():
    """A BatchingParameters message class built from BATCHING_FIELDS (same names, numbers and types)."""
    global _BATCHING_CLASS
    if _BATCHING_CLASS is None:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

        pool = descriptor_pool.DescriptorPool()
        for fd in (wrappers_pb2.DESCRIPTOR,):
            pool.AddSerializedFile(fd.serialized_pb)
        f = descriptor_pb2.FileDescriptorProto(name="histozoo_batching.proto", package="tensorflow.serving",
                                               syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
        m = f.message_type.add(name="BatchingParameters")
        T = descriptor_pb2.FieldDescriptorProto
        for name, (num, kind) in BATCHING_FIELDS.items():
            fld = m.field.add(name=name, number=num)
            if kind == "repeated int64":
                fld.type, fld.label = T.TYPE_INT64, T.LABEL_REPEATED
            elif kind == "bool":
                fld.type, fld.label = T.TYPE_BOOL, T.LABEL_OPTIONAL
            else:
                fld.type, fld.label, fld.type_name = T.TYPE_MESSAGE, T.LABEL_OPTIONAL, f".google.protobuf.{kind}"
        pool.Add(f)
        _BATCHING_CLASS = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))
    return _BATCHING_CLASS


def parse_batching_parameters(text: str):
    """Parse batching parameters text into a BatchingParameters message (ConfigError if TF Serving would not)."""
    from google.protobuf import text_format

    msg = _batching_message_class()()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as e:
        raise ConfigError(f"batching parameters: not a BatchingParameters text proto ({e})") from None
    return msg


# ------------------------------------------------------------------------------------------ command line
def server_command(model_config_file: str, *, port: int = 8500, rest_api_port: int = 8501,
                   batching_parameters_file: str | None = None, grpc_max_threads: int | None = None,
                   rest_api_num_threads: int | None = None, gpu_memory_fraction: float | None = None,
                   poll_seconds: int = 60, enable_model_warmup: bool = True,
                   binary: str = "tensorflow_model_server") -> list[str]:
    """The ``tensorflow_model_server`` argv for serving ``model_config_file`` (see docs/serving.md).

    poll_seconds: re-read the model config this often, so labels can move (canary -> stable) without a restart.
    gpu_memory_fraction: ``--per_process_gpu_memory_fraction`` (leave None to let TF grow memory as needed).
    """
    argv = [binary, f"--port={port}", f"--rest_api_port={rest_api_port}",
            f"--model_config_file={model_config_file}",
            f"--model_config_file_poll_wait_seconds={poll_seconds}",
            "--allow_version_labels_for_unavailable_models=false",
            f"--enable_model_warmup={'true' if enable_model_warmup else 'false'}"]
    if batching_parameters_file:
        argv += ["--enable_batching=true", f"--batching_parameters_file={batching_parameters_file}"]
    if grpc_max_threads:
        argv.append(f"--grpc_max_threads={grpc_max_threads}")
    if rest_api_num_threads:
        argv.append(f"--rest_api_num_threads={rest_api_num_threads}")
    if gpu_memory_fraction is not None:
        if not 0.0 < gpu_memory_fraction <= 1.0:
            raise ConfigError(f"gpu_memory_fraction {gpu_memory_fraction}: expected (0, 1]")
        argv.append(f"--per_process_gpu_memory_fraction={gpu_memory_fraction}")
    return argv
