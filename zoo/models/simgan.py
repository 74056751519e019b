"""The SimGAN refiner of Bhatia's synthetic images (Bhatia, "Ground-truth-free nuclei segmentation", sec. 3.2.1;
Shrivastava et al., CVPR 2017, "Learning from simulated and unsupervised images through adversarial training",
sec. 2 and appendix): a fully convolutional refiner R and a local patch discriminator D, trained in turn.

- R (Shrivastava's appendix): 3x3 conv with ``filters`` maps, ``blocks`` ResNet blocks (two 3x3 convs with
  ``filters`` maps, ReLU, identity shortcut), a 1x1 conv to 3 channels, tanh; images in [0, 1] outside, [-1, 1]
  inside. Fully convolutional and stride 1: it refines images of any size (``min_divisor`` 1).
- D (appendix, "local adversarial loss", sec. 2.2): 3x3 conv stride 2 (d_filters[0] = 96), 3x3 conv stride 2 (64),
  3x3 max-pool stride 1, 3x3 conv (32), 1x1 conv (32), 1x1 conv to one logit per local patch: D = sigmoid(logit) is
  the probability that the patch is refined/synthetic (Bhatia's D_psi). Shrivastava's last layer is a 2-way softmax;
  one sigmoid logit is the same classifier.
- History buffer (sec. 2.3): ``history_size`` refined patches kept in a non-trainable variable; each D step sees the
  current refined images plus as many drawn from the buffer (once it has any), after which the current ones are
  written in (appended until it is full, then at random places).
- Losses: zoo.losses.simgan (L_D, L_R = adversarial + lambda * L1(R(x) - x); lambda our choice, 1.0).
- Training: ``compile`` / ``train_step`` run zoo.training.gan's refiner step (1 D step, 1 R step per ``fit`` step),
  driven by the one training core. R's Adam is the core's optimizer (the experiment's ``learning_rate``); D's Adam
  takes ``d_learning_rate`` and both use ``beta_1`` (Shrivastava used SGD at 0.001; Adam with DCGAN's beta_1 0.5 is
  our choice).

Data contract of the training step (S + U in one stream): the batches (x, y, w) of zoo.data.input with
``mixed_supervision: true`` (target inner_contour, types merged) over the records ``histozoo synth --include-real``
writes: a synthetic record has an instance map and per-pixel weights > 0, an unlabelled real record has no labels
and weight 0 on every pixel; so a sample whose weights are all 0 is a real image y_j, any other a synthetic x_i.

Contract: ``model(images)`` float32 [B, H, W, 3] in [0, 1] -> the refined images [B, H, W, 3] in [0, 1].
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import keras

from zoo.models.base import ModelConfig
from zoo.models.registry import PACKAGE, register

_KERAS_KEYS = ("name", "trainable", "dtype")
REFINER_METRICS = ("loss", "d_loss", "adv_loss", "l1", "real_fraction")  # zoo.training.gan's per-epoch logs


@keras.saving.register_keras_serializable(package=PACKAGE)
class RefinerBlock(keras.layers.Layer):
    """Shrivastava's ResNet block: conv 3x3, ReLU, conv 3x3, + input, ReLU."""

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.conv1 = keras.layers.Conv2D(self.filters, 3, padding="same", name="conv1")
        self.conv2 = keras.layers.Conv2D(self.filters, 3, padding="same", name="conv2")

    def build(self, input_shape):
        s = (None, None, None, self.filters)
        self.conv1.build(s)
        self.conv2.build(s)
        self.built = True

    def call(self, x):
        return keras.ops.relu(x + self.conv2(keras.ops.relu(self.conv1(x))))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


@dataclasses.dataclass(frozen=True)
class SimGANConfig(ModelConfig):
    """The refiner and its discriminator (module docstring).

    filters, blocks: R's maps and ResNet blocks (Shrivastava: 64, 4).
    d_filters: D's five conv layers' maps before the logit (Shrivastava: 96, 64, 32, 32).
    patch_size: the side of the training patches (the history buffer holds patches of this size; R itself takes any
        size). Must equal the experiment's input.patch_size.
    history_size: refined patches in the history buffer (128, our choice; Shrivastava sec. 2.3 gives no number).
    d_learning_rate, beta_1: D's Adam learning rate and both Adams' beta_1 (2e-4, 0.5: DCGAN's, our choice).
    """

    filters: int = 64
    blocks: int = 4
    d_filters: tuple = (96, 64, 32, 32)
    patch_size: int = 64
    history_size: int = 128
    d_learning_rate: float = 2e-4
    beta_1: float = 0.5

    def validate(self):
        self._check_int("filters", 1)
        self._check_int("blocks", 0)
        if (not isinstance(self.d_filters, tuple) or len(self.d_filters) != 4
                or not all(isinstance(f, int) and not isinstance(f, bool) and f >= 1 for f in self.d_filters)):
            self._fail("d_filters", f"must be 4 integers >= 1, got {self.d_filters!r}")
        self._check_int("patch_size", 8)
        self._check_int("history_size", 1)
        self._check_float("d_learning_rate", 0.0, 1.0, low_open=True)
        self._check_float("beta_1", 0.0, 1.0, high_open=True)


@register("simgan_refiner")
class SimGANRefiner(keras.Model):
    """R and D of SimGAN (module docstring); ``call`` is R on [0, 1] images."""

    config_class: ClassVar[type[ModelConfig]] = SimGANConfig
    registry_name: ClassVar[str] = ""

    def __init__(self, config=None, **kwargs):
        cfg = self.config_class.from_dict(config)
        super().__init__(**kwargs)
        self._config = cfg
        # === Layers ===
        self.r_in = keras.layers.Conv2D(cfg.filters, 3, padding="same", activation="relu", name="r_in")
        self.r_blocks = [RefinerBlock(cfg.filters, name=f"r_block{i}") for i in range(cfg.blocks)]
        self.r_out = keras.layers.Conv2D(3, 1, name="r_out")
        f = cfg.d_filters
        self.d_layers = [
            keras.layers.Conv2D(f[0], 3, strides=2, padding="same", activation="relu", name="d_conv1"),
            keras.layers.Conv2D(f[1], 3, strides=2, padding="same", activation="relu", name="d_conv2"),
            keras.layers.MaxPooling2D(3, strides=1, padding="same", name="d_pool"),
            keras.layers.Conv2D(f[2], 3, padding="same", activation="relu", name="d_conv3"),
            keras.layers.Conv2D(f[3], 1, activation="relu", name="d_conv4"),
            keras.layers.Conv2D(1, 1, name="d_logit"),
        ]
        self.seed_generator = keras.random.SeedGenerator(0, name="history_seed")
        self._game_trackers = {k: keras.metrics.Mean(name=k) for k in REFINER_METRICS}

    @property
    def config(self) -> SimGANConfig:
        return self._config

    @property
    def min_divisor(self) -> int:
        return 1

    @property
    def output_channel_names(self) -> tuple:
        return ("red", "green", "blue")

    def build(self, input_shape=None):
        if self.built:
            return
        cfg = self._config
        self.r_in.build((None, None, None, 3))
        for b in self.r_blocks:
            b.build((None, None, None, cfg.filters))
        self.r_out.build((None, None, None, cfg.filters))
        channels = 3
        for layer in self.d_layers:
            layer.build((None, None, None, channels))
            channels = getattr(layer, "filters", channels)
        p = cfg.patch_size
        # === History buffer (Shrivastava sec. 2.3): refined patches in [-1, 1] and how many are filled ===
        self.history_buffer = self.add_weight(shape=(cfg.history_size, p, p, 3), initializer="zeros", trainable=False,
                                       name="history")
        self.history_filled = self.add_weight(shape=(), initializer="zeros", dtype="int32", trainable=False,
                                              name="history_filled")
        self.built = True
        self(keras.ops.zeros((1, 8, 8, 3)))  # one call records the input signature model.export() needs

    # ---- the networks (images in [-1, 1])
    def refine_scaled(self, x, training=None):
        h = self.r_in(x)
        for b in self.r_blocks:
            h = b(h)
        return keras.ops.tanh(self.r_out(h))

    def discriminate(self, x, training=None):
        """D's logits [B, h, w, 1], one per local patch, of images in [-1, 1]."""
        for layer in self.d_layers:
            x = layer(x)
        return x

    def refiner_variables(self) -> list:
        return [v for layer in [self.r_in, *self.r_blocks, self.r_out] for v in layer.trainable_variables]

    def discriminator_variables(self) -> list:
        return [v for layer in self.d_layers for v in layer.trainable_variables]

    def call(self, inputs, training=None):
        x = keras.ops.cast(inputs, "float32") * 2.0 - 1.0
        return (self.refine_scaled(x, training=training) + 1.0) * 0.5

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (3,)

    # ---- training: zoo.training.gan's refiner step (DESIGN: training/gan.py is the GAN train_step the core drives)
    def compile(self, optimizer=None, loss=None, **kwargs):
        """R's Adam = ``optimizer`` (the core's), D's Adam from the config, ``loss`` a SimGANLoss
        (zoo.training.gan.compile_refiner)."""
        from zoo.training import gan  # noqa: PLC0415 (the game lives in zoo.training; imported at compile time)

        gan.compile_refiner(self, optimizer, loss, **kwargs)

    def train_step(self, data):
        """One D step and one R step (zoo.training.gan.refiner_train_step)."""
        from zoo.training import gan  # noqa: PLC0415

        return gan.refiner_train_step(self, data)

    @property
    def metrics(self):
        return list(self._game_trackers.values())

    def get_compile_config(self):
        if not getattr(self, "compiled", False) or not hasattr(self, "r_optimizer"):
            return {}
        return {"optimizer": keras.optimizers.serialize(self.r_optimizer), "loss": self.gan_loss.get_config(),
                "run_eagerly": bool(self.run_eagerly)}

    def compile_from_config(self, config):
        if not config:
            return
        from zoo.losses.simgan import SimGANLoss

        self.compile(optimizer=keras.optimizers.deserialize(config["optimizer"]),
                     loss=SimGANLoss.from_config(config["loss"]), run_eagerly=config.get("run_eagerly", False))
        if self.built:
            self.build_optimizers()

    def build_optimizers(self) -> None:
        """Create both optimizers' slot variables (before a checkpoint's optimizer state is loaded)."""
        self.d_optimizer.build(self.discriminator_variables())
        self.r_optimizer.build(self.refiner_variables())

    # ---- serialisation
    def get_config(self) -> dict:
        return {**self._config.to_dict(), "name": self.name, "trainable": self.trainable,
                "dtype": keras.dtype_policies.serialize(self.dtype_policy)}

    @classmethod
    def from_config(cls, config: dict) -> "SimGANRefiner":
        config = dict(config)
        keras_kwargs = {k: config.pop(k) for k in _KERAS_KEYS if k in config}
        if isinstance(keras_kwargs.get("dtype"), dict):
            keras_kwargs["dtype"] = keras.dtype_policies.deserialize(keras_kwargs["dtype"])
        return cls(config, **keras_kwargs)
