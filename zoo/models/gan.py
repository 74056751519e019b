"""Hu et al.'s InfoWGAN-GP (IEEE JBHI 2019, "Unsupervised learning for cell-level visual representation in
histopathology images with generative adversarial networks", section III-A, Fig. 3) and Yuan & Suh's InfoGAN variant
("Neural stain normalization and unsupervised classification of cell nuclei in histopathological breast cancer
images", section 3.3): a generator G, a critic D and an auxiliary network Q on single-nucleus crops.

Architecture (Fig. 3c; the residual networks of Gulrajani et al.'s WGAN-GP CIFAR model, which Hu et al. build on):

- G: (z, one-hot c) -> dense -> S/8 x S/8 x g_filters -> 3 up resblocks (batch norm, ReLU, nearest-neighbour x2,
  3x3 conv, batch norm, ReLU, 3x3 conv; shortcut: nearest x2 + 1x1 conv) -> batch norm, ReLU, 3x3 conv, tanh.
- D: 4 resblocks without batch norm (1: conv, ReLU, conv, mean-pool with a mean-pool + 1x1 shortcut; 2: ReLU, conv,
  ReLU, conv, mean-pool; 3, 4: the same without resampling, identity shortcut) -> ReLU, spatial mean, dense -> 1
  (no bias: the WGAN losses are blind to a constant, its gradient is always 0).
- Q: a dense layer to k logits on D's trunk (``q_shares_trunk=True``, the default of both variants). Hu et al.'s
  released code does this (one trunk ``netD`` with the heads ``netD_D`` and ``netD_Q``; the Q step updates the trunk
  and ``netD_Q``), and Yuan & Suh write it ("the discriminator D is connected to two modules, D_D and D_Q").
  ``q_shares_trunk=False`` gives Q its own trunk of D's architecture (one reading of Hu et al.'s "G, D and Q all have
  the structures of residual networks"); measured here, that Q never left chance level (docs/results/clustering.md):
  its unnormalised trunk's pooled output barely varies between crops, so neither Q nor G gets a usable MI gradient.

Embedding (Hu et al. IV-C): the output of each of D's 4 resblocks max-pooled to a 4 x 4 grid (adaptive bins when the
side is not a multiple of 4), flattened and concatenated: 4 x 16 x d_filters = 8192 values at d_filters = 128.

Contract: ``model(crops)`` with crops float32 [B, S, S, 3] in [0, 1] (S = image_size) returns
``{"probabilities": Q(c|x) [B, k], "embedding": [B, E]}`` (the test process of Fig. 3b); the networks work on
[-1, 1] inside (G's tanh range). Training: ``compile`` / ``train_step`` run the game of zoo.training.gan (5 critic,
1 generator, 1 Q step per iteration), which the one training core's ``fit`` drives. They import zoo.training.gan when
called (DESIGN: training/gan.py holds the GAN train_step), the one place zoo.models reaches into zoo.training.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import keras
import numpy as np

from zoo.models.base import ModelConfig
from zoo.models.registry import PACKAGE, register

_KERAS_KEYS = ("name", "trainable", "dtype")
GAME_METRICS = ("loss", "v_dg", "gp", "g_loss", "q_loss")  # zoo.training.gan's per-epoch logs


# ---------------------------------------------------------------------------------------------------- layers
def _nearest_up(x):
    return keras.ops.repeat(keras.ops.repeat(x, 2, axis=1), 2, axis=2)


def _mean_pool(x):
    return keras.ops.average_pool(x, 2, strides=2, padding="valid")


def adaptive_max_pool(x, bins: int = 4):
    """[B, H, W, C] -> [B, bins, bins, C]: the maximum over bin (i, j) = rows floor(i H / bins) .. ceil((i + 1) H /
    bins), the same for columns (PyTorch's AdaptiveMaxPool2d); a plain max-pool when H and W are multiples of bins."""
    h, w = int(x.shape[1]), int(x.shape[2])
    if h % bins == 0 and w % bins == 0:
        return keras.ops.max_pool(x, (h // bins, w // bins), strides=(h // bins, w // bins), padding="valid")
    rows = []
    for i in range(bins):
        r0, r1 = (i * h) // bins, -(-((i + 1) * h) // bins)
        cols = []
        for j in range(bins):
            c0, c1 = (j * w) // bins, -(-((j + 1) * w) // bins)
            cols.append(keras.ops.max(x[:, r0:r1, c0:c1, :], axis=(1, 2)))
        rows.append(keras.ops.stack(cols, axis=1))
    return keras.ops.stack(rows, axis=1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResBlock(keras.layers.Layer):
    """One residual block of Fig. 3c: ``resample`` "up" (G: batch norm, nearest-neighbour x2), "down" (D: mean-pool
    after the second conv) or "none"; ``first``: D's first block (no ReLU before its first conv, the shortcut
    mean-pools before its 1x1 conv, as Gulrajani et al.'s OptimizedResBlockDisc1)."""

    def __init__(self, filters: int, resample: str = "none", batch_norm: bool = False, first: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.resample, self.batch_norm, self.first = int(filters), resample, bool(batch_norm), first
        self.conv1 = keras.layers.Conv2D(self.filters, 3, padding="same", name="conv1")
        self.conv2 = keras.layers.Conv2D(self.filters, 3, padding="same", name="conv2")
        self.norms = ([keras.layers.BatchNormalization(name="bn1"), keras.layers.BatchNormalization(name="bn2")]
                      if self.batch_norm else [])
        self.shortcut = None

    def build(self, input_shape):
        c = int(input_shape[-1])
        s = tuple(input_shape)
        if self.norms:
            self.norms[0].build(s)
        self.conv1.build(s[:-1] + (c,))
        mid = s[:-1] + (self.filters,)
        if self.norms:
            self.norms[1].build(mid)
        self.conv2.build(mid)
        if c != self.filters or self.resample != "none":
            self.shortcut = keras.layers.Conv2D(self.filters, 1, name="shortcut")
            self.shortcut.build(s)
        self.built = True

    def call(self, x, training=None):
        h = x
        if self.norms:
            h = self.norms[0](h, training=training)
        if not self.first:
            h = keras.ops.relu(h)
        if self.resample == "up":
            h = _nearest_up(h)
        h = self.conv1(h)
        if self.norms:
            h = self.norms[1](h, training=training)
        h = self.conv2(keras.ops.relu(h))
        if self.resample == "down":
            h = _mean_pool(h)
        s = x
        if self.resample == "up":
            s = _nearest_up(s)
        if self.shortcut is not None:
            s = self.shortcut(_mean_pool(s) if self.first and self.resample == "down" else s)
            if self.resample == "down" and not self.first:
                s = _mean_pool(s)
        elif self.resample == "down":
            s = _mean_pool(s)
        return h + s

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "resample": self.resample,
                "batch_norm": self.batch_norm, "first": self.first}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Generator(keras.layers.Layer):
    """G(z, c): noise [B, noise_dim + categories] -> image [B, S, S, 3] in [-1, 1] (module docstring)."""

    def __init__(self, image_size: int, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.image_size, self.filters = int(image_size), int(filters)
        self.start = self.image_size // 8
        self.dense = keras.layers.Dense(self.start * self.start * self.filters, name="dense")
        self.blocks = [ResBlock(self.filters, "up", batch_norm=True, name=f"up{i}") for i in range(3)]
        self.bn = keras.layers.BatchNormalization(name="bn")
        self.out = keras.layers.Conv2D(3, 3, padding="same", name="out")

    def build(self, input_shape):
        self.dense.build(tuple(input_shape))
        side = self.start
        for block in self.blocks:
            block.build((None, side, side, self.filters))
            side *= 2
        self.bn.build((None, side, side, self.filters))
        self.out.build((None, side, side, self.filters))
        self.built = True

    def call(self, noise, training=None):
        h = keras.ops.reshape(self.dense(noise), (-1, self.start, self.start, self.filters))
        for block in self.blocks:
            h = block(h, training=training)
        h = keras.ops.relu(self.bn(h, training=training))
        return keras.ops.tanh(self.out(h))

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size, "filters": self.filters}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Trunk(keras.layers.Layer):
    """D's (and Hu's Q's) residual trunk without batch norm: [B, S, S, 3] in [-1, 1] -> the 4 resblock outputs
    (S/2, S/4, S/4, S/4 pixels square)."""

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        f = self.filters
        self.blocks = [ResBlock(f, "down", first=True, name="block1"), ResBlock(f, "down", name="block2"),
                       ResBlock(f, name="block3"), ResBlock(f, name="block4")]

    def build(self, input_shape):
        s = tuple(input_shape)
        for block in self.blocks:
            block.build(s)
            side = s[1] // 2 if (block.resample == "down" and s[1]) else s[1]
            s = (s[0], side, side, self.filters)
        self.built = True

    def call(self, x, training=None):
        feats = []
        for block in self.blocks:
            x = block(x, training=training)
            feats.append(x)
        return feats

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def _head_input(feats):
    """Gulrajani et al.'s critic head input: ReLU, then the spatial mean of the last resblock's maps."""
    return keras.ops.mean(keras.ops.relu(feats[-1]), axis=(1, 2))


# ---------------------------------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class InfoGANConfig(ModelConfig):
    """Hu et al.'s InfoWGAN-GP (defaults: section IV-B).

    image_size: crop side S (32; a multiple of 8: G starts at S/8).
    categories: k, the categorical code c (5; the number of clusters).
    noise_dim: Gaussian z (32; 64 for their combined dataset C).
    g_filters, d_filters, q_filters: maps of G's, D's and Q's residual blocks (128, WGAN-GP's CIFAR ResNet; the
        8192-d embedding of IV-C is 4 x 4 x 4 x d_filters). q_filters is unused when Q shares D's trunk.
    q_shares_trunk: True = D_D and D_Q heads on one trunk (Hu et al.'s released code; Yuan & Suh); False = Q is its
        own residual network of D's architecture (module docstring).
    n_critic: critic steps per iteration (5); each takes its own 1/n_critic of the step's batch, so the input batch
        is n_critic x the paper's 64.
    d_learning_rate, q_learning_rate, beta_1, beta_2: the critic's and Q's Adam (Hu: 2e-4, 2e-4, 0.5, 0.9). G's Adam
        is the training core's optimizer (the experiment's ``learning_rate``), given these betas.
    mi_schedule: ``paper`` (Hu et al. IV-B and eq. 11-12: per iteration 5 D, 1 G step on L_G = -E[D] + lambda_2 L_MI,
        1 Q step on L_MI over Q's variables) or ``released`` (Hu et al.'s released code: a step on L_MI alone after
        every critic step and after the G step, updating Q's variables and G, G through a fourth Adam at
        q_learning_rate; G's adversarial step has no MI term). zoo.training.gan runs both.
    """

    image_size: int = 32
    categories: int = 5
    noise_dim: int = 32
    g_filters: int = 128
    d_filters: int = 128
    q_filters: int = 128
    q_shares_trunk: bool = True
    n_critic: int = 5
    d_learning_rate: float = 2e-4
    q_learning_rate: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.9
    mi_schedule: str = "paper"

    def validate(self):
        self._check_int("image_size", 8)
        if self.image_size % 8:
            self._fail("image_size", f"must be a multiple of 8 (G upsamples S/8 three times), got {self.image_size}")
        self._check_int("categories", 2)
        self._check_int("noise_dim", 1)
        for k in ("g_filters", "d_filters", "q_filters", "n_critic"):
            self._check_int(k, 1)
        self._check_bool("q_shares_trunk")
        if self.mi_schedule not in ("paper", "released"):
            self._fail("mi_schedule", f"must be 'paper' or 'released', got {self.mi_schedule!r}")
        for k in ("d_learning_rate", "q_learning_rate"):
            self._check_float(k, 0.0, 1.0, low_open=True)
        for k in ("beta_1", "beta_2"):
            self._check_float(k, 0.0, 1.0, high_open=True)


@dataclasses.dataclass(frozen=True)
class YuanSuhConfig(InfoGANConfig):
    """Yuan & Suh's variant (section 3.3): 40 x 40 crops, z of 16, c 3-way, D_D and D_Q heads on one trunk,
    learning rates D_Q 2e-4, D_D 1e-4 (G's 1e-4 is the experiment's learning_rate). Unstated, kept from Hu et al.:
    the residual networks, n_critic 5, Adam betas (0.5, 0.9)."""

    image_size: int = 40
    categories: int = 3
    noise_dim: int = 16
    d_learning_rate: float = 1e-4
    q_learning_rate: float = 2e-4


# ---------------------------------------------------------------------------------------------------- model
@register("infowgan_gp")
class InfoGAN(keras.Model):
    """G, D and Q of Hu et al. (module docstring); ``call`` is the test process (Q's cluster probabilities and D's
    embedding of real crops); ``generate(z, c)`` is G on [0, 1]."""

    config_class: ClassVar[type[ModelConfig]] = InfoGANConfig
    registry_name: ClassVar[str] = ""

    def __init__(self, config=None, **kwargs):
        cfg = self.config_class.from_dict(config)
        super().__init__(**kwargs)
        self._config = cfg
        # === Layers ===
        self.generator = Generator(cfg.image_size, cfg.g_filters, name="generator")
        self.d_trunk = Trunk(cfg.d_filters, name="d_trunk")
        # no bias: L_D and L_G are invariant to a constant added to D (its gradient is always 0)
        self.d_head = keras.layers.Dense(1, use_bias=False, name="d_head")
        self.q_trunk = None if cfg.q_shares_trunk else Trunk(cfg.q_filters, name="q_trunk")
        self.q_head = keras.layers.Dense(cfg.categories, name="q_head")
        self.seed_generator = keras.random.SeedGenerator(0, name="noise_seed")
        self._game_trackers = {k: keras.metrics.Mean(name=k) for k in GAME_METRICS}

    @property
    def config(self) -> InfoGANConfig:
        return self._config

    @property
    def categories(self) -> int:
        return self._config.categories

    @property
    def min_divisor(self) -> int:
        """The crop side: the model takes crops of exactly this size (the InferenceSpec's divisor)."""
        return self._config.image_size

    @property
    def output_channel_names(self) -> tuple:
        """The InferenceSpec's channels: one per cluster (Q's categories)."""
        return tuple(f"cluster_{i}" for i in range(self._config.categories))

    @property
    def embedding_dim(self) -> int:
        return 4 * 16 * self._config.d_filters

    def build(self, input_shape=None):
        if self.built:
            return
        c, s = self._config, self._config.image_size
        self.generator.build((None, c.noise_dim + c.categories))
        self.d_trunk.build((None, s, s, 3))
        self.d_head.build((None, c.d_filters))
        if self.q_trunk is not None:
            self.q_trunk.build((None, s, s, 3))
        self.q_head.build((None, c.d_filters if self.q_trunk is None else c.q_filters))
        self.built = True

    # ---- the networks (images in [-1, 1])
    def critic(self, x, training=None):
        """D(x) [B] of images in [-1, 1]."""
        return keras.ops.squeeze(self.d_head(_head_input(self.d_trunk(x, training=training))), -1)

    def q_logits(self, x, training=None):
        """Q's logits [B, k] of images in [-1, 1]."""
        trunk = self.d_trunk if self.q_trunk is None else self.q_trunk
        return self.q_head(_head_input(trunk(x, training=training)))

    def generate_scaled(self, noise, training=None):
        """G(noise) in [-1, 1]; ``noise`` = concat(z, one-hot c)."""
        return self.generator(noise, training=training)

    def critic_variables(self) -> list:
        return self.d_trunk.trainable_variables + self.d_head.trainable_variables

    def q_variables(self) -> list:
        """Q's trainable variables: its head, and its own trunk (Hu) or D's shared trunk (Yuan & Suh)."""
        trunk = self.d_trunk if self.q_trunk is None else self.q_trunk
        return trunk.trainable_variables + self.q_head.trainable_variables

    def generator_variables(self) -> list:
        return self.generator.trainable_variables

    # ---- the public API (images in [0, 1])
    def noise(self, batch: int, c=None, z=None):
        """(noise, c): z ~ N(0, 1) [B, noise_dim] (unless given) and c ~ uniform over k categories (unless given),
        concatenated as G's input with c one-hot."""
        cfg = self._config
        if c is None:
            c = keras.random.randint((batch,), 0, cfg.categories, seed=self.seed_generator, dtype="int32")
        if z is None:
            z = keras.random.normal((batch, cfg.noise_dim), seed=self.seed_generator)
        onehot = keras.ops.one_hot(keras.ops.cast(c, "int32"), cfg.categories)
        return keras.ops.concatenate([keras.ops.cast(z, "float32"), onehot], axis=-1), c

    def generate(self, z, c, training=False):
        """G(z, c) as images in [0, 1] (z [B, noise_dim], c int [B])."""
        noise, _ = self.noise(int(np.shape(z)[0]), c=c, z=z)
        return (self.generate_scaled(noise, training=training) + 1.0) * 0.5

    def sample_grid(self, rows: int = 8, seed: int = 0) -> np.ndarray:
        """The papers' Fig. 5 / Fig. 7 grid of G's samples as uint8 [rows * S, k * S, 3]: row r holds one fixed z
        (numpy ``default_rng(seed)``), column j the category c = j."""
        cfg = self._config
        z = np.random.default_rng(seed).standard_normal((rows, cfg.noise_dim)).astype(np.float32)
        imgs = np.asarray(self.generate(np.repeat(z, cfg.categories, axis=0),
                                        np.tile(np.arange(cfg.categories, dtype=np.int32), rows)))
        s, k = cfg.image_size, cfg.categories
        grid = imgs.reshape(rows, k, s, s, 3).transpose(0, 2, 1, 3, 4).reshape(rows * s, k * s, 3)
        return np.clip(np.rint(grid * 255.0), 0, 255).astype(np.uint8)

    def embed_scaled(self, x, training=None):
        """D's features of images in [-1, 1]: each resblock's output max-pooled to 4 x 4, concatenated [B, E]."""
        feats = self.d_trunk(x, training=training)
        return keras.ops.concatenate(
            [keras.ops.reshape(adaptive_max_pool(f), (-1, 16 * self._config.d_filters)) for f in feats], axis=-1)

    def call(self, inputs, training=None):
        x = keras.ops.cast(inputs, "float32") * 2.0 - 1.0
        probs = keras.ops.softmax(keras.ops.cast(self.q_logits(x, training=training), "float32"), axis=-1)
        return {"probabilities": probs, "embedding": self.embed_scaled(x, training=training)}

    def compute_output_shape(self, input_shape):
        return {"probabilities": (input_shape[0], self.categories), "embedding": (input_shape[0], self.embedding_dim)}

    # ---- training: the game of zoo.training.gan (DESIGN: training/gan.py is the GAN train_step the core drives)
    def compile(self, optimizer=None, loss=None, **kwargs):
        """Three Adam optimizers (G: ``optimizer``, the core's; D and Q from the config) and the game's
        ``InfoWGANGPLoss`` (``loss``; default lambda_gp 10, lambda_info 1). See zoo.training.gan.compile_game."""
        from zoo.training import gan  # noqa: PLC0415 (the game lives in zoo.training; imported at compile time)

        gan.compile_game(self, optimizer, loss, **kwargs)

    def train_step(self, data):
        """One iteration of the game: n_critic D steps, 1 G step, 1 Q step (zoo.training.gan.train_step)."""
        from zoo.training import gan  # noqa: PLC0415

        return gan.train_step(self, data)

    @property
    def metrics(self):
        return list(self._game_trackers.values())

    def get_compile_config(self):
        if not getattr(self, "compiled", False) or not hasattr(self, "g_optimizer"):
            return {}
        return {"optimizer": keras.optimizers.serialize(self.g_optimizer), "loss": self.gan_loss.get_config(),
                "run_eagerly": bool(self.run_eagerly)}

    def compile_from_config(self, config):
        if not config:
            return
        from zoo.losses.gan import InfoWGANGPLoss

        self.compile(optimizer=keras.optimizers.deserialize(config["optimizer"]),
                     loss=InfoWGANGPLoss.from_config(config["loss"]), run_eagerly=config.get("run_eagerly", False))
        if self.built:
            self.build_optimizers()

    def build_optimizers(self) -> None:
        """Create the optimizers' slot variables (before a checkpoint's optimizer state is loaded): D's, G's, Q's and,
        with ``mi_schedule: released``, G's MI Adam."""
        self.d_optimizer.build(self.critic_variables())
        self.g_optimizer.build(self.generator_variables())
        self.q_optimizer.build(self.q_variables())
        if getattr(self, "qg_optimizer", None) is not None:
            self.qg_optimizer.build(self.generator_variables())

    # ---- serialisation
    def get_config(self) -> dict:
        return {**self._config.to_dict(), "name": self.name, "trainable": self.trainable,
                "dtype": keras.dtype_policies.serialize(self.dtype_policy)}

    @classmethod
    def from_config(cls, config: dict) -> "InfoGAN":
        config = dict(config)
        keras_kwargs = {k: config.pop(k) for k in _KERAS_KEYS if k in config}
        if isinstance(keras_kwargs.get("dtype"), dict):
            keras_kwargs["dtype"] = keras.dtype_policies.deserialize(keras_kwargs["dtype"])
        return cls(config, **keras_kwargs)


@register("yuan_suh_infogan")
class YuanSuhInfoGAN(InfoGAN):
    """Yuan & Suh's InfoGAN (section 3.3): InfoGAN with YuanSuhConfig's defaults (40 x 40 crops, z 16, c 3-way, D_D
    and D_Q on one trunk, D_Q 2e-4 / D_D 1e-4)."""

    config_class = YuanSuhConfig
