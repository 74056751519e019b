"""The VGG16 encoder shared by FCN-8s and DeconvNet (Simonyan & Zisserman 2015, configuration D: 13 3x3 convs in
five blocks of 64, 128, 256, 512, 512 maps, each block ending in a 2x2 max-pool), its ImageNet / local-file weight
loading, max-pooling with switches and unpooling (Noh et al. 2015, section 3.2.1) and FCN's bilinear upsampling
initialiser (Long et al. 2015, section 3.3).

Layer names are those of ``keras.applications.VGG16`` (``block1_conv1`` ... ``block5_conv3``) so its weights copy
over one layer at a time. Inputs must already be normalised ("caffe" mode for the ImageNet weights).
"""

from __future__ import annotations

import os
import warnings
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from zoo.errors import DataError
from zoo.models.base import scaled
from zoo.models.registry import PACKAGE

VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (maps, convs) per block
VGG16_STRIDE = 32


def max_pool_with_switches(x):
    """2x2 / stride 2 max-pool that also returns DeconvNet's switch variables: for every pooled value, a one-hot
    vector over the 4 positions of its window marking where the maximum was (the first one on ties).
    ``x``: [B, H, W, C] with even H, W -> (pooled [B, H/2, W/2, C], switches [B, H/2, W/2, C, 4]).

    Equivalent to ``tf.nn.max_pool_with_argmax`` + scatter, but made of reshapes only, so it compiles with XLA
    (which has no MaxPoolWithArgmax kernel, and Keras turns XLA on by default on GPUs)."""
    shape = tf.shape(x)
    b, h, w, c = shape[0], shape[1] // 2, shape[2] // 2, shape[3]
    windows = tf.reshape(x, [b, h, 2, w, 2, c])
    windows = tf.reshape(tf.transpose(windows, [0, 1, 3, 5, 2, 4]), [b, h, w, c, 4])  # (row, col) in window
    switches = tf.one_hot(tf.argmax(windows, axis=-1), 4, dtype=x.dtype)
    return tf.reduce_max(windows, axis=-1), switches


def max_unpool(x, switches):
    """Noh et al.'s unpooling: put every value of ``x`` [B, h, w, C] back at the window position its switch
    marks, zeros elsewhere -> [B, 2h, 2w, C]. Differentiable in ``x``."""
    shape = tf.shape(x)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    windows = tf.reshape(x[..., None] * switches, [b, h, w, c, 2, 2])
    return tf.reshape(tf.transpose(windows, [0, 1, 4, 2, 5, 3]), [b, 2 * h, 2 * w, c])


@keras.saving.register_keras_serializable(package=PACKAGE)
class BilinearUpsampling(keras.initializers.Initializer):
    """Conv2DTranspose kernel ``(k, k, out, in)`` that performs bilinear interpolation channel by channel
    (channel i -> channel i; FCN initialises its learnable upsampling this way, Long et al. section 3.3)."""

    def __call__(self, shape, dtype=None):
        kh, kw, out_c, in_c = shape
        kernel = np.zeros(shape, dtype="float32")
        outer = np.outer(self.profile(kh), self.profile(kw))
        for i in range(min(out_c, in_c)):
            kernel[:, :, i, i] = outer
        return keras.ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    @staticmethod
    def profile(size: int) -> np.ndarray:
        """1-D bilinear weights of a kernel of ``size`` taps: 1 - |i - centre| / factor."""
        factor = (size + 1) // 2
        centre = factor - 1 if size % 2 == 1 else factor - 0.5
        return 1.0 - np.abs(np.arange(size) - centre) / factor

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package=PACKAGE)
class VGG16Encoder(keras.layers.Layer):
    """The 13 convolutions of VGG16 (ReLU, 'same' padding) and their five max-pools.

    ``call(x)`` returns a dict: ``block{i}`` (last conv of block i, before pooling), ``pool{i}`` and, with
    ``with_switches``, ``switches{i}`` (for ``max_unpool``), i = 1..5. H and W must be multiples of 32.
    """

    def __init__(self, width_multiplier: float = 1.0, with_switches: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.width_multiplier = float(width_multiplier)
        self.with_switches = bool(with_switches)
        self.blocks = []
        for b, (maps, convs) in enumerate(VGG16_BLOCKS, start=1):
            self.blocks.append([keras.layers.Conv2D(scaled(maps, width_multiplier), 3, padding="same",
                                                    activation="relu", name=f"block{b}_conv{c}")
                                for c in range(1, convs + 1)])

    @property
    def block_filters(self) -> list[int]:
        return [scaled(maps, self.width_multiplier) for maps, _ in VGG16_BLOCKS]

    def build(self, input_shape):
        channels = input_shape[-1]
        for block in self.blocks:
            for conv in block:
                conv.build((None, None, None, channels))
                channels = conv.filters
        self.built = True

    def call(self, x):
        out = {}
        for b, block in enumerate(self.blocks, start=1):
            for conv in block:
                x = conv(x)
            out[f"block{b}"] = x
            if self.with_switches:
                x, out[f"switches{b}"] = max_pool_with_switches(x)
            else:
                x = keras.ops.max_pool(x, pool_size=2, strides=2, padding="valid")
            out[f"pool{b}"] = x
        return out

    def conv_layers(self) -> list:
        return [conv for block in self.blocks for conv in block]

    def load_pretrained(self, source: str) -> None:
        """Copy weights from ``keras.applications.VGG16(include_top=False, weights=source)``: ``source`` is
        ``"imagenet"`` (downloads once into ~/.keras) or a local weights file in keras.applications' layout (the
        ``..._notop.h5`` file, or ``.weights.h5`` / ``.keras`` saved from such a model)."""
        if self.width_multiplier != 1.0:
            raise ValueError("pretrained VGG16 weights need width_multiplier 1.0")
        if not self.built:
            self.build((None, None, None, 3))
        reference = vgg16_reference(source)
        for conv in self.conv_layers():
            conv.set_weights(reference.get_layer(conv.name).get_weights())

    def get_config(self):
        return {**super().get_config(), "width_multiplier": self.width_multiplier,
                "with_switches": self.with_switches}


def vgg16_reference(source: str) -> keras.Model:
    """``keras.applications.VGG16`` without its classifier, with weights from ``source`` ("imagenet" or a path);
    a missing or unreadable file raises DataError naming it."""
    weights: Optional[str] = source
    if source != "imagenet":
        weights = os.path.expanduser(source)
        if not os.path.isfile(weights):
            raise DataError(weights, "VGG16 weights file not found")
    try:
        with warnings.catch_warnings(record=True) as caught:  # a wrong file warns layer by layer, then raises
            warnings.simplefilter("always")
            model = keras.applications.VGG16(include_top=False, weights=weights, input_shape=(None, None, 3))
        for w in caught:  # loaded after all: let the user see what Keras had to say
            warnings.warn(w.message, w.category, stacklevel=2)
        return model
    except Exception as err:  # a wrong file surfaces as ValueError/KeyError/OSError from h5py or Keras
        if source == "imagenet":
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(weights, f"not a VGG16 (include_top=False) weights file: {first}") from None
