"""Pipeline constants and defaults (the TFX templates' ``configs.py``): no tfx import, so the CLI and host tests
can read them. ``create_pipeline`` (pipelines/pipeline.py) wires the components; the runners pick the orchestrator.

Local layout under ``home`` (default ``$HISTOZOO_PIPELINE_HOME`` or ``./tfx_root``)::

    home/pipelines/<name>/     pipeline_root: every component's artifacts (Examples, Schema, Model, ...)
    home/metadata/<name>/metadata.db   the sqlite ML Metadata store (caching reads it)
    home/serving/<name>/<version>/     the Pusher's versioned SavedModels (TF Serving --model_base_path)
    home/logs/<name>/<time>.log        everything a quiet ``histozoo pipeline run`` kept off the terminal

The MLflow registered-model name follows one rule (``registered_model_name``): ``--registered-model`` if given,
else the experiment's ``tracking.register_as`` if set, else the pipeline name.
"""

from __future__ import annotations

import dataclasses
import os
import re

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
#: the same for a model that clusters nucleus crops (zoo.models.gan): keys of zoo.evaluation.cluster.evaluate_clusters
CLUSTER_THRESHOLDS = {"purity": 0.0}
CLUSTER_COMPARE_METRIC = "purity"
#: ``--dataset records``: the data root is a built records folder (``histozoo data build`` / ``data crops`` /
#: ``synth``), read by HistoRecordsGen with the experiment's train_split -> train and val_split -> eval
RECORDS_DATASET = "records"


def clusters_crops(model_name: str) -> bool:
    """True when the registered model ``model_name`` clusters nucleus crops (a zoo.models.gan model)."""
    from zoo.models.registry import get

    return hasattr(get(model_name), "sample_grid")


def eval_defaults(model_name: str) -> tuple[dict, str]:
    """(thresholds, compare_metric) the Evaluator blesses ``model_name`` by when the caller gives none."""
    if clusters_crops(model_name):
        return dict(CLUSTER_THRESHOLDS), CLUSTER_COMPARE_METRIC
    return dict(EVAL_THRESHOLDS), COMPARE_METRIC
#: fraction of patients (source ids) in eval when a dataset has neither folds nor its own splits
EVAL_FRACTION = 0.2

#: the container image Kubeflow / Vertex runs every component in: docker/tfx/Dockerfile (histozoo + the tfx extra,
#: installed from constraints/tfx.txt like scripts/tfx_env.sh)
PIPELINE_IMAGE = os.environ.get("HISTOZOO_PIPELINE_IMAGE", "histozoo-tfx:latest")
COMPILE_TARGETS = ("kubeflow", "vertex")
#: what compile writes as the pipeline root when none is given: a placeholder, refused unless allow_local
ROOT_PLACEHOLDER = "gs://YOUR_BUCKET/histozoo"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def check_cluster_paths(data_root: str, pipeline_root: str | None, mlflow_tracking_uri: str = "",
                        allow_local: bool = False) -> None:
    """Refuse, in one line, a compiled Kubeflow / Vertex pipeline that could not run on the cluster: a data root or
    pipeline root that is a local path (relative or absolute, or ``file://``; the pods cannot see this machine's
    disk), the ``gs://YOUR_BUCKET`` placeholder (no pipeline root given), and a local MLflow store (a path,
    ``sqlite:`` or ``file:``; use a tracking server, ``http(s)://...``, or leave it empty so the pods' own
    ``MLFLOW_TRACKING_URI`` applies). ``allow_local`` (``--allow-local``) lets them through (a spec compiled only
    to inspect its DAG, or a cluster that mounts the same paths)."""
    if allow_local:
        return
    from zoo.errors import ConfigError

    hint = "; or pass --allow-local to compile it anyway"
    for flag, value in (("--data-root", data_root), ("--pipeline-root", pipeline_root)):
        if flag == "--pipeline-root" and not value:
            raise ConfigError(f"--pipeline-root: not given, so the spec would write its artifacts to the placeholder "
                              f"{ROOT_PLACEHOLDER}/...: give an object-store root (gs://BUCKET/histozoo, s3://...)"
                              f"{hint}")
        if "YOUR_BUCKET" in value:
            raise ConfigError(f"{flag}: {value!r} is the YOUR_BUCKET placeholder: name your bucket{hint}")
        if not _SCHEME.match(value) or value.lower().startswith("file://"):
            raise ConfigError(f"{flag}: {value!r} is a path on this machine, which the cluster's pods cannot read: "
                              f"give an object-store URI (gs://..., s3://...){hint}")
    uri = mlflow_tracking_uri or ""
    local = uri.lower().startswith(("sqlite:", "file:")) or not (_SCHEME.match(uri) or uri.startswith("databricks"))
    if uri and local:
        raise ConfigError(f"--mlflow-tracking-uri: {uri!r} is a store on this machine, which the cluster's pods "
                          f"cannot reach: give a tracking server (http(s)://HOST:PORT){hint}")


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
    log_dir: str = ""


def local_paths(name: str, home: str | None = None) -> LocalPaths:
    """The local layout of the module docstring for pipeline ``name``."""
    home = os.path.abspath(home or os.environ.get(HOME_ENV) or DEFAULT_HOME)
    return LocalPaths(pipeline_root=os.path.join(home, "pipelines", name),
                      metadata_path=os.path.join(home, "metadata", name, "metadata.db"),
                      serving_dir=os.path.join(home, "serving", name),
                      log_dir=os.path.join(home, "logs", name))


def registered_model_name(pipeline: str, tracking: dict | None = None, explicit: str | None = None
                          ) -> tuple[str, str]:
    """THE rule for the MLflow registered-model name of a pipeline run: ``(name, source)``.

    ``explicit`` (``--registered-model``) wins; else the experiment's ``tracking.register_as`` when set; else the
    pipeline name (``histozoo pipeline run NAME``). source is ``--registered-model``, ``tracking.register_as`` or
    ``pipeline name``."""
    if explicit:
        return str(explicit), "--registered-model"
    register_as = (tracking or {}).get("register_as")
    if register_as:
        return str(register_as), "tracking.register_as"
    return pipeline, "pipeline name"


#: set by ``scripts/tfx_env.sh run``: the host paths of the clone and of ../shared, which the environment also
#: mounts at /repo and /shared (every other folder it mounts at its own path, so those paths need no mapping)
HOST_REPO_ENV, HOST_SHARED_ENV = "HISTOZOO_HOST_REPO", "HISTOZOO_HOST_SHARED"
_URI_PREFIXES = ("sqlite:///", "file://")


def host_path(path: str, environ=None) -> str:
    """The host's name for a path (or ``sqlite:///`` / ``file://`` URI) as a command inside scripts/tfx_env.sh sees
    it: ``/repo/...`` -> ``<clone>/...`` and ``/shared/...`` -> ``<shared>/...``; unchanged outside the environment
    and for every other path."""
    if not path:
        return path
    environ = os.environ if environ is None else environ
    for prefix in _URI_PREFIXES:
        if path.startswith(prefix) and path[len(prefix):].startswith("/"):
            return prefix + host_path(path[len(prefix):], environ)
    for inside, var in (("/repo", HOST_REPO_ENV), ("/shared", HOST_SHARED_ENV)):
        host = environ.get(var)
        if host and (path == inside or path.startswith(inside + "/")):
            return host.rstrip("/") + path[len(inside):]
    return path


def pipeline_name(experiment_name: str) -> str:
    """A valid pipeline name from an experiment name (letters, digits, '-', '_'; Kubeflow wants lower case)."""
    import re

    s = re.sub(r"[^a-z0-9_-]+", "-", experiment_name.lower()).strip("-_")
    return s or PIPELINE_NAME

#: inside a Trainer's Model artifact, beside Format-Serving: the Keras model the Evaluator scores and the run info
MODEL_KERAS_DIR = "Format-Keras"
MODEL_KERAS_FILE = "model.keras"
MODEL_RUN_FILE = "run.json"
