"""The four networks of Naylor et al. 2017 ("Nuclei segmentation in histopathology images using deep neural
networks", ISBI), section 5: PangNet, FCN-8s, DeconvNet and their ensemble (averaged posteriors).

All output softmax posteriors; the paper turns the nucleus posterior into instances with the morphological-dynamics
watershed (section 4, lambda = 7 on a 0-255 scale), which lives in zoo.postprocess.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Optional

import keras

from zoo.errors import ConfigError
from zoo.models.base import NORMALIZATIONS, ModelConfig, SegmentationModel, scaled
from zoo.models.registry import get, register
from zoo.models.vgg import VGG16_STRIDE, BilinearUpsampling, VGG16Encoder, load_vgg16_weights, max_unpool


# =========================================================================================================== PangNet
@dataclasses.dataclass(frozen=True)
class PangNetConfig(ModelConfig):
    """PangNet (Pang et al. 2010 as used by Naylor et al. section 5: "4 convolutional layers, 8 feature maps").

    Layout, as in Naylor et al.'s published implementation: three 3x3 convolutions of ``filters`` maps with ReLU
    ('same' padding, no pooling, so ``min_divisor`` = 1), then a 1x1 convolution to ``num_classes`` scores.

    num_classes: output classes (2 = background / nucleus).  filters: maps per hidden layer (8).
    normalization: input normalisation ("imagenet", "caffe", "none"; see zoo.models.base).
    """

    num_classes: int = 2
    filters: int = 8
    normalization: str = "imagenet"

    def validate(self):
        self._check_int("num_classes", 2)
        self._check_int("filters", 1)
        self._check_choice("normalization", NORMALIZATIONS)


@register("pangnet")
class PangNet(SegmentationModel):
    """PangNet: conv3x3(8)-ReLU x3, conv1x1(num_classes), softmax. 1,410 weights for RGB in, 2 classes out."""

    config_class = PangNetConfig

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        # === Layers ===
        self.convs = [keras.layers.Conv2D(c.filters, 3, padding="same", activation="relu", name=f"conv{i}")
                      for i in (1, 2, 3)]
        self.score = keras.layers.Conv2D(c.num_classes, 1, name="score")

    def forward(self, x, training=None):
        for conv in self.convs:
            x = conv(x)
        return self.score(x)


# ============================================================================================== VGG16-based networks
@dataclasses.dataclass(frozen=True)
class VGGSegConfig(ModelConfig):
    """Options shared by FCN-8s and DeconvNet.

    num_classes: output classes (2 = background / nucleus).
    width_multiplier: scales every layer's maps (1.0 = the published networks; e.g. 1/16 for tests).
    fc_filters: maps of the convolutionalised fc6 / fc7 (4096 in VGG16), also scaled by width_multiplier.
    dropout: dropout after fc6 and fc7 (0.5 as in VGG16's classifier).
    encoder_weights: "imagenet" (keras.applications' VGG16 file, downloaded once), null (random init) or the path of
      a local VGG16 weights file in keras.applications' layout (.h5 / .weights.h5 / .keras); needs width_multiplier
      1. VGG16's 13 convolutions always load. As Long et al. 2015 do (section 3.1, fully connected layers are
      convolutions whose kernels cover their whole input; section 4.1), the file's fully connected layers, when it
      has them, become fc6 / fc7: fc1 (25088 x 4096) reshaped into fc6's 7x7x512x4096 kernel, fc2 (4096 x 4096) into
      fc7's 1x1x4096x4096 one ("imagenet" then downloads the 528 MB file with them, the 58 MB notop file when
      fc_filters is not 4096). A file with fc layers that do not fit fc_filters raises a one-line error; a notop
      file leaves fc6 / fc7 randomly initialised (with a warning at fc_filters 4096).
      (zoo.models.vgg.load_vgg16_weights)
    normalization: "caffe" (BGR 0-255 minus the ImageNet mean: what the ImageNet VGG16 weights expect), "imagenet"
      or "none".
    """

    num_classes: int = 2
    width_multiplier: float = 1.0
    fc_filters: int = 4096
    dropout: float = 0.5
    encoder_weights: Optional[str] = None
    normalization: str = "caffe"

    def validate(self):
        self._check_int("num_classes", 2)
        self._check_float("width_multiplier", 0.0, 1.0, low_open=True)
        self._check_int("fc_filters", 1)
        self._check_float("dropout", 0.0, 1.0, high_open=True)
        self._check_choice("normalization", NORMALIZATIONS)
        self._check_encoder_weights(full_width=self.width_multiplier == 1.0)


class _VGGSegmentation(SegmentationModel):
    """VGG16 encoder + a decoder; loads the encoder's pretrained weights unless rebuilt by ``from_config``."""

    config_class = VGGSegConfig
    with_switches = False

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        self.encoder = VGG16Encoder(c.width_multiplier, with_switches=self.with_switches, name="vgg16")

    def _load_encoder_weights(self) -> None:
        """Called by subclasses once fc6 / fc7 exist: VGG16's convolutions and its fc1 / fc2 as fc6 / fc7
        (``load_vgg16_weights``), unless rebuilt by ``from_config``."""
        c = self.config
        if c.encoder_weights and self._load_pretrained:
            load_vgg16_weights(self.encoder, c.encoder_weights, fc=(self.fc6, self.fc7))

    @property
    def min_divisor(self) -> int:
        return VGG16_STRIDE

    def _fc(self, name: str, kernel: int, activation: Optional[str]) -> keras.layers.Layer:
        """fc6 / fc7 of VGG16 as convolutions (no bias when batch norm follows: it would cancel)."""
        c = self.config
        return keras.layers.Conv2D(scaled(c.fc_filters, c.width_multiplier), kernel, padding="same",
                                   activation=activation, use_bias=activation is not None, name=name)


@dataclasses.dataclass(frozen=True)
class FCN8sConfig(VGGSegConfig):
    __doc__ = VGGSegConfig.__doc__


@register("fcn8s")
class FCN8s(_VGGSegmentation):
    """FCN-8s (Long et al. 2015, section 4.2; Naylor et al. section 5): VGG16 -> fc6 (7x7) -> fc7 (1x1) -> score;
    upsample x2 and add the pool4 score, upsample x2 and add the pool3 score, upsample x8. Learnable transposed
    convolutions initialised as bilinear interpolation (section 3.3), the pool3 / pool4 score layers initialised to
    zero (section 4.2), so that training starts from the coarser net's prediction. 'same' padding replaces the
    paper's 100-pixel input padding and crop layers, so the output has the input's size whenever it is a multiple of
    32 (and is padded otherwise)."""

    config_class = FCN8sConfig

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        nc = self.config.num_classes
        # === Layers ===
        self.fc6 = self._fc("fc6", 7, "relu")
        self.fc7 = self._fc("fc7", 1, "relu")
        self.drop6 = keras.layers.Dropout(self.config.dropout, name="drop6")
        self.drop7 = keras.layers.Dropout(self.config.dropout, name="drop7")
        self.score_fr = keras.layers.Conv2D(nc, 1, name="score_fr")
        self.score_pool4 = keras.layers.Conv2D(nc, 1, kernel_initializer="zeros", name="score_pool4")
        self.score_pool3 = keras.layers.Conv2D(nc, 1, kernel_initializer="zeros", name="score_pool3")
        self.upscore2 = self._upsample(2, "upscore2")
        self.upscore_pool4 = self._upsample(2, "upscore_pool4")
        self.upscore8 = self._upsample(8, "upscore8")
        self._load_encoder_weights()

    def _upsample(self, factor: int, name: str) -> keras.layers.Layer:
        return keras.layers.Conv2DTranspose(self.config.num_classes, 2 * factor, strides=factor, padding="same",
                                            use_bias=False, kernel_initializer=BilinearUpsampling(), name=name)

    def forward(self, x, training=None):
        f = self.encoder(x)
        h = self.drop6(self.fc6(f["pool5"]), training=training)
        h = self.drop7(self.fc7(h), training=training)
        h = self.upscore2(self.score_fr(h)) + self.score_pool4(f["pool4"])  # 1/16
        h = self.upscore_pool4(h) + self.score_pool3(f["pool3"])  # 1/8
        return self.upscore8(h)


@dataclasses.dataclass(frozen=True)
class DeconvNetConfig(VGGSegConfig):
    __doc__ = VGGSegConfig.__doc__ + """
    dropout: 0 by default for DeconvNet: Noh et al.'s released network normalises every layer and has no dropout,
      and dropout in front of a batch normalisation shifts its statistics between training and inference (Li et
      al., CVPR 2019).
    bn_momentum: momentum of the batch normalisations' moving statistics (0.9: an average over ~10 steps; Keras's
      default 0.99 averages ~100, too slow to follow the weights in short trainings).
    The measurements behind both defaults: docs/results/segmentation.md, "DeconvNet notes".
    """

    dropout: float = 0.0
    bn_momentum: float = 0.9

    def validate(self):
        super().validate()
        self._check_float("bn_momentum", 0.0, 1.0, high_open=True)


@register("deconvnet")
class DeconvNet(_VGGSegmentation):
    """DeconvNet (Noh et al. 2015, section 3; Naylor et al. section 5): VGG16 pooling with switches -> fc6 (7x7) ->
    fc7 (1x1) -> 7x7 deconvolution back to the pool5 maps -> a decoder mirroring the encoder, each block an
    unpooling with the encoder's switches followed by 3x3 deconvolutions (512,512,512 | 512,512,256 | 256,256,128 |
    128,64 | 64,64), batch normalisation + ReLU after every fc / deconvolution, then a 1x1 score.
    Differences from the 224x224 original: fc6 and the first deconvolution use 'same' padding (any size that is a
    multiple of 32, not only a 7x7 pool5 map); batch normalisation is in the decoder only, so the encoder stays the
    plain VGG16 whose ImageNet weights load; fc6 / fc7 take VGG16's fc1 / fc2 reshaped into convolutions when the
    weights file has them (Long et al. 2015, section 3.1; their biases are left out: batch normalisation follows)."""

    config_class = DeconvNetConfig
    with_switches = True
    DECODER = ((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 64), (64, 64))  # block 5 -> 1

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        # === Layers ===
        self.fc6 = self._fc("fc6", 7, None)  # batch norm, then ReLU
        self.fc7 = self._fc("fc7", 1, None)
        self.drop6 = keras.layers.Dropout(c.dropout, name="drop6")
        self.drop7 = keras.layers.Dropout(c.dropout, name="drop7")
        self.bn6 = keras.layers.BatchNormalization(momentum=c.bn_momentum, name="fc6_bn")
        self.bn7 = keras.layers.BatchNormalization(momentum=c.bn_momentum, name="fc7_bn")
        self.deconv_fc6 = self._deconv(512, 7, "deconv_fc6")
        self.decoder = [[self._deconv(maps, 3, f"deconv{5 - b}_{i}") for i, maps in enumerate(block, start=1)]
                        for b, block in enumerate(self.DECODER)]
        self.score = keras.layers.Conv2D(c.num_classes, 1, name="score")
        self._load_encoder_weights()

    def _deconv(self, maps: int, kernel: int, name: str) -> list:
        """A deconvolution (no bias: batch norm follows) and its batch normalisation (ReLU in ``_apply``)."""
        c = self.config
        return [keras.layers.Conv2DTranspose(scaled(maps, c.width_multiplier), kernel, padding="same",
                                             use_bias=False, name=name),
                keras.layers.BatchNormalization(momentum=c.bn_momentum, name=f"{name}_bn")]

    @staticmethod
    def _apply(pair, x, training):
        deconv, bn = pair
        return keras.ops.relu(bn(deconv(x), training=training))

    def forward(self, x, training=None):
        f = self.encoder(x)
        h = self.drop6(keras.ops.relu(self.bn6(self.fc6(f["pool5"]), training=training)), training=training)
        h = self.drop7(keras.ops.relu(self.bn7(self.fc7(h), training=training)), training=training)
        h = self._apply(self.deconv_fc6, h, training)
        for b, block in zip((5, 4, 3, 2, 1), self.decoder):
            h = max_unpool(h, f[f"switches{b}"])
            for pair in block:
                h = self._apply(pair, h, training)
        return self.score(h)


# ========================================================================================================== Ensemble
@dataclasses.dataclass(frozen=True)
class EnsembleMember:
    """One member of an ensemble: a registered model name and its config."""

    name: str
    config: ModelConfig

    def to_dict(self) -> dict:
        return {"name": self.name, "config": self.config.to_dict()}


@dataclasses.dataclass(frozen=True)
class EnsembleConfig(ModelConfig):
    """Averaged posteriors of member models (Naylor et al. section 5, after Noh et al.: FCN + DeconvNet).

    members: list of {name: registered model, config: its options}; all must predict the same num_classes.
    The ensemble pads to the least common multiple of the members' divisors.
    """

    members: tuple = (EnsembleMember("fcn8s", FCN8sConfig()), EnsembleMember("deconvnet", DeconvNetConfig()))

    def validate(self):
        if not isinstance(self.members, tuple) or not self.members:
            self._fail("members", "must be a non-empty list of {name, config}")
        for m in self.members:
            if not isinstance(m, EnsembleMember):
                self._fail("members", f"entries must be {{name, config}} mappings, got {m!r}")
        counts = {m.config.num_classes for m in self.members if hasattr(m.config, "num_classes")}
        if len(counts) != 1:
            self._fail("members", f"must all predict the same num_classes, got {sorted(counts)}")

    @property
    def num_classes(self) -> int:
        return self.members[0].config.num_classes

    @classmethod
    def _coerce(cls, key: str, value: Any) -> Any:
        if key != "members":
            return super()._coerce(key, value)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"model {cls.model_name!r}: option 'members' must be a list of {{name, config}}, "
                              f"got {value!r}")
        return tuple(_member(cls.model_name, m) for m in value)


def _member(owner: str, spec: Any) -> EnsembleMember:
    if isinstance(spec, EnsembleMember):
        return spec
    if not isinstance(spec, Mapping) or "name" not in spec or set(spec) - {"name", "config"}:
        raise ConfigError(f"model {owner!r}: each member must be a mapping with 'name' and optional 'config', "
                          f"got {spec!r}")
    return EnsembleMember(spec["name"], get(spec["name"]).config_class.from_dict(spec.get("config")))


@register("ensemble")
class Ensemble(SegmentationModel):
    """Mean of the members' softmax posteriors; each member normalises and pads its own input."""

    config_class = EnsembleConfig

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        self.members = [get(m.name)(m.config, load_pretrained=self._load_pretrained, name=f"member{i}_{m.name}")
                        for i, m in enumerate(self.config.members)]

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def min_divisor(self) -> int:
        return math.lcm(*(m.min_divisor for m in self.members))

    def call(self, inputs, training=None):
        outputs = [m(inputs, training=training) for m in self.members]
        return keras.ops.mean(keras.ops.stack(outputs, axis=0), axis=0)

    @classmethod
    def from_members(cls, models: list, **kwargs) -> "Ensemble":
        """An ensemble of already trained registered models (their weights are copied)."""
        for m in models:
            if not getattr(m, "registry_name", "") or not m.built:
                raise ConfigError(f"ensemble members must be built, registered histozoo models, got {m!r}")
        ens = cls({"members": [{"name": m.registry_name, "config": m.config} for m in models]},
                  load_pretrained=False, **kwargs)
        for target, source in zip(ens.members, models):
            target.build((None, None, None, 3))
            target.set_weights(source.get_weights())
        ens.build((None, None, None, 3))
        return ens
