"""``init_weights`` (fine-tuning): the model starts from another model's weights, variable for variable, and a
different architecture is a one-line error naming the first mismatch."""

from __future__ import annotations

import numpy as np
import pytest


def _saved(tmp_path, cfg):
    import keras

    from zoo import models

    m = models.build("unet", cfg)
    m(np.zeros((1, 32, 32, 3), "float32"))
    for w in m.weights:  # distinctive values, so a copy is recognisable
        w.assign(np.random.default_rng(len(w.path)).normal(size=w.shape).astype("float32"))
    path = str(tmp_path / "src.keras")
    m.save(path)
    keras.backend.clear_session()
    return m, path


def test_init_weights_copies_every_variable(tmp_path):
    from zoo import models
    from zoo.training.train import init_weights

    cfg = {"num_classes": 3, "base_filters": 4, "depth": 2}
    src, path = _saved(tmp_path, cfg)
    fresh = models.build("unet", cfg)
    init_weights(fresh, path)
    assert len(fresh.weights) == len(src.weights) > 0
    for a, b in zip(fresh.get_weights(), src.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_init_weights_refuses_another_architecture(tmp_path):
    from zoo import models
    from zoo.errors import ConfigError
    from zoo.training.train import init_weights

    _, path = _saved(tmp_path, {"num_classes": 3, "base_filters": 4, "depth": 2})
    wider = models.build("unet", {"num_classes": 3, "base_filters": 8, "depth": 2})
    with pytest.raises(ConfigError, match=r"init_weights: .*src\.keras.*has shape"):
        init_weights(wider, path)


def test_config_field_is_validated():
    from zoo.errors import ConfigError
    from zoo.training import ExperimentConfig

    assert ExperimentConfig(init_weights="pretrained:nuclei-unet-monuseg").init_weights.startswith("pretrained:")
    with pytest.raises(ConfigError, match="init_weights: expected a string"):
        ExperimentConfig(init_weights=3)
