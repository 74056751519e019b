"""serving.config: the files tensorflow_model_server reads, checked by parsing them with its protos."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.config import (BatchingConfig, ModelEntry, batching_text, parse_batching_parameters, read_model_config,
                            server_command, write_batching_parameters, write_model_config)
from zoo.errors import ConfigError, DataError


def test_model_config_parses_with_the_serving_protos(tmp_path):
    entries = [ModelEntry("nuclei", str(tmp_path / "nuclei"), (2, 1), {"stable": 1, "canary": 2}),
               ModelEntry("stain", str(tmp_path / "stain"))]
    path = write_model_config(str(tmp_path / "models.config"), entries)
    cfg = text_format.Parse(open(path).read(), model_server_config_pb2.ModelServerConfig())
    a, b = cfg.model_config_list.config
    assert (a.name, a.base_path, a.model_platform) == ("nuclei", str(tmp_path / "nuclei"), "tensorflow")
    assert list(a.model_version_policy.specific.versions) == [1, 2]
    assert dict(a.version_labels) == {"stable": 1, "canary": 2}
    assert b.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert b.model_version_policy.latest.num_versions == 1
    assert read_model_config(path) == entries[:1] + [ModelEntry("stain", str(tmp_path / "stain"))]
    assert [p.name for p in tmp_path.iterdir()] == ["models.config"]  # no temp file left


def test_model_config_rejects_bad_entries(tmp_path):
    with pytest.raises(ConfigError, match="label 'stable' -> version 3"):
        ModelEntry("m", "/x", (1, 2), {"stable": 3})
    with pytest.raises(ConfigError, match="positive"):
        ModelEntry("m", "/x", (0,))
    bad = tmp_path / "bad.config"
    bad.write_text("model_config_list { config { name: 'm' base_pth: '/x' } }")
    with pytest.raises(DataError, match="bad.config: not a ModelServerConfig"):
        read_model_config(str(bad))


def test_batching_parameters_parse(tmp_path):
    cfg = BatchingConfig(max_batch_size=16, batch_timeout_micros=2000, num_batch_threads=2, max_enqueued_batches=50,
                         allowed_batch_sizes=(4, 8, 16))
    path = write_batching_parameters(str(tmp_path / "batching.config"), cfg)
    msg = parse_batching_parameters(open(path).read())
    assert msg.max_batch_size.value == 16 and msg.batch_timeout_micros.value == 2000
    assert msg.num_batch_threads.value == 2 and msg.max_enqueued_batches.value == 50
    assert list(msg.allowed_batch_sizes) == [4, 8, 16]
    assert "max_batch_size { value: 16 }" in batching_text(cfg)
    with pytest.raises(ConfigError, match="BatchingParameters"):
        parse_batching_parameters("max_batch_size: 16")  # a wrapper message, not a scalar
    with pytest.raises(ConfigError, match="end with max_batch_size"):
        BatchingConfig(max_batch_size=16, allowed_batch_sizes=(4, 8))


def test_server_command_line():
    argv = server_command("/cfg/models.config", batching_parameters_file="/cfg/batching.config",
                          grpc_max_threads=64, gpu_memory_fraction=0.9)
    assert argv[0] == "tensorflow_model_server"
    for flag in ("--port=8500", "--rest_api_port=8501", "--model_config_file=/cfg/models.config",
                 "--enable_batching=true", "--batching_parameters_file=/cfg/batching.config",
                 "--grpc_max_threads=64", "--per_process_gpu_memory_fraction=0.9"):
        assert flag in argv
    assert not any(a.startswith("--enable_batching") for a in server_command("/c"))
