"""Qu et al.'s ResNet34 U-Net (section 2.1): ResNet34 encoder shapes, K + 2 outputs, config validation, local
encoder-weight loading (files saved here, no download). The shared harness (test_models_all.py) covers fit /
round trip / export."""

import numpy as np
import pytest

from zoo import models
from zoo.errors import ConfigError, DataError
from zoo.models.qu import load_encoder_weights, pyramid_encoder, resnet_backbone

TINY = {"encoder_blocks": [1, 1, 1, 1], "encoder_width": 1 / 16, "decoder_filters": [8, 8, 4, 4, 4]}


def test_resnet34_encoder_blocks_and_pyramid_shapes():
    """ResNet34 = basic blocks [3, 4, 6, 3]; 21,301,696 backbone parameters (ENVIRONMENT.md section 6);
    the skips are at 1/2 .. 1/32 with 64, 64, 128, 256, 512 maps."""
    backbone = resnet_backbone()
    assert backbone.count_params() == 21_301_696
    enc = pyramid_encoder(backbone)
    outs = enc(np.zeros((1, 64, 64, 3), np.float32))
    assert [tuple(o.shape) for o in outs] == [(1, 32, 32, 64), (1, 16, 16, 64), (1, 8, 8, 128), (1, 4, 4, 256),
                                              (1, 2, 2, 512)]
    convs = [la.name for la in backbone.layers if la.name.endswith("_2_conv")]  # the second conv of every block
    assert len(convs) == 3 + 4 + 6 + 3


def test_k_plus_two_softmax_maps_any_size():
    model = models.build("qu", {"num_types": 4, **TINY})
    assert model.num_classes == 6 and model.config.num_classes == 6 and model.min_divisor == 32
    probs = np.asarray(model(np.random.default_rng(0).random((2, 45, 70, 3), dtype=np.float32)))
    assert probs.shape == (2, 45, 70, 6)
    assert np.allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_default_config_is_resnet34():
    c = models.get("qu").config_class()
    assert c.encoder_blocks == (3, 4, 6, 3) and c.encoder_width == 1.0 and c.num_types == 3
    assert c.num_classes == 5  # the paper's five maps


@pytest.mark.parametrize("bad", [{"num_types": 0}, {"encoder_blocks": [3, 4, 6]}, {"decoder_filters": [8, 8]},
                                 {"encoder_width": 0}, {"encoder_weights": "imagenet"},
                                 {"encoder_weights": "weights.bin"}, {"normalization": "zscore"}])
def test_bad_options_raise_config_error(bad):
    with pytest.raises(ConfigError, match="model 'qu'"):
        models.build("qu", bad)


def test_encoder_weights_from_local_backbone_file(tmp_path):
    """The user path for ImageNet (or any) ResNet weights: a ResNetBackbone .weights.h5 saved locally."""
    source = resnet_backbone((1, 1, 1, 1), 1 / 16)
    path = str(tmp_path / "resnet.weights.h5")
    source.save_weights(path)
    model = models.build("qu", {**TINY, "encoder_weights": path})
    for a, b in zip(source.get_weights(), model.encoder.get_weights()):
        np.testing.assert_array_equal(a, b)
    # from_config (a saved model being rebuilt) never reads the file
    clone = type(model).from_config(model.get_config())
    assert not all(np.array_equal(a, b) for a, b in zip(source.get_weights(), clone.encoder.get_weights()))


def test_encoder_weights_from_a_trained_qu_model(tmp_path):
    """The transfer row: the encoder of a qu model trained by the project (its .keras file) is copied."""
    donor = models.build("qu", {**TINY, "num_types": 1})
    donor.build((None, None, None, 3))
    path = str(tmp_path / "donor.keras")
    donor.save(path)
    model = models.build("qu", {**TINY, "num_types": 4, "encoder_weights": path})
    for a, b in zip(donor.encoder.get_weights(), model.encoder.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_encoder_weights_mismatch_and_missing_raise_data_error(tmp_path):
    path = str(tmp_path / "other.weights.h5")
    resnet_backbone((1, 2, 1, 1), 1 / 16).save_weights(path)
    with pytest.raises(DataError, match="other.weights.h5"):
        models.build("qu", {**TINY, "encoder_weights": path})
    with pytest.raises(DataError, match="not found"):
        load_encoder_weights(models.build("qu", TINY).encoder, str(tmp_path / "absent.weights.h5"))


@pytest.mark.parametrize("name", ["ours", "no_lper", "no_transfer", "unet", "fcn8s", "pretrain"])
def test_shipped_qu_configs_decode_in_graph(name):
    """Qu et al. sec. 2.2's dilation (``grow: dilate``), so an exported model returns instances, per-instance class
    and class map from the graph (serving.export; equality tested in tests/serving)."""
    import pathlib

    from zoo.postprocess.config import PostprocessConfig
    from zoo.training import ExperimentConfig

    cfg = ExperimentConfig.load(str(pathlib.Path(__file__).parents[3] / "configs" / "qu" / f"{name}.yaml"))
    pp = PostprocessConfig.from_dict(cfg.postprocess)
    assert pp.method == "inner_contour" and pp.in_graph
