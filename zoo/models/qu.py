"""Qu et al.'s joint nuclei segmentation and fine-grained classification network ("Joint segmentation and
fine-grained classification of nuclei in histopathology images", ISBI 2019, section 2.1).

The paper: a U-Net-shaped encoder-decoder whose encoder is ResNet34 without its average pooling and fully connected
layers (basic residual blocks [3, 4, 6, 3] of 64, 128, 256, 512 maps after a 7x7 stride-2 stem and a max-pool),
skip connections between encoder and decoder, and K + 2 softmax maps: background, the inner part of each of the K
nucleus types, and the contour of all nuclei (the paper's K = 3: tumour, lymphocyte, stroma -> five maps). The loss
(eq. 1-4: weighted cross-entropy + beta * perceptual) lives in zoo.losses.mixed / zoo.losses.perceptual; the
instances (inner components grown into the contour, section 2.2) in zoo.postprocess (method ``inner_contour``).

Choices the paper leaves open, documented here (they follow Qu's released ResUNet34 code in spirit):

- the encoder is keras-hub's ``ResNetBackbone`` (ENVIRONMENT.md section 6), its skips are the stem output (1/2,
  layer ``conv1_relu``) and the four stage outputs P2..P5 (1/4 .. 1/32);
- the decoder has one ``UpBlock`` (zoo.models.unet: 2x2 transposed convolution, concatenation with the skip, two
  3x3 convolutions + ReLU) per skip, P5 -> P4 -> P3 -> P2 -> stem, with ``decoder_filters[:4]`` maps, then one more
  2x2 transposed convolution to full resolution and a ConvBlock of ``decoder_filters[4]`` maps, then a 1x1
  convolution to K + 2 scores;
- inputs are padded inside the model to multiples of 32 (the encoder's stride).

ImageNet weights: keras-hub ships no ResNet34 preset (only 18/50/101/152), so ``encoder_weights`` is a LOCAL file:
a ``.weights.h5`` saved from a ``ResNetBackbone`` of the same architecture (``backbone.save_weights``; e.g. a
converted torchvision ResNet34), or a ``.keras`` file holding either such a backbone or a whole ``qu`` model, whose
encoder is copied (the transfer row of docs/results/joint.md: an encoder first trained by the project on its own
untyped segmentation data). ``from_config`` never loads it (a saved model's own weights follow).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import keras

from zoo.models import base
from zoo.models.base import NORMALIZATIONS, ModelConfig, SegmentationModel, scaled
from zoo.models.registry import register
from zoo.models.unet import ConvBlock, UpBlock

RESNET34_BLOCKS = (3, 4, 6, 3)
RESNET_FILTERS = (64, 128, 256, 512)
RESNET_STRIDE = 32


@dataclasses.dataclass(frozen=True)
class QuConfig(ModelConfig):
    """Qu et al.'s ResNet34 U-Net.

    num_types: K, the number of nucleus types; the model predicts K + 2 maps (background, K inner parts, contour).
      K = 1 is the untyped inner / contour model (3 maps).
    encoder_blocks: basic blocks per ResNet stage ([3, 4, 6, 3] = ResNet34).
    encoder_width: multiplier of the maps of encoder stages 2-4 (128, 256, 512; keras-hub requires the stem
      and the first stage at 64); 1.0 = ResNet34 (tests use tiny widths); a weights file must come from an encoder
      of the same blocks and width.
    decoder_filters: maps of the four skip UpBlocks (1/16, 1/8, 1/4, 1/2) and of the full-resolution block.
    encoder_weights: null (random init) or a local weights file (module docstring): ``.weights.h5`` / ``.h5`` of a
      ResNetBackbone, or a ``.keras`` file of a ResNetBackbone or of a ``qu`` model.
    normalization: input normalisation ("imagenet": what ImageNet ResNet weights expect; see zoo.models.base).
    """

    num_types: int = 3
    encoder_blocks: tuple = RESNET34_BLOCKS
    encoder_width: float = 1.0
    decoder_filters: tuple = (256, 128, 64, 64, 32)
    encoder_weights: Optional[str] = None
    normalization: str = "imagenet"

    @property
    def num_classes(self) -> int:
        return self.num_types + 2

    def validate(self):
        self._check_int("num_types", 1)
        blocks = self.encoder_blocks
        if not isinstance(blocks, tuple) or len(blocks) != 4 or not all(
                isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in blocks):
            self._fail("encoder_blocks", f"must be 4 integers >= 1 (ResNet34: [3, 4, 6, 3]), got {blocks!r}")
        self._check_float("encoder_width", 0.0, 4.0, low_open=True)
        dec = self.decoder_filters
        if not isinstance(dec, tuple) or len(dec) != 5 or not all(
                isinstance(f, int) and not isinstance(f, bool) and f >= 1 for f in dec):
            self._fail("decoder_filters", f"must be 5 integers >= 1, got {dec!r}")
        self._check_encoder_weights()  # a local file of any width / depth: it must match this encoder (DataError)
        if self.encoder_weights == "imagenet":
            self._fail("encoder_weights", "'imagenet': keras-hub has no ResNet34 preset; give a local weights file "
                                          "(a ResNetBackbone .weights.h5 or .keras, e.g. a converted ResNet34)")
        self._check_choice("normalization", NORMALIZATIONS)


def resnet_backbone(blocks=RESNET34_BLOCKS, width: float = 1.0):
    """keras-hub's ResNetBackbone with basic blocks (ResNet34 for the defaults), random init, no download.
    ``width`` scales stages 2-4; keras-hub requires the stem and the first stage at 64 maps."""
    import keras_hub

    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64] + [scaled(f, width) for f in RESNET_FILTERS[1:]], stackwise_num_blocks=list(blocks),
        stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block", image_shape=(None, None, 3))


def pyramid_encoder(backbone) -> keras.Model:
    """The backbone as a functional model returning [stem 1/2, P2 1/4, P3 1/8, P4 1/16, P5 1/32]."""
    outs = [backbone.get_layer("conv1_relu").output] + [backbone.pyramid_outputs[k] for k in ("P2", "P3", "P4", "P5")]
    return keras.Model(backbone.input, outs, name="resnet_encoder")


def load_encoder_weights(encoder: keras.Model, source: str) -> None:
    """Copy weights into ``encoder`` (a ``pyramid_encoder``) layer by layer, by name, from a local file
    (QuConfig.encoder_weights: a ResNetBackbone ``.weights.h5``, or a ``.keras`` qu model or backbone); a missing or
    mismatched file raises DataError naming it (``zoo.models.base.load_encoder_weights``)."""
    def load(encoder, path, saved):
        if saved is None:
            saved = resnet_backbone(*_encoder_shape(encoder))
            saved.load_weights(path)
        elif isinstance(saved, QuNet):
            saved = saved.encoder
        copied = 0
        for layer in saved.layers:
            if layer.weights:
                encoder.get_layer(layer.name).set_weights(layer.get_weights())
                copied += 1
        if copied != sum(1 for layer in encoder.layers if layer.weights):
            raise ValueError(f"{copied} layers with weights in the file, "
                             f"{sum(1 for la in encoder.layers if la.weights)} in the encoder")

    base.load_encoder_weights(encoder, source, "ResNet encoder", load)


def _encoder_shape(encoder: keras.Model) -> tuple:
    """(blocks, width) the encoder was built with (read back from its attribute set by QuNet)."""
    return encoder._qu_shape


@register("qu")
class QuNet(SegmentationModel):
    """ResNet34 encoder (keras-hub) + U-Net decoder with skips -> K + 2 softmax maps (module docstring)."""

    config_class = QuConfig

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        # === Layers ===
        # the backbone's layers are tracked once, through the functional encoder that exposes its skips
        encoder = pyramid_encoder(resnet_backbone(c.encoder_blocks, c.encoder_width))
        encoder._qu_shape = (c.encoder_blocks, c.encoder_width)
        self.encoder = encoder
        d = c.decoder_filters
        self.up = [UpBlock(d[i], name=f"up{i}") for i in range(4)]
        self.final_up = keras.layers.Conv2DTranspose(d[4], 2, strides=2, padding="same", name="final_up")
        self.final_block = ConvBlock(d[4], name="final_block")
        self.score = keras.layers.Conv2D(c.num_classes, 1, name="score")
        if c.encoder_weights and self._load_pretrained:
            load_encoder_weights(self.encoder, c.encoder_weights)

    @property
    def min_divisor(self) -> int:
        return RESNET_STRIDE

    def forward(self, x, training=None):
        stem, p2, p3, p4, p5 = self.encoder(x, training=training)
        y = p5
        for block, skip in zip(self.up, (p4, p3, p2, stem)):
            y = block(y, skip, training=training)
        y = self.final_block(keras.ops.relu(self.final_up(y)), training=training)
        return self.score(y)
