"""Naylor et al. section 5 networks: PangNet layout and weights, FCN's bilinear upsampling, DeconvNet's unpooling,
the ensemble's averaged posteriors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import models
from zoo.errors import ConfigError
from zoo.models.vgg import BilinearUpsampling, max_pool_with_switches, max_unpool

TINY_VGG = {"width_multiplier": 1 / 16, "fc_filters": 256}


def test_pangnet_is_four_convolutions_of_8_maps_with_hand_counted_weights():
    model = models.build("pangnet")
    model.build((None, None, None, 3))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.kernel_size, c.filters) for c in convs] == [((3, 3), 8)] * 3 + [((1, 1), 2)]
    # 3x3x3x8+8 = 224, 3x3x8x8+8 = 584 (twice), 1x1x8x2+2 = 18
    assert model.count_params() == 224 + 584 + 584 + 18 == 1410
    three = models.build("pangnet", {"num_classes": 3})
    three.build((None, None, None, 3))
    assert three.count_params() == 224 + 584 + 584 + (8 * 3 + 3) == 1419


def test_bilinear_kernel_matches_fcn_upsampling_weights():
    np.testing.assert_allclose(BilinearUpsampling.profile(4), [0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(BilinearUpsampling.profile(3), [0.5, 1.0, 0.5])
    np.testing.assert_allclose(BilinearUpsampling.profile(16)[:3], [1 / 16, 3 / 16, 5 / 16])
    kernel = np.asarray(BilinearUpsampling()((4, 4, 2, 2)))
    np.testing.assert_allclose(kernel[:, :, 0, 0], np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25]))
    assert np.all(kernel[:, :, 0, 1] == 0) and np.all(kernel[:, :, 1, 0] == 0)
    # interpolating a constant map gives the constant (away from the border)
    up = keras.layers.Conv2DTranspose(1, 4, strides=2, padding="same", use_bias=False,
                                      kernel_initializer=BilinearUpsampling())
    out = np.asarray(up(np.full((1, 6, 6, 1), 3.0, np.float32)))[0, :, :, 0]
    np.testing.assert_allclose(out[2:-2, 2:-2], 3.0, rtol=1e-6)


def test_fcn8s_upsampling_layers_start_bilinear():
    model = models.build("fcn8s", TINY_VGG)
    model.build((None, None, None, 3))
    k = np.asarray(model.upscore8.kernel)
    assert k.shape == (16, 16, 2, 2)
    np.testing.assert_allclose(k[:, :, 1, 1], np.outer(BilinearUpsampling.profile(16), BilinearUpsampling.profile(16)))


def test_unpooling_puts_each_max_back_where_it_was():
    x = np.array([[1, 5, 0, 2],
                  [3, 2, 7, 1],
                  [0, 0, 1, 1],
                  [4, 0, 2, 9]], np.float32).reshape(1, 4, 4, 1)
    x = np.concatenate([x, -x + 10], axis=-1)  # second channel: maxima elsewhere
    pooled, switches = max_pool_with_switches(x)
    assert tuple(switches.shape) == (1, 2, 2, 2, 4)
    np.testing.assert_array_equal(np.asarray(pooled)[0, :, :, 0], [[5, 7], [4, 9]])
    np.testing.assert_array_equal(np.asarray(pooled)[0, :, :, 1], [[9, 10], [10, 9]])
    up = np.asarray(max_unpool(pooled, switches))[0]
    expected0 = np.array([[0, 5, 0, 0], [0, 0, 7, 0], [0, 0, 0, 0], [4, 0, 0, 9]], np.float32)
    np.testing.assert_array_equal(up[:, :, 0], expected0)
    # channel 1 = 10 - x = [[9,5,10,8],[7,8,3,9],[10,10,9,9],[6,10,8,1]]: window maxima 9 at (0,0), 10 at (0,2),
    # 10 at (2,0) and 9 at (2,2) (ties: the first in row-major order wins, as tf.nn.max_pool_with_argmax)
    expected1 = np.zeros((4, 4), np.float32)
    expected1[0, 0], expected1[0, 2], expected1[2, 0], expected1[2, 2] = 9, 10, 10, 9
    np.testing.assert_array_equal(up[:, :, 1], expected1)


def test_switch_unpooling_equals_tf_argmax_pooling_and_scatter():
    x = tf.random.stateless_uniform((2, 6, 8, 3), seed=(4, 2))  # continuous values: no ties
    pooled, switches = max_pool_with_switches(x)
    ref_pooled, argmax = tf.nn.max_pool_with_argmax(x, 2, 2, "VALID", include_batch_in_index=True)
    ref_up = tf.reshape(tf.scatter_nd(tf.reshape(argmax, [-1, 1]), tf.reshape(ref_pooled, [-1]), [2 * 6 * 8 * 3]),
                        x.shape)
    np.testing.assert_array_equal(np.asarray(pooled), np.asarray(ref_pooled))
    np.testing.assert_array_equal(np.asarray(max_unpool(pooled, switches)), np.asarray(ref_up))


def test_unpooling_gradient_in_an_xla_compiled_graph():
    """DeconvNet must train where Keras turns XLA on (GPUs): tf2xla has no MaxPoolWithArgmax kernel."""
    x = tf.random.stateless_uniform((2, 4, 6, 3), seed=(1, 2))

    @tf.function(jit_compile=True)
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            pooled, switches = max_pool_with_switches(x)
            y = max_unpool(pooled * 2.0, switches)
            loss = tf.reduce_sum(y)
        return y, tape.gradient(loss, x)

    y, g = grad(x)
    pooled, _ = max_pool_with_switches(x)
    # each sample's unpooled map holds twice its own maxima; the gradient is 2 exactly at the maxima
    np.testing.assert_allclose(tf.reduce_sum(y, axis=[1, 2]), 2 * tf.reduce_sum(pooled, axis=[1, 2]), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(g) != 0, np.asarray(y) != 0)
    assert np.count_nonzero(np.asarray(g)) == 2 * 2 * 3 * 3 and np.all(np.asarray(g)[np.asarray(g) != 0] == 2)


def test_deconvnet_decoder_mirrors_the_encoder():
    model = models.build("deconvnet", TINY_VGG)
    model.build((None, None, None, 3))
    maps = [[pair[0].filters for pair in block] for block in model.decoder]
    # (512,512,512 | 512,512,256 | 256,256,128 | 128,64 | 64,64) / 16
    assert maps == [[32, 32, 32], [32, 32, 16], [16, 16, 8], [8, 4], [4, 4]]
    assert model.encoder.block_filters == [4, 8, 16, 32, 32]


def test_ensemble_defaults_to_fcn8s_and_deconvnet():
    cfg = models.EnsembleConfig()
    assert [m.name for m in cfg.members] == ["fcn8s", "deconvnet"] and cfg.num_classes == 2


def test_ensemble_averages_member_posteriors():
    ens = models.build("ensemble", {"members": [{"name": "pangnet"},
                                                {"name": "unet", "config": {"base_filters": 4, "depth": 2,
                                                                            "num_classes": 2}}]})
    assert ens.min_divisor == 4 and ens.num_classes == 2
    x = np.random.default_rng(0).random((2, 12, 20, 3), dtype=np.float32)
    expected = (np.asarray(ens.members[0](x)) + np.asarray(ens.members[1](x))) / 2
    np.testing.assert_allclose(np.asarray(ens(x)), expected, atol=1e-6)


def test_ensemble_from_trained_members_copies_their_weights():
    keras.utils.set_random_seed(1)
    a = models.build("pangnet")
    b = models.build("unet", {"base_filters": 4, "depth": 2, "num_classes": 2})
    x = np.random.default_rng(0).random((1, 16, 16, 3), dtype=np.float32)
    expected = (np.asarray(a(x)) + np.asarray(b(x))) / 2
    ens = models.Ensemble.from_members([a, b])
    np.testing.assert_allclose(np.asarray(ens(x)), expected, atol=1e-6)
    assert [m["name"] for m in ens.get_config()["members"]] == ["pangnet", "unet"]


@pytest.mark.parametrize("members, message", [
    ([], "option 'members' must be a non-empty list"),
    ([{"name": "pangnet"}, {"name": "unet"}], r"must all predict the same num_classes, got \[2, 3\]"),
    ([{"name": "segnet"}], "unknown model 'segnet'"),
    ([{"model": "pangnet"}], "each member must be a mapping with 'name' and optional 'config'"),
    ("pangnet", "option 'members' must be a list of"),
])
def test_ensemble_config_errors(members, message):
    with pytest.raises(ConfigError, match=message):
        models.build("ensemble", {"members": members})


@pytest.mark.slow
def test_full_size_fcn8s_and_deconvnet():
    """The published widths (VGG16 + 4096-map fc6/fc7), weights counted by hand; a 64x64 forward pass."""
    conv = lambda k, cin, cout, bias=True: k * k * cin * cout + (cout if bias else 0)  # noqa: E731
    vgg = sum(conv(3, cin, c) for cin, c in [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256),
                                             (256, 256), (256, 512), (512, 512), (512, 512), (512, 512),
                                             (512, 512), (512, 512)])
    assert vgg == 14_714_688
    fcn_head = (conv(7, 512, 4096) + conv(1, 4096, 4096) + conv(1, 4096, 2)  # fc6, fc7, score_fr
                + conv(1, 512, 2) + conv(1, 256, 2)                           # score_pool4, score_pool3
                + conv(4, 2, 2, False) * 2 + conv(16, 2, 2, False))          # upscore2, upscore_pool4, upscore8
    bn = lambda c: 4 * c  # noqa: E731  (gamma, beta, moving mean, moving variance)
    deconv_blocks = [(512, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 256), (256, 256),
                     (256, 256), (256, 128), (128, 128), (128, 64), (64, 64), (64, 64)]
    deconv_head = (conv(7, 512, 4096, False) + bn(4096) + conv(1, 4096, 4096, False) + bn(4096)
                   + conv(7, 4096, 512, False) + bn(512)
                   + sum(conv(3, cin, c, False) + bn(c) for cin, c in deconv_blocks) + conv(1, 64, 2))
    x = np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32)
    for name, head in [("fcn8s", fcn_head), ("deconvnet", deconv_head)]:
        model = models.build(name)
        assert tuple(model(x).shape) == (1, 64, 64, 2)
        assert model.count_params() == vgg + head
    assert vgg + fcn_head == 134_271_430
