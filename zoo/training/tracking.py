"""MLflow tracking for training runs, and the model registry's champion/challenger promotion.

Default store: an embedded sqlite database under the working directory (``mlruns/mlflow.db``, artifacts in
``mlruns/artifacts``); ``MLFLOW_TRACKING_URI`` overrides (e.g. ``http://127.0.0.1:5000`` for an ``mlflow server``).
Tracking never stops training: if the server is unreachable or a call fails, ``Tracker`` says so once on stderr
and carries on without it (checkpoints are written independently).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Optional

from zoo.errors import ConfigError, DataError, ZooError

DEFAULT_DIR = "mlruns"
CHAMPION = "champion"


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` or the embedded sqlite store under the working directory."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri:
        return uri
    os.makedirs(DEFAULT_DIR, exist_ok=True)
    return f"sqlite:///{os.path.abspath(os.path.join(DEFAULT_DIR, 'mlflow.db'))}"


def _artifact_root() -> Optional[str]:
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None  # the server decides
    return "file://" + os.path.abspath(os.path.join(DEFAULT_DIR, "artifacts"))


def _reachable(uri: str, timeout: float = 3.0) -> bool:
    if not uri.startswith(("http://", "https://")):
        return True
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            return r.status == 200
    except Exception:
        return False


def _mlflow():
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


def ensure_experiment(name: str) -> str:
    mlflow = _mlflow()
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return mlflow.create_experiment(name, artifact_location=_artifact_root())


class Tracker:
    """A fault-tolerant wrapper around one MLflow run. Every method is a no-op once tracking is disabled."""

    def __init__(self, enabled: bool = True, experiment: str = "histozoo", run_name: str = "",
                 run_id: Optional[str] = None):
        self.enabled = enabled
        self.run_id: Optional[str] = None
        self._mlflow = None
        if not enabled:
            return
        uri = tracking_uri()
        if not _reachable(uri):
            self._disable(f"tracking server {uri} is unreachable")
            return
        try:
            mlflow = _mlflow()
            exp_id = ensure_experiment(experiment)
            run = mlflow.start_run(run_id=run_id, experiment_id=None if run_id else exp_id,
                                   run_name=None if run_id else (run_name or None))
            self.run_id = run.info.run_id
            self._mlflow = mlflow
        except Exception as e:  # noqa: BLE001 — tracking must never stop training
            self._disable(f"could not start an MLflow run at {uri} ({type(e).__name__}: {str(e)[:200]})")

    def _disable(self, why: str) -> None:
        if self.enabled:
            print(f"histozoo: warning: {why}; training continues without MLflow tracking", file=sys.stderr)
        self.enabled = False

    def _call(self, what: str, fn, *args, **kwargs):
        """Run one MLflow call; a failure is reported, and three failures in a row turn tracking off."""
        if not self.enabled or self._mlflow is None:
            return None
        try:
            out = fn(*args, **kwargs)
            self._failures = 0
            return out
        except Exception as e:  # noqa: BLE001
            self._failures = getattr(self, "_failures", 0) + 1
            msg = f"MLflow {what} failed ({type(e).__name__}: {str(e)[:200]})"
            if self._failures >= 3:
                self._disable(msg + "; 3 failures in a row")
            else:
                print(f"histozoo: warning: {msg}", file=sys.stderr)
            return None

    def log_params(self, params: dict) -> None:
        """Log the flattened config. A key the run already holds with another value (``mlflow run`` logs the
        project's parameters first) is logged as ``resolved.<key>``."""
        flat = {k: str(json.dumps(v) if isinstance(v, (dict, list)) else v)[:6000] for k, v in _flatten(params).items()}

        def _log():
            have = self._mlflow.get_run(self.run_id).data.params
            out = {(f"resolved.{k}" if k in have and have[k] != v else k): v for k, v in flat.items()
                   if have.get(k) != v}
            self._mlflow.log_params(out)
        self._call("log_params", _log)

    def log_metrics(self, metrics: dict, step: Optional[int] = None) -> None:
        clean = {k: float(v) for k, v in metrics.items() if _is_number(v)}
        self._call("log_metrics", lambda: self._mlflow.log_metrics(clean, step=step))

    def log_artifact(self, path: str, artifact_path: Optional[str] = None) -> None:
        if os.path.isdir(path):
            self._call("log_artifacts", lambda: self._mlflow.log_artifacts(path, artifact_path))
        else:
            self._call("log_artifact", lambda: self._mlflow.log_artifact(path, artifact_path))

    def log_dict(self, obj: Any, name: str) -> None:
        self._call("log_dict", lambda: self._mlflow.log_dict(obj, name))

    def set_tags(self, tags: dict) -> None:
        self._call("set_tags", lambda: self._mlflow.set_tags({k: str(v) for k, v in tags.items()}))

    def log_model(self, model, registered_name: str = "", spec=None) -> Optional[str]:
        """Log the Keras model (loads in a fresh process with ``load``) with a signature, an input example and, in
        the MLmodel metadata, its InferenceSpec (``histozoo_spec``); register it when a name is given.
        Returns the registered version (as a string) or None."""
        def _log():
            import numpy as np
            from mlflow.models import infer_signature

            from zoo.inference import MLFLOW_METADATA_KEY, model_divisor

            d = spec.divisor if spec is not None else model_divisor(model)
            try:  # an image model: one tile of the divisor's size; any other model: its declared input shape
                shape = [d if v is None else int(v) for v in model.input_shape[1:]]
            except (AttributeError, TypeError):
                shape = [d, d, 3]
            example = np.full([1] + shape, 0.5, np.float32)
            out = model(example, training=False)
            out = out["probabilities"] if isinstance(out, dict) else out
            signature = infer_signature(example, np.asarray(out))
            info = self._mlflow.tensorflow.log_model(
                model, name="model", pip_requirements=pip_requirements(), signature=signature,
                input_example=example, registered_model_name=registered_name or None,
                metadata={MLFLOW_METADATA_KEY: spec.to_dict()} if spec is not None else None)
            return str(info.registered_model_version) if registered_name else None
        return self._call("log_model", _log)

    def end(self, status: str = "FINISHED") -> None:
        self._call("end_run", lambda: self._mlflow.end_run(status=status))


def pip_requirements() -> list[str]:
    """The pins a served/loaded model needs (what this process runs with)."""
    from importlib import metadata

    out = []
    for pkg in ("tensorflow", "keras", "keras-hub", "numpy", "scipy", "scikit-image", "histozoo"):
        try:
            out.append(f"{pkg}=={metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            pass
    return out


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------------------------------------ loading
def load(uri: str, postprocess=None, default_spec: bool = True):
    """THE model loader -> ``zoo.inference.LoadedModel`` (model, spec, source): a ``.keras`` file (its ``spec.json``
    beside it), a training run folder, an MLflow run id, ``runs:/<id>/model``, or the registry
    (``models:/<name>/<version>``, ``models:/<name>@champion``; the spec is the logged model's ``histozoo_spec``
    metadata), or a model shipped in the package (``pretrained:NAME``, zoo.pretrained). A model saved without a spec gets ``zoo.inference.default_spec`` (``postprocess`` applies only then),
    or None with ``default_spec=False``. The CLI, ``histozoo export``, the TFX evaluator and evaluation all load
    through here."""
    from zoo import inference

    uri = os.fspath(uri)
    if uri.startswith("pretrained:"):
        from zoo import pretrained

        return pretrained.load(uri)
    if os.path.exists(uri) or uri.endswith(".keras"):
        return inference.load_local(uri, postprocess, default_spec)
    if "/" not in uri and ":" not in uri:
        uri = f"runs:/{uri}/model"
    if not uri.startswith(("runs:/", "models:/")):
        raise DataError(uri, "no such file (expected a .keras file, a run folder, a run id, or runs:/... / "
                             "models:/...)")
    import zoo.models  # noqa: F401 — registers the custom layers/models for deserialisation

    mlflow = _mlflow()
    try:
        info = mlflow.models.get_model_info(uri)
        model = mlflow.tensorflow.load_model(uri)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{uri}: could not load the model from MLflow at {tracking_uri()} "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from None
    meta = (info.metadata or {}).get(inference.MLFLOW_METADATA_KEY)
    if meta:
        spec = inference.InferenceSpec.from_dict(json.loads(meta) if isinstance(meta, str) else meta,
                                                 f"{uri} (MLmodel)")
    elif default_spec:
        print(f"histozoo: note: {uri} was logged without an inference spec; using a default one", file=sys.stderr)
        spec = inference.default_spec(model, postprocess)
    else:
        spec = None
    return inference.LoadedModel(model, spec, uri)


def load_model(uri: str):
    """``load(uri).model``: just the Keras model (any Keras model, image or not; no spec is made)."""
    return load(uri, default_spec=False).model


# ----------------------------------------------------------------------------------------------- registry
def promote(name: str, metric: str, margin: float = 0.0, version: Optional[str] = None,
            greater_is_better: bool = True, alias: str = CHAMPION) -> dict:
    """Move ``alias`` to the challenger (``version``, default: the newest version) only when its ``metric``
    beats the current champion's by more than ``margin``. Records the decision as tags on the challenger
    (``promotion.decision``, ``promotion.reason``) either way. Returns the decision dict.

    The metric is read from the version's run (``metrics.<metric>``), e.g. ``test_aji``.
    """
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except Exception as e:  # noqa: BLE001
        raise ZooError(f"registered model {name!r}: cannot list versions at {tracking_uri()} ({e})") from None
    if not versions:
        raise ConfigError(f"registered model {name!r} has no versions at {tracking_uri()}")
    by_v = {str(v.version): v for v in versions}
    challenger_v = str(version) if version is not None else max(by_v, key=int)
    if challenger_v not in by_v:
        raise ConfigError(f"registered model {name!r} has no version {challenger_v} (has {', '.join(sorted(by_v, key=int))})")

    def metric_of(v) -> Optional[float]:
        if not v.run_id:
            return None
        return client.get_run(v.run_id).data.metrics.get(metric)

    challenger = by_v[challenger_v]
    c_val = metric_of(challenger)
    if c_val is None:
        raise ConfigError(f"{name} v{challenger_v}: its run has no metric {metric!r}")
    try:
        champ = client.get_model_version_by_alias(name, alias)
    except Exception:  # noqa: BLE001 — no champion yet
        champ = None
    if champ is None:
        promoted, reason = True, f"no {alias} yet; v{challenger_v} {metric}={c_val:.6g} becomes {alias}"
        champ_v, champ_val = None, None
    elif str(champ.version) == challenger_v:
        promoted, reason = False, f"v{challenger_v} is already {alias}"
        champ_v, champ_val = challenger_v, c_val
    else:
        champ_v, champ_val = str(champ.version), metric_of(champ)
        if champ_val is None:
            promoted, reason = True, f"{alias} v{champ_v} has no {metric}; v{challenger_v} ({c_val:.6g}) replaces it"
        else:
            gain = (c_val - champ_val) if greater_is_better else (champ_val - c_val)
            promoted = gain > margin
            reason = (f"v{challenger_v} {metric}={c_val:.6g} vs {alias} v{champ_v} {champ_val:.6g}: "
                      f"gain {gain:+.6g} {'>' if promoted else '<='} margin {margin:g}")
    if promoted:
        client.set_registered_model_alias(name, alias, challenger_v)
    decision = {"model": name, "challenger": challenger_v, "champion_before": champ_v, "metric": metric,
                "challenger_value": c_val, "champion_value": champ_val, "margin": margin, "promoted": promoted,
                "reason": reason, "champion_after": challenger_v if promoted else champ_v}
    client.set_model_version_tag(name, challenger_v, "promotion.decision", "promoted" if promoted else "rejected")
    client.set_model_version_tag(name, challenger_v, "promotion.reason", reason)
    return decision


def register_run_model(run_id: str, name: str, tags: Optional[dict] = None) -> str:
    """Register ``runs:/<run_id>/model`` as a new version of ``name``; returns the version."""
    mlflow = _mlflow()
    mv = mlflow.register_model(f"runs:/{run_id}/model", name)
    client = mlflow.MlflowClient()
    for k, v in (tags or {}).items():
        client.set_model_version_tag(name, mv.version, k, str(v))
    return str(mv.version)
