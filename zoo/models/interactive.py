"""The click-conditioned network of interactive segmentation: Bhatia ("Ground-truth-free nuclei segmentation",
section 3.2, Fig. 3.2) after f-BRS-B (Sofiiuk et al., CVPR 2020): click fusion -> HRNet backbone -> [f-BRS scale and
bias] -> OCR head -> 2-way softmax (background / the clicked object).

Input ``[B, H, W, C]`` float32: RGB in [0, 1] (channels 0-2), the positive and the negative click maps (3, 4: disks,
zoo.interactive.maps.click_maps) and the previous mask (5, the feedback input). C = 3, 5 or 6: channels left out are
zeros (no clicks, no previous mask), so the plain-image contract of zoo.models.base holds too; a built model's
recorded input (its ``model.export()`` signature) is always the full 6 (5 without ``use_prev_mask``) channels.
Output: float32 softmax ``[B, H, W, 2]``, channel 1 = the object the positive clicks mark.

- Fusion (Bhatia, "fusion model"): a learnable 3x3 convolution maps [image, clicks] to 3 channels, a second one
  [previous mask, clicks] to 3 channels (only with ``use_prev_mask``), their concatenation a 1x1 convolution to the
  3-channel input of the backbone.
- Backbone: HRNetV2 (Wang et al. 2019; Bhatia Fig. 3.3) made small for 2 CPU cores, documented here: a stem of
  ``stem_downsample`` stride-2 3x3 convolutions (HRNet: 2, 1/4 resolution), then ``branches`` stages; stage k holds k
  parallel branches at 1/1, 1/2, 1/4 ... of the stem resolution with ``width * 2**i`` maps (HRNet-W18: 4 branches of
  18 / 36 / 72 / 144 maps and 1-4-4-3 modules of 4 basic blocks; default here 3 branches of 16 / 32 / 64 maps, one
  module of ``blocks`` = 1 basic block per branch per stage), each stage ending in HRNet's multi-resolution fusion
  (upper branches: 1x1 conv + bilinear upsampling; lower: stride-2 3x3 convs; summed, ReLU), a new branch by a
  stride-2 3x3 conv of the lowest one. HRNetV2 head: every branch upsampled to the stem resolution and concatenated.
- f-BRS-B: ``head(features * scale + bias)`` with channel-wise ``scale``, ``bias`` on that concatenation (Bhatia:
  "just after the ... features are concatenated"); identity (1, 0) in training; zoo.interactive.fbrs optimises them.
- OCR (Yuan et al. 2020, object-contextual representations): 3x3 conv to ``ocr_width`` maps; soft object regions
  from a 1x1 auxiliary classifier (spatial softmax per class); region vectors = region-weighted pixel sums; each
  pixel attends over the 2 region vectors (key/query/value 1x1 projections); [context, pixel] -> 1x1 conv -> the
  2-way classifier, bilinearly upsampled to the input size. No auxiliary loss (the soft regions learn through the
  main loss only), a simplification of HRNet-OCR's 0.4-weighted auxiliary term.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from zoo.models.base import NORMALIZATIONS, ModelConfig, SegmentationModel, crop_to, normalize_input, pad_to_multiple
from zoo.models.registry import register

INPUT_CHANNELS = (3, 5, 6)  # RGB; + positive / negative click maps; + previous mask


@dataclasses.dataclass(frozen=True)
class InteractiveConfig(ModelConfig):
    """Click-conditioned HRNet + OCR (module docstring).

    num_classes: 2 (background / object); fixed.
    width: maps of the highest-resolution branch; branch i has width * 2**i (HRNet-W18: 18).
    branches: parallel resolutions (HRNet: 4); stage k has k of them.
    blocks: basic residual blocks per branch per stage (HRNet: 4).
    stem_downsample: stride-2 convolutions of the stem (HRNet: 2, features at 1/4).
    ocr_width: maps of the OCR head (HRNet-OCR: 512; 0 = 2 * width).
    use_prev_mask: the second fusion block reads the previous mask (Bhatia's feedback mode).
    click_radius: radius in pixels of the click disks the network was trained with (zoo.interactive.maps; f-BRS: 5).
    normalization: of the RGB channels only (zoo.models.base).
    """

    num_classes: int = 2
    width: int = 16
    branches: int = 3
    blocks: int = 1
    stem_downsample: int = 2
    ocr_width: int = 0
    use_prev_mask: bool = True
    click_radius: float = 3.0
    normalization: str = "imagenet"

    def validate(self):
        if self.num_classes != 2:
            self._fail("num_classes", f"must be 2 (background / object), got {self.num_classes!r}")
        self._check_int("width", 1)
        self._check_int("branches", 1)
        if self.branches > 4:
            self._fail("branches", f"must be at most 4 (HRNet), got {self.branches}")
        self._check_int("blocks", 1)
        self._check_int("stem_downsample", 0)
        if self.stem_downsample > 3:
            self._fail("stem_downsample", f"must be at most 3, got {self.stem_downsample}")
        self._check_int("ocr_width", 0)
        self._check_bool("use_prev_mask")
        self._check_float("click_radius", 0.0, 100.0, low_open=True)
        self._check_choice("normalization", NORMALIZATIONS)


def _conv(filters, kernel=3, strides=1, name=None):
    return keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)


def _bn(name=None):
    return keras.layers.BatchNormalization(name=name)


@register("interactive_hrnet")
class InteractiveNet(SegmentationModel):
    """Fusion -> small HRNetV2 -> (f-BRS scale / bias) -> OCR -> 2-way softmax (module docstring)."""

    config_class = InteractiveConfig

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        w = [c.width * 2 ** i for i in range(c.branches)]
        self.widths = w
        # === Layers ===
        self.fuse_image = keras.layers.Conv2D(3, 3, padding="same", name="fuse_image")
        self.fuse_mask = keras.layers.Conv2D(3, 3, padding="same", name="fuse_mask") if c.use_prev_mask else None
        self.fuse_out = keras.layers.Conv2D(3, 1, name="fuse_out")
        self.stem = [(_conv(w[0], 3, 2 if i < c.stem_downsample else 1, f"stem{i}"), _bn(f"stem{i}_bn"))
                     for i in range(max(c.stem_downsample, 1))]
        # stages[k][branch] = list of basic blocks (conv-bn-relu-conv-bn + identity)
        self.stages, self.transitions, self.fusions = [], [], []
        for k in range(c.branches):
            self.stages.append([[(_conv(w[b], name=f"s{k}b{b}u{u}c1"), _bn(f"s{k}b{b}u{u}n1"),
                                  _conv(w[b], name=f"s{k}b{b}u{u}c2"), _bn(f"s{k}b{b}u{u}n2"))
                                 for u in range(c.blocks)] for b in range(k + 1)])
            fusion = {}
            for j in range(k + 1):  # output branch
                for i in range(k + 1):  # input branch
                    if i > j:
                        fusion[f"{i}>{j}"] = [(_conv(w[j], 1, 1, f"s{k}f{i}{j}"), _bn(f"s{k}f{i}{j}n"))]
                    elif i < j:
                        fusion[f"{i}>{j}"] = [(_conv(w[j] if s == j - i - 1 else w[i], 3, 2, f"s{k}f{i}{j}d{s}"),
                                               _bn(f"s{k}f{i}{j}d{s}n")) for s in range(j - i)]
            self.fusions.append(fusion)
            if k + 1 < c.branches:
                self.transitions.append((_conv(w[k + 1], 3, 2, f"t{k}"), _bn(f"t{k}n")))
        ocr = c.ocr_width or 2 * c.width
        self.ocr_in = (_conv(ocr, 3, 1, "ocr_in"), _bn("ocr_in_n"))
        self.ocr_aux = keras.layers.Conv2D(c.num_classes, 1, name="ocr_aux")
        self.ocr_query = keras.layers.Conv2D(ocr, 1, name="ocr_query")
        self.ocr_key = keras.layers.Dense(ocr, name="ocr_key")
        self.ocr_value = keras.layers.Dense(ocr, name="ocr_value")
        self.ocr_out = (_conv(ocr, 1, 1, "ocr_out"), _bn("ocr_out_n"))
        self.score = keras.layers.Conv2D(c.num_classes, 1, name="score")

    @property
    def min_divisor(self) -> int:
        return 2 ** (self.config.stem_downsample + self.config.branches - 1)

    @property
    def feature_channels(self) -> int:
        """Channels of the backbone features that f-BRS scales and shifts."""
        return sum(self.widths)

    # === Functional parts ===
    def fuse(self, x):
        """[B, H, W, 3..6] input -> the backbone's 3-channel input (normalised RGB + clicks (+ previous mask))."""
        c = self.config
        x = keras.ops.cast(x, self.compute_dtype)
        channels = x.shape[-1]
        if channels not in INPUT_CHANNELS:
            raise ValueError(f"interactive_hrnet: input must have 3, 5 or 6 channels, got {channels}")
        if channels < 6:
            x = tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, 6 - channels]])
        rgb = normalize_input(x[..., :3], c.normalization)
        clicks, prev = x[..., 3:5], x[..., 5:6]
        parts = [self.fuse_image(keras.ops.concatenate([rgb, clicks], -1))]
        if self.fuse_mask is not None:
            parts.append(self.fuse_mask(keras.ops.concatenate([prev, clicks], -1)))
        return self.fuse_out(keras.ops.concatenate([rgb] + parts, -1))

    def backbone(self, x, training=None):
        """Fused, padded input -> HRNetV2 features [B, H / 2**stem_downsample, ..., feature_channels]."""
        for conv, bn in self.stem:
            x = keras.ops.relu(bn(conv(x), training=training))
        xs = [x]
        for k, stage in enumerate(self.stages):
            out = []
            for b, units in enumerate(stage):
                y = xs[b]
                for c1, n1, c2, n2 in units:
                    y = keras.ops.relu(n2(c2(keras.ops.relu(n1(c1(y), training=training))), training=training) + y)
                out.append(y)
            fused = []
            for j in range(len(out)):
                total = out[j]
                for i in range(len(out)):
                    if i == j:
                        continue
                    y = out[i]
                    layers = self.fusions[k][f"{i}>{j}"]
                    for s, (conv, bn) in enumerate(layers):
                        y = bn(conv(y), training=training)
                        if i < j and s < len(layers) - 1:
                            y = keras.ops.relu(y)
                    if i > j:
                        y = _resize(y, tf.shape(out[j])[1:3])
                    total = total + y
                fused.append(keras.ops.relu(total))
            xs = fused
            if k < len(self.transitions):
                conv, bn = self.transitions[k]
                xs = xs + [keras.ops.relu(bn(conv(xs[-1]), training=training))]
        size = tf.shape(xs[0])[1:3]
        return keras.ops.concatenate([xs[0]] + [_resize(y, size) for y in xs[1:]], -1)

    def head(self, features, training=None):
        """OCR head: backbone features (after f-BRS's scale and bias) -> class logits at the feature resolution."""
        conv, bn = self.ocr_in
        f = keras.ops.relu(bn(conv(features), training=training))
        aux = self.ocr_aux(features)  # [B, h, w, K] soft object regions
        shape = tf.shape(f)
        flat = tf.reshape(f, [shape[0], -1, f.shape[-1]])  # [B, N, C]
        regions = tf.nn.softmax(tf.reshape(aux, [shape[0], -1, aux.shape[-1]]), axis=1)  # spatial softmax per class
        vectors = tf.einsum("bnk,bnc->bkc", regions, flat)  # [B, K, C]
        q = tf.reshape(self.ocr_query(f), [shape[0], -1, f.shape[-1]])
        k, v = self.ocr_key(vectors), self.ocr_value(vectors)
        att = tf.nn.softmax(tf.einsum("bnc,bkc->bnk", q, k) / float(f.shape[-1]) ** 0.5, axis=-1)
        context = tf.reshape(tf.einsum("bnk,bkc->bnc", att, v), shape)
        conv, bn = self.ocr_out
        y = keras.ops.relu(bn(conv(keras.ops.concatenate([context, f], -1)), training=training))
        return self.score(y)

    def features(self, inputs, training=None):
        """Input [B, H, W, 3..6] -> (backbone features, padded H, W, original H, W): what f-BRS optimises on."""
        x, h, w = pad_to_multiple(keras.ops.cast(inputs, self.compute_dtype), self.min_divisor)
        x = self.fuse(x)
        return self.backbone(x, training=training), tf.shape(x)[1:3], h, w

    def probabilities(self, features, padded_size, h, w, scale=None, bias=None, training=None):
        """Backbone features -> softmax [B, h, w, 2], with f-BRS's channel-wise ``scale`` and ``bias`` if given."""
        if scale is not None:
            features = features * scale + bias
        logits = keras.ops.cast(_resize(self.head(features, training=training), padded_size), "float32")
        return crop_to(keras.ops.softmax(logits, axis=-1), h, w)

    def call(self, inputs, training=None):
        return self.probabilities(*self.features(inputs, training=training), training=training)

    @property
    def input_channels(self) -> int:
        """Channels of the full input: RGB + 2 click maps (+ the previous mask with ``use_prev_mask``)."""
        return 6 if self.config.use_prev_mask else 5

    def _post_build(self):
        # Keras records the shape of the first build (e.g. a 3-channel probe of the stride) as the signature that
        # model.export() serves and .keras files rebuild with: record the full click-conditioned input instead.
        self._build_shapes_dict = {"input_shape": (None, None, None, self.input_channels)}
        super()._post_build()

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (2,)


def _resize(x, size):
    return tf.image.resize(x, size, "bilinear")
