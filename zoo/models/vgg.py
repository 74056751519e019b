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
        """Copy VGG16's 13 convolutions from ``source`` (see ``load_vgg16_weights``; fc layers are not read)."""
        load_vgg16_weights(self, source)

    def get_config(self):
        return {**super().get_config(), "width_multiplier": self.width_multiplier,
                "with_switches": self.with_switches}


# keras.applications' VGG16 files (keras/src/applications/vgg16.py): URL and md5 of the file with and without the
# fully connected layers fc1, fc2 (and the 1000-class predictions, never read here).
IMAGENET_FILES = {
    True: ("vgg16_weights_tf_dim_ordering_tf_kernels.h5",
           "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
           "vgg16_weights_tf_dim_ordering_tf_kernels.h5", "64373286793e3c8b2b4e3219cbf3544b"),
    False: ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "6d6bbae143d832006294945121d1f1fc"),
}
VGG16_FC = ("fc1", "fc2")
VGG16_FC_MAPS = 4096  # maps of VGG16's fc1 / fc2
POOL5_WINDOW = 7  # fc1 reads a 7x7x512 pool5 map (224x224 input), flattened in (row, column, channel) order


def read_vgg16_weights(path: str, names) -> dict:
    """The arrays ``[kernel, bias]`` of the layers ``names`` (keras.applications' layer names: ``block1_conv1``,
    ..., ``fc1``, ``fc2``) found in a weights file, without building a model (VGG16 with its classifier is 138 M
    weights). Reads the three layouts keras writes: legacy HDF5 (keras.applications' downloaded files, ``model.save``
    to ``.h5``: groups listed in the ``layer_names`` attribute, arrays in ``weight_names`` order), Keras 3
    ``.weights.h5`` (``.../vars`` groups whose ``name`` attribute is the layer name, arrays ``0``, ``1``) and
    ``.keras`` (the same inside the zip's ``model.weights.h5``). Layers absent from the file are absent from the
    answer."""
    import zipfile

    import h5py

    wanted = set(names)
    out: dict = {}

    def read(f):
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" in root.attrs:  # legacy HDF5
            for name in root.attrs["layer_names"]:
                name = name.decode() if isinstance(name, bytes) else str(name)
                if name in wanted:
                    g = root[name]
                    out[name] = [np.asarray(g[w.decode() if isinstance(w, bytes) else str(w)])
                                 for w in g.attrs["weight_names"]]
            return

        def visit(key, obj):  # Keras 3: layers/<path>/vars with attrs name=<layer name>
            if isinstance(obj, h5py.Group) and key.split("/")[-1] == "vars":
                name = obj.attrs.get("name")
                name = name.decode() if isinstance(name, bytes) else name
                if name in wanted and name not in out:
                    out[name] = [np.asarray(obj[str(i)]) for i in range(len(obj))]

        f.visititems(visit)

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z, z.open("model.weights.h5") as member, h5py.File(member, "r") as f:
            read(f)
    else:
        with h5py.File(path, "r") as f:
            read(f)
    return out


def _imagenet_file(with_fc: bool) -> str:
    """keras.applications' ImageNet VGG16 file (downloaded once into ~/.keras/models, md5 checked)."""
    fname, origin, md5 = IMAGENET_FILES[with_fc]
    return keras.utils.get_file(fname, origin, cache_subdir="models", file_hash=md5)


def load_vgg16_weights(encoder: "VGG16Encoder", source: str, fc: Optional[tuple] = None) -> bool:
    """Copy VGG16's weights from ``source`` (``"imagenet"`` or a local file, any layout ``read_vgg16_weights``
    reads) into ``encoder``'s 13 convolutions and, with ``fc = (fc6, fc7)``, into those convolutions the way Long et
    al. 2015 (section 3.1, "convolutionalization"; section 4.1) turn a classifier into a dense predictor: VGG16's fc1
    (25088 x 4096, over the flattened 7x7x512 pool5 map) becomes fc6's 7x7x512x4096 kernel, fc2 (4096 x 4096) fc7's
    1x1x4096x4096 kernel, the same numbers reshaped, biases as they are (a layer without a bias, as DeconvNet's before
    batch normalisation, takes the kernel only). ``"imagenet"`` downloads the file with the fc layers when fc6 / fc7
    have VGG16's shapes, the smaller ``..._notop`` file otherwise.

    Returns whether fc6 / fc7 were loaded. A file without fc1 / fc2 leaves them as initialised (with a warning when
    they have VGG16's shapes); a file whose fc1 / fc2 do not fit fc6 / fc7 (e.g. ``fc_filters`` other than the file's
    4096), a missing file, or one that is not VGG16 raises a one-line DataError naming the file."""
    if encoder.width_multiplier != 1.0:
        raise ValueError("pretrained VGG16 weights need width_multiplier 1.0")
    if not encoder.built:
        encoder.build((None, None, None, 3))
    kernels = []
    if fc is not None:
        fc6, fc7 = fc
        if not fc6.built:
            fc6.build((None, None, None, encoder.block_filters[-1]))
        if not fc7.built:
            fc7.build((None, None, None, fc6.filters))
        kernels = [tuple(fc6.kernel.shape), tuple(fc7.kernel.shape)]
    if source == "imagenet":
        full = [(POOL5_WINDOW, POOL5_WINDOW, 512, VGG16_FC_MAPS), (1, 1, VGG16_FC_MAPS, VGG16_FC_MAPS)]
        path = _imagenet_file(with_fc=kernels == full)
    else:
        path = os.path.expanduser(source)
        if not os.path.isfile(path):
            raise DataError(path, "VGG16 weights file not found")
    convs = encoder.conv_layers()
    try:
        weights = read_vgg16_weights(path, [c.name for c in convs] + (list(VGG16_FC) if fc is not None else []))
    except Exception as err:  # noqa: BLE001  (h5py / zipfile say "not this file" in many ways)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(path, f"not a VGG16 weights file: {first}") from None
    for conv in convs:
        _copy(path, conv.name, conv, weights.get(conv.name))
    if fc is None:
        return False
    if not all(name in weights for name in VGG16_FC):
        if kernels[0][-1] == VGG16_FC_MAPS:
            warnings.warn(f"{path}: no fully connected layers fc1 / fc2 (a notop file): fc6 / fc7 start from their "
                          "random initialisation", stacklevel=3)
        return False
    for (name, layer), shape in zip(zip(VGG16_FC, fc), kernels):
        arrays = weights[name]
        if len(arrays) != 2 or arrays[0].ndim != 2 or arrays[0].size != int(np.prod(shape)) \
                or arrays[0].shape[1] != shape[-1]:
            got = arrays[0].shape if arrays else ()
            raise DataError(path, f"VGG16 {name} kernel {tuple(got)} does not fit {layer.name}'s {shape} "
                                  f"(set fc_filters to {got[-1] if got else '?'} or use a notop file)")
        layer.kernel.assign(arrays[0].reshape(shape))  # (row, col, channel) flatten order == conv kernel order
        if layer.use_bias:
            layer.bias.assign(arrays[1])
    return True


def _copy(path: str, name: str, layer, arrays) -> None:
    if arrays is None:
        raise DataError(path, f"not a VGG16 weights file: no layer {name!r}")
    want = [tuple(v.shape) for v in layer.weights]
    if [tuple(a.shape) for a in arrays] != want:
        raise DataError(path, f"not a VGG16 weights file: layer {name!r} has shapes "
                              f"{[tuple(a.shape) for a in arrays]}, VGG16 needs {want}")
    layer.set_weights(arrays)


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
