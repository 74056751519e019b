"""HoVer-Net (Graham et al., "HoVer-Net: simultaneous segmentation and classification of nuclei in multi-tissue
histology images", Medical Image Analysis 58, 2019, section 3.2 and Fig. 2).

The paper: a pre-activation ResNet50 encoder whose total stride is 8 instead of 32 (the 7x7 stem convolution has
stride 1 and there is no max-pool), then three decoder branches of the same shape, each upsampling the encoder's
bottleneck three times by nearest-neighbour 2x and adding the encoder map of that resolution, with "dense decoding
units" (DenseNet-style: 1x1 conv -> grouped k x k 'valid' conv, concatenated to the cropped input) in between:

- NP (nuclear pixel): 2-way softmax, background / nucleus;
- HV (horizontal / vertical): 2 linear maps, each nucleus pixel's horizontal and vertical distance to its nucleus'
  centre of mass, scaled to [-1, 1] per nucleus (targets: zoo.data.targets.hv_maps);
- TP (nuclear type, optional; the paper's NC branch): (K + 1)-way softmax, background and the K types.

Both modes of the public reference implementation (github.com/vqdang/hover_net, models/hovernet/net_desc.py):
``original`` = 7x7 'valid' stem, 5x5 decoder convolutions, a 270 x 270 input gives the 80 x 80 valid output;
``fast`` = 'same' stem, 3x3 decoder convolutions, 256 x 256 -> 164 x 164. In general an input of side N gives
N - 92 (fast, N a multiple of 8) or N - 190 (original, N - 6 a multiple of 8).

Choices of this port, documented here:

- the encoder is built here from Keras layers (``preact_resnet50``), the reference's layout: the first unit of each
  residual block has no pre-activation, each block ends with batch norm + ReLU, the stride (2 in blocks 2-4) sits in
  the 3x3 convolution of the block's first unit. keras-hub's ``ResNetBackbone(block_type="bottleneck_block",
  use_pre_activation=True)`` is the same ResNet50-v2 family, but its stem is fixed at stride 2 + max-pool (total
  stride 32), which the paper removes; its weights do not map one-to-one onto this layout (extra ``post_bn``, BN
  per unit instead of per block), so ``encoder_weights`` is a LOCAL file of THIS encoder: a ``.weights.h5`` saved
  with ``model.encoder.save_weights`` (e.g. converted from the reference's ImageNet-ResNet50-Preact .npz, which has
  exactly this layout), or a ``.keras`` file of a ``hovernet`` model whose encoder is copied.
- same-size contract of zoo.models.base: the model pads its input by symmetric reflection (white where the image
  is smaller than the margin) by the network's margin - 46 px (fast) or 95 px (original) on each side, plus to the
  network's size grid - runs the 'valid' network and crops the output to the input's size. A training patch of P
  pixels is therefore scored on all P x P pixels, the context beyond the patch being mirrored; the reference
  instead feeds 256 (270) px and scores the central 164 (80). A tile at inference gets the same margin.
- the output is ONE float32 tensor [B, H, W, C]: NP softmax (channels 0, 1), HV (2, 3: x then y), and, with
  ``num_types`` K >= 1, the TP softmax (4 .. 4 + K): C = 4 or 5 + K. The inference spec names them ``background,
  nucleus, hv:x, hv:y[, tp:background, type:<name> ...]`` (zoo.inference.channel_names, target "hovernet").
- input normalisation "none" by default (the reference divides by 255 only, as the [0, 1] input already is).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import keras
import tensorflow as tf

from zoo.models import base
from zoo.models.base import NORMALIZATIONS, ModelConfig, SegmentationModel, normalize_input, scaled
from zoo.models.registry import register

MODES = ("original", "fast")
RESNET50_BLOCKS = (3, 4, 6, 3)
ENCODER_FILTERS = (64, 128, 256, 512)  # bottleneck inner maps per block; each block outputs 4x as many
# per mode: (stem padding, stem margin per side, decoder kernel)
_MODE = {"original": ("valid", 3, 5), "fast": ("same", 0, 3)}


@dataclasses.dataclass(frozen=True)
class HoVerNetConfig(ModelConfig):
    """HoVer-Net (module docstring).

    num_types: K nucleus types of the TP branch; 0 = no TP branch (NP + HV only, the paper's untyped Kumar model).
    mode: "original" (270 -> 80) or "fast" (256 -> 164), the reference implementation's two networks.
    encoder_blocks: pre-activation bottleneck units per residual block ([3, 4, 6, 3] = ResNet50).
    encoder_width: multiplier of every encoder width (1.0 = ResNet50; tests use tiny widths).
    decoder_width: multiplier of every decoder width (1.0 = the paper's 256/128/32/64 maps).
    dense_units: dense decoding units of the two upper decoder stages (paper: 8 and 4).
    dense_groups: groups of the k x k convolution of a dense unit (reference: 4).
    encoder_weights: null (random init) or a local weights file of this encoder (module docstring).
    normalization: input normalisation (zoo.models.base; "none" = [0, 1] as the reference).
    """

    num_types: int = 0
    mode: str = "fast"
    encoder_blocks: tuple = RESNET50_BLOCKS
    encoder_width: float = 1.0
    decoder_width: float = 1.0
    dense_units: tuple = (8, 4)
    dense_groups: int = 4
    encoder_weights: Optional[str] = None
    normalization: str = "none"

    @property
    def num_classes(self) -> int:
        """Output channels: NP (2) + HV (2) [+ TP (K + 1)]."""
        return 4 + (self.num_types + 1 if self.num_types else 0)

    def validate(self):
        self._check_int("num_types", 0)
        self._check_choice("mode", MODES)
        blocks = self.encoder_blocks
        if not isinstance(blocks, tuple) or len(blocks) != 4 or not all(
                isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in blocks):
            self._fail("encoder_blocks", f"must be 4 integers >= 1 (ResNet50: [3, 4, 6, 3]), got {blocks!r}")
        self._check_float("encoder_width", 0.0, 4.0, low_open=True)
        self._check_float("decoder_width", 0.0, 4.0, low_open=True)
        units = self.dense_units
        if not isinstance(units, tuple) or len(units) != 2 or not all(
                isinstance(u, int) and not isinstance(u, bool) and u >= 1 for u in units):
            self._fail("dense_units", f"must be 2 integers >= 1 (paper: [8, 4]), got {units!r}")
        self._check_int("dense_groups", 1)
        self._check_encoder_weights()
        if self.encoder_weights == "imagenet":
            self._fail("encoder_weights", "'imagenet': no hub preset has HoVer-Net's stride-1 pre-activation "
                                          "ResNet50; give a local weights file of this encoder (.weights.h5 / .keras)")
        self._check_choice("normalization", NORMALIZATIONS)

    def crops(self) -> tuple:
        """(crop of d0, crop of d1): what the 'valid' decoder consumes, so the upsampled maps meet the skips. With
        kernel k and (a, b) dense units: d1 loses 2 (1 + a)(k - 1), d0 (k - 1)(4 (1 + a) + 2 (1 + b)) - the
        reference's 36 / 92 (fast) and 72 / 184 (original) for its 8 and 4 units."""
        k1 = _MODE[self.mode][2] - 1
        a, b = self.dense_units
        return k1 * (4 * (1 + a) + 2 * (1 + b)), 2 * (1 + a) * k1

    @property
    def margin(self) -> int:
        """Pixels of context the network consumes on each side (46 fast, 95 original for the paper's units)."""
        return self.crops()[0] // 2 + _MODE[self.mode][1]

    def network_input_size(self, size: int) -> int:
        """The side N the 'valid' network runs on to give at least ``size`` output pixels: N - 2 * margin >= size
        with N (fast) or N - 6 (original, 'valid' 7x7 stem) a multiple of 8."""
        stem = 2 * _MODE[self.mode][1]
        return stem + -(-(size + self.crops()[0]) // 8) * 8

    # ---- the widths every layer uses (one place, so encoder / decoder / skip additions always agree)
    def widths(self) -> dict:
        g = self.dense_groups
        grouped = lambda f: max(g, int(round(f * self.decoder_width / g)) * g)  # noqa: E731
        inner = [scaled(f, self.encoder_width) for f in ENCODER_FILTERS]
        return {"stem": scaled(64, self.encoder_width), "inner": inner, "out": [4 * f for f in inner],
                "conva": (grouped(256), grouped(128)), "unit": (grouped(128), grouped(32)),
                "conv1": scaled(64, self.decoder_width)}


# ------------------------------------------------------------------------------------------------------- encoder
def _bn(name):
    return keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=name)


def _conv(filters, k, name, strides=1, padding="valid", groups=1, use_bias=False):
    return keras.layers.Conv2D(filters, k, strides=strides, padding=padding, groups=groups, use_bias=use_bias,
                               kernel_initializer="he_normal", name=name)


def _residual_block(x, inner: int, units: int, stride: int, name: str):
    """The reference's ResidualBlock: pre-activation bottleneck units (1x1, 3x3 [stride], 1x1 -> 4 * inner maps),
    the first without pre-activation (the previous block ended with BN + ReLU), block-final BN + ReLU."""
    out = 4 * inner
    shortcut = x
    if x.shape[-1] != out or stride != 1:
        shortcut = _conv(out, 1, f"{name}_shortcut", strides=stride)(x)
    for i in range(units):
        y = x
        if i:
            y = keras.layers.ReLU(name=f"{name}_u{i}_preact_relu")(_bn(f"{name}_u{i}_preact_bn")(y))
        y = _conv(inner, 1, f"{name}_u{i}_conv1")(y)
        y = keras.layers.ReLU(name=f"{name}_u{i}_relu1")(_bn(f"{name}_u{i}_bn1")(y))
        y = _conv(inner, 3, f"{name}_u{i}_conv2", strides=stride if i == 0 else 1, padding="same")(y)
        y = keras.layers.ReLU(name=f"{name}_u{i}_relu2")(_bn(f"{name}_u{i}_bn2")(y))
        y = _conv(out, 1, f"{name}_u{i}_conv3")(y)
        x = keras.layers.Add(name=f"{name}_u{i}_add")([y, shortcut])
        shortcut = x
    return keras.layers.ReLU(name=f"{name}_relu")(_bn(f"{name}_bn")(x))


def preact_resnet50(config: HoVerNetConfig) -> keras.Model:
    """HoVer-Net's encoder as a functional model: [B, N, N, 3] -> [d0 (1/1), d1 (1/2), d2 (1/4), d3 (1/8, after
    the 1x1 ``conv_bot`` to d2's maps)] (module docstring; 'valid' 7x7 stem in mode original, 'same' in fast)."""
    w = config.widths()
    stem_pad = _MODE[config.mode][0]
    inp = keras.Input((None, None, 3), name="image")
    x = _conv(w["stem"], 7, "conv0", padding=stem_pad)(inp)
    x = keras.layers.ReLU(name="conv0_relu")(_bn("conv0_bn")(x))
    feats = []
    for i, (units, stride) in enumerate(zip(config.encoder_blocks, (1, 2, 2, 2))):
        x = _residual_block(x, w["inner"][i], units, stride, f"d{i}")
        feats.append(x)
    feats[3] = _conv(w["out"][2], 1, "conv_bot")(feats[3])
    return keras.Model(inp, feats, name="preact_resnet50")


def load_encoder_weights(encoder: keras.Model, source: str) -> None:
    """Copy weights into ``encoder`` from a local file (HoVerNetConfig.encoder_weights): a ``.weights.h5`` /
    ``.h5`` of this encoder or a ``.keras`` hovernet model; a missing or mismatched file raises DataError
    (``zoo.models.base.load_encoder_weights``)."""
    def load(encoder, path, saved):
        if saved is None:
            encoder.load_weights(path)
        elif not isinstance(saved, HoVerNet):
            raise ValueError(f"a {type(saved).__name__}, not a hovernet model")
        else:
            encoder.set_weights(saved.encoder.get_weights())

    base.load_encoder_weights(encoder, source, "HoVer-Net encoder", load)


# ------------------------------------------------------------------------------------------------------- decoder
@keras.saving.register_keras_serializable(package="histozoo")
class DenseDecoder(keras.layers.Layer):
    """The reference's DenseBlock: ``units`` x (BN, ReLU, 1x1 conv, BN, ReLU, grouped k x k 'valid' conv), each
    output concatenated to its centre-cropped input; block-final BN + ReLU. Shrinks each side by units * (k - 1)."""

    def __init__(self, units: int, unit_filters: tuple, kernel: int, groups: int, **kwargs):
        super().__init__(**kwargs)
        self.units, self.unit_filters = int(units), tuple(int(f) for f in unit_filters)
        self.kernel, self.groups = int(kernel), int(groups)
        self.pre = [_bn(f"u{i}_preact_bn") for i in range(self.units)]
        self.conv1 = [_conv(self.unit_filters[0], 1, f"u{i}_conv1") for i in range(self.units)]
        self.bn1 = [_bn(f"u{i}_bn1") for i in range(self.units)]
        self.conv2 = [_conv(self.unit_filters[1], self.kernel, f"u{i}_conv2", groups=self.groups)
                      for i in range(self.units)]
        self.bn_out = _bn("bn")

    def build(self, input_shape):
        c = input_shape[-1]
        for i in range(self.units):
            self.pre[i].build((None, None, None, c))
            self.conv1[i].build((None, None, None, c))
            self.bn1[i].build((None, None, None, self.unit_filters[0]))
            self.conv2[i].build((None, None, None, self.unit_filters[0]))
            c += self.unit_filters[1]
        self.bn_out.build((None, None, None, c))
        self.built = True

    def call(self, x, training=None):
        m = (self.kernel - 1) // 2
        for i in range(self.units):
            y = keras.ops.relu(self.pre[i](x, training=training))
            y = keras.ops.relu(self.bn1[i](self.conv1[i](y), training=training))
            y = self.conv2[i](y)
            x = keras.ops.concatenate([x[:, m:-m, m:-m, :], y], axis=-1)
        return keras.ops.relu(self.bn_out(x, training=training))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] + self.units * self.unit_filters[1],)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "unit_filters": list(self.unit_filters),
                "kernel": self.kernel, "groups": self.groups}


@keras.saving.register_keras_serializable(package="histozoo")
class DecoderBranch(keras.layers.Layer):
    """One HoVer-Net decoder branch (NP, HV or TP): u3 = conv k 'valid' -> dense units -> 1x1 conv (+ upsampled
    skip), u2 likewise, u1 = conv k 'same', u0 = BN, ReLU, 1x1 conv (with bias) to ``out_channels``."""

    def __init__(self, out_channels: int, config: dict, **kwargs):
        super().__init__(**kwargs)
        self.out_channels = int(out_channels)
        self.config_dict = dict(config)
        c = HoVerNetConfig.from_dict(config)
        w = c.widths()
        k = _MODE[c.mode][2]
        units = c.dense_units
        self.conva = [_conv(w["conva"][0], k, "u3_conva"), _conv(w["conva"][1], k, "u2_conva")]
        self.dense = [DenseDecoder(units[0], w["unit"], k, c.dense_groups, name="u3_dense"),
                      DenseDecoder(units[1], w["unit"], k, c.dense_groups, name="u2_dense")]
        self.convf = [_conv(w["out"][1], 1, "u3_convf"), _conv(w["out"][0], 1, "u2_convf")]
        self.conv1 = _conv(w["conv1"], k, "u1_conva", padding="same")
        self.bn0 = _bn("u0_bn")
        self.head = _conv(self.out_channels, 1, "u0_conv", use_bias=True)

    def build(self, input_shape):
        c = HoVerNetConfig.from_dict(self.config_dict)
        w = c.widths()
        for i, skip in enumerate((w["out"][2], w["out"][1])):
            self.conva[i].build((None, None, None, skip))
            self.dense[i].build((None, None, None, w["conva"][i]))
            self.convf[i].build((None, None, None, w["conva"][i] + c.dense_units[i] * w["unit"][1]))
        self.conv1.build((None, None, None, w["out"][0]))
        self.bn0.build((None, None, None, w["conv1"]))
        self.head.build((None, None, None, w["conv1"]))
        self.built = True

    def call(self, feats, training=None):
        d0, d1, d2, d3 = feats
        x = d3
        for i, skip in enumerate((d2, d1)):
            x = _upsample(x) + skip
            x = self.convf[i](self.dense[i](self.conva[i](x), training=training))
        x = self.conv1(_upsample(x) + d0)
        return self.head(keras.ops.relu(self.bn0(x, training=training)))

    def get_config(self):
        return {**super().get_config(), "out_channels": self.out_channels, "config": self.config_dict}


def _upsample(x):
    """Nearest-neighbour 2x (the reference's fixed unpooling)."""
    return keras.ops.repeat(keras.ops.repeat(x, 2, axis=1), 2, axis=2)


def _centre_crop(x, amount: int):
    lo = amount // 2
    hi = amount - lo
    return x[:, lo:-hi, lo:-hi, :]


# ------------------------------------------------------------------------------------------------------------ model
@register("hovernet")
class HoVerNet(SegmentationModel):
    """Pre-activation ResNet50 (stride 8) + NP / HV [/ TP] dense decoder branches -> [B, H, W, 4 (+ K + 1)]
    (module docstring)."""

    config_class = HoVerNetConfig

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        # === Layers ===
        self.encoder = preact_resnet50(c)
        branch_cfg = c.to_dict()
        branch_cfg["encoder_weights"] = None
        self.np_branch = DecoderBranch(2, branch_cfg, name="np")
        self.hv_branch = DecoderBranch(2, branch_cfg, name="hv")
        self.tp_branch = DecoderBranch(c.num_types + 1, branch_cfg, name="tp") if c.num_types else None
        if c.encoder_weights and self._load_pretrained:
            load_encoder_weights(self.encoder, c.encoder_weights)

    @property
    def min_divisor(self) -> int:
        return 8

    @property
    def margin(self) -> int:
        """Pixels of context the network consumes on each side (HoVerNetConfig.margin)."""
        return self.config.margin

    def network_input_size(self, size):
        """HoVerNetConfig.network_input_size (works on ints and scalar tensors)."""
        return self.config.network_input_size(size)

    @property
    def softmax_groups(self) -> tuple:
        """(start, stop) channel ranges that are softmax distributions: NP and TP (HV is linear)."""
        return ((0, 2),) + (((4, self.num_classes),) if self.config.num_types else ())

    def forward(self, x, training=None):
        """x: [B, N, N', 3] at the network's size -> dict of 'valid' logits (NP, HV, TP) of side N - 2 * margin."""
        crop0, crop1 = self.config.crops()
        d0, d1, d2, d3 = self.encoder(x, training=training)
        feats = (_centre_crop(d0, crop0), _centre_crop(d1, crop1), d2, d3)
        out = {"np": self.np_branch(feats, training=training), "hv": self.hv_branch(feats, training=training)}
        if self.tp_branch is not None:
            out["tp"] = self.tp_branch(feats, training=training)
        return out

    def call(self, inputs, training=None):
        x = keras.ops.cast(inputs, self.compute_dtype)
        x = normalize_input(x, self.config.normalization)
        shape = tf.shape(x)
        h, w = shape[1], shape[2]
        lo = self.margin
        ph = self.network_input_size(h) - h - lo
        pw = self.network_input_size(w) - w - lo
        pads = [[0, 0], [lo, ph], [lo, pw], [0, 0]]
        fits = tf.logical_and(tf.maximum(lo, ph) <= h, tf.maximum(lo, pw) <= w)
        x = tf.cond(fits, lambda: tf.pad(x, pads, mode="SYMMETRIC"), lambda: tf.pad(x, pads, constant_values=1.0))
        out = self.forward(x, training=training)
        parts = [keras.ops.softmax(keras.ops.cast(out["np"], "float32"), axis=-1),
                 keras.ops.cast(out["hv"], "float32")]
        if "tp" in out:
            parts.append(keras.ops.softmax(keras.ops.cast(out["tp"], "float32"), axis=-1))
        y = keras.ops.concatenate(parts, axis=-1)
        return y[:, :h, :w, :]
