"""The neural stain networks (zoo.models.colorization) through the shared model harness: tiny builds, the paper's
shapes, two training steps, config / .keras / SavedModel round trips in a fresh process, Bhatia's R/B perturbation,
hand-checked loss values."""

import importlib.util
import pathlib
import sys

import numpy as np
import pytest

import keras

from zoo import models
from zoo.errors import ConfigError

NAMES = ("colorization", "colornormnet")  # tiny configs: tests/zoo/models/harness.py TINY_CONFIGS


def _harness():
    """tests/zoo/models/harness.py (the shared model harness; same module name as its conftest gives it)."""
    name = "histozoo_tests_model_harness"
    if name not in sys.modules:
        path = pathlib.Path(__file__).resolve().parents[1] / "models" / "harness.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _tiny(name):
    keras.utils.set_random_seed(0)
    model = models.build(name, _harness().tiny_config(name))
    model.build((None, None, None, 3))
    return model


def _lab(rgb):
    from skimage.color import rgb2lab

    return rgb2lab(np.asarray(rgb, np.float64))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Both tiny nets after two optimizer steps (Adadelta for colorization, as the paper), saved and exported."""
    folder = tmp_path_factory.mktemp("neural_models")
    h = _harness()
    rng = np.random.default_rng(0)
    x = rng.random((4, 16, 16, 3), dtype=np.float32)
    y = np.array([0, 1, 2, -1], np.int32)  # -1: unknown class, left out of the CE
    out = {}
    for name in NAMES:
        model = _tiny(name)
        before = [np.array(v) for v in model.trainable_variables]
        opt = keras.optimizers.Adadelta(1.0) if name == "colorization" else keras.optimizers.Adam(1e-3)
        model.compile(optimizer=opt, loss="ignored", weighted_metrics=[], run_eagerly=True)
        history = model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0).history
        preds = model.predict(x, verbose=0)
        paths = h.save_and_export(model, str(folder), name)
        np.save(folder / f"{name}_x.npy", x)
        out[name] = dict(model=model, before=before, history=history, preds=preds,
                         paths={**paths, "x": str(folder / f"{name}_x.npy")})
    out["fresh"] = h.load_in_fresh_process({n: out[n]["paths"] for n in NAMES}, str(folder / "fresh.npz"))
    return out


@pytest.mark.parametrize("name", list(NAMES))
def test_two_steps_move_every_layer_and_the_loss_is_finite(trained, name):
    r = trained[name]
    model = r["model"]
    assert int(model.optimizer.iterations) == 2
    assert np.isfinite(r["history"]["loss"]).all()
    moved = {}
    for v, b in zip(model.trainable_variables, r["before"]):
        layer = v.path.rsplit("/", 1)[0]
        moved[layer] = moved.get(layer, False) or not np.array_equal(np.array(v), b)
    assert len(moved) > 3 and all(moved.values()), [k for k, m in moved.items() if not m]


def test_adadelta_gets_the_papers_rho_and_epsilon(trained):
    opt = trained["colorization"]["model"].optimizer
    assert isinstance(opt, keras.optimizers.Adadelta)
    assert float(opt.learning_rate) == 1.0 and opt.rho == 0.9 and opt.epsilon == 1e-6


@pytest.mark.parametrize("name", list(NAMES))
def test_config_keras_file_and_savedmodel_round_trip(trained, name):
    r = trained[name]
    _harness().check_config_round_trip(r["model"])
    np.testing.assert_allclose(trained["fresh"][f"{name}/keras"], r["preds"], atol=1e-6)
    np.testing.assert_allclose(trained["fresh"][f"{name}/serving"], r["preds"], atol=1e-5)
    assert str(trained["fresh"][f"{name}/class"]) == type(r["model"]).__name__


@pytest.mark.parametrize("name", list(NAMES))
def test_rgb_contract_on_odd_sizes_and_blank_tiles(name):
    model = _tiny(name)
    x = np.random.default_rng(1).random((2, 19, 21, 3), dtype=np.float32)
    for batch in (x, np.ones((1, 24, 24, 3), np.float32), np.zeros((1, 8, 8, 3), np.float32)):
        out = np.asarray(model(batch, training=False))
        assert out.shape == batch.shape and np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_colorization_shapes_at_the_papers_size():
    """224 x 224 -> 28 x 28 x 256 low-level features (Yuan & Suh 3.1), a 256-d global vector, 12 tissue classes."""
    model = models.build("colorization")
    x = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)
    lum = model.luminance(x)
    assert tuple(model.encode(lum).shape) == (1, 28, 28, 256)
    g, logits = model.global_branch(lum)
    assert tuple(g.shape) == (1, 256) and tuple(logits.shape) == (1, 12)
    assert len(model.low) == 8 and len(model.glob) == 4 and model.min_divisor == 8


def test_colorization_keeps_the_input_luminance():
    """Chroma layer zeroed -> a = b = 0: the output is the grey of the input's own L (CIELAB, checked by skimage)."""
    model = _tiny("colorization")
    model.chroma.kernel.assign(np.zeros(model.chroma.kernel.shape, np.float32))
    model.chroma.bias.assign(np.zeros(2, np.float32))
    x = np.random.default_rng(2).uniform(0.1, 0.9, (1, 16, 16, 3)).astype(np.float32)
    out = np.asarray(model(x, training=False))[0]
    lab_out, lab_in = _lab(out), _lab(x[0])
    np.testing.assert_allclose(lab_out[..., 0], lab_in[..., 0], atol=0.05)
    np.testing.assert_allclose(lab_out[..., 1:], 0.0, atol=0.05)


def test_colorization_transfer_uses_the_given_global_vector():
    model = _tiny("colorization")
    x = np.random.default_rng(3).random((2, 16, 16, 3), dtype=np.float32)
    own = np.asarray(model(x, training=False))
    np.testing.assert_allclose(np.asarray(model.transfer(x, model.global_features(x))), own, atol=1e-5)
    other = np.asarray(model.transfer(x, np.full(8, 5.0, np.float32)))
    assert np.abs(other - own).max() > 1e-3


def test_colorization_loss_by_hand():
    """Chroma and class logits zeroed: loss = mean((a^2 + b^2) / 2) / 100^2 + alpha * ln(K), the CE over the known
    classes only."""
    model = _tiny("colorization")
    for layer in (model.chroma, model.class_out):
        layer.kernel.assign(np.zeros(layer.kernel.shape, np.float32))
        layer.bias.assign(np.zeros(layer.bias.shape, np.float32))
    x = np.random.default_rng(4).uniform(0.05, 0.95, (2, 8, 8, 3)).astype(np.float32)
    total, mse, ce = (float(t) for t in model.loss_terms(x, np.array([1, -1]), training=False))
    ab = _lab(x)[..., 1:]
    assert mse == pytest.approx(np.mean(ab ** 2) / 100.0 ** 2, rel=1e-4)
    assert ce == pytest.approx(np.log(3), rel=1e-6)
    assert total == pytest.approx(mse + 0.01 * np.log(3), rel=1e-6)
    assert float(model.loss_terms(x, np.array([-1, -1]), training=False)[2]) == 0.0  # no known class: no CE


def test_colornormnet_perturbation_distribution_and_green_untouched():
    """Bhatia eq. 6.1: eps_1, eps_2 ~ U(-0.2, 0.2) independent, per image, added to R and B; G unchanged."""
    model = _tiny("colornormnet")
    x = np.random.default_rng(5).random((20000, 2, 2, 3), dtype=np.float32)
    xs, eps = (np.asarray(t) for t in model.perturb(x, seed=7))
    np.testing.assert_array_equal(xs[..., 1], x[..., 1])
    np.testing.assert_allclose(xs[..., 0] - x[..., 0], np.broadcast_to(eps[:, None, None, 0], (20000, 2, 2)),
                               atol=1e-6)
    np.testing.assert_allclose(xs[..., 2] - x[..., 2], np.broadcast_to(eps[:, None, None, 1], (20000, 2, 2)),
                               atol=1e-6)
    assert eps.min() >= -0.2 and eps.max() <= 0.2
    # U(-0.2, 0.2): mean 0, variance 0.4^2 / 12; standard errors at n = 20000: 0.0008 and 0.00005
    assert abs(eps.mean(0)).max() < 0.005 and np.allclose(eps.var(0), 0.16 / 12, rtol=0.03)
    assert abs(np.corrcoef(eps[:, 0], eps[:, 1])[0, 1]) < 0.03
    counts, _ = np.histogram(eps[:, 0], bins=4, range=(-0.2, 0.2))
    assert np.all(np.abs(counts - 5000) < 300)


def test_colornormnet_starts_as_identity_and_loss_by_hand():
    """The shift layer starts at zero, so the untrained net returns its (clipped) input: with x = 0.5 and offsets
    (+0.1, 0, -0.2), L1 = (0.1 + 0 + 0.2) / 3 = 0.1, L2 = (0.01 + 0 + 0.04) / 3, loss = L1 + 1.0 * L2."""
    model = _tiny("colornormnet")
    clean = np.full((1, 8, 8, 3), 0.5, np.float32)
    perturbed = clean + np.array([0.1, 0.0, -0.2], np.float32)
    total, l1, l2 = (float(t) for t in model.loss_terms(clean, perturbed, training=False))
    assert l1 == pytest.approx(0.1, rel=1e-5) and l2 == pytest.approx(0.05 / 3, rel=1e-5)
    assert total == pytest.approx(0.1 + 0.05 / 3, rel=1e-5)
    np.testing.assert_allclose(np.asarray(model(perturbed, training=False)), perturbed, atol=1e-7)


@pytest.mark.parametrize("name, bad", [
    ("colorization", {"class_loss_weight": 0.1}), ("colorization", {"low_strides": [2, 2]}),
    ("colorization", {"global_size": 100}), ("colorization", {"decoder_upsample": [True, True, True, True]}),
    ("colornormnet", {"offset_range": 0.0}), ("colornormnet", {"strides": [3]}), ("colornormnet", {"size": 3})])
def test_bad_config_is_one_line_error(name, bad):
    with pytest.raises(ConfigError) as e:
        models.build(name, bad)
    assert name in str(e.value) and "\n" not in str(e.value)


def test_alpha_zero_and_the_papers_range_are_allowed():
    for a in (0.0, 1 / 30, 1 / 300, 0.01):
        assert models.get("colorization").config_class(class_loss_weight=a).class_loss_weight == a
