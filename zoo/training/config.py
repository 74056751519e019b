"""The experiment config: everything one training run needs, as one frozen dataclass that round-trips to
YAML/JSON. The CLI (`histozoo train --config`), MLflow projects and the TFX Trainer all build one of these and call
``zoo.training.train``.

Example (YAML)::

    name: tnbc-unet-fold1
    model: unet
    model_config: {num_classes: 3}
    data_dir: build/tnbc
    fold: 1                      # TNBC leave-one-patient-out fold (folds.json); or train_split/val_split
    input: {patch_size: 256, batch_size: 8, target: three_class, weight_map: unet}
    loss: weighted_ce
    optimizer: adam              # Yuan & Suh: Adam 1e-4; Naylor: sgd, momentum 0.9, weight_decay 5e-5 (coupled)
    learning_rate: 1.0e-4
    epochs: 50
    steps_per_epoch: 100
    postprocess: {method: dynamics_watershed, lam: 7, threshold: 0.5}
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import re
from typing import Any, Optional

from zoo.errors import ConfigError

OPTIMIZERS = ("adam", "sgd", "adamw", "adadelta")
SCHEDULES = ("constant", "step", "poly", "cosine")
WEIGHT_DECAY_MODES = ("decoupled", "coupled")
BEST_MODES = ("max", "min")
STRATEGIES = ("none", "mirrored", "multi_worker")
COMMUNICATIONS = ("auto", "ring", "nccl")


def _section(cls, d: Optional[dict], name: str):
    """A nested config section ``cls`` from its mapping ``d`` (None: the defaults); an unknown key or a non-mapping is
    a one-line ConfigError naming ``name``."""
    if d is None:
        return cls()
    if not isinstance(d, dict):
        raise ConfigError(f"{name}: expected a mapping, got {type(d).__name__}")
    known = [f.name for f in dataclasses.fields(cls)]
    for k in d:
        if k not in known:
            raise ConfigError(f"{name}.{k}: unknown key (known: {', '.join(known)})")
    return cls(**d)


@dataclasses.dataclass(frozen=True)
class LRScheduleConfig:
    """The learning-rate schedule of a run (the ``lr_schedule`` section), per optimizer step t over T = epochs x
    steps_per_epoch steps, from the config's ``learning_rate`` (zoo.training.train.make_schedule):

    name: constant (default) | step (x ``gamma`` every ``step_epochs`` epochs) | poly (x (1 - t / T) ** ``power``,
    Caffe's "poly" as FCN / DeconvNet training used, power 0.9) | cosine (linear warm-up from 0 over
    ``warmup_epochs`` epochs, then cosine decay to ``min_lr``).
    """

    name: str = "constant"
    step_epochs: int = 0
    gamma: float = 0.1
    power: float = 0.9
    warmup_epochs: int = 0
    min_lr: float = 0.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type == "str" and not isinstance(v, str):
                raise ConfigError(f"lr_schedule.{f.name}: expected a string, got {v!r}")
            if f.type == "int" and (isinstance(v, bool) or not isinstance(v, numbers.Integral)):
                raise ConfigError(f"lr_schedule.{f.name}: expected an integer, got {v!r}")
            if f.type == "float":
                if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                    raise ConfigError(f"lr_schedule.{f.name}: expected a finite number, got {v!r}")
                object.__setattr__(self, f.name, float(v))
        if self.name not in SCHEDULES:
            raise ConfigError(f"lr_schedule.name: must be one of {SCHEDULES}, got {self.name!r}")
        if self.name == "step" and self.step_epochs < 1:
            raise ConfigError(f"lr_schedule.step_epochs: must be >= 1 for the step schedule, got {self.step_epochs}")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"lr_schedule.gamma: must lie in (0, 1], got {self.gamma}")
        if self.power <= 0:
            raise ConfigError(f"lr_schedule.power: must be > 0, got {self.power}")
        if self.warmup_epochs < 0 or (self.warmup_epochs and self.name != "cosine"):
            raise ConfigError(f"lr_schedule.warmup_epochs: must be >= 0, and 0 unless name is cosine, got "
                              f"{self.warmup_epochs}")
        if self.min_lr < 0:
            raise ConfigError(f"lr_schedule.min_lr: must be >= 0, got {self.min_lr}")

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "LRScheduleConfig":
        return _section(cls, d, "lr_schedule")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TrackingConfig:
    """MLflow settings of a run (the ``tracking`` section).

    enabled: log the run to MLflow (``MLFLOW_TRACKING_URI``, default an sqlite file in the working directory).
    experiment: the MLflow experiment.  register_as: registered-model name ("" = do not register).
    log_model: log the trained model (with its InferenceSpec) as the run's MLflow model.
    """

    enabled: bool = True
    experiment: str = "histozoo"
    register_as: str = ""
    log_model: bool = True

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type == "bool" and not isinstance(v, bool):
                raise ConfigError(f"tracking.{f.name}: expected true or false, got {v!r}")
            if f.type == "str" and not isinstance(v, str):
                raise ConfigError(f"tracking.{f.name}: expected a string, got {v!r}")
        if not self.experiment:
            raise ConfigError("tracking.experiment: must not be empty")

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "TrackingConfig":
        return _section(cls, d, "tracking")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DistributeConfig:
    """Multi-device training through tf.distribute (the ``distribute`` section; zoo.training.distribute, docs/scale.md).

    strategy: none (default: the default strategy, one device) | mirrored (``tf.distribute.MirroredStrategy``: one
    machine, one replica per device, gradients all-reduced each step) | multi_worker
    (``tf.distribute.MultiWorkerMirroredStrategy``: the cluster and this worker's task from the ``TF_CONFIG``
    environment variable; every worker runs the same command; refused for now: Keras 3.15's fit fails under it).
    devices: mirrored only: the devices to mirror over, e.g. ["/gpu:0", "/gpu:1"] ([] = every GPU, or the CPU).
    communication: multi_worker only: the collective implementation, auto | ring | nccl.
    ``input.batch_size`` stays the global batch: each step's batch is split evenly across the replicas (so it must be
    divisible by their number), and the weights follow the same trajectory as one device with that batch.
    """

    strategy: str = "none"
    devices: tuple = ()
    communication: str = "auto"

    def __post_init__(self):
        if not isinstance(self.strategy, str) or self.strategy not in STRATEGIES:
            raise ConfigError(f"distribute.strategy: must be one of {STRATEGIES}, got {self.strategy!r}")
        devices = self.devices
        if isinstance(devices, str) or not isinstance(devices, (list, tuple)) or not all(
                isinstance(d, str) and d for d in devices):
            raise ConfigError(f"distribute.devices: expected a list of device names such as '/gpu:0', got "
                              f"{devices!r}")
        if len(set(devices)) != len(devices):
            raise ConfigError(f"distribute.devices: a device is listed twice: {list(devices)!r}")
        if devices and self.strategy != "mirrored":
            raise ConfigError(f"distribute.devices: only for strategy mirrored (got strategy {self.strategy!r}; "
                              f"multi_worker takes its cluster from TF_CONFIG)")
        object.__setattr__(self, "devices", tuple(devices))
        if not isinstance(self.communication, str) or self.communication not in COMMUNICATIONS:
            raise ConfigError(f"distribute.communication: must be one of {COMMUNICATIONS}, got "
                              f"{self.communication!r}")
        if self.communication != "auto" and self.strategy != "multi_worker":
            raise ConfigError(f"distribute.communication: only for strategy multi_worker, got strategy "
                              f"{self.strategy!r}")

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "DistributeConfig":
        return _section(cls, d, "distribute")

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "devices": list(self.devices), "communication": self.communication}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One training run, validated when it is built: every field's type and range, and every nested section against
    the class that consumes it, so a typo fails before any data is read or any MLflow run starts. Errors are one
    ``ConfigError`` line naming the key (``epochs``, ``input.patch_size``, ``postprocess.treshold``, ...);
    ``load`` adds the file's path in front.

    name: run / registered-model base name.  model, model_config: a registered zoo.models name and the options of its
    config class (``zoo.models.get(model).config_class``).
    data_dir: a folder written by `histozoo data build` (or give record file lists to ``train``).
    train_split / val_split: shard splits ("train", "test", "all"); val_split "" = no validation.
    fold: with datasets that have folds.json (TNBC), train on fold k's train images, validate on its test images.
    input: zoo.data.input.InputConfig fields (its ``seed`` defaults to the config's).  loss, loss_config: a
    registered zoo.losses name and its keyword options.
    optimizer: adam | sgd | adamw | adadelta (Yuan & Suh colorization: lr 1.0; rho / eps from the model config);
    learning_rate, momentum (sgd); beta_1, beta_2 (adam / adamw: the decay rates of the first and second moment
    estimates, Kingma & Ba 2015 Alg. 1; Keras' 0.9 / 0.999 by default, Qu et al. 0.9 / 0.99).
    weight_decay, weight_decay_mode: ``decoupled`` (default: Keras' optimizer ``weight_decay``, every variable) or
    ``coupled`` (an L2 penalty (weight_decay / 2) ||k||^2 on the kernels only, in the loss, so its gradient passes
    through momentum / Adam's moments). Naylor et al. (Caffe SGD, momentum 0.9, weight decay 5e-5) and Qu et al.
    (PyTorch Adam, weight_decay 1e-4) both used coupled L2; the configs that reproduce them say so.
    lr_schedule: the learning-rate schedule (LRScheduleConfig): {name: constant | step | poly | cosine,
    step_epochs, gamma, power, warmup_epochs, min_lr}; per step, carried by the checkpoint (a resumed run continues at
    its step).
    epochs, steps_per_epoch, seed (the seed of the model and of the input stream: epoch e's batches are a function of
    (seed, e), so a resumed run equals the uninterrupted one).
    postprocess: how evaluation turns probabilities into instances (zoo.postprocess.config.PostprocessConfig).
    eval_every: evaluate instance metrics on the validation split every N epochs (0 = only at the end); they appear
    in the history as ``val_<metric>`` (its first 4 images).
    best_metric, best_mode: keep ``checkpoints/best.keras`` by this metric ("" = off; ``val_<metric>`` such as
    ``val_aji``, which needs eval_every >= 1, or ``loss``), higher (``max``) or lower (``min``) being better; the run's
    final evaluation, logged model and returned model are then the best checkpoint's. Note: with ``fold`` the
    validation split is the fold's test patient.
    early_stopping_patience: stop after this many evaluations of best_metric without improvement (0 = never).
    checkpoint_every_s: also write last.keras every this many seconds within an epoch (0 = per epoch only); a run
    resumed from such a checkpoint continues at its step. Enabling it adds a batch hook (one clock read per step);
    without it the core has no per-step work.
    mixed_precision: train under Keras' ``mixed_float16`` policy (float16 compute, float32 variables, the loss scaled
    by Keras' LossScaleOptimizer) when a GPU is present; on a CPU-only machine it warns and trains in float32 (so a
    GPU config runs anywhere). The global policy is restored when the run ends.
    precise_bn_batches: after training, recompute every batch-norm layer's moving statistics as the average over
    this many training batches (0 = off); trainable weights are untouched.
    init_weights: start from these weights instead of a random initialisation (fine-tuning): ``pretrained:NAME``
    (a model shipped in the package, zoo.pretrained), a .keras file, a run folder or an MLflow URI. The architecture
    must match ``model`` / ``model_config`` variable for variable (a one-line error names the first mismatch). Only
    the weights are taken: the optimizer starts fresh. Ignored when ``--resume`` finds a checkpoint.
    tracking: MLflow settings (TrackingConfig): enabled, experiment, register_as ("" = do not register), log_model.
    distribute: multi-device training (DistributeConfig): {strategy: none | mirrored | multi_worker, devices,
    communication}; ``input.batch_size`` is the global batch, split evenly across the replicas, so the weights match
    one device's with the same batch (tested to atol 1e-5 on two logical CPUs); multi_worker reads TF_CONFIG and is
    refused in one line while Keras 3.15's fit fails under it (keras-team/keras#20585; docs/scale.md).

    The sections are stored as the plain mappings they were given (so ``to_dict`` / YAML round-trip exactly);
    ``input_config()``, ``tracking_config()``, ``lr_schedule_config()`` and ``distribute_config()`` return them
    typed, with the defaults filled in.
    """

    name: str = "experiment"
    model: str = "unet"
    model_config: dict = dataclasses.field(default_factory=dict)
    data_dir: str = ""
    train_split: str = "train"
    val_split: str = "test"
    fold: Optional[int] = None
    input: dict = dataclasses.field(default_factory=dict)
    loss: str = "weighted_ce"
    loss_config: dict = dataclasses.field(default_factory=dict)
    optimizer: str = "adam"
    learning_rate: float = 1e-4
    momentum: float = 0.9
    beta_1: float = 0.9
    beta_2: float = 0.999
    weight_decay: float = 0.0
    epochs: int = 10
    steps_per_epoch: int = 100
    seed: int = 0
    postprocess: dict = dataclasses.field(default_factory=lambda: {"method": "auto"})
    eval_every: int = 0
    weight_decay_mode: str = "decoupled"
    lr_schedule: dict = dataclasses.field(default_factory=lambda: {"name": "constant"})
    best_metric: str = ""
    best_mode: str = "max"
    early_stopping_patience: int = 0
    checkpoint_every_s: float = 0.0
    mixed_precision: bool = False
    precise_bn_batches: int = 0
    init_weights: str = ""
    tracking: dict = dataclasses.field(default_factory=lambda: {"enabled": True, "experiment": "histozoo",
                                                                 "register_as": "", "log_model": True})
    distribute: dict = dataclasses.field(default_factory=lambda: {"strategy": "none"})

    def __post_init__(self):
        self._check_types()
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not self.name:
            raise ConfigError("name: must not be empty")
        for k in ("epochs", "steps_per_epoch"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(self, k)}")
        for k in ("seed", "eval_every"):
            if getattr(self, k) < 0:
                raise ConfigError(f"{k} must be >= 0, got {getattr(self, k)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.momentum <= 1:
            raise ConfigError(f"momentum must lie in [0, 1], got {self.momentum}")
        for k in ("beta_1", "beta_2"):
            if not 0 <= getattr(self, k) < 1:
                raise ConfigError(f"{k} must lie in [0, 1), got {getattr(self, k)}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.fold is not None and self.fold < 1:
            raise ConfigError(f"fold must be >= 1, got {self.fold}")
        if self.weight_decay_mode not in WEIGHT_DECAY_MODES:
            raise ConfigError(f"weight_decay_mode must be one of {WEIGHT_DECAY_MODES}, got {self.weight_decay_mode!r}")
        if self.best_mode not in BEST_MODES:
            raise ConfigError(f"best_mode must be one of {BEST_MODES}, got {self.best_mode!r}")
        if self.best_metric and self.best_metric != "loss" and not (
                self.best_metric.startswith("val_") and len(self.best_metric) > 4):
            raise ConfigError(f"best_metric must be '', 'loss' or 'val_<metric>' (e.g. val_aji), got "
                              f"{self.best_metric!r}")
        if self.best_metric == "loss" and self.best_mode == "max":
            raise ConfigError("best_mode: best_metric 'loss' improves downwards: set best_mode: min")
        if self.best_metric.startswith("val_") and not self.eval_every:
            raise ConfigError(f"best_metric: {self.best_metric!r} needs eval_every >= 1 (validation metrics are "
                              f"computed every eval_every epochs)")
        for k in ("early_stopping_patience", "precise_bn_batches"):
            if getattr(self, k) < 0:
                raise ConfigError(f"{k} must be >= 0, got {getattr(self, k)}")
        if self.early_stopping_patience and not self.best_metric:
            raise ConfigError("early_stopping_patience: needs best_metric (the metric whose plateau stops the run)")
        if self.checkpoint_every_s < 0:
            raise ConfigError(f"checkpoint_every_s must be >= 0, got {self.checkpoint_every_s}")
        self._check_sections()

    # ------------------------------------------------------------------ validation
    def _check_types(self) -> None:
        """Every top-level field has its declared type: ints reject "five", [1, 2] and true; floats take ints
        (stored as floats) but no strings; strings reject lists; ``fold`` is an integer or null."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type == "int" or f.type == "Optional[int]":
                if f.type == "Optional[int]" and v is None:
                    continue
                if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                    null = " or null" if f.type == "Optional[int]" else ""
                    raise ConfigError(f"{f.name}: expected an integer{null}, got {v!r}")
                object.__setattr__(self, f.name, int(v))  # numpy integers -> int (JSON/YAML)
            elif f.type == "float":
                if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                    raise ConfigError(f"{f.name}: expected a finite number, got {v!r}")
                object.__setattr__(self, f.name, float(v))
            elif f.type == "str":
                if not isinstance(v, str):
                    raise ConfigError(f"{f.name}: expected a string, got {v!r}")
            elif f.type == "bool":
                if not isinstance(v, bool):
                    raise ConfigError(f"{f.name}: expected true or false, got {v!r}")
            elif f.type == "dict":
                if not isinstance(v, dict):
                    raise ConfigError(f"{f.name} must be a mapping, got {type(v).__name__}")
                bad = [k for k in v if not isinstance(k, str)]
                if bad:
                    raise ConfigError(f"{f.name}: keys must be strings, got {bad[0]!r}")

    def _check_sections(self) -> None:
        """Each nested section against the class that consumes it (imported here, lazily)."""
        inp = self.input_config()
        model_cfg = self._check_model()
        self._check_loss()
        self.tracking_config()
        self.lr_schedule_config()
        self.distribute_config()
        pp = self._check_postprocess()
        num_classes = getattr(model_cfg, "num_classes", None)
        if isinstance(num_classes, int) and num_classes < inp.num_classes:
            raise ConfigError(f"model_config.num_classes: {self.model!r} predicts {num_classes} classes but "
                              f"input.target {inp.target!r} makes labels of {inp.num_classes} classes")
        if isinstance(num_classes, int) and pp is not None:
            try:
                pp.resolve(num_classes)
            except ConfigError as e:
                raise ConfigError(f"postprocess.method: {e} (model_config.num_classes)") from None

    def input_config(self):
        """The ``input`` section as a zoo.data.input.InputConfig (``seed`` defaults to the config's seed)."""
        from zoo.data.input import InputConfig

        known = [f.name for f in dataclasses.fields(InputConfig)]
        for k in self.input:
            if k not in known:
                raise ConfigError(f"input.{k}: unknown option (known: {', '.join(known)})")
        try:
            return InputConfig.from_dict({"seed": self.seed, **self.input})
        except ConfigError as e:
            msg = str(e)
            raise ConfigError("input." + msg[len("InputConfig."):] if msg.startswith("InputConfig.")
                              else f"input: {msg}") from None

    def tracking_config(self) -> TrackingConfig:
        """The ``tracking`` section as a TrackingConfig (defaults filled in)."""
        return TrackingConfig.from_dict(self.tracking)

    def lr_schedule_config(self) -> LRScheduleConfig:
        """The ``lr_schedule`` section as an LRScheduleConfig (defaults filled in)."""
        return LRScheduleConfig.from_dict(self.lr_schedule)

    def distribute_config(self) -> DistributeConfig:
        """The ``distribute`` section as a DistributeConfig (defaults filled in)."""
        return DistributeConfig.from_dict(self.distribute)

    def _check_model(self):
        from zoo import models

        cls = models.get(self.model)  # ConfigError: unknown model 'unett' (available: ...)
        config_class = cls.config_class
        known = [f.name for f in dataclasses.fields(config_class)]
        for k in self.model_config:
            if k not in known:
                raise ConfigError(f"model_config.{k}: not an option of model {self.model!r} "
                                  f"(options: {', '.join(known)})")
        try:
            return config_class.from_dict(self.model_config)
        except ConfigError as e:
            raise ConfigError(f"model_config: {e}") from None
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model_config: model {self.model!r}: {e}") from None

    def _check_loss(self) -> None:
        from zoo import losses, options
        from zoo.losses.registry import loss_factory

        factory = loss_factory(self.loss)  # ConfigError: unknown loss 'dise' (available: ...)
        options.check(self.loss_config, factory, "loss_config", f"loss {self.loss!r}", skip=("self", "dtype"))
        try:
            losses.get_loss(self.loss, **self.loss_config)
        except ConfigError as e:
            raise ConfigError(f"loss_config: {e}") from None
        except (TypeError, ValueError) as e:
            raise ConfigError(f"loss_config: loss {self.loss!r}: {e}") from None

    def _check_postprocess(self):
        from zoo.postprocess.config import PostprocessConfig

        try:
            return PostprocessConfig.from_dict(self.postprocess)
        except ConfigError as e:
            msg = str(e)
            raise ConfigError(msg if msg.startswith("postprocess") else f"postprocess: {msg}") from None
        except (TypeError, ValueError) as e:
            raise ConfigError(f"postprocess: {e}") from None

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"experiment config: expected a mapping, got {type(d).__name__}")
        d = dict(d)
        if "validation_steps" in d:  # removed: it was never read. Runs' saved config.yaml files carry 0: accept that
            if d["validation_steps"] not in (0, None) or isinstance(d["validation_steps"], bool):
                raise ConfigError(f"validation_steps: no longer an option (it was never read: the final evaluation "
                                  f"uses the whole validation split, eval_every its first 4 images), got "
                                  f"{d['validation_steps']!r}")
            del d["validation_steps"]
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(d) - known))
        if unknown:
            raise ConfigError(f"unknown experiment config keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**d)

    def replace(self, **changes: Any) -> "ExperimentConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def coerce(cls, experiment) -> "ExperimentConfig":
        """An ExperimentConfig from a config object (returned as it is), a dict, or a YAML/JSON path."""
        if isinstance(experiment, cls):
            return experiment
        if isinstance(experiment, dict):
            return cls.from_dict(experiment)
        return cls.load(str(experiment))

    @classmethod
    def load(cls, path: str) -> "ExperimentConfig":
        """Read a YAML or JSON experiment file."""
        if not os.path.isfile(path):
            raise ConfigError(f"{path}: config file not found")
        import yaml

        try:
            with open(path) as fh:
                d = yaml.load(fh, Loader=_loader()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML/JSON ({str(e).splitlines()[0]})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        try:
            return cls.from_dict(d)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{path}: {e}") from None

    def save(self, path: str) -> None:
        import yaml

        from zoo.atomic import write_text

        write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


_FLOAT_12 = re.compile(r"""^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+
                           |\.[0-9_]+(?:[eE][-+]?[0-9]+)?|\.(?:inf|Inf|INF))$|^\.(?:nan|NaN|NAN)$""", re.X)


def _loader():
    """yaml.SafeLoader that also reads ``1e-4`` as a float (YAML 1.2; PyYAML's YAML 1.1 resolver wants a dot,
    ``1.0e-4``, and would hand the string "1e-4" to a float field)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))
    return Loader
