"""zoo.models.base: input normalisation, padding to the stride, explicit build."""

import numpy as np
import pytest

from zoo import models
from zoo.errors import ConfigError
from zoo.models.base import crop_to, normalize_input, pad_to_multiple


def test_caffe_normalization_is_bgr_0_255_minus_the_imagenet_mean():
    rgb = np.array([[[[1.0, 0.5, 0.0]]]], np.float32)
    out = np.asarray(normalize_input(rgb, "caffe"))[0, 0, 0]
    # BGR = (0, 127.5, 255); keras.applications "caffe" means (B, G, R) = (103.939, 116.779, 123.68)
    np.testing.assert_allclose(out, [0 - 103.939, 127.5 - 116.779, 255 - 123.68], rtol=1e-6)


def test_imagenet_normalization_is_mean_std_on_unit_scale():
    rgb = np.array([[[[1.0, 0.5, 0.0]]]], np.float32)
    out = np.asarray(normalize_input(rgb, "imagenet"))[0, 0, 0]
    np.testing.assert_allclose(out, [(1 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0 - 0.406) / 0.225], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(normalize_input(rgb, "none")), rgb)
    with pytest.raises(ConfigError, match="normalization must be one of"):
        normalize_input(rgb, "zscore")


def test_padding_reflects_at_bottom_right_and_crop_undoes_it():
    x = np.arange(3 * 5, dtype=np.float32).reshape(1, 3, 5, 1)
    padded, h, w = pad_to_multiple(x, 4)
    p = np.asarray(padded)[0, :, :, 0]
    assert p.shape == (4, 8)
    np.testing.assert_array_equal(p[:3, :5], x[0, :, :, 0])
    np.testing.assert_array_equal(p[3, :5], x[0, 2, :, 0])  # symmetric: row 3 repeats row 2
    np.testing.assert_array_equal(p[:3, 5:8], x[0, :, [4, 3, 2], 0].T)  # columns 5, 6, 7 mirror 4, 3, 2
    np.testing.assert_array_equal(np.asarray(crop_to(padded, h, w)), x)
    same, _, _ = pad_to_multiple(x, 1)
    assert np.asarray(same).shape == x.shape


def test_padding_changes_nothing_inside_for_a_pixelwise_network():
    """PangNet has no stride; a U-Net pads 37x45 to 48x48: the crop must be the top-left 37x45 corner of the
    prediction on the explicitly padded image."""
    rng = np.random.default_rng(0)
    x = rng.random((1, 37, 45, 3), dtype=np.float32)
    unet = models.build("unet", {"base_filters": 4, "depth": 2})
    padded = np.pad(x, ((0, 0), (0, 3), (0, 3), (0, 0)), mode="symmetric")  # 40x48, multiples of 4
    np.testing.assert_allclose(np.asarray(unet(x))[0], np.asarray(unet(padded))[0, :37, :45], atol=1e-6)


def test_explicit_build_creates_all_weights():
    """U-Net, base_filters 4, depth 2, 3 classes: widths 4, 8, 16. Parameters by hand (3x3 conv: 9 * in * out + out):
    down0 3->4, 4->4: 112 + 148 = 260; down1 4->8, 8->8: 296 + 584 = 880; bottleneck 8->16, 16->16: 1168 + 2320 =
    3488; up1: 2x2 transposed 16->8 (4 * 16 * 8 + 8 = 520), concat 8 + 8 -> 8 (1160), 8->8 (584): 2264; up0: 8->4
    (132), concat 4 + 4 -> 4 (292), 4->4 (148): 572; 1x1 score 4->3: 15. Total 7479 in 13 kernels + 13 biases."""
    model = models.build("unet", {"base_filters": 4, "depth": 2})
    model.build((None, None, None, 3))
    assert model.built and model.count_params() == 7479 and len(model.trainable_variables) == 26
    # with batch norm the 10 block convolutions lose their biases (2 * (4 + 8 + 16 + 8 + 4) = 80 channels: -80)
    # and each of those 80 channels gains gamma, beta (trainable) and a moving mean and variance: 7479 - 80 + 320
    bn = models.build("unet", {"base_filters": 4, "depth": 2, "batch_norm": True})
    bn.build((None, None, None, 3))
    assert bn.count_params() == 7719 and len(bn.non_trainable_variables) == 20
