"""Pipeline constants and defaults (the TFX templates' ``configs.py``): no tfx import, so the CLI and host tests
can read them. ``create_pipeline`` (pipelines/pipeline.py) wires the components; the runners pick the orchestrator.

Local layout under ``home`` (default ``$HISTOZOO_PIPELINE_HOME`` or ``./tfx_root``)::

    home/pipelines/<name>/     pipeline_root: every component's artifacts (Examples, Schema, Model, ...)
    home/metadata/<name>/metadata.db   the sqlite ML Metadata store (caching reads it)
    home/serving/<name>/<version>/     the Pusher's versioned SavedModels (TF Serving --model_base_path)
"""

from __future__ import annotations

import dataclasses
import os

PIPELINE_NAME = "histozoo"
HOME_ENV = "HISTOZOO_PIPELINE_HOME"
DEFAULT_HOME = "tfx_root"

#: the Trainer's user module (module_file); on Kubeflow/Vertex the image has histozoo installed, so the
#: runner passes RUN_FN (an import path) instead of packaging the module file.
MODULE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "trainer", "module.py")
RUN_FN = "pipelines.trainer.module.run_fn"

#: Evaluator: bless when every metric meets its minimum and the comparison metric beats the blessed baseline.
EVAL_THRESHOLDS = {"pixel_dice": 0.0, "aji": 0.0}  # keys of zoo.metrics.segmentation_report
COMPARE_METRIC = "aji"
MIN_IMPROVEMENT = 0.0
#: fraction of patients (source ids) in eval when a dataset has neither folds nor its own splits
EVAL_FRACTION = 0.2

#: the container image Kubeflow / Vertex runs every component in (histozoo + the tfx extra installed)
PIPELINE_IMAGE = os.environ.get("HISTOZOO_PIPELINE_IMAGE", "histozoo-tfx:latest")
COMPILE_TARGETS = ("kubeflow", "vertex")


def direct_beam_args(workers: int = 0, mode: str = "multi_processing") -> list[str]:
    """Beam DirectRunner arguments: ``multi_processing`` with ``workers`` processes (0 = one per CPU), or
    ``in_memory`` / ``multi_threading``. Cluster runners take their own args (``--runner=DataflowRunner ...``)."""
    if mode not in ("in_memory", "multi_threading", "multi_processing"):
        from zoo.errors import ConfigError

        raise ConfigError(f"direct running mode must be in_memory, multi_threading or multi_processing, got {mode!r}")
    if workers < 0:
        from zoo.errors import ConfigError

        raise ConfigError(f"workers must be >= 0 (0 = one per CPU), got {workers}")
    return [f"--direct_running_mode={mode}", f"--direct_num_workers={int(workers)}"]


BEAM_PIPELINE_ARGS = direct_beam_args()


@dataclasses.dataclass(frozen=True)
class LocalPaths:
    pipeline_root: str
    metadata_path: str
    serving_dir: str


def local_paths(name: str, home: str | None = None) -> LocalPaths:
    """The local layout of the module docstring for pipeline ``name``."""
    home = os.path.abspath(home or os.environ.get(HOME_ENV) or DEFAULT_HOME)
    return LocalPaths(pipeline_root=os.path.join(home, "pipelines", name),
                      metadata_path=os.path.join(home, "metadata", name, "metadata.db"),
                      serving_dir=os.path.join(home, "serving", name))


def pipeline_name(experiment_name: str) -> str:
    """A valid pipeline name from an experiment name (letters, digits, '-', '_'; Kubeflow wants lower case)."""
    import re

    s = re.sub(r"[^a-z0-9_-]+", "-", experiment_name.lower()).strip("-_")
    return s or PIPELINE_NAME

#: inside a Trainer's Model artifact, beside Format-Serving: the Keras model the Evaluator scores and the run info
MODEL_KERAS_DIR = "Format-Keras"
MODEL_KERAS_FILE = "model.keras"
MODEL_RUN_FILE = "run.json"
