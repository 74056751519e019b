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
    optimizer: adam              # Yuan & Suh: Adam 1e-4; Naylor: sgd, momentum 0.9, weight_decay 5e-5
    learning_rate: 1.0e-4
    epochs: 50
    steps_per_epoch: 100
    postprocess: {method: dynamics_watershed, lam: 7, threshold: 0.5}
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

from zoo.errors import ConfigError

OPTIMIZERS = ("adam", "sgd", "adamw")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One training run.

    name: run / registered-model base name.  model, model_config: a registered zoo.models name and its config.
    data_dir: a folder written by `histozoo data build` (or give record file lists to ``train``).
    train_split / val_split: shard splits ("train", "test", "all"); val_split "" = no validation.
    fold: with datasets that have folds.json (TNBC), train on fold k's train images, validate on its test images.
    input: zoo.data.input.InputConfig fields.  loss, loss_config: zoo.losses name and options.
    optimizer: adam | sgd | adamw; learning_rate, momentum (sgd), weight_decay (decoupled, keras optimizers).
    epochs, steps_per_epoch, validation_steps (0 = the whole validation split), seed.
    postprocess: how evaluation turns probabilities into instances (zoo.postprocess).
    eval_every: evaluate instance metrics on the validation split every N epochs (0 = only at the end).
    tracking: MLflow settings: enabled, experiment, register_as ("" = do not register), log_model.
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
    weight_decay: float = 0.0
    epochs: int = 10
    steps_per_epoch: int = 100
    validation_steps: int = 0
    seed: int = 0
    postprocess: dict = dataclasses.field(default_factory=lambda: {"method": "auto"})
    eval_every: int = 0
    tracking: dict = dataclasses.field(default_factory=lambda: {"enabled": True, "experiment": "histozoo",
                                                                 "register_as": "", "log_model": True})

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for k in ("epochs", "steps_per_epoch"):
            if int(getattr(self, k)) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.fold is not None and int(self.fold) < 1:
            raise ConfigError(f"fold must be >= 1, got {self.fold}")
        for k in ("model_config", "input", "loss_config", "postprocess", "tracking"):
            if not isinstance(getattr(self, k), dict):
                raise ConfigError(f"{k} must be a mapping, got {type(getattr(self, k)).__name__}")

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown experiment config keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**d)

    def replace(self, **changes: Any) -> "ExperimentConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def load(cls, path: str) -> "ExperimentConfig":
        """Read a YAML or JSON experiment file."""
        if not os.path.isfile(path):
            raise ConfigError(f"{path}: config file not found")
        import yaml

        try:
            with open(path) as fh:
                d = yaml.safe_load(fh) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML/JSON ({str(e).splitlines()[0]})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        try:
            return cls.from_dict(d)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        except TypeError as e:
            raise ConfigError(f"{path}: {e}") from None

    def save(self, path: str) -> None:
        import yaml

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path + ".tmp", "w") as fh:
            yaml.safe_dump(self.to_dict(), fh, sort_keys=False)
        os.replace(path + ".tmp", path)
