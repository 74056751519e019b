"""Every registered segmentation model (zoo.models.available(), so new models are covered automatically) through the
shared harness: output contract, two keras-fit steps on (x, y, w), config round trip, .keras reload in a fresh
process, SavedModel export whose serving output matches. The GAN models (crops in, cluster probabilities out) take
the harness's GAN checks in test_gan_models.py."""

import numpy as np
import pytest

import keras

from zoo import models
from zoo.models.base import SegmentationModel

NAMES = [n for n in models.available() if issubclass(models.get(n), SegmentationModel)]


@pytest.fixture(scope="module")
def prepared(harness, tmp_path_factory):
    """name -> dict(model, x, y, w, before, history, preds, paths) or the exception building it raised."""
    folder = tmp_path_factory.mktemp("models")
    out = {}
    for name in NAMES:
        try:
            keras.utils.set_random_seed(0)
            model = models.build(name, harness.tiny_config(name))
            model.build((None, None, None, 3))
            x, y, w = harness.training_batch(name, model)
            before = [np.array(v) for v in model.trainable_variables]
            history = harness.fit_two_steps(model, x, y, w, harness.training_loss(name, model)).history
            preds = model.predict(x, verbose=0)
            paths = harness.save_and_export(model, str(folder), name)
            np.save(folder / f"{name}_x.npy", x)
            out[name] = dict(model=model, x=x, y=y, w=w, before=before, history=history, preds=preds,
                             paths={**paths, "x": str(folder / f"{name}_x.npy")})
        except Exception as err:  # reported by each test of that model, not as one fixture error for all
            out[name] = err
    out["_folder"] = folder
    return out


@pytest.fixture(scope="module")
def fresh(harness, prepared):
    """Predictions of every saved model, reloaded in ONE new process (.keras and SavedModel)."""
    jobs = {n: r["paths"] for n, r in prepared.items() if isinstance(r, dict) and "paths" in r}
    return harness.load_in_fresh_process(jobs, str(prepared["_folder"] / "fresh.npz"))


def _ready(prepared, name):
    result = prepared[name]
    if isinstance(result, Exception):
        raise result
    return result


@pytest.mark.parametrize("name", NAMES)
def test_output_contract(prepared, harness, name):
    r = _ready(prepared, name)
    model = r["model"]
    assert isinstance(model.min_divisor, int) and model.min_divisor >= 1
    assert harness.IMAGE_SIZE % model.min_divisor == 0
    probs = np.asarray(model(r["x"][:1], training=False))
    assert probs.shape == (1, harness.IMAGE_SIZE, harness.IMAGE_SIZE, model.num_classes) and probs.dtype == np.float32
    assert np.isfinite(probs).all()
    for a, b in harness.softmax_groups(model):
        assert probs[..., a:b].min() >= 0 and np.allclose(probs[..., a:b].sum(-1), 1.0, atol=1e-5)
    # a size that is not a multiple of the stride: padded inside, cropped back to the input's size
    odd = np.random.default_rng(1).random((2, harness.IMAGE_SIZE + 5, harness.IMAGE_SIZE + 3, 3), dtype=np.float32)
    probs = np.asarray(model(odd, training=False))
    assert probs.shape == (2, harness.IMAGE_SIZE + 5, harness.IMAGE_SIZE + 3, model.num_classes)
    for a, b in harness.softmax_groups(model):
        assert np.allclose(probs[..., a:b].sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_fit_two_steps_updates_every_layer(prepared, name):
    """Two optimizer steps ran and moved every layer with weights (a layer left out of the graph would not move;
    single variables may legitimately get no gradient, e.g. a bias whose shift a later batch norm cancels)."""
    r = _ready(prepared, name)
    model = r["model"]
    assert int(model.optimizer.iterations) == 2
    assert np.isfinite(r["history"]["loss"]).all()
    moved = {}
    for v, before in zip(model.trainable_variables, r["before"]):
        layer = v.path.rsplit("/", 1)[0]
        moved[layer] = moved.get(layer, False) or not np.array_equal(np.array(v), before)
    stuck = [layer for layer, m in moved.items() if not m]
    assert len(moved) > 1 and not stuck, f"layers that did not train: {stuck}"


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(prepared, harness, name):
    r = _ready(prepared, name)
    harness.check_config_round_trip(r["model"])
    assert models.build(name, r["model"].config.to_dict()).config == r["model"].config


@pytest.mark.parametrize("name", NAMES)
def test_keras_file_reloads_in_fresh_process(prepared, fresh, name):
    r = _ready(prepared, name)
    assert str(fresh[f"{name}/class"]) == type(r["model"]).__name__
    np.testing.assert_allclose(fresh[f"{name}/keras"], r["preds"], atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_exported_savedmodel_serves_same_probabilities(prepared, fresh, name):
    r = _ready(prepared, name)
    np.testing.assert_allclose(fresh[f"{name}/serving"], r["preds"], atol=1e-5)
