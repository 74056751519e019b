"""The one training core (``train``), its experiment config, and MLflow tracking."""

from zoo.training.config import ExperimentConfig
from zoo.training.train import TrainResult, train

__all__ = ["ExperimentConfig", "TrainResult", "train"]
