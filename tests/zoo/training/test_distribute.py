"""Multi-device training through tf.distribute inside the one training core (issue 24): MirroredStrategy over two
logical CPU devices gives the weights of single-device training with the same global batch, and the ``distribute``
section is validated with one-line errors.

The logical devices must be configured before TensorFlow initialises its devices, so the training runs in a fresh
subprocess (the pytest process may already have initialised TensorFlow)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from zoo.errors import ConfigError

ATOL = 1e-5  # measured max |mirrored - single| over every weight after 4 Adam steps: see the test's report line

SCRIPT = textwrap.dedent(r"""
    import json, sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from zoo.training import ExperimentConfig, train
    from zoo.errors import ConfigError

    data_dir, out = sys.argv[1], sys.argv[2]
    base = ExperimentConfig(
        name="dist", model="unet", model_config={"num_classes": 3, "base_filters": 4, "depth": 2},
        data_dir=data_dir, train_split="all", val_split="",
        input={"patch_size": 64, "batch_size": 4, "target": "three_class", "weight_map": "none",
               "shuffle_buffer": 4, "patches_per_image": 1},
        loss="weighted_ce", optimizer="adam", learning_rate=1e-3, epochs=2, steps_per_epoch=2, seed=3,
        tracking={"enabled": False})
    runs = {}
    for name, dist in [("single", {"strategy": "none"}),
                       ("mirrored", {"strategy": "mirrored", "devices": ["/cpu:0", "/cpu:1"]})]:
        res = train(base.replace(distribute=dist), output_dir=f"{out}/{name}", verbose=0)
        runs[name] = res
    replicas = runs["mirrored"].model.distribute_strategy.num_replicas_in_sync
    init = ExperimentConfig.load(f"{out}/mirrored/config.yaml")  # the saved config round-trips
    import keras
    from zoo import models
    keras.utils.set_random_seed(base.seed)
    m0 = models.build(base.model, base.model_config)
    m0(np.zeros((1, 64, 64, 3), np.float32))
    w0 = m0.get_weights()
    ws, wm = runs["single"].model.get_weights(), runs["mirrored"].model.get_weights()
    try:
        train(base.replace(distribute={"strategy": "mirrored", "devices": ["/cpu:0", "/cpu:1"]},
                           input={**base.input, "batch_size": 3}), output_dir=f"{out}/odd", verbose=0)
        odd = "no error"
    except ConfigError as e:
        odd = str(e)
    try:
        train(base.replace(distribute={"strategy": "mirrored", "devices": ["/gpu:7"]}), output_dir=f"{out}/gpu",
              verbose=0)
        missing = "no error"
    except ConfigError as e:
        missing = str(e)
    json.dump({"replicas": replicas,
               "max_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(ws, wm)),
               "max_step": max(float(np.max(np.abs(a - b))) for a, b in zip(ws, w0)),
               "shapes_equal": [a.shape for a in ws] == [b.shape for b in wm],
               "loss_single": runs["single"].history["loss"], "loss_mirrored": runs["mirrored"].history["loss"],
               "saved_distribute": init.distribute, "odd": odd, "missing": missing},
              open(f"{out}/result.json", "w"))
""")


def test_mirrored_two_devices_matches_single_device(tnbc_records, tmp_path):
    script = tmp_path / "dist.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    p = subprocess.run([sys.executable, str(script), str(tnbc_records), str(tmp_path)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.load(open(tmp_path / "result.json"))
    print(f"mirrored vs single after 4 steps: max |dw| = {r['max_diff']:.3g} (weights moved up to "
          f"{r['max_step']:.3g} from their initial values)")
    assert r["replicas"] == 2 and r["shapes_equal"]
    assert r["max_step"] > 100 * ATOL  # training moved the weights: the comparison is not between two initial states
    assert r["max_diff"] <= ATOL
    assert r["loss_mirrored"] == pytest.approx(r["loss_single"], rel=1e-4)  # logged loss is the global batch's
    assert r["saved_distribute"] == {"strategy": "mirrored", "devices": ["/cpu:0", "/cpu:1"]}
    assert r["odd"].startswith("input.batch_size: the global batch 3 does not split evenly across the 2 replicas")
    assert r["missing"].startswith("distribute.devices: /gpu:7 not on this machine")


WORKER = textwrap.dedent(r"""
    import sys
    import numpy as np

    from zoo.training import ExperimentConfig, distribute, train

    distribute.MULTI_WORKER_FIT_WORKS = True  # what the strict xfail below checks: does Keras train there yet?
    data_dir, out, strategy = sys.argv[1], sys.argv[2], sys.argv[3]
    cfg = ExperimentConfig(
        name="mw", model="unet", model_config={"num_classes": 3, "base_filters": 4, "depth": 2},
        data_dir=data_dir, train_split="all", val_split="",
        input={"patch_size": 64, "batch_size": 4, "target": "three_class", "weight_map": "none",
               "shuffle_buffer": 4, "patches_per_image": 1},
        loss="weighted_ce", optimizer="adam", learning_rate=1e-3, epochs=2, steps_per_epoch=2, seed=3,
        tracking={"enabled": False}, distribute={"strategy": strategy})
    res = train(cfg, output_dir=f"{out}/{strategy}", verbose=0)
    np.savez(f"{out}/{strategy}-{sys.argv[4]}.npz", *res.model.get_weights(),
             replicas=res.model.distribute_strategy.num_replicas_in_sync)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_two_processes_match_single_device(tnbc_records, tmp_path):
    """Two worker processes on this machine (TF_CONFIG, one CPU each, gRPC on loopback) train as one device with the
    same global batch: each worker keeps its share of every global batch of the same stream (AutoShardPolicy.DATA).
    Measured with Keras 3.15.1 / TF 2.21.0: both workers fail in fit's first step (the upstream bug): an expected
    failure while it lasts; any other failure fails; a pass while the core still refuses multi_worker fails too."""
    import numpy as np

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    base_env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    base_env.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    procs = []
    for i in range(2):
        env = {**base_env, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        procs.append(subprocess.Popen([sys.executable, str(script), str(tnbc_records), str(tmp_path), "multi_worker",
                                       str(i)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    try:
        logs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for p in procs:  # only the two processes this test started, by their handles
            if p.poll() is None:
                p.kill()
    if any(p.returncode for p in procs):
        assert any("PerReplica" in log for log in logs), "\n".join(log[-2000:] for log in logs)  # another failure
        pytest.xfail("keras-team/keras#20585: Keras' fit fails under MultiWorkerMirroredStrategy (PerReplica)")
    single = subprocess.run([sys.executable, str(script), str(tnbc_records), str(tmp_path), "none", "0"],
                            cwd=tmp_path, env=base_env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    load = lambda name: np.load(tmp_path / name)  # noqa: E731
    ref, w0, w1 = load("none-0.npz"), load("multi_worker-0.npz"), load("multi_worker-1.npz")
    keys = [k for k in ref.files if k.startswith("arr_")]
    assert int(w0["replicas"]) == int(w1["replicas"]) == 2 and int(ref["replicas"]) == 1
    diff = max(float(np.max(np.abs(ref[k] - w[k]))) for w in (w0, w1) for k in keys)
    print(f"multi_worker (2 processes) vs single after 4 steps: max |dw| = {diff:.3g}")
    assert diff <= ATOL
    # the chief wrote the run folder; worker 1 its own checkpoints under workers/1
    assert (tmp_path / "multi_worker" / "checkpoints" / "last.keras").is_file()
    assert (tmp_path / "multi_worker" / "workers" / "1" / "checkpoints" / "last.keras").is_file()
    from zoo.training import distribute

    assert distribute.MULTI_WORKER_FIT_WORKS, ("multi_worker trains and matches one device with this Keras: set "
                                               "zoo.training.distribute.MULTI_WORKER_FIT_WORKS = True")


@pytest.mark.parametrize("section, message", [
    ({"strategy": "mirored"}, "distribute.strategy: must be one of ('none', 'mirrored', 'multi_worker'), got "
                              "'mirored'"),
    ({"strategy": "none", "devices": ["/gpu:0"]}, "distribute.devices: only for strategy mirrored"),
    ({"strategy": "mirrored", "devices": "/gpu:0"}, "distribute.devices: expected a list of device names"),
    ({"strategy": "mirrored", "devices": ["/gpu:0", "/gpu:0"]}, "distribute.devices: a device is listed twice"),
    ({"strategy": "mirrored", "gpus": 2}, "distribute.gpus: unknown key (known: strategy, devices, communication)"),
    ({"strategy": "mirrored", "communication": "nccl"}, "distribute.communication: only for strategy multi_worker"),
    ({"strategy": "multi_worker", "communication": "mpi"}, "distribute.communication: must be one of"),
    ("mirrored", "distribute must be a mapping, got str"),
])
def test_distribute_section_is_validated_in_one_line(section, message):
    from zoo.training import ExperimentConfig

    with pytest.raises(ConfigError) as e:
        ExperimentConfig(distribute=section)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_multi_worker_needs_tf_config(monkeypatch, tmp_path):
    from zoo.training import ExperimentConfig, distribute

    cfg = ExperimentConfig(distribute={"strategy": "multi_worker"}, data_dir=str(tmp_path))
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match=r"^distribute.strategy: multi_worker needs the TF_CONFIG"):
        distribute.strategy(cfg)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match=r"^TF_CONFIG: expected JSON with a cluster and task"):
        distribute.strategy(cfg)
    # a valid cluster: refused in one line while Keras cannot fit under the strategy (no strategy is created)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    with pytest.raises(ConfigError, match=r"^distribute.strategy: multi_worker: Keras 3.15's fit cannot train "
                                          r"under MultiWorkerMirroredStrategy yet \(keras-team/keras#20585"):
        distribute.strategy(cfg)
    assert not distribute._MULTI_WORKER
    # the chief writes the run folder; worker 1 of the same cluster writes under workers/1 and tracks nothing
    cluster = {"cluster": {"worker": ["localhost:1", "localhost:2"]}}
    monkeypatch.setenv("TF_CONFIG", json.dumps({**cluster, "task": {"type": "worker", "index": 0}}))
    assert distribute.is_chief(cfg)
    monkeypatch.setenv("TF_CONFIG", json.dumps({**cluster, "task": {"type": "worker", "index": 1}}))
    assert not distribute.is_chief(cfg) and distribute.worker_task() == ("worker", 1)
    assert distribute.is_chief(ExperimentConfig())  # other strategies ignore TF_CONFIG
