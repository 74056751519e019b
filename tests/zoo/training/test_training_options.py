"""The training core for real budgets (issue 15) and its reliability (issue 16), on a synthetic dataset made in
code: a resumed run equals the uninterrupted one (after an epoch-end or a mid-epoch kill), learning-rate schedules
checked by hand, best checkpoint and early stopping, time-based checkpoints on an injected clock, coupled L2, mixed
precision's policy, precise BN."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from zoo.errors import ConfigError


# ---------------------------------------------------------------- a tiny synthetic data folder

def _sample(k: int, split: str, size=(40, 48)):
    from zoo.data.sample import Sample

    rng = np.random.default_rng(k)
    h, w = size
    inst = np.zeros((h, w), np.int32)
    j = 0
    for r in range(3, h - 8, 10):
        for c in range(3 + k % 3, w - 8, 11):
            j += 1
            inst[r:r + 6, c:c + 6] = j
    img = rng.integers(150, 230, (h, w, 3)).astype(np.uint8)
    img[inst > 0] = (90, 40, 140)
    return Sample(image=img, image_id=f"img{k}", dataset="synthetic", source_id=f"s{k}", split=split,
                  instances=inst)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from zoo.data import records

    d = tmp_path_factory.mktemp("synth_train")
    records.write_shards([_sample(k, "train") for k in range(4)], str(d), "train")
    records.write_shards([_sample(9, "test")], str(d), "test")
    (d / "summary.json").write_text(json.dumps({"dataset": "synthetic", "splits": {}}))
    return d


def _config(data_dir, **kw):
    from zoo.training import ExperimentConfig

    base = dict(name="tiny", model="unet",
                model_config={"num_classes": 3, "base_filters": 4, "depth": 1, "batch_norm": True, "dropout": 0.2},
                data_dir=str(data_dir), train_split="train", val_split="",
                input={"patch_size": 16, "batch_size": 2, "target": "three_class", "shuffle_buffer": 4,
                       "patches_per_image": 2, "affine": True, "color_jitter": True},
                optimizer="sgd", learning_rate=0.05, epochs=4, steps_per_epoch=3, seed=3,
                lr_schedule={"name": "poly"}, tracking={"enabled": False})
    base.update(kw)
    return ExperimentConfig(**base)


def _core():
    """The module zoo.training.train (the package's ``train`` attribute is the function)."""
    import importlib

    return importlib.import_module("zoo.training.train")


class Killed(BaseException):
    """The injected kill: a BaseException, so nothing in the core can swallow it."""


def _kill_after(monkeypatch, *, epoch=None, step=None):
    """Make the core's callback raise Killed right after epoch ``epoch``'s checkpoint (1-based), or after the batch
    hook of global step ``step`` ran (as kill -9 would leave things: checkpoints on disk, the process gone)."""
    core = _core()

    orig = core.epoch_end_callback

    def wrapped(*a, **kw):
        cb = orig(*a, **kw)
        cls = type(cb)

        class Killer(cls):
            def on_epoch_end(self, e, logs=None):
                super().on_epoch_end(e, logs)
                if epoch is not None and e + 1 == epoch:
                    raise Killed()

        if step is not None:
            def on_train_batch_end(self, batch, logs=None):
                cls.on_train_batch_end(self, batch, logs)
                if int(self.model.optimizer.iterations) == step:
                    raise Killed()
            Killer.on_train_batch_end = on_train_batch_end
        cb.__class__ = Killer
        return cb

    monkeypatch.setattr(core, "epoch_end_callback", wrapped)
    return lambda: monkeypatch.setattr(core, "epoch_end_callback", orig)


def _assert_same_run(a, b):
    assert set(a.history) == set(b.history)
    for k in a.history:
        if k == "epoch_time_s":
            continue
        np.testing.assert_allclose(b.history[k], a.history[k], rtol=1e-5, atol=1e-7, err_msg=k)
    for u, v in zip(a.model.get_weights(), b.model.get_weights()):
        np.testing.assert_allclose(v, u, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- issue 16: resumed == uninterrupted

def test_run_resumed_after_a_kill_equals_the_uninterrupted_run(synth, in_tmp, monkeypatch):
    from zoo.training import train

    cfg = _config(synth, tracking={"enabled": True, "experiment": "resume", "log_model": False})
    a = train(cfg, output_dir=str(in_tmp / "a"), verbose=0)
    restore = _kill_after(monkeypatch, epoch=2)
    with pytest.raises(Killed):
        train(cfg, output_dir=str(in_tmp / "b"), verbose=0)
    restore()
    state = json.load(open(in_tmp / "b" / "checkpoints" / "state.json"))
    assert state["epochs_done"] == 2
    b = train(cfg, output_dir=str(in_tmp / "b"), resume=True, verbose=0)
    assert len(b.history["loss"]) == 4
    _assert_same_run(a, b)  # per-epoch losses, learning rates (poly, per step) and final weights
    assert b.run_id == state["run_id"] and b.run_id != a.run_id  # the MLflow run continues


_KILL_SCRIPT = """
import importlib, json, os, signal, sys
from zoo.training import ExperimentConfig
core = importlib.import_module("zoo.training.train")
cfg = ExperimentConfig.from_dict(json.load(open(sys.argv[1])))
orig = core.epoch_end_callback

def wrapped(*a, **kw):
    cb = orig(*a, **kw)
    inner = cb.on_epoch_end

    def on_epoch_end(epoch, logs=None):
        inner(epoch, logs)
        if epoch + 1 == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)
    cb.on_epoch_end = on_epoch_end
    return cb

core.epoch_end_callback = wrapped
core.train(cfg, output_dir=sys.argv[2], verbose=0)
"""


def test_run_resumed_after_kill_9_of_the_process_equals_the_uninterrupted_run(synth, in_tmp):
    """The real fault: the training process is SIGKILLed right after epoch 2's checkpoint, then resumed here."""
    import subprocess
    import sys

    from zoo.training import train

    cfg = _config(synth, tracking={"enabled": True, "experiment": "kill9", "log_model": False})
    (in_tmp / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    (in_tmp / "kill.py").write_text(_KILL_SCRIPT)
    proc = subprocess.run([sys.executable, "kill.py", "cfg.json", str(in_tmp / "b"), "2"], cwd=in_tmp,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == -9, proc.stderr[-2000:]
    state = json.load(open(in_tmp / "b" / "checkpoints" / "state.json"))
    assert state["epochs_done"] == 2
    b = train(cfg, output_dir=str(in_tmp / "b"), resume=True, verbose=0)
    a = train(cfg, output_dir=str(in_tmp / "a"), verbose=0)
    _assert_same_run(a, b)
    assert b.run_id == state["run_id"]


def test_mid_epoch_checkpoint_on_an_injected_clock_resumes_at_its_step(synth, in_tmp, monkeypatch):
    from zoo.training import train
    core = _core()

    cfg = _config(synth, checkpoint_every_s=25.0)
    now = [0.0]

    def clock():  # every read advances 15 s: a mid-epoch checkpoint at step 2 of each 3-step epoch
        now[0] += 15.0
        return now[0]

    monkeypatch.setattr(core, "clock", clock)
    saves = []
    orig_write = core.write_json
    monkeypatch.setattr(core, "write_json", lambda p, d: (saves.append((d.get("epochs_done"), d.get("steps_done")))
                                                          if p.endswith("state.json") else None, orig_write(p, d)))
    a = train(cfg, output_dir=str(in_tmp / "a"), verbose=0)
    mid = [s for s in saves if s[1]]
    assert mid == [(e, 2) for e in range(4)]  # inside every epoch, on the clock
    now[0] = 0.0
    saves.clear()
    restore = _kill_after(monkeypatch, step=8)  # killed in epoch 3 (steps 7..9) after its step-2 checkpoint
    with pytest.raises(Killed):
        train(cfg, output_dir=str(in_tmp / "b"), verbose=0)
    restore()
    state = json.load(open(in_tmp / "b" / "checkpoints" / "state.json"))
    assert state["epochs_done"] == 2 and state["steps_done"] == 2
    b = train(cfg, output_dir=str(in_tmp / "b"), resume=True, verbose=0)
    _assert_same_run(a, b)  # the rest of epoch 3 read the batches the uninterrupted run read there


def test_without_checkpoint_every_s_the_core_has_no_batch_hook(synth):
    import keras

    from zoo.training.train import epoch_end_callback
    from zoo.training.tracking import Tracker

    plain = epoch_end_callback("x", Tracker(enabled=False), {}, config=_config(synth))
    timed = epoch_end_callback("x", Tracker(enabled=False), {}, config=_config(synth, checkpoint_every_s=60))
    default = keras.callbacks.Callback.on_train_batch_end
    assert type(plain).on_train_batch_end is default and type(timed).on_train_batch_end is not default


# ---------------------------------------------------------------- schedules

def test_schedules_by_hand():
    from zoo.training import ExperimentConfig
    from zoo.training.train import make_schedule

    def lr(sched, t, **kw):
        cfg = ExperimentConfig(learning_rate=0.1, epochs=10, steps_per_epoch=5, lr_schedule=sched, **kw)
        s = make_schedule(cfg)
        return float(s(t)) if callable(s) else s

    assert lr({"name": "constant"}, 37) == 0.1
    # step: x0.5 every 2 epochs = 10 steps
    assert [lr({"name": "step", "step_epochs": 2, "gamma": 0.5}, t) for t in (0, 9, 10, 19, 20, 49)] == \
        pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.1 * 0.5 ** 4])
    # poly: 0.1 * (1 - t / 50) ** 0.9
    assert lr({"name": "poly"}, 0) == pytest.approx(0.1)
    assert lr({"name": "poly"}, 25) == pytest.approx(0.1 * 0.5 ** 0.9)
    assert lr({"name": "poly"}, 40) == pytest.approx(0.1 * 0.2 ** 0.9)
    assert lr({"name": "poly"}, 50) == pytest.approx(0.0, abs=1e-9)
    # cosine, 2 warm-up epochs (10 steps): 0.1 * t / 10, then 0.01 + 0.09 * (1 + cos(pi * (t - 10) / 40)) / 2
    c = {"name": "cosine", "warmup_epochs": 2, "min_lr": 0.01}
    assert lr(c, 0) == pytest.approx(0.0, abs=1e-9) and lr(c, 5) == pytest.approx(0.05)
    assert lr(c, 10) == pytest.approx(0.1)
    assert lr(c, 30) == pytest.approx(0.01 + 0.09 * 0.5)
    assert lr(c, 20) == pytest.approx(0.01 + 0.09 * (1 + math.cos(math.pi / 4)) / 2)
    assert lr(c, 50) == pytest.approx(0.01)
    assert lr({"name": "cosine"}, 25) == pytest.approx(0.05)  # no warm-up: plain cosine to 0


def test_schedule_is_per_step_and_logged(synth, in_tmp):
    from zoo.training import train

    cfg = _config(synth, epochs=2, lr_schedule={"name": "step", "step_epochs": 1, "gamma": 0.5})
    res = train(cfg, output_dir=str(in_tmp / "run"), verbose=0)
    # the rate of the next step after epochs 1 and 2 (3 steps each): 0.05 * 0.5, 0.05 * 0.25
    assert res.history["learning_rate"] == pytest.approx([0.025, 0.0125])
    assert int(res.model.optimizer.iterations) == 6


# ---------------------------------------------------------------- config

def test_new_options_validate_round_trip_and_are_documented(tmp_path):
    from zoo.training import ExperimentConfig

    cfg = ExperimentConfig(weight_decay=5e-5, weight_decay_mode="coupled", optimizer="sgd",
                           lr_schedule={"name": "cosine", "warmup_epochs": 1, "min_lr": 1e-6}, eval_every=2,
                           best_metric="val_aji", best_mode="max", early_stopping_patience=3,
                           checkpoint_every_s=600, mixed_precision=True, precise_bn_batches=50)
    cfg.save(str(tmp_path / "c.yaml"))
    assert ExperimentConfig.load(str(tmp_path / "c.yaml")) == cfg
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg
    assert isinstance(cfg.checkpoint_every_s, float)
    bad = {
        "weight_decay_mode": ({"weight_decay_mode": "l2"}, "weight_decay_mode must be one of"),
        "lr_schedule.name": ({"lr_schedule": {"name": "exp"}}, r"^lr_schedule\.name: must be one of"),
        "lr_schedule.step_epochs": ({"lr_schedule": {"name": "step"}}, r"^lr_schedule\.step_epochs"),
        "lr_schedule.gamma": ({"lr_schedule": {"name": "step", "step_epochs": 2, "gamma": 2}}, "lr_schedule.gamma"),
        "lr_schedule.warmup": ({"lr_schedule": {"name": "poly", "warmup_epochs": 1}}, "lr_schedule.warmup_epochs"),
        "lr_schedule.typo": ({"lr_schedule": {"name": "poly", "powr": 1}}, r"lr_schedule\.powr: unknown key"),
        "lr_schedule.type": ({"lr_schedule": {"name": "poly", "power": "high"}}, r"lr_schedule\.power: expected"),
        "lr_schedule mapping": ({"lr_schedule": "poly"}, "lr_schedule must be a mapping"),
        "best_metric": ({"best_metric": "aji"}, "best_metric must be"),
        "best_metric eval": ({"best_metric": "val_aji"}, "needs eval_every >= 1"),
        "best_mode": ({"best_metric": "loss", "best_mode": "up"}, "best_mode must be one of"),
        "best_mode loss": ({"best_metric": "loss"}, "best_mode: best_metric 'loss' improves downwards"),
        "patience": ({"early_stopping_patience": 2}, "early_stopping_patience: needs best_metric"),
        "patience<0": ({"best_metric": "loss", "best_mode": "min", "early_stopping_patience": -1},
                       "early_stopping_patience must be"),
        "checkpoint_every_s": ({"checkpoint_every_s": -1}, "checkpoint_every_s must be >= 0"),
        "checkpoint type": ({"checkpoint_every_s": "1h"}, "checkpoint_every_s: expected a finite number"),
        "mixed_precision": ({"mixed_precision": "yes"}, "mixed_precision: expected true or false"),
        "precise_bn": ({"precise_bn_batches": -5}, "precise_bn_batches must be >= 0"),
        "precise_bn type": ({"precise_bn_batches": 2.5}, "precise_bn_batches: expected an integer"),
    }
    for name, (kw, msg) in bad.items():
        with pytest.raises(ConfigError, match=msg) as e:
            ExperimentConfig(**kw)
        assert "\n" not in str(e.value), name
    doc = ExperimentConfig.__doc__
    for k in ("weight_decay_mode", "lr_schedule", "best_metric", "best_mode", "early_stopping_patience",
              "checkpoint_every_s", "mixed_precision", "precise_bn_batches", "Naylor", "Qu"):
        assert k in doc, k


# ---------------------------------------------------------------- best checkpoint, early stopping

def test_best_checkpoint_and_early_stopping(synth, in_tmp, monkeypatch):
    """Validation metrics are injected (a scripted val_aji per evaluation), so the selection is exact."""
    import keras

    import zoo.evaluation as evaluation
    from zoo.training import train

    script = iter([0.30, 0.50, 0.40, 0.45, 0.90, 0.95])
    seen = []
    real = evaluation.evaluate

    def fake(model, *a, max_images=None, **kw):
        if max_images is None:  # the final evaluation: the real one, of the model the core ends with
            seen.append(("final", [np.copy(w) for w in model.get_weights()]))
            return real(model, *a, **kw)
        seen.append(("val", [np.copy(w) for w in model.get_weights()]))
        return {"mean": {"aji": next(script), "pq": 0.0}}

    monkeypatch.setattr(evaluation, "evaluate", fake)
    cfg = _config(synth, epochs=6, val_split="test", eval_every=1, best_metric="val_aji",
                  early_stopping_patience=2)
    res = train(cfg, output_dir=str(in_tmp / "run"), verbose=0)
    ckpt = in_tmp / "run" / "checkpoints"
    state = json.load(open(ckpt / "state.json"))
    # 0.30, 0.50 (best, epoch 2), 0.40, 0.45: two evaluations without improvement -> stop after epoch 4
    assert len(res.history["loss"]) == 4 and state["stopped_early"] == 4
    assert state["best"] == {"metric": "val_aji", "mode": "max", "value": 0.5, "epoch": 2, "stale": 2}
    best = keras.models.load_model(ckpt / "best.keras")
    vals = [w for kind, w in seen if kind == "val"]
    for u, v in zip(best.get_weights(), vals[1]):  # best.keras holds epoch 2's weights
        np.testing.assert_array_equal(u, v)
    final = [w for kind, w in seen if kind == "final"][0]
    for u, v in zip(final, vals[1]):  # the final evaluation (and the returned model) is the best checkpoint's
        np.testing.assert_array_equal(u, v)
    assert (ckpt / "last.keras").is_file() and (ckpt / "spec.json").is_file()
    assert os.path.isfile(in_tmp / "run" / "evaluation.json")
    # resuming an early-stopped run trains nothing more
    res2 = train(cfg, output_dir=str(in_tmp / "run"), resume=True, verbose=0)
    assert len(res2.history["loss"]) == 4


def test_best_metric_missing_from_evaluation_is_a_config_error(synth, in_tmp, monkeypatch):
    import zoo.evaluation as evaluation
    from zoo.training import train

    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **kw: {"mean": {"aji": 0.1}})
    cfg = _config(synth, epochs=2, val_split="test", eval_every=1, best_metric="val_ajii")
    with pytest.raises(ConfigError, match=r"best_metric: evaluation gave no 'val_ajii' \(it gave: val_aji\)"):
        train(cfg, output_dir=str(in_tmp / "run"), verbose=0)


# ---------------------------------------------------------------- Adam's betas

@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_adam_betas_come_from_the_config(optimizer):
    """Two Adam steps from w = 1 with gradients 1 then 0.1, lr 0.1, worked out by hand (Kingma & Ba Alg. 1): step 1
    moves by lr whatever the betas; step 2 has m_hat = (0.09 + 0.01) / 0.19 and v_hat = (b2 + 0.01) / (1 + b2), so
    w2 = 0.9 - 0.1 m_hat / sqrt(v_hat): 0.825754 with Qu et al.'s beta_2 = 0.99, 0.825919 with Keras' 0.999."""
    import keras

    from zoo.training.config import ExperimentConfig
    from zoo.training.train import make_optimizer

    def two_steps(**kw):
        opt = make_optimizer(ExperimentConfig(optimizer=optimizer, learning_rate=0.1, weight_decay_mode="coupled",
                                              **kw))
        w = keras.Variable(1.0)
        for g in (1.0, 0.1):
            opt.apply_gradients([(keras.ops.convert_to_tensor(g), w)])
        return float(w.numpy()), opt

    def by_hand(b2):
        return 0.9 - 0.1 * (0.1 / 0.19) / math.sqrt((b2 + 0.01) / (1 + b2))

    w, opt = two_steps(beta_2=0.99)
    assert (opt.beta_1, opt.beta_2) == (0.9, 0.99) and w == pytest.approx(by_hand(0.99), abs=1e-5)
    w_default, opt = two_steps()
    assert opt.beta_2 == 0.999 and w_default == pytest.approx(by_hand(0.999), abs=1e-5)
    assert abs(by_hand(0.99) - by_hand(0.999)) > 1e-4  # the two answers are told apart at this tolerance


# ---------------------------------------------------------------- coupled L2

def test_coupled_weight_decay_is_l2_on_kernels_in_the_loss(synth):
    import keras

    from zoo import models
    from zoo.training.train import apply_weight_decay, make_optimizer

    cfg = _config(synth, weight_decay=1e-3, weight_decay_mode="coupled")
    model = models.build(cfg.model, cfg.model_config)
    model(np.zeros((1, 16, 16, 3), np.float32))
    n = apply_weight_decay(model, cfg)
    kernels = [v for v in model.trainable_variables if v.path.endswith("kernel")]
    assert n == len(kernels) >= 4 and n < len(model.trainable_variables)  # no biases, no batch-norm gamma/beta
    want = sum(0.5 * 1e-3 * float(np.sum(np.square(v.numpy()))) for v in kernels)
    assert float(sum(keras.ops.convert_to_numpy(x) for x in model.losses)) == pytest.approx(want, rel=1e-5)
    assert make_optimizer(cfg).weight_decay is None  # not decayed twice
    dec = _config(synth, weight_decay=1e-3)
    assert make_optimizer(dec).weight_decay == pytest.approx(1e-3)
    model2 = models.build(dec.model, dec.model_config)
    model2(np.zeros((1, 16, 16, 3), np.float32))
    assert apply_weight_decay(model2, dec) == 0 and not model2.losses


def test_tnbc_naylor_configs_use_coupled_l2():
    from zoo.training import ExperimentConfig

    root = os.path.join(os.path.dirname(__file__), "..", "..", "..", "configs", "tnbc")
    for name in ("fcn8s.yaml", "pangnet.yaml", "deconvnet.yaml"):
        cfg = ExperimentConfig.load(os.path.join(root, name))
        assert cfg.weight_decay_mode == "coupled" and cfg.weight_decay == pytest.approx(5e-5), name


# ---------------------------------------------------------------- mixed precision

def test_mixed_precision_policy_is_set_for_the_run_and_restored(synth, in_tmp, monkeypatch):
    import keras

    from zoo.training import train
    core = _core()

    assert keras.mixed_precision.global_policy().name == "float32"
    cfg = _config(synth, epochs=1, steps_per_epoch=1, mixed_precision=True)
    # a CPU-only machine: a warning, float32, and the config still runs
    monkeypatch.setattr(core, "_gpu_available", lambda: False)
    with pytest.warns(UserWarning, match="this machine has no GPU: training in float32"):
        res = train(cfg, output_dir=str(in_tmp / "cpu"), verbose=0)
    assert res.model.dtype_policy.name == "float32"
    # with a GPU (injected): mixed_float16 for the run, the loss scaled by Keras' LossScaleOptimizer, then restored
    monkeypatch.setattr(core, "_gpu_available", lambda: True)
    seen = {}
    orig = core.epoch_end_callback

    def spy(*a, **kw):
        seen["policy"] = keras.mixed_precision.global_policy().name
        return orig(*a, **kw)

    monkeypatch.setattr(core, "epoch_end_callback", spy)
    cfg = cfg.replace(val_split="test", lr_schedule={"name": "poly"})
    res = train(cfg, output_dir=str(in_tmp / "gpu"), verbose=0)
    assert seen["policy"] == "mixed_float16" and res.model.dtype_policy.name == "mixed_float16"
    assert isinstance(res.model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert (in_tmp / "gpu" / "evaluation.json").is_file()  # inference and evaluation take the float16 model
    # resuming a mixed-precision checkpoint: the schedule is set through the LossScaleOptimizer
    res = train(cfg.replace(epochs=2), output_dir=str(in_tmp / "gpu"), resume=True, verbose=0)
    assert len(res.history["loss"]) == 2 and np.all(np.isfinite(res.history["loss"]))
    assert keras.mixed_precision.global_policy().name == "float32"


# ---------------------------------------------------------------- precise BN

def test_precise_bn_recomputes_moving_statistics_by_hand():
    import keras
    import tensorflow as tf

    from zoo.training.train import precise_bn

    inp = keras.Input((4, 4, 2))
    bn = keras.layers.BatchNormalization(momentum=0.99)
    out = keras.layers.Conv2D(3, 1)(bn(inp))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    xs = [rng.normal(2.0 * i, 1.0 + i, (3, 4, 4, 2)).astype(np.float32) for i in range(4)]
    before = [np.copy(w.numpy()) for w in model.trainable_weights]
    used = precise_bn(model, tf.data.Dataset.from_tensor_slices(np.stack(xs)), 3)
    assert used == 3 and bn.momentum == 0.99
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([x.mean(axis=(0, 1, 2)) for x in xs[:3]], 0),
                               rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([x.var(axis=(0, 1, 2)) for x in xs[:3]], 0),
                               rtol=1e-4)
    for u, v in zip(before, model.trainable_weights):
        np.testing.assert_array_equal(u, v.numpy())


def test_precise_bn_in_the_core_changes_statistics_not_weights(synth, in_tmp, monkeypatch):
    import keras

    from zoo.training import train
    core = _core()

    captured = {}
    orig = core.precise_bn

    def spy(model, batches, n):
        captured["trainable"] = [np.copy(w) for w in (v.numpy() for v in model.trainable_weights)]
        captured["stats"] = [np.copy(v.numpy()) for v in model.non_trainable_weights if "moving" in v.path]
        return orig(model, batches, n)

    monkeypatch.setattr(core, "precise_bn", spy)
    res = train(_config(synth, epochs=1, precise_bn_batches=2), output_dir=str(in_tmp / "run"), verbose=0)
    after = [v.numpy() for v in res.model.non_trainable_weights if "moving" in v.path]
    assert captured["stats"] and any(not np.allclose(u, v) for u, v in zip(captured["stats"], after))
    for u, v in zip(captured["trainable"], res.model.trainable_weights):
        np.testing.assert_array_equal(u, v.numpy())
    saved = keras.models.load_model(in_tmp / "run" / "checkpoints" / "last.keras")  # written back
    for u, v in zip([v.numpy() for v in saved.non_trainable_weights if "moving" in v.path], after):
        np.testing.assert_allclose(u, v)


def test_resume_warns_when_the_checkpoint_and_state_disagree(synth, in_tmp):
    """A kill between writing last.keras and state.json leaves the checkpoint one epoch ahead: said, not hidden."""
    from zoo.training import train

    cfg = _config(synth, epochs=2, steps_per_epoch=1)
    train(cfg, output_dir=str(in_tmp / "run"), verbose=0)
    p = in_tmp / "run" / "checkpoints" / "state.json"
    state = json.loads(p.read_text())
    p.write_text(json.dumps({**state, "epochs_done": 1, "history": {k: v[:1] for k, v in state["history"].items()}}))
    with pytest.warns(UserWarning, match=r"last.keras is at optimizer step 2 but state.json says 1"):
        train(cfg, output_dir=str(in_tmp / "run"), resume=True, verbose=0)
