"""The shared VGG16 encoder: keras.applications layout, and pretrained weights from a local file, never a download
in tests ("imagenet" is checked to reach keras.applications with a stand-in)."""

import keras
import numpy as np
import pytest

from zoo import models
from zoo.errors import DataError
from zoo.models.vgg import VGG16Encoder

SMALL_HEAD = {"fc_filters": 8}  # full-width encoder, tiny fc6/fc7


@pytest.fixture(scope="module")
def reference_vgg():
    keras.utils.set_random_seed(3)
    return keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))


def _same_as_reference(encoder, reference) -> bool:
    if not encoder.built:
        encoder.build((None, None, None, 3))
    assert sum(len(conv.get_weights()) for conv in encoder.conv_layers()) == 26  # 13 kernels + 13 biases
    return all(np.array_equal(a, b) for conv in encoder.conv_layers()
               for a, b in zip(conv.get_weights(), reference.get_layer(conv.name).get_weights()))


def test_encoder_has_the_keras_applications_layout(reference_vgg):
    enc = VGG16Encoder()
    enc.build((None, None, None, 3))
    assert enc.count_params() == reference_vgg.count_params() == 14_714_688
    assert [c.name for c in enc.conv_layers()] == [l.name for l in reference_vgg.layers if "conv" in l.name]
    feats = enc(np.zeros((1, 64, 64, 3), np.float32))
    assert tuple(feats["pool5"].shape) == (1, 2, 2, 512) and tuple(feats["block3"].shape) == (1, 16, 16, 256)


@pytest.mark.parametrize("kind", ["weights.h5", "legacy.h5"])
def test_encoder_weights_from_a_local_file(reference_vgg, tmp_path, kind):
    path = str(tmp_path / f"vgg16_notop.{kind}")
    if kind == "weights.h5":
        reference_vgg.save_weights(path)  # Keras 3 weights file
    else:
        reference_vgg.save(path)  # legacy HDF5, the layout of keras.applications' downloaded ..._notop.h5
    model = models.build("deconvnet", {**SMALL_HEAD, "encoder_weights": path})
    assert _same_as_reference(model.encoder, reference_vgg)
    assert not _same_as_reference(models.build("deconvnet", SMALL_HEAD).encoder, reference_vgg)


def test_from_config_does_not_reload_encoder_weights(tmp_path, reference_vgg):
    path = str(tmp_path / "vgg.weights.h5")
    reference_vgg.save_weights(path)
    model = models.build("fcn8s", {**SMALL_HEAD, "encoder_weights": path})
    (tmp_path / "vgg.weights.h5").unlink()
    clone = type(model).from_config(model.get_config())  # what .keras loading does: no file needed
    assert clone.config.encoder_weights == path
    with pytest.raises(DataError, match=r"vgg.weights.h5: VGG16 weights file not found"):
        models.build("fcn8s", model.config)


def test_a_file_that_is_not_vgg16_raises_data_error(tmp_path):
    other = models.build("pangnet")
    other.build((None, None, None, 3))
    path = str(tmp_path / "pangnet.weights.h5")
    other.save_weights(path)
    with pytest.raises(DataError, match=r"pangnet.weights.h5: not a VGG16 \(include_top=False\) weights file"):
        models.build("fcn8s", {**SMALL_HEAD, "encoder_weights": path})


def test_imagenet_goes_through_keras_applications(monkeypatch, reference_vgg):
    calls = []

    def fake_vgg16(**kwargs):
        calls.append(kwargs)
        return reference_vgg

    monkeypatch.setattr(keras.applications, "VGG16", fake_vgg16)
    model = models.build("fcn8s", {**SMALL_HEAD, "encoder_weights": "imagenet"})
    assert calls == [{"include_top": False, "weights": "imagenet", "input_shape": (None, None, 3)}]
    assert _same_as_reference(model.encoder, reference_vgg)
    assert model.config.normalization == "caffe"  # what the ImageNet VGG16 weights were trained with
