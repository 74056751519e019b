"""Yuan & Suh's nuclei-segmentation U-Net ("Neural stain normalization and unsupervised classification of cell
nuclei in histopathological breast cancer images", section 3.2; after Ronneberger et al. 2015).

The paper: 4 downsampling and 4 symmetrical upsampling layers, 144x144 -> 512 channels at 9x9 -> 144x144, each
layer two convolutions (ReLU) and a max-pool, skip connections concatenating the equally sized encoder maps, 3
classes (background / nucleus / nuclear boundary), Adam 1e-4. Choices the paper leaves open, documented here:

- maps double at every level from ``base_filters`` = 32: 32, 64, 128, 256 and 512 at the 9x9 bottleneck, the one
  width the paper states (``base_filters=64`` gives Ronneberger's 64 ... 1024);
- 3x3 convolutions with 'same' padding, so the output has the input's size (Ronneberger's 'valid' convolutions
  shrink 572 -> 388); inputs are padded to a multiple of ``2**depth`` (16) inside the model;
- upsampling by 2x2 transposed convolutions halving the maps (Ronneberger's "up-conv 2x2"); 1x1 output conv.

``ConvBlock`` and ``UpBlock`` are the building blocks other U-shaped models (Qu et al.'s ResNet34 U-Net) reuse.
"""

from __future__ import annotations

import dataclasses

import keras

from zoo.models.base import NORMALIZATIONS, ModelConfig, SegmentationModel
from zoo.models.registry import PACKAGE, register


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConvBlock(keras.layers.Layer):
    """Two 3x3 'same' convolutions, each followed by (optional batch norm and) ReLU; optional dropout after."""

    def __init__(self, filters: int, batch_norm: bool = False, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.batch_norm, self.dropout = int(filters), bool(batch_norm), float(dropout)
        self.convs = [keras.layers.Conv2D(self.filters, 3, padding="same", use_bias=not self.batch_norm,
                                          name=f"conv{i}") for i in (1, 2)]
        self.norms = [keras.layers.BatchNormalization(name=f"bn{i}") for i in (1, 2)] if self.batch_norm else []
        self.drop = keras.layers.Dropout(self.dropout) if self.dropout else None

    def build(self, input_shape):
        shape = tuple(input_shape)
        for i, conv in enumerate(self.convs):
            conv.build(shape)
            shape = shape[:-1] + (self.filters,)
            if self.norms:
                self.norms[i].build(shape)
        self.built = True

    def call(self, x, training=None):
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if self.norms:
                x = self.norms[i](x, training=training)
            x = keras.ops.relu(x)
        if self.drop is not None:
            x = self.drop(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "batch_norm": self.batch_norm,
                "dropout": self.dropout}


@keras.saving.register_keras_serializable(package=PACKAGE)
class UpBlock(keras.layers.Layer):
    """2x2 stride-2 transposed convolution to ``filters`` maps, concatenation with the skip, then a ConvBlock."""

    def __init__(self, filters: int, batch_norm: bool = False, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.batch_norm, self.dropout = int(filters), bool(batch_norm), float(dropout)
        self.up = keras.layers.Conv2DTranspose(self.filters, 2, strides=2, padding="same", name="up")
        self.block = ConvBlock(self.filters, batch_norm, dropout, name="block")

    def build(self, x_shape, skip_shape):
        self.up.build(tuple(x_shape))
        self.block.build(tuple(skip_shape[:-1]) + (self.filters + skip_shape[-1],))
        self.built = True

    def call(self, x, skip, training=None):
        x = keras.ops.concatenate([skip, self.up(x)], axis=-1)
        return self.block(x, training=training)

    def compute_output_shape(self, x_shape, skip_shape):
        return tuple(skip_shape[:-1]) + (self.filters,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "batch_norm": self.batch_norm,
                "dropout": self.dropout}


@dataclasses.dataclass(frozen=True)
class UNetConfig(ModelConfig):
    """Yuan & Suh's U-Net.

    num_classes: 3 = background / nucleus / boundary (section 3.2); 2 for plain foreground segmentation.
    base_filters: maps at full resolution; level i has base_filters * 2**i, the bottleneck base_filters * 2**depth.
    depth: number of 2x2 max-pools (4: 144 -> 9); inputs are padded to multiples of 2**depth.
    batch_norm: batch normalisation after every convolution (not in the paper; off).
    dropout: dropout after the bottleneck block (not in the paper; 0).
    normalization: input normalisation ("imagenet", "caffe", "none"; see zoo.models.base).
    """

    num_classes: int = 3
    base_filters: int = 32
    depth: int = 4
    batch_norm: bool = False
    dropout: float = 0.0
    normalization: str = "imagenet"

    def validate(self):
        self._check_int("num_classes", 2)
        self._check_int("base_filters", 1)
        self._check_int("depth", 1)
        if self.depth > 8:
            self._fail("depth", f"must be at most 8 (stride 256), got {self.depth}")
        self._check_bool("batch_norm")
        self._check_float("dropout", 0.0, 1.0, high_open=True)
        self._check_choice("normalization", NORMALIZATIONS)


@register("unet")
class UNet(SegmentationModel):
    """U-Net: ``depth`` ConvBlocks each followed by a max-pool, a bottleneck ConvBlock, ``depth`` UpBlocks
    concatenating the encoder maps, 1x1 convolution to ``num_classes`` scores."""

    config_class = UNetConfig

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        widths = [c.base_filters * 2 ** i for i in range(c.depth + 1)]
        # === Layers ===
        self.down = [ConvBlock(widths[i], c.batch_norm, name=f"down{i}") for i in range(c.depth)]
        self.bottleneck = ConvBlock(widths[c.depth], c.batch_norm, c.dropout, name="bottleneck")
        self.up = [UpBlock(widths[i], c.batch_norm, name=f"up{i}") for i in reversed(range(c.depth))]
        self.score = keras.layers.Conv2D(c.num_classes, 1, name="score")

    @property
    def min_divisor(self) -> int:
        return 2 ** self.config.depth

    def encode(self, x, training=None):
        """Normalised, padded input -> (skips at full, 1/2, ... resolution; the bottleneck maps)."""
        skips = []
        for block in self.down:
            x = block(x, training=training)
            skips.append(x)
            x = keras.ops.max_pool(x, pool_size=2, strides=2, padding="valid")
        return skips, self.bottleneck(x, training=training)

    def forward(self, x, training=None):
        skips, x = self.encode(x, training=training)
        for block, skip in zip(self.up, reversed(skips)):
            x = block(x, skip, training=training)
        return self.score(x)
