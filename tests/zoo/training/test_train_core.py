"""The one training core on real TNBC records: trains, checkpoints, resumes without lost epochs, evaluates with
the papers' metrics, logs to MLflow, and the logged model loads in a fresh process with the same predictions."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from zoo.errors import ConfigError


def _config(tnbc_records, **kw):
    from zoo.training import ExperimentConfig

    base = dict(name="tiny-unet", model="unet", model_config={"num_classes": 3, "base_filters": 4, "depth": 2},
                data_dir=str(tnbc_records), fold=9,
                input={"patch_size": 64, "batch_size": 2, "target": "three_class", "weight_map": "unet",
                       "shuffle_buffer": 4, "patches_per_image": 1},
                loss="weighted_ce", optimizer="adam", learning_rate=1e-3, epochs=2, steps_per_epoch=2, seed=1,
                tracking={"enabled": True, "experiment": "test-train", "register_as": "tiny-unet",
                          "log_model": True})
    base.update(kw)
    return ExperimentConfig(**base)


def test_train_evaluate_track_and_reload(tnbc_records, in_tmp):
    from zoo.training import train

    res = train(_config(tnbc_records), output_dir=str(in_tmp / "run"), verbose=0)
    assert len(res.history["loss"]) == 2 and np.all(np.isfinite(res.history["loss"]))
    # evaluation on fold 9's held-out patient (6 images) with every metric of the papers' tables
    ev = json.load(open(in_tmp / "run" / "evaluation.json"))
    assert ev["images"] == 6 and {r["image_id"][:2] for r in ev["per_image"]} == {"09"}
    for k in ("pixel_dice", "pixel_accuracy", "pixel_performance", "aji", "aji_pooled", "pq", "dq", "sq"):
        assert k in ev["mean"] and 0.0 <= ev["mean"][k] <= 1.0, k
    assert res.metrics["test_aji"] == pytest.approx(ev["mean"]["aji"])
    for f in ("config.yaml", "curves.png", "history.json", "checkpoints/last.keras", "checkpoints/state.json"):
        assert (in_tmp / "run" / f).is_file(), f
    assert len(os.listdir(in_tmp / "run" / "overlays")) == 3
    assert res.run_id and res.registered_version == "1"

    # the logged model loads in a fresh process (registry URI) and predicts what the in-process model predicts
    x = np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32)
    np.save(in_tmp / "x.npy", x)
    code = ("import numpy as np, sys; from zoo.training.tracking import load_model; "
            "m = load_model('models:/tiny-unet/1'); np.save('y.npy', np.asarray(m(np.load('x.npy'))))")
    subprocess.run([sys.executable, "-c", code], cwd=in_tmp, check=True, timeout=300,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    np.testing.assert_allclose(np.load(in_tmp / "y.npy"), np.asarray(res.model(x)), atol=1e-5)


def test_resume_continues_without_lost_epochs(tnbc_records, in_tmp):
    from zoo.training import train

    cfg = _config(tnbc_records, epochs=1, tracking={"enabled": False}, val_split="", fold=None, train_split="all")
    out = str(in_tmp / "run")
    r1 = train(cfg, output_dir=out, verbose=0)
    assert json.load(open(os.path.join(out, "checkpoints", "state.json")))["epochs_done"] == 1
    w1 = [np.copy(v) for v in r1.model.get_weights()]
    r2 = train(cfg.replace(epochs=3), output_dir=out, resume=True, verbose=0)
    state = json.load(open(os.path.join(out, "checkpoints", "state.json")))
    assert state["epochs_done"] == 3 and len(r2.history["loss"]) == 3
    assert r2.history["loss"][0] == pytest.approx(r1.history["loss"][0])  # epoch 1 kept, not re-run
    assert any(not np.array_equal(a, b) for a, b in zip(w1, r2.model.get_weights()))
    # resuming a finished run trains nothing more
    r3 = train(cfg.replace(epochs=3), output_dir=out, resume=True, verbose=0)
    assert len(r3.history["loss"]) == 3


def test_same_seed_same_first_loss(tnbc_records, in_tmp):
    from zoo.training import train

    cfg = _config(tnbc_records, epochs=1, tracking={"enabled": False}, val_split="", fold=None, train_split="all")
    a = train(cfg, output_dir=str(in_tmp / "a"), verbose=0).history["loss"][0]
    b = train(cfg, output_dir=str(in_tmp / "b"), verbose=0).history["loss"][0]
    assert a == pytest.approx(b, rel=1e-5)


def test_config_errors_are_clear(tmp_path):
    from zoo.training import ExperimentConfig

    with pytest.raises(ConfigError, match="optimizer must be one of"):
        ExperimentConfig(optimizer="rmsprop")
    p = tmp_path / "bad.yaml"
    p.write_text("model: unet\nepochz: 3\n")
    with pytest.raises(ConfigError, match="bad.yaml: unknown experiment config keys: epochz"):
        ExperimentConfig.load(str(p))
    cfg = ExperimentConfig(model="unet", epochs=4, input={"patch_size": 128})
    cfg.save(str(tmp_path / "ok.yaml"))
    assert ExperimentConfig.load(str(tmp_path / "ok.yaml")) == cfg


def _register_nan_loss() -> str:
    """A test-only loss, registered once: Naylor's weighted cross-entropy times 1 for the first ``nan_from_step - 1``
    calls (one per training step) and times NaN from call ``nan_from_step`` on, so the loss AND the gradients turn
    non-finite at a chosen step, on any machine (a huge learning rate was left to numerics and stayed finite)."""
    import tensorflow as tf

    from zoo.losses import WeightedCrossEntropy, available_losses, register_loss

    name = "test_nan_from_step"
    if name in available_losses():
        return name

    @register_loss(name)
    class NanFromStep(WeightedCrossEntropy):
        def __init__(self, nan_from_step: int = 3, name: str = "test_nan_from_step", dtype=None):
            super().__init__(name=name, dtype=dtype)
            self.nan_from_step = int(nan_from_step)
            self.calls = tf.Variable(0, dtype=tf.int64, trainable=False)

        def compute(self, labels, probs, weights):
            step = self.calls.assign_add(1)
            factor = tf.where(step >= self.nan_from_step, tf.constant(math.nan, tf.float32), 1.0)
            return super().compute(labels, probs, weights) * factor

        def get_config(self):
            return {"nan_from_step": self.nan_from_step, "name": self.name}

    return name


def test_divergence_stops_with_a_clear_error_and_keeps_finite_checkpoints(tnbc_records, in_tmp):
    import keras

    from zoo.training import train
    from zoo.training.train import TrainingDiverged

    # 2 steps per epoch, NaN from step 3: epoch 1 is finite and checkpointed, epoch 2's loss is NaN
    cfg = _config(tnbc_records, epochs=3, steps_per_epoch=2, loss=_register_nan_loss(),
                  loss_config={"nan_from_step": 3}, tracking={"enabled": False}, val_split="", fold=None,
                  train_split="all")
    with pytest.raises(TrainingDiverged, match=r"the loss became nan in epoch 2;.*\(epoch 1\).*Lower learning_rate"):
        train(cfg, output_dir=str(in_tmp / "run"), verbose=0)
    ckpt = in_tmp / "run" / "checkpoints"
    state = json.load(open(ckpt / "state.json"))
    assert state["epochs_done"] == 1  # the NaN epoch wrote nothing
    assert len(state["history"]["loss"]) == 1 and np.all(np.isfinite(state["history"]["loss"]))
    m = keras.models.load_model(ckpt / "last.keras")
    assert all(np.all(np.isfinite(w)) for w in m.get_weights())  # the kept checkpoint holds finite weights only
    assert not [f for f in os.listdir(ckpt) if f.startswith("tmp-")]  # no half-written checkpoint left behind
