"""HoVer-Net (Graham et al. 2019): both modes' valid sizes (270 -> 80, 256 -> 164), the output layout (NP softmax,
HV, TP softmax), the stride-1 pre-activation ResNet50 encoder, config validation, local encoder-weight loading (a
file saved here, no download). The shared harness (test_models_all.py) covers fit / round trip / export."""

import numpy as np
import pytest

from zoo import models
from zoo.errors import ConfigError, DataError
from zoo.models.hovernet import HoVerNetConfig, preact_resnet50

TINY = {"encoder_blocks": [1, 1, 1, 1], "encoder_width": 1 / 16, "decoder_width": 1 / 8}


@pytest.mark.parametrize("mode,size,valid", [("original", 270, 80), ("fast", 256, 164)])
def test_reference_valid_sizes_with_the_papers_dense_units(mode, size, valid):
    """With the paper's 8 + 4 dense units the 'valid' network maps 270 -> 80 (original) and 256 -> 164 (fast)."""
    model = models.build("hovernet", {"mode": mode, **TINY})
    assert model.config.dense_units == (8, 4)
    assert model.network_input_size(valid) == size and model.margin == (size - valid) // 2
    out = model.forward(np.zeros((1, size, size, 3), np.float32))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"np": (1, valid, valid, 2), "hv": (1, valid, valid, 2)}


@pytest.mark.parametrize("mode", ["original", "fast"])
def test_output_layout_any_size(mode):
    """[B, H, W, 5 + K]: NP softmax (0, 1), HV (2, 3), TP softmax (4 ..); the input's size whatever it is."""
    model = models.build("hovernet", {"mode": mode, "num_types": 3, **TINY, "dense_units": [1, 1]})
    assert model.num_classes == 8 and model.softmax_groups == ((0, 2), (4, 8))
    y = np.asarray(model(np.random.default_rng(0).random((2, 45, 30, 3), dtype=np.float32)))
    assert y.shape == (2, 45, 30, 8) and np.isfinite(y).all()
    np.testing.assert_allclose(y[..., :2].sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(y[..., 4:].sum(-1), 1.0, atol=1e-5)
    assert models.build("hovernet", {**TINY, "dense_units": [1, 1]}).num_classes == 4  # no TP branch


def test_encoder_is_a_stride_8_preact_resnet50():
    """ResNet50 units [3, 4, 6, 3]; stride-1 stem and no max-pool: d0..d3 at 1/1, 1/2, 1/4, 1/8 with 256, 512,
    1024 and (conv_bot) 1024 maps; 23.5 M encoder parameters like torchvision's ResNet50 minus its classifier."""
    enc = preact_resnet50(HoVerNetConfig(mode="fast"))
    outs = enc(np.zeros((1, 64, 64, 3), np.float32))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 64, 256), (1, 32, 32, 512), (1, 16, 16, 1024),
                                              (1, 8, 8, 1024)]
    assert len([la for la in enc.layers if la.name.endswith("_conv3")]) == 3 + 4 + 6 + 3
    assert 23_000_000 < enc.count_params() - 2048 * 1024 < 24_000_000


@pytest.mark.parametrize("bad", [{"mode": "turbo"}, {"num_types": -1}, {"dense_units": [8]},
                                 {"encoder_blocks": [3, 4, 6]}, {"encoder_width": 0},
                                 {"encoder_weights": "imagenet"}, {"encoder_weights": "w.bin"}])
def test_bad_options_raise_config_error(bad):
    with pytest.raises(ConfigError, match="model 'hovernet'"):
        models.build("hovernet", bad)


def test_encoder_weights_from_a_local_file(tmp_path):
    """The user path for ImageNet (or any) weights of this encoder: a .weights.h5 saved locally, or a .keras
    hovernet; from_config never reads the file; a wrong file is a DataError naming it."""
    cfg = {**TINY, "dense_units": [1, 1]}
    source = models.build("hovernet", cfg)
    source.build((None, None, None, 3))
    path = str(tmp_path / "encoder.weights.h5")
    source.encoder.save_weights(path)
    model = models.build("hovernet", {**cfg, "encoder_weights": path})
    for a, b in zip(source.encoder.get_weights(), model.encoder.get_weights()):
        np.testing.assert_array_equal(a, b)
    clone = type(model).from_config(model.get_config())
    assert not all(np.array_equal(a, b) for a, b in zip(source.encoder.get_weights(), clone.encoder.get_weights()))
    keras_path = str(tmp_path / "hovernet.keras")
    source.save(keras_path)
    from_keras = models.build("hovernet", {**cfg, "encoder_weights": keras_path})
    for a, b in zip(source.encoder.get_weights(), from_keras.encoder.get_weights()):
        np.testing.assert_array_equal(a, b)
    other = models.build("hovernet", {**cfg, "encoder_width": 1 / 8})
    other_path = str(tmp_path / "other.weights.h5")
    other.encoder.save_weights(other_path)
    with pytest.raises(DataError, match="other.weights.h5"):
        models.build("hovernet", {**cfg, "encoder_weights": other_path})
    with pytest.raises(DataError, match="not found"):
        models.build("hovernet", {**cfg, "encoder_weights": str(tmp_path / "missing.weights.h5")})


def test_original_mode_trains_two_steps_on_the_stacked_target():
    """The harness trains the fast mode; the original mode (5x5 decoder, 'valid' stem) trains as well, with the TP
    branch, on HoVer-Net's stacked target and loss."""
    import keras

    from zoo.losses import get_loss

    keras.utils.set_random_seed(0)
    model = models.build("hovernet", {"mode": "original", "num_types": 2, **TINY, "dense_units": [1, 1]})
    rng = np.random.default_rng(0)
    x = rng.random((2, 24, 24, 3), dtype=np.float32)
    nuc = (rng.random((2, 24, 24)) > 0.5).astype(np.float32)
    y = np.stack([nuc, rng.uniform(-1, 1, nuc.shape) * nuc, rng.uniform(-1, 1, nuc.shape) * nuc,
                  rng.integers(1, 3, nuc.shape) * nuc], -1).astype(np.float32)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=get_loss("hovernet", num_types=2), run_eagerly=True)
    history = model.fit(x, y, batch_size=1, epochs=1, verbose=0, shuffle=False)
    assert int(model.optimizer.iterations) == 2 and np.isfinite(history.history["loss"]).all()
