"""Neural stain normalization networks: Yuan & Suh's colorization CNN (after Iizuka et al. 2016) and Bhatia's
ColorNormNet. Both take float32 RGB ``[B, H, W, 3]`` in [0, 1] and return float32 RGB in [0, 1] of the same size; they
train with their own ``train_step`` on the (x, y, w) batches of the one training core (zoo.training.train: compile,
then fit). ``zoo.stain.neural`` wraps them as stain normalizers (``colorization``, ``colornormnet``).

Colorization (Yuan & Suh sec. 3.1, Iizuka et al. sec. 3): the network sees only the luminance L of CIELAB and
predicts the chroma (a, b); the output is Lab(L_input, a, b) -> RGB, so the input's luminance is kept exactly and
only the colour is re-calibrated (predicting RGB would let the net change structure, which a stain normalizer must
not; Iizuka et al. predict chroma for the same reason). Low-level encoder: 8 3x3 conv layers, stride-2 convolutions
instead of pooling (224 -> 28 x 28 x 256). Global branch: the same low-level encoder on the image resized to
``global_size`` (224; Iizuka et al. resize the global input so the fully connected layers see a fixed size), 4 conv
layers, fully connected 1024 -> 512 -> 256 (the global feature vector) and a tissue-class head (FC 256 -> classes)
on the 512 layer. Fusion: the 256-d vector concatenated at every encoder position, 1x1 conv. Decoder: conv +
nearest upsampling back to the input size, tanh chroma. BatchNorm + ReLU after every conv / FC except the outputs.
Loss (Yuan & Suh sec. 3.1, Iizuka eq. 3): MSE(chroma / 100) + alpha * cross-entropy(tissue class), alpha =
``class_loss_weight`` (1/30 .. 1/300; 0 = "without the classification loss"). Stain transfer (their Fig. 6):
``transfer(source, g)`` fuses the source's low-level features with a target image's global vector ``g``.

ColorNormNet (Bhatia ch. 6, eq. 6.1-6.2): self-supervised. A clean target-domain patch I_t gets independent offsets
eps_1, eps_2 ~ U(-0.2, 0.2) added to R and B (G untouched: ``perturb``); a light network predicts the clean patch
from the perturbed one; loss ||I^ - I_t||_1 + lambda ||I^ - I_t||_2^2, taken as per-pixel means. lambda is not given
in the report: ``l2_weight`` = 1.0 here (both terms on the same per-pixel scale). The network follows the report's
"estimate the colour shift needed in each channel": strided conv + BN + ReLU layers, global average pooling, FC ->
one additive shift per channel (R, G, B), output clip(I + shift, 0, 1); the shift's layer starts at zero, so the
untrained net is the identity.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import keras
import tensorflow as tf

from zoo.models.base import ModelConfig, crop_to, pad_to_multiple
from zoo.models.registry import register

AB_SCALE = 110.0  # tanh * 110 spans the sRGB gamut's chroma (a in [-86, 98], b in [-108, 95])
LOSS_AB_SCALE = 100.0  # the MSE is on chroma / 100 (O(1) targets)

#: Tissue classes of the colorization head: the MoNuSeg organ (the reader's ORGANS, named from the TCGA code as
#: WeakNucleiSeg / PROVENANCE name it) and, for the other datasets, the dataset of origin (TNBC breast,
#: CRCHistoPhenotypes colon, bone marrow): the input layer's ``target: tissue_class`` (zoo.data.input).
from zoo.data.input import tissue_classes  # noqa: E402

TISSUE_CLASSES = tissue_classes()

def _conv(filters, stride=1, kernel=3, name=None):
    return keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)


class ConvBNReLU(keras.layers.Layer):
    """conv (no bias) -> BatchNorm -> ReLU (Yuan & Suh: "ReLU ... and batch normalization at each layer")."""

    def __init__(self, filters: int, stride: int = 1, kernel: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.stride, self.kernel = filters, stride, kernel
        self.conv = _conv(filters, stride, kernel, name="conv")
        self.bn = keras.layers.BatchNormalization(name="bn")

    def call(self, x, training=None):
        return keras.ops.relu(self.bn(self.conv(x), training=training))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "stride": self.stride, "kernel": self.kernel}


keras.saving.register_keras_serializable(package="histozoo", name="ConvBNReLU")(ConvBNReLU)


def compile_from_config(model, config) -> None:
    """Keras skips ``compile_from_config`` for models that override ``compile``: re-run ours, then build the optimizer
    so its saved state (Adadelta's accumulators, the step count) loads with the weights."""
    config = keras.saving.deserialize_keras_object(config)
    model.compile(**config)
    if model.built and model.optimizer is not None:
        model.optimizer.build(model.trainable_variables)


def _train_metrics(*names):
    return {n: keras.metrics.Mean(name=n) for n in names}


# ================================================================================================ colorization
@dataclasses.dataclass(frozen=True)
class ColorizationConfig(ModelConfig):
    """Yuan & Suh's colorization network (sec. 3.1; Iizuka et al. 2016).

    low_filters / low_strides: the low-level encoder, 8 3x3 convs (stride 2 three times: 224 -> 28 x 28 x 256).
    global_filters / global_strides: the global branch's 4 convs (on the low-level features of the image resized to
    ``global_size``; total stride 8 x 4 = 32, so 224 -> 7 x 7).  global_fc: its fully connected layers, the last one
    the global feature vector (256-d).  class_hidden: the classification head's hidden FC (on the second-to-last
    global FC, 512).  num_classes: tissue classes (default the 12 of ``TISSUE_CLASSES``).
    decoder_filters / decoder_upsample: decoder convs and after which of them to upsample x2 (as many as the
    encoder's stride-2 layers).  class_loss_weight: alpha, the classification loss's weight (1/30 .. 1/300, or 0 for
    the network without the classification loss).  rho, epsilon: Adadelta's (the paper: lr 1.0, rho 0.9, eps 1e-6;
    the learning rate is the experiment config's).
    """

    low_filters: tuple = (64, 128, 128, 256, 256, 256, 256, 256)
    low_strides: tuple = (2, 1, 2, 1, 2, 1, 1, 1)
    global_filters: tuple = (512, 512, 512, 512)
    global_strides: tuple = (2, 1, 2, 1)
    global_fc: tuple = (1024, 512, 256)
    class_hidden: int = 256
    num_classes: int = len(TISSUE_CLASSES)
    decoder_filters: tuple = (128, 64, 64, 32)
    decoder_upsample: tuple = (True, False, True, True)
    global_size: int = 224
    class_loss_weight: float = 1.0 / 100
    rho: float = 0.9
    epsilon: float = 1e-6

    def validate(self) -> None:
        for name in ("low_filters", "global_filters", "global_fc", "decoder_filters"):
            v = getattr(self, name)
            if not isinstance(v, tuple) or not v or not all(isinstance(f, int) and f >= 1 for f in v):
                self._fail(name, f"must be a non-empty list of integers >= 1, got {v!r}")
        for name, ref in (("low_strides", "low_filters"), ("global_strides", "global_filters")):
            v = getattr(self, name)
            if not isinstance(v, tuple) or len(v) != len(getattr(self, ref)) or any(s not in (1, 2) for s in v):
                self._fail(name, f"must list a stride 1 or 2 for each of {ref}, got {v!r}")
        if len(self.global_fc) < 2:
            self._fail("global_fc", "needs at least 2 layers (the class head reads the second-to-last)")
        up = self.decoder_upsample
        if (not isinstance(up, tuple) or len(up) != len(self.decoder_filters)
                or not all(isinstance(u, bool) for u in up) or sum(up) != self.low_strides.count(2)):
            self._fail("decoder_upsample", f"must give true/false for each decoder conv, true as often as the "
                                           f"encoder has stride 2 ({self.low_strides.count(2)}), got {up!r}")
        self._check_int("class_hidden", 1)
        self._check_int("num_classes", 2)
        self._check_int("global_size", 1)
        stride = 2 ** (self.low_strides.count(2) + self.global_strides.count(2))
        if self.global_size % stride:
            self._fail("global_size", f"must be a multiple of the global branch's total stride {stride}, "
                                      f"got {self.global_size}")
        a = self.class_loss_weight
        if not (isinstance(a, (int, float)) and not isinstance(a, bool)
                and (a == 0 or 1 / 300 - 1e-12 <= a <= 1 / 30 + 1e-12)):
            self._fail("class_loss_weight", f"must be 0 or lie in [1/300, 1/30] (Yuan & Suh), got {a!r}")
        self._check_float("rho", 0.0, 1.0, low_open=True, high_open=True)
        self._check_float("epsilon", 0.0, 1.0, low_open=True)


class _OwnLossModel(keras.Model):
    """A network trained on its own loss (``loss_terms``) by its own train step inside the one core: ``compile``
    ignores the core's loss and metrics, builds the network (the step does not go through ``__call__``, so saving
    must find the shape recorded) and lets the subclass set up the optimizer (``_optimizer``). The subclass sets
    ``config_class`` and ``trackers`` (``_train_metrics``, the loss first); its config round-trips through
    ``get_config`` / ``from_config``; its output has the input's shape."""

    config_class: ClassVar[type] = ModelConfig
    registry_name: ClassVar[str] = ""
    output_channel_names = ("red", "green", "blue")

    def __init__(self, config=None, **kwargs):
        cfg = self.config_class.from_dict(config)
        super().__init__(**kwargs)
        self._config = cfg

    @property
    def config(self):
        return self._config

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _apply(self, loss, tape):
        """One optimizer step on ``loss`` recorded by ``tape``."""
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))

    def _log(self, *values):
        """Update the trackers with the loss terms, in the trackers' order; the step's logs."""
        for m, v in zip(self.trackers.values(), values):
            m.update_state(v)
        return {k: m.result() for k, m in self.trackers.items()}

    def get_config(self) -> dict:
        return {**self._config.to_dict(), "name": self.name, "trainable": self.trainable,
                "dtype": keras.dtype_policies.serialize(self.dtype_policy)}

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        kw = {k: config.pop(k) for k in ("name", "trainable", "dtype") if k in config}
        if isinstance(kw.get("dtype"), dict):
            kw["dtype"] = keras.dtype_policies.deserialize(kw["dtype"])
        return cls(config, **kw)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def _optimizer(self, optimizer):
        return optimizer

    def compile(self, optimizer="adam", loss=None, **kwargs):
        if isinstance(optimizer, str):
            optimizer = keras.optimizers.get(optimizer)
        kwargs.pop("weighted_metrics", None)
        kwargs.pop("metrics", None)
        if not self.built:
            self.build((None, None, None, 3))
        super().compile(optimizer=self._optimizer(optimizer), **kwargs)

    def compile_from_config(self, config):
        """Restore the compile (optimizer) of a saved model, so a resumed run continues its optimizer."""
        compile_from_config(self, config)


@register("colorization")
class ColorizationNet(_OwnLossModel):
    """Yuan & Suh's colorization CNN (module docstring): RGB [0, 1] -> RGB [0, 1] with the input's luminance and
    predicted chroma. ``global_features(x)`` -> [B, 256]; ``transfer(x, g)`` colours x with the global vector g."""

    config_class: ClassVar[type] = ColorizationConfig

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        cfg = self._config
        self.low = [ConvBNReLU(f, s, name=f"low{i}") for i, (f, s) in enumerate(zip(cfg.low_filters,
                                                                                   cfg.low_strides))]
        self.glob = [ConvBNReLU(f, s, name=f"global{i}") for i, (f, s) in enumerate(zip(cfg.global_filters,
                                                                                      cfg.global_strides))]
        self.global_dense = [keras.layers.Dense(f, use_bias=False, name=f"global_fc{i}")
                             for i, f in enumerate(cfg.global_fc)]
        self.global_bn = [keras.layers.BatchNormalization(name=f"global_fc_bn{i}") for i in range(len(cfg.global_fc))]
        self.class_fc = keras.layers.Dense(cfg.class_hidden, use_bias=False, name="class_fc")
        self.class_bn = keras.layers.BatchNormalization(name="class_bn")
        self.class_out = keras.layers.Dense(cfg.num_classes, name="class_logits")
        self.fusion = ConvBNReLU(cfg.low_filters[-1], 1, kernel=1, name="fusion")
        self.decoder = [ConvBNReLU(f, 1, name=f"decoder{i}") for i, f in enumerate(cfg.decoder_filters)]
        self.chroma = keras.layers.Conv2D(2, 3, padding="same", name="chroma")
        self.mse_weight = 1.0
        self.trackers = _train_metrics("loss", "mse", "class_ce")

    @property
    def min_divisor(self) -> int:
        return 2 ** self._config.low_strides.count(2)

    # ---- pieces
    @staticmethod
    def luminance(x):
        """RGB [0, 1] -> L / 100 [B, H, W, 1] (CIELAB, zoo.stain.reinhard.rgb_to_lab)."""
        from zoo.stain.reinhard import rgb_to_lab

        return rgb_to_lab(tf.clip_by_value(tf.cast(x, tf.float32), 0.0, 1.0))[..., :1] / 100.0

    def encode(self, lum, training=None):
        """Low-level (+ mid-level) features of L / 100 [B, H, W, 1] -> [B, H / 8, W / 8, 256]."""
        h = lum
        for layer in self.low:
            h = layer(h, training=training)
        return h

    def global_branch(self, lum, training=None):
        """(global vector [B, 256], class logits [B, classes]) of L / 100, resized to ``global_size``."""
        g = self._config.global_size
        h = self.encode(tf.image.resize(lum, [g, g], "bilinear", antialias=True), training=training)
        for layer in self.glob:
            h = layer(h, training=training)
        h = keras.ops.reshape(h, (keras.ops.shape(h)[0], -1))
        feats = []
        for dense, bn in zip(self.global_dense, self.global_bn):
            h = keras.ops.relu(bn(dense(h), training=training))
            feats.append(h)
        c = keras.ops.relu(self.class_bn(self.class_fc(feats[-2]), training=training))
        return feats[-1], self.class_out(c)

    def decode(self, low, g, training=None):
        """Fuse the global vector g [B, G] at every position of low [B, h, w, C] and decode chroma [B, 8h, 8w, 2]
        (CIELAB a, b)."""
        s = tf.shape(low)
        tiled = tf.broadcast_to(g[:, None, None, :], tf.stack([s[0], s[1], s[2], tf.shape(g)[-1]]))
        h = self.fusion(tf.concat([low, tf.cast(tiled, low.dtype)], -1), training=training)
        for layer, up in zip(self.decoder, self._config.decoder_upsample):
            h = layer(h, training=training)
            if up:
                h = keras.ops.repeat(keras.ops.repeat(h, 2, axis=1), 2, axis=2)
        return keras.ops.tanh(keras.ops.cast(self.chroma(h), "float32")) * AB_SCALE

    def _predict(self, x, g=None, training=None):
        """-> (rgb [B, H, W, 3], ab [B, H, W, 2], logits or None, L / 100)."""
        from zoo.stain.reinhard import lab_to_rgb

        x = tf.ensure_shape(tf.cast(x, tf.float32), [None, None, None, 3])
        x, h, w = pad_to_multiple(x, self.min_divisor)
        lum = self.luminance(x)
        logits = None
        if g is None:
            g, logits = self.global_branch(lum, training=training)
        ab = self.decode(self.encode(lum, training=training), g, training=training)
        rgb = lab_to_rgb(tf.concat([lum * 100.0, ab], -1))
        return crop_to(rgb, h, w), crop_to(ab, h, w), logits, crop_to(lum, h, w)

    def call(self, inputs, training=None):
        return self._predict(inputs, training=training)[0]

    def global_features(self, x):
        """The 256-d global vector of RGB images [B, H, W, 3] in [0, 1] (inference mode)."""
        return self.global_branch(self.luminance(x), training=False)[0]

    def transfer(self, x, g):
        """Stain transfer (Yuan & Suh Fig. 6): x's low-level features fused with the global vector g ([G] or
        [B, G], e.g. ``global_features(target)``) -> RGB [0, 1] with x's luminance."""
        g = tf.convert_to_tensor(g, tf.float32)
        if g.shape.rank == 1:
            g = tf.broadcast_to(g[None], tf.stack([tf.shape(x)[0], tf.shape(g)[0]]))
        return self._predict(x, g, training=False)[0]

    def build(self, input_shape=None):
        if self.built:
            return
        side = max(self.min_divisor, 8)
        with tf.init_scope():
            self._predict(tf.zeros((1, side, side, 3)), training=False)
        self.built = True

    # ---- training
    def compile(self, optimizer="adadelta", loss=None, **kwargs):
        """Keras compile (``_OwnLossModel``); default Adadelta as Yuan & Suh."""
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def _optimizer(self, optimizer):
        """An Adadelta optimizer gets the config's rho and epsilon (Yuan & Suh: 0.9, 1e-6)."""
        if isinstance(optimizer, keras.optimizers.Adadelta):
            optimizer.rho, optimizer.epsilon = self._config.rho, self._config.epsilon
        return optimizer

    def loss_terms(self, x, classes, training=True):
        """(total, mse, ce): MSE of the chroma / 100 + alpha * mean cross-entropy of the tissue class (images whose
        class is < 0 are left out of the CE; all unknown -> CE 0)."""
        from zoo.stain.reinhard import rgb_to_lab

        x = tf.cast(x, tf.float32)
        _, ab, logits, _ = self._predict(x, training=training)
        target = rgb_to_lab(tf.clip_by_value(x, 0.0, 1.0))[..., 1:]
        mse = tf.reduce_mean(tf.square((ab - target) / LOSS_AB_SCALE))
        classes = tf.reshape(tf.cast(classes, tf.int32), [-1])
        known = tf.cast(classes >= 0, tf.float32)
        ce_each = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.maximum(classes, 0), tf.cast(logits, tf.float32))
        ce = tf.reduce_sum(ce_each * known) / tf.maximum(tf.reduce_sum(known), 1.0)
        return mse + self._config.class_loss_weight * ce, mse, ce

    def _classes(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        y = data[1] if isinstance(data, (tuple, list)) and len(data) > 1 else None
        if y is None or isinstance(y, dict) or len(y.shape) != 1:
            y = -tf.ones(tf.shape(x)[:1], tf.int32)  # no image-level class: colour loss only
        return x, y

    def train_step(self, data):
        x, y = self._classes(data)
        with tf.GradientTape() as tape:
            terms = self.loss_terms(x, y, training=True)
        self._apply(terms[0], tape)
        return self._log(*terms)

    def test_step(self, data):
        x, y = self._classes(data)
        return self._log(*self.loss_terms(x, y, training=False))


# ================================================================================================ ColorNormNet
@dataclasses.dataclass(frozen=True)
class ColorNormNetConfig(ModelConfig):
    """Bhatia's ColorNormNet (ch. 6).

    filters / strides: the light network's 3x3 conv + BN + ReLU layers; hidden: the FC layer after global average
    pooling; offset_range: the perturbation's half-width r (eps ~ U(-r, r) on R and B; the report: 0.2);
    l2_weight: lambda of L1 + lambda L2 (not given in the report; 1.0 chosen).
    """

    filters: tuple = (16, 32, 64, 64)
    strides: tuple = (2, 2, 2, 2)
    hidden: int = 64
    offset_range: float = 0.2
    l2_weight: float = 1.0

    def validate(self) -> None:
        if not isinstance(self.filters, tuple) or not self.filters or not all(
                isinstance(f, int) and f >= 1 for f in self.filters):
            self._fail("filters", f"must be a non-empty list of integers >= 1, got {self.filters!r}")
        if (not isinstance(self.strides, tuple) or len(self.strides) != len(self.filters)
                or any(s not in (1, 2) for s in self.strides)):
            self._fail("strides", f"must give a stride 1 or 2 for each of filters, got {self.strides!r}")
        self._check_int("hidden", 1)
        self._check_float("offset_range", 0.0, 1.0, low_open=True)
        self._check_float("l2_weight", 0.0, math.inf, high_open=True)


@register("colornormnet")
class ColorNormNet(_OwnLossModel):
    """Bhatia's ColorNormNet (module docstring): RGB [0, 1] -> clip(RGB + per-channel shift, 0, 1)."""

    config_class: ClassVar[type] = ColorNormNetConfig

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        cfg = self._config
        self.convs = [ConvBNReLU(f, s, name=f"conv{i}") for i, (f, s) in enumerate(zip(cfg.filters, cfg.strides))]
        self.fc = keras.layers.Dense(cfg.hidden, use_bias=False, name="fc")
        self.fc_bn = keras.layers.BatchNormalization(name="fc_bn")
        self.shift = keras.layers.Dense(3, kernel_initializer="zeros", name="shift")
        self.seed_generator = keras.random.SeedGenerator(0, name="perturb_seed")
        self.trackers = _train_metrics("loss", "l1", "l2")

    @property
    def min_divisor(self) -> int:
        return 1

    def shifts(self, x, training=None):
        """The per-image, per-channel shifts [B, 3] the network estimates for RGB x [B, H, W, 3] in [0, 1]."""
        h = tf.cast(x, tf.float32) - 0.5
        for layer in self.convs:
            h = layer(h, training=training)
        h = keras.ops.mean(h, axis=(1, 2))
        h = keras.ops.relu(self.fc_bn(self.fc(h), training=training))
        return keras.ops.cast(self.shift(h), "float32")

    def call(self, inputs, training=None):
        x = tf.ensure_shape(tf.cast(inputs, tf.float32), [None, None, None, 3])
        return tf.clip_by_value(x + self.shifts(x, training=training)[:, None, None, :], 0.0, 1.0)

    def build(self, input_shape=None):
        if self.built:
            return
        with tf.init_scope():
            self.call(tf.zeros((1, 8, 8, 3)), training=False)
        self.built = True

    # ---- training
    def perturb(self, x, seed=None):
        """Bhatia eq. 6.1: I_s^R = I_t^R + eps_1, I_s^B = I_t^B + eps_2, I_s^G = I_t^G, eps_1, eps_2 ~ U(-r, r)
        independently per image (not clipped, as the equation). Returns (I_s, eps [B, 2])."""
        x = tf.cast(x, tf.float32)
        r = self._config.offset_range
        eps = keras.random.uniform((tf.shape(x)[0], 2), -r, r, seed=self.seed_generator if seed is None else seed)
        offset = tf.stack([eps[:, 0], tf.zeros_like(eps[:, 0]), eps[:, 1]], -1)
        return x + offset[:, None, None, :], eps


    def loss_terms(self, clean, perturbed, training=True):
        """(total, l1, l2) of the prediction from ``perturbed`` against ``clean`` (Bhatia eq. 6.2, per-pixel
        means): mean |I^ - I_t| + lambda mean (I^ - I_t)^2."""
        pred = self(perturbed, training=training)
        d = pred - tf.cast(clean, tf.float32)
        l1, l2 = tf.reduce_mean(tf.abs(d)), tf.reduce_mean(tf.square(d))
        return l1 + self._config.l2_weight * l2, l1, l2

    def train_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        perturbed, _ = self.perturb(x)
        with tf.GradientTape() as tape:
            terms = self.loss_terms(x, perturbed, training=True)
        self._apply(terms[0], tape)
        return self._log(*terms)

    def test_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        perturbed, _ = self.perturb(x)
        return self._log(*self.loss_terms(x, perturbed, training=False))


