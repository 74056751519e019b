"""Yuan & Suh's U-Net (section 3.2): layout, 144 -> 9x9x512, hand-counted parameters."""

import numpy as np

from zoo import models


def test_tiny_unet_parameter_count_by_hand():
    model = models.build("unet", {"base_filters": 4, "depth": 2, "num_classes": 3})
    model.build((None, None, None, 3))
    conv = lambda k, cin, cout: k * k * cin * cout + cout  # noqa: E731  (weights + biases)
    expected = (
        conv(3, 3, 4) + conv(3, 4, 4)            # down0: 112 + 148
        + conv(3, 4, 8) + conv(3, 8, 8)          # down1: 296 + 584
        + conv(3, 8, 16) + conv(3, 16, 16)       # bottleneck: 1168 + 2320
        + conv(2, 16, 8) + conv(3, 8 + 8, 8) + conv(3, 8, 8)   # up1: 2x2 up-conv 520, concat 16 -> 1160, 584
        + conv(2, 8, 4) + conv(3, 4 + 4, 4) + conv(3, 4, 4)    # up0: 132, 292, 148
        + conv(1, 4, 3)                          # 1x1 score: 15
    )
    assert expected == 7479
    assert model.count_params() == 7479


def test_default_unet_parameter_count_by_hand():
    """32, 64, 128, 256 maps, 512 at the bottleneck, 3 classes."""
    model = models.build("unet")
    model.build((None, None, None, 3))
    conv = lambda k, cin, cout: k * k * cin * cout + cout  # noqa: E731
    down = sum(conv(3, cin, c) + conv(3, c, c) for cin, c in [(3, 32), (32, 64), (64, 128), (128, 256)])
    bottleneck = conv(3, 256, 512) + conv(3, 512, 512)
    up = sum(conv(2, cin, c) + conv(3, 2 * c, c) + conv(3, c, c) for cin, c in [(512, 256), (256, 128), (128, 64),
                                                                             (64, 32)])
    assert (down, bottleneck, up) == (1_172_256, 3_539_968, 3_047_840)
    assert model.count_params() == down + bottleneck + up + conv(1, 32, 3) == 7_760_163


def test_144_pixels_reach_9x9x512_and_come_back():
    model = models.build("unet")
    assert model.config.num_classes == 3 and model.min_divisor == 16
    x = np.random.default_rng(0).random((1, 144, 144, 3), dtype=np.float32)
    skips, bottom = model.encode(x)
    assert [tuple(s.shape) for s in skips] == [(1, 144, 144, 32), (1, 72, 72, 64), (1, 36, 36, 128),
                                               (1, 18, 18, 256)]
    assert tuple(bottom.shape) == (1, 9, 9, 512)
    assert tuple(model(x).shape) == (1, 144, 144, 3)


def test_batch_norm_option_drops_conv_biases():
    plain = models.build("unet", {"base_filters": 4, "depth": 1, "num_classes": 2})
    bn = models.build("unet", {"base_filters": 4, "depth": 1, "num_classes": 2, "batch_norm": True})
    plain.build((None, None, None, 3))
    bn.build((None, None, None, 3))
    # 6 convs in ConvBlocks (4, 4 | 8, 8 | 4, 4 maps): biases 32 go, BN adds 4 values per map = 128
    assert bn.count_params() == plain.count_params() - 32 + 4 * 32
