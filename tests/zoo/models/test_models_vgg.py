"""The shared VGG16 encoder: keras.applications layout, and pretrained weights from a local file, never a download
in tests ("imagenet" is checked to ask keras.utils.get_file for keras.applications' file, with a stand-in).
VGG16's fc1 / fc2 become FCN-8s' and DeconvNet's fc6 / fc7 (Long et al. 2015, section 3.1): checked on files in
keras.applications' layout with a narrow classifier (16 maps: fc1 is 25088 x 16, the same reshape as 25088 x 4096),
and once (marker slow) on keras.applications.VGG16(include_top=True) itself."""

import keras
import numpy as np
import pytest

from zoo import models
from zoo.errors import DataError
from zoo.models.vgg import VGG16Encoder, load_vgg16_weights

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
    with pytest.raises(DataError, match=r"pangnet.weights.h5: not a VGG16 weights file: no layer 'block1_conv1'"):
        models.build("fcn8s", {**SMALL_HEAD, "encoder_weights": path})


def test_imagenet_asks_keras_for_its_vgg16_file(monkeypatch, reference_vgg, tmp_path):
    """"imagenet" is keras.applications' own file through keras.utils.get_file (md5 checked); with a narrow fc head
    the notop file, which has no fc layers."""
    path = str(tmp_path / "notop.weights.h5")
    reference_vgg.save_weights(path)
    calls = []

    def fake_get_file(fname, origin, **kwargs):
        calls.append((fname, origin, kwargs))
        return path

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    model = models.build("fcn8s", {**SMALL_HEAD, "encoder_weights": "imagenet"})
    assert calls == [("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                      "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                      "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                      {"cache_subdir": "models", "file_hash": "6d6bbae143d832006294945121d1f1fc"})]
    assert _same_as_reference(model.encoder, reference_vgg)
    assert model.config.normalization == "caffe"  # what the ImageNet VGG16 weights were trained with


def test_imagenet_with_vgg16_sized_fc6_fc7_asks_for_the_file_with_fc_layers(monkeypatch):
    class Stop(Exception):
        pass

    def fake_get_file(fname, origin, **kwargs):
        raise Stop(fname, kwargs["file_hash"])

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    fc6, fc7 = keras.layers.Conv2D(4096, 7, name="fc6"), keras.layers.Conv2D(4096, 1, name="fc7")
    with pytest.raises(Stop) as stop:
        load_vgg16_weights(VGG16Encoder(), "imagenet", fc=(fc6, fc7))
    assert stop.value.args == ("vgg16_weights_tf_dim_ordering_tf_kernels.h5", "64373286793e3c8b2b4e3219cbf3544b")


# ------------------------------------------------------------------- fc1 / fc2 -> fc6 / fc7 (Long et al. 3.1)
FC = 16  # classifier width of the test files (VGG16's is 4096)


def _vgg16_with_classifier(fc: int, seed: int) -> keras.Model:
    """keras.applications.VGG16(include_top=True)'s layers, names and order (224x224 input, flatten, fc1, fc2,
    predictions) with ``fc`` maps in fc1 / fc2; every weight, biases included, random."""
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(224, 224, 3))
    x = keras.layers.Flatten(name="flatten")(base.output)
    x = keras.layers.Dense(fc, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(fc, activation="relu", name="fc2")(x)
    model = keras.Model(base.input, keras.layers.Dense(1000, activation="softmax", name="predictions")(x),
                        name="vgg16")
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.05, w.shape).astype("float32") for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def vgg_with_fc(tmp_path_factory):
    """The model, its fc1 / fc2 / block5_conv3 arrays, and the same weights saved in the three layouts."""
    model = _vgg16_with_classifier(FC, seed=5)
    folder = tmp_path_factory.mktemp("vgg_fc")
    files = {"weights.h5": str(folder / "vgg16.weights.h5"), "legacy.h5": str(folder / "vgg16.h5"),
             "keras": str(folder / "vgg16.keras")}
    model.save_weights(files["weights.h5"])
    model.save(files["legacy.h5"])  # the layout of keras.applications' downloaded ..._kernels.h5
    model.save(files["keras"])
    arrays = {name: model.get_layer(name).get_weights() for name in ("fc1", "fc2", "block5_conv3")}
    return arrays, files


@pytest.mark.parametrize("kind", ["weights.h5", "legacy.h5", "keras"])
@pytest.mark.parametrize("name", ["fcn8s", "deconvnet"])
def test_fc1_fc2_become_fc6_fc7(vgg_with_fc, kind, name):
    arrays, files = vgg_with_fc
    model = models.build(name, {"fc_filters": FC, "encoder_weights": files[kind]})
    (k1, b1), (k2, b2) = arrays["fc1"], arrays["fc2"]
    assert k1.shape == (25088, FC) and tuple(model.fc6.kernel.shape) == (7, 7, 512, FC)
    fc6, fc7 = np.asarray(model.fc6.kernel), np.asarray(model.fc7.kernel)
    # fc1 reads pool5 flattened in (row, column, channel) order: input r * 7 * 512 + c * 512 + ch
    for r, c, ch, j in [(0, 0, 0, 0), (3, 5, 17, 4), (6, 6, 511, FC - 1), (2, 0, 300, 9)]:
        assert fc6[r, c, ch, j] == k1[(r * 7 + c) * 512 + ch, j]
    np.testing.assert_array_equal(fc6, k1.reshape(7, 7, 512, FC))
    np.testing.assert_array_equal(fc7, k2.reshape(1, 1, FC, FC))
    if name == "fcn8s":  # DeconvNet's fc6 / fc7 have no bias (batch normalisation follows)
        np.testing.assert_array_equal(np.asarray(model.fc6.bias), b1)
        np.testing.assert_array_equal(np.asarray(model.fc7.bias), b2)
    for a, b in zip(model.encoder.blocks[4][2].get_weights(), arrays["block5_conv3"]):
        np.testing.assert_array_equal(a, b)


def test_fc6_on_a_7x7_pool5_map_computes_vgg16_fc1(vgg_with_fc):
    """The point of the conversion: on a 7x7x512 map, fc6's centre output (its 7x7 'same' window covers the whole
    map) is VGG16's fc1 of the flattened map, relu(flatten(x) @ W + b)."""
    arrays, files = vgg_with_fc
    model = models.build("fcn8s", {"fc_filters": FC, "encoder_weights": files["weights.h5"]})
    x = np.random.default_rng(0).normal(size=(1, 7, 7, 512)).astype("float32")
    (k1, b1) = arrays["fc1"]
    want = np.maximum(x.reshape(1, -1).astype(np.float64) @ k1 + b1, 0.0)[0]
    np.testing.assert_allclose(np.asarray(model.fc6(x))[0, 3, 3], want, rtol=1e-4, atol=1e-4)


def test_a_classifier_that_does_not_fit_fc6_raises_one_line(vgg_with_fc):
    _, files = vgg_with_fc
    with pytest.raises(DataError, match=r"vgg16.weights.h5: VGG16 fc1 kernel \(25088, 16\) does not fit fc6's "
                                        r"\(7, 7, 512, 8\) \(set fc_filters to 16 or use a notop file\)$"):
        models.build("fcn8s", {"fc_filters": 8, "encoder_weights": files["weights.h5"]})


def test_a_notop_file_leaves_fc6_fc7_as_initialised(reference_vgg, tmp_path):
    path = str(tmp_path / "notop.weights.h5")
    reference_vgg.save_weights(path)
    encoder, fc6, fc7 = VGG16Encoder(), keras.layers.Conv2D(8, 7, name="fc6"), keras.layers.Conv2D(8, 1, name="fc7")
    fc6.build((None, None, None, 512))
    fc7.build((None, None, None, 8))
    before = [np.asarray(v).copy() for v in fc6.weights + fc7.weights]
    assert load_vgg16_weights(encoder, path, fc=(fc6, fc7)) is False
    for a, b in zip(before, fc6.weights + fc7.weights):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert _same_as_reference(encoder, reference_vgg)


def test_fcn8s_score_pool3_and_pool4_start_at_zero():
    """Long et al. 2015 section 4.2: the added pool4 / pool3 score layers are zero-initialised, so FCN-8s starts
    from FCN-32s' prediction."""
    model = models.build("fcn8s", {"width_multiplier": 1 / 16, "fc_filters": 64})
    model.build((None, None, None, 3))
    for layer in (model.score_pool3, model.score_pool4):
        kernel, bias = layer.get_weights()
        assert kernel.shape[-1] == 2 and not kernel.any() and not bias.any()
    assert np.asarray(model.score_fr.kernel).any()  # the other score layer keeps its random start


@pytest.mark.slow
def test_keras_applications_vgg16_with_top_fills_fc6_fc7_at_full_width(tmp_path):
    """keras.applications.VGG16(include_top=True) itself (138 M weights, ~30 s and ~4 GB on 2 cores: marker slow)
    saved and loaded into FCN-8s at VGG16's widths: fc6 = fc1 reshaped to 7x7x512x4096, fc7 = fc2."""
    keras.utils.set_random_seed(2)
    top = keras.applications.VGG16(include_top=True, weights=None)
    path = str(tmp_path / "vgg16_top.weights.h5")
    top.save_weights(path)
    (k1, b1), (k2, _) = top.get_layer("fc1").get_weights(), top.get_layer("fc2").get_weights()
    del top
    model = models.build("fcn8s", {"encoder_weights": path})
    np.testing.assert_array_equal(np.asarray(model.fc6.kernel), k1.reshape(7, 7, 512, 4096))
    np.testing.assert_array_equal(np.asarray(model.fc6.bias), b1)
    np.testing.assert_array_equal(np.asarray(model.fc7.kernel), k2.reshape(1, 1, 4096, 4096))
