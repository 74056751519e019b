"""Resume of a SimGAN refiner run (configs/synthesis/refiner.yaml through zoo.training.train and zoo.training.gan's
refiner step): a run interrupted by a fault injected at a chosen step (an exception from the core's callback), then
resumed with ``resume=True``, ends with the uninterrupted run's weights -- R's, D's, the history buffer, both Adam
states -- and its per-epoch losses; once from the epoch-end checkpoint, once from a mid-epoch one
(``checkpoint_every_s``). The pattern of tests/zoo/training/test_gan_training.py's InfoGAN resume test."""

import importlib
import json
import pathlib

import numpy as np
import pytest

core = importlib.import_module("zoo.training.train")  # the module (zoo.training.train the name is the function)

EPOCHS, STEPS = 2, 2


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module", autouse=True)
def eager():
    """Steps run eagerly: on these 16 px patches tracing each fit's train function costs more than the steps."""
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


@pytest.fixture(scope="module")
def s_plus_u(real_folder, tmp_path_factory):
    """``histozoo synth --include-real`` records: 4 synthetic tiles and the 3 real images, all in split 'all'."""
    from zoo.synthesis import SynthesisConfig
    from zoo.synthesis.dataset import write_synthetic

    data = tmp_path_factory.mktemp("s_plus_u")
    write_synthetic(str(real_folder), 4, str(data), SynthesisConfig(tile_size=32, nuclei_min=3, nuclei_max=5),
                    include_real=True, progress=False)
    return data


def _config(harness, data, **changes):
    from zoo.training import ExperimentConfig

    repo = pathlib.Path(__file__).parents[3]
    d = ExperimentConfig.load(str(repo / "configs/synthesis/refiner.yaml")).to_dict()
    d.update(data_dir=str(data), model_config=harness.tiny_config("simgan_refiner"), epochs=EPOCHS,
             steps_per_epoch=STEPS, input={**d["input"], "patch_size": 16, "batch_size": 4, "patches_per_image": 1},
             tracking={**d["tracking"], "enabled": False, "log_model": False}, **changes)
    return ExperimentConfig.from_dict(d)


def _fail_after(monkeypatch, step):
    """Make the core's callback raise Interrupted at the end of global step ``step`` (1-based), after its own hook
    (so a mid-epoch checkpoint due at that step is written first): the process dying there."""
    real = core.epoch_end_callback
    seen = {"steps": 0}

    def faulty(*args, **kwargs):
        cb = real(*args, **kwargs)
        base = type(cb)

        class Faulty(base):
            def on_train_batch_end(self, batch, logs=None):
                if hasattr(base, "on_train_batch_end"):
                    super().on_train_batch_end(batch, logs)
                seen["steps"] += 1
                if seen["steps"] == step:
                    raise Interrupted(f"fault injected after step {step}")

        cb.__class__ = Faulty
        return cb

    monkeypatch.setattr(core, "epoch_end_callback", faulty)
    return seen


def _state(model) -> dict:
    """Every variable by its place (names carry the model's uniquified name): R, D, the history buffer and its
    count, the seed generator's state, then both optimizers' iterations, moments and velocities."""
    out = {f"model/{i}/{v.name}": np.asarray(v) for i, v in enumerate(model.variables)}
    for name in ("r_optimizer", "d_optimizer"):
        opt = getattr(model, name)
        out[f"{name}/iterations"] = int(opt.iterations)
        out.update({f"{name}/{i}": np.asarray(v) for i, v in enumerate(opt.variables)})
    return out


@pytest.fixture(scope="module")
def straight(harness, s_plus_u, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    res = core.train(_config(harness, s_plus_u), output_dir=str(out), verbose=0)
    return res


@pytest.mark.parametrize("fail_at,every_s,resumed_from", [(3, 0.0, (1, 0)), (3, 1e-9, (1, 1))],
                         ids=["epoch-end-checkpoint", "mid-epoch-checkpoint"])
def test_interrupted_refiner_run_resumes_to_the_uninterrupted_one(harness, s_plus_u, straight, tmp_path,
                                                                    monkeypatch, fail_at, every_s, resumed_from):
    cfg = _config(harness, s_plus_u, checkpoint_every_s=every_s)
    out = tmp_path / "split"
    seen = _fail_after(monkeypatch, fail_at)
    with pytest.raises(Interrupted):
        core.train(cfg, output_dir=str(out), verbose=0)
    assert seen["steps"] == fail_at
    state = json.loads((out / "checkpoints" / core.STATE).read_text())
    assert (state["epochs_done"], state["steps_done"]) == resumed_from
    monkeypatch.undo()  # the fault is gone: the resumed run goes to the end

    res = core.train(cfg, output_dir=str(out), resume=True, verbose=0)
    a, b = _state(straight.model), _state(res.model)
    assert a["r_optimizer/iterations"] == b["r_optimizer/iterations"] == EPOCHS * STEPS
    assert a["d_optimizer/iterations"] == b["d_optimizer/iterations"] == EPOCHS * STEPS
    assert sorted(a) == sorted(b)
    assert int(np.asarray(res.model.history_filled)) > 0  # the buffer took part
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6, err_msg=k)
    for k in ("loss", "d_loss", "adv_loss", "l1", "real_fraction"):
        assert len(res.history[k]) == EPOCHS
        np.testing.assert_allclose(res.history[k], straight.history[k], rtol=1e-5, atol=1e-6, err_msg=k)
