"""The tf.distribute strategy of a training run (the config's ``distribute`` section, docs/scale.md).

``strategy(config)`` gives the strategy ``train`` builds its model, optimizer and loss under; Keras' ``fit`` then
splits each global batch of the tf.data stream across the replicas (``experimental_distribute_dataset``) and
all-reduces the gradients, so ``input.batch_size`` is the global batch and N steps on N devices follow the same
trajectory as N steps on one device with that batch (tests/zoo/training/test_distribute.py: atol 1e-5).

- none: the default strategy (one device, nothing changes).
- mirrored: ``tf.distribute.MirroredStrategy(devices)`` on one machine.
- multi_worker: ``tf.distribute.MultiWorkerMirroredStrategy``; the cluster and this worker's task come from
  ``TF_CONFIG`` (``{"cluster": {"worker": ["host0:port", ...]}, "task": {"type": "worker", "index": i}}``); every
  worker runs the same ``histozoo train`` command. TensorFlow requires this strategy to be created before the
  process initialises its devices, which ``train`` does first thing; a process that ran TensorFlow ops before gets a
  one-line ConfigError. Worker 0 is the chief: it writes the run folder and the MLflow run; the other workers write
  their checkpoints under ``<output_dir>/workers/<index>`` and track nothing. **Blocked upstream**: Keras 3.15's
  ``fit`` fails under this strategy (``MULTI_WORKER_FIT_WORKS``), so ``strategy`` refuses it in one line for now.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Tuple

from zoo.errors import ConfigError

_MULTI_WORKER = {}  # one MultiWorkerMirroredStrategy per process (TF allows only one: it configures collectives)
#: Keras 3.15's fit cannot train under MultiWorkerMirroredStrategy (keras-team/keras#20585, open): its first batch
#: fails in ``_maybe_symbolic_build`` (``strategy.reduce("MEAN", PerReplica batch)``), and past that
#: ``reduce_per_replica`` reduces the scalar logs with ``axis=0``. Until it can, ``strategy`` refuses multi_worker
#: in one line; tests/zoo/training/test_distribute.py runs two worker processes with this set to True as a strict
#: xfail, so the day Keras trains there the test fails and says to flip it.
MULTI_WORKER_FIT_WORKS = False


def strategy(config):
    """The ``tf.distribute.Strategy`` of ``config.distribute``: None for ``none`` (Keras' default strategy)."""
    import tensorflow as tf

    d = config.distribute_config()
    if d.strategy == "none":
        return None
    if d.strategy == "mirrored":
        if d.devices:
            known = {_canonical(x.name) for x in tf.config.list_logical_devices()}
            missing = [x for x in d.devices if _canonical(x) not in known]
            if missing:
                raise ConfigError(f"distribute.devices: {', '.join(missing)} not on this machine (it has: "
                                  f"{', '.join(sorted(known))})")
        return tf.distribute.MirroredStrategy(devices=list(d.devices) or None)
    task = worker_task()
    if task is None:
        raise ConfigError("distribute.strategy: multi_worker needs the TF_CONFIG environment variable (the cluster's "
                          "worker addresses and this worker's index; docs/scale.md)")
    if not MULTI_WORKER_FIT_WORKS:
        raise ConfigError("distribute.strategy: multi_worker: Keras 3.15's fit cannot train under "
                          "MultiWorkerMirroredStrategy yet (keras-team/keras#20585: its first step fails on a "
                          "PerReplica reduction); use mirrored (one machine, several devices)")
    key = (os.environ.get("TF_CONFIG"), d.communication)
    if key not in _MULTI_WORKER:
        impl = {"auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
                "ring": tf.distribute.experimental.CommunicationImplementation.RING,
                "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL}[d.communication]
        try:
            _MULTI_WORKER[key] = tf.distribute.MultiWorkerMirroredStrategy(
                communication_options=tf.distribute.experimental.CommunicationOptions(implementation=impl))
        except (RuntimeError, ValueError) as e:
            raise ConfigError(f"distribute.strategy: multi_worker could not start ({str(e).splitlines()[0]}); it "
                              f"must be created before TensorFlow runs anything in this process") from None
    return _MULTI_WORKER[key]


def worker_task() -> Optional[Tuple[str, int]]:
    """(task type, index) of this process from ``TF_CONFIG``, or None when it is unset; a malformed value is a
    one-line ConfigError."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        return None
    try:
        task = json.loads(raw)["task"]
        kind, index = str(task["type"]), int(task["index"])
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"TF_CONFIG: expected JSON with a cluster and task {{type, index}}, got {raw[:80]!r}") \
            from None
    return kind, index


def is_chief(config) -> bool:
    """Whether this process writes the run folder and the MLflow run: always, except on a multi_worker run's
    workers other than the chief (task type chief, or worker 0 when the cluster has no chief)."""
    if config.distribute_config().strategy != "multi_worker":
        return True
    task = worker_task()
    if task is None:
        return True
    kind, index = task
    has_chief = "chief" in json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
    return kind == "chief" or (not has_chief and kind == "worker" and index == 0)


def check_batch(config, strat) -> None:
    """The global batch must split evenly across the replicas (else the replicas' shares and the loss differ)."""
    if strat is None:
        return
    n, b = strat.num_replicas_in_sync, config.input_config().batch_size
    if b % n:
        raise ConfigError(f"input.batch_size: the global batch {b} does not split evenly across the {n} replicas of "
                          f"distribute.strategy {config.distribute_config().strategy!r}")


def data_sharded(ds):
    """The training stream with ``AutoShardPolicy.DATA``: under multi_worker every worker reads the whole stream
    (a function of seed, epoch and step) and keeps its replicas' share of each global batch, so the workers together
    see the batches one device would. TF's default (FILE) would hand each worker other record shards, hence other
    images than a one-device run; with one worker no sharding happens and the option changes nothing."""
    import tensorflow as tf

    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(opts)


def _canonical(name: str) -> str:
    """'/gpu:0', 'GPU:0', '/job:localhost/replica:0/task:0/device:GPU:0' -> 'GPU:0'."""
    tail = name.rsplit("/", 1)[-1]
    tail = tail.split("device:", 1)[-1]
    kind, _, index = tail.partition(":")
    return f"{kind.upper()}:{index or 0}"
