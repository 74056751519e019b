"""zoo.models registry and config dataclasses: names, validation messages, dict round trips."""

import dataclasses
import json

import pytest

from zoo import models
from zoo.errors import ConfigError
from zoo.models.base import ModelConfig, SegmentationModel
from zoo.models.colorization import ColorizationNet, ColorNormNet
from zoo.models.gan import InfoGAN
from zoo.models.simgan import SimGANRefiner


def test_paper_models_are_registered():
    assert {"pangnet", "fcn8s", "deconvnet", "ensemble", "unet"} <= set(models.available())
    assert models.available() == sorted(models.available())
    for name in models.available():
        cls = models.get(name)
        kinds = (SegmentationModel, InfoGAN, ColorizationNet, ColorNormNet, SimGANRefiner)
        assert issubclass(cls, kinds) and cls.registry_name == name
        assert cls.config_class.model_name == name


def test_unknown_model_names_the_choices():
    with pytest.raises(ConfigError, match=r"unknown model 'unett' \(available: colorization, colornormnet, "
                                          r"deconvnet, ensemble, fcn8s"):
        models.build("unett")


@pytest.mark.parametrize("name", models.available())
def test_default_config_round_trips_through_json(name):
    cls = models.get(name).config_class
    cfg = cls()
    plain = json.loads(json.dumps(cfg.to_dict()))
    assert cls.from_dict(plain) == cfg
    assert cls.from_dict(None) == cfg and cls.from_dict(cfg) is cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.num_classes = 5


def test_unknown_option_is_named():
    with pytest.raises(ConfigError, match=r"model 'unet': unknown option\(s\) 'base_filter' \(known: base_filters"):
        models.build("unet", {"base_filter": 8})


@pytest.mark.parametrize("name, option, value, message", [
    ("unet", "num_classes", 1, "must be an integer >= 2, got 1"),
    ("unet", "num_classes", 2.5, "must be an integer >= 2, got 2.5"),
    ("unet", "num_classes", True, "must be an integer >= 2, got True"),
    ("unet", "depth", 9, "must be at most 8"),
    ("unet", "batch_norm", "yes", "must be true or false"),
    ("unet", "dropout", 1.0, r"must be a number in \[0.0, 1.0\), got 1.0"),
    ("pangnet", "filters", 0, "must be an integer >= 1, got 0"),
    ("pangnet", "normalization", "zscore", "must be one of 'caffe', 'imagenet', 'none', got 'zscore'"),
    ("fcn8s", "width_multiplier", 0, r"must be a number in \(0.0, 1.0\], got 0"),
    ("deconvnet", "bn_momentum", 1.0, r"must be a number in \[0.0, 1.0\), got 1.0"),
    ("fcn8s", "width_multiplier", 2.0, r"must be a number in \(0.0, 1.0\], got 2.0"),
    ("deconvnet", "encoder_weights", "weights.npz", "must be 'imagenet', null or a .h5 / .weights.h5 / .keras"),
    ("deconvnet", "encoder_weights", 3, "must be 'imagenet', null or a weights file path, got 3"),
])
def test_invalid_values_raise_config_error_naming_the_option(name, option, value, message):
    with pytest.raises(ConfigError, match=rf"model '{name}': option '{option}' {message}"):
        models.build(name, {option: value})


def test_pretrained_encoder_needs_full_width():
    with pytest.raises(ConfigError, match="option 'encoder_weights' needs the encoder at full width"):
        models.get("fcn8s").config_class(width_multiplier=0.5, encoder_weights="imagenet")


def test_config_type_errors():
    with pytest.raises(ConfigError, match="model 'unet': got a PangNetConfig, expected UNetConfig"):
        models.build("unet", models.PangNetConfig())
    with pytest.raises(ConfigError, match="config must be a mapping of options, got list"):
        models.build("unet", [("depth", 3)])


def test_replace_validates_again():
    cfg = models.UNetConfig()
    assert cfg.replace(depth=3).depth == 3 and cfg.depth == 4
    with pytest.raises(ConfigError, match="option 'depth'"):
        cfg.replace(depth=0)


def test_model_exposes_its_config():
    model = models.build("unet", models.UNetConfig(base_filters=4, depth=2))
    assert model.config == models.UNetConfig(base_filters=4, depth=2)
    cfg = model.get_config()
    assert {k: cfg[k] for k in model.config.to_dict()} == model.config.to_dict()
    assert cfg["name"] == model.name and model.min_divisor == 4 and model.num_classes == 3


def test_register_rejects_a_second_class_under_a_taken_name_and_bad_names():
    @dataclasses.dataclass(frozen=True)
    class OtherConfig(ModelConfig):
        num_classes: int = 2

    class Other(SegmentationModel):
        config_class = OtherConfig

    with pytest.raises(ValueError, match="model name 'unet' is already registered by zoo.models.unet.UNet"):
        models.register("unet")(Other)
    with pytest.raises(ValueError, match="model name must match"):
        models.register("U-Net")
    assert models.get("unet") is models.UNet
