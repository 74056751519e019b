"""The ONE training core: ``train(config)``. The CLI (`histozoo train`), the MLflow project entry point and the TFX
Trainer's ``run_fn`` all call this function; there is no second training loop.

Per run, under ``output_dir`` (default ``runs/<name>``): ``config.yaml``, ``checkpoints/last.keras`` (written
atomically every epoch, with the optimizer state) and ``checkpoints/state.json`` (epochs done, history), ``history.json``,
``curves.png``, ``overlays/*.png`` and ``evaluation.json``; ``checkpoints/spec.json`` is the model's InferenceSpec
(zoo.inference), written before the first epoch, logged with the MLflow model and used by every evaluation. ``resume=True`` continues from the last checkpoint
with no lost epochs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Optional, Sequence

from zoo.atomic import atomic_path, write_json
from zoo.errors import ConfigError, ZooError
from zoo.training.config import ExperimentConfig
from zoo.training.tracking import Tracker

CKPT_DIR = "checkpoints"
LAST = "last.keras"
STATE = "state.json"
SPEC = "spec.json"  # zoo.inference.SPEC_FILE: the model's InferenceSpec, beside last.keras


class TrainingDiverged(ZooError):
    """The training loss became NaN or infinite."""


@dataclasses.dataclass
class TrainResult:
    model: object
    history: dict
    metrics: dict
    output_dir: str
    run_id: Optional[str]
    registered_version: Optional[str] = None
    spec: object = None  # the model's zoo.inference.InferenceSpec (also in checkpoints/spec.json)


def make_optimizer(config: ExperimentConfig):
    """SGD with momentum (Naylor et al.: momentum 0.9, weight decay 5e-5) or Adam (Yuan & Suh: 1e-4)."""
    import keras

    wd = config.weight_decay or None
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(config.learning_rate, momentum=config.momentum, weight_decay=wd)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay or 0.004)
    return keras.optimizers.Adam(config.learning_rate, weight_decay=wd)


def _input_config(config: ExperimentConfig):
    return config.input_config()  # the input section, typed (its seed defaults to the config's)


def training_dataset(config: ExperimentConfig, records: Optional[Sequence[str]] = None):
    """The tf.data training stream of (x, y, w) batches, repeated."""
    from zoo.data.input import dataset

    source = list(records) if records else config.data_dir
    if not records:
        check_data_dir(config)
    split = "train" if config.fold is not None else config.train_split
    return dataset(source, _input_config(config), split=split, fold=config.fold).repeat()


def check_data_dir(config: ExperimentConfig) -> None:
    """Fail in one line, naming the path, unless ``config.data_dir`` is a built data folder (summary.json) with the
    training split's shards, or, with ``fold``, a folds.json that has that fold. Reads no records."""
    from zoo.data.build import FOLDS, SUMMARY, select
    from zoo.errors import DataError

    d = config.data_dir
    if not d:
        raise ConfigError("no training data: set data_dir in the config (or pass train_records)")
    if not os.path.isdir(d):
        raise DataError(d, "data_dir does not exist or is not a folder (make it with `histozoo data build NAME "
                           f"--root RAW --out {d}`)")
    if not os.path.isfile(os.path.join(d, SUMMARY)):
        raise DataError(d, f"data_dir is not a built data folder (no {SUMMARY}; make it with `histozoo data build`)")
    if config.fold is not None and not os.path.isfile(os.path.join(d, FOLDS)):
        raise DataError(os.path.join(d, FOLDS), f"fold={config.fold} needs this file, which only datasets with "
                                                "cross-validation folds have (or use train_split / val_split)")
    select(d, "train" if config.fold is not None else config.train_split, config.fold)


def epoch_end_callback(ckpt_dir: str, tracker: Tracker, history: dict, on_epoch=None):
    """The core's only callback, an epoch-end hook: checkpoint atomically, then log the epoch's metrics to MLflow
    (tracking failures never stop training). A non-finite loss stops training before the checkpoint, so the last
    finite one is kept. It has no batch hooks: Keras then runs the steps exactly as a plain ``fit`` does (a batch
    hook such as TerminateOnNaN cost ~10 % of the steps/s, benchmarks/unet_speed.py)."""
    import keras

    class EpochEnd(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.diverged = None
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            if not math.isfinite(logs.get("loss", 0.0)):  # diverged: keep the last good checkpoint
                self.model.stop_training = True
                self.diverged = (epoch + 1, logs.get("loss"))
                return
            logs["epoch_time_s"] = time.time() - self.t0
            self.t0 = time.time()
            if on_epoch is not None:
                logs.update(on_epoch(epoch + 1, self.model) or {})
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            with atomic_path(os.path.join(ckpt_dir, LAST)) as tmp:  # keeps the .keras suffix Keras needs
                self.model.save(tmp)
            write_json(os.path.join(ckpt_dir, STATE), {"epochs_done": epoch + 1, "history": history,
                                                       "run_id": tracker.run_id})
            tracker.log_metrics(logs, step=epoch + 1)

    return EpochEnd()


def train(config: ExperimentConfig, *, train_records: Optional[Sequence[str]] = None,
          eval_records: Optional[Sequence[str]] = None, output_dir: Optional[str] = None, resume: bool = False,
          tracking: Optional[bool] = None, verbose: int = 1) -> TrainResult:
    """Train ``config.model`` on the config's data; evaluate it; log everything to MLflow; return the model.

    train_records / eval_records: explicit shard lists (the TFX Trainer passes its ExampleGen outputs); otherwise
    ``config.data_dir`` with ``train_split`` / ``val_split`` or ``fold``.
    """
    import keras

    from zoo import models, losses

    # the config was validated when it was built; the data source is checked here, before any output, model or
    # MLflow run exists (a bad data_dir leaves nothing behind)
    if not train_records:
        check_data_dir(config)
    output_dir = output_dir or os.path.join("runs", config.name)
    ckpt_dir = os.path.join(output_dir, CKPT_DIR)
    os.makedirs(ckpt_dir, exist_ok=True)
    config.save(os.path.join(output_dir, "config.yaml"))
    keras.utils.set_random_seed(config.seed)

    state_path = os.path.join(ckpt_dir, STATE)
    state = {"epochs_done": 0, "history": {}, "run_id": None}
    if resume and os.path.isfile(state_path) and os.path.isfile(os.path.join(ckpt_dir, LAST)):
        with open(state_path) as fh:
            state = json.load(fh)
        model = keras.models.load_model(os.path.join(ckpt_dir, LAST))
        if verbose:
            print(f"resuming {config.name} from epoch {state['epochs_done']} ({ckpt_dir})")
    else:
        if resume and verbose:
            print(f"no checkpoint in {ckpt_dir}: starting from scratch")
        model = models.build(config.model, config.model_config)
        model.compile(optimizer=make_optimizer(config), loss=losses.get_loss(config.loss, **config.loss_config),
                      weighted_metrics=[])

    track = config.tracking if tracking is None else {**config.tracking, "enabled": tracking}
    tracker = Tracker(enabled=bool(track.get("enabled", True)), experiment=track.get("experiment", "histozoo"),
                      run_name=config.name, run_id=state.get("run_id"))
    if state["epochs_done"] == 0:
        tracker.log_params(config.to_dict())
        tracker.set_tags({"histozoo.model": config.model, "histozoo.data": config.data_dir or "records"})

    eval_source = _eval_source(config, eval_records)
    spec = make_spec(config, model, train_records)
    spec.save(os.path.join(ckpt_dir, SPEC))

    def periodic_eval(epoch, m):
        if config.eval_every and eval_source and epoch % config.eval_every == 0 and epoch < config.epochs:
            from zoo.evaluation import evaluate

            res = evaluate(m, eval_source[0], split=eval_source[1], fold=config.fold, spec=spec, max_images=4,
                           hausdorff=False)
            return {f"val_{k}": v for k, v in res["mean"].items()}
        return {}

    history = state["history"]
    status = "FAILED"
    try:
        if state["epochs_done"] < config.epochs:
            ds = training_dataset(config, train_records)
            epoch_end = epoch_end_callback(ckpt_dir, tracker, history, periodic_eval)
            model.fit(ds, epochs=config.epochs, initial_epoch=state["epochs_done"],
                      steps_per_epoch=config.steps_per_epoch, verbose=verbose,
                      callbacks=[epoch_end])
            if epoch_end.diverged:
                epoch, loss = epoch_end.diverged
                raise TrainingDiverged(
                    f"{config.name}: the loss became {loss} in epoch {epoch}; the last finite checkpoint "
                    f"(epoch {epoch - 1}) is kept in {ckpt_dir}. Lower learning_rate (now {config.learning_rate:g}) "
                    f"and run again, or --resume from it")
        write_json(os.path.join(output_dir, "history.json"), history)
        metrics = {}
        if eval_source:
            from zoo.evaluation import evaluate, save_overlays

            res = evaluate(model, eval_source[0], split=eval_source[1], fold=config.fold, spec=spec,
                           progress=bool(verbose))
            write_json(os.path.join(output_dir, "evaluation.json"), res)
            metrics = {f"{eval_source[1]}_{k}": v for k, v in res["mean"].items()}
            tracker.log_metrics(metrics)
            tracker.log_artifact(os.path.join(output_dir, "evaluation.json"))
            overlay_dir = save_overlays(model, eval_source[0], os.path.join(output_dir, "overlays"),
                                        split=eval_source[1], fold=config.fold, spec=spec)
            tracker.log_artifact(overlay_dir, "overlays")
        plot_curves(history, os.path.join(output_dir, "curves.png"))
        tracker.log_artifact(os.path.join(output_dir, "curves.png"))
        tracker.log_artifact(os.path.join(output_dir, "config.yaml"))
        tracker.log_artifact(os.path.join(output_dir, "history.json"))
        version = None
        if track.get("log_model", True):
            version = tracker.log_model(model, track.get("register_as", ""), spec=spec)
            if version:
                _tag_version(track["register_as"], version, config, metrics)
        status = "FINISHED"
        return TrainResult(model=model, history=history, metrics=metrics, output_dir=output_dir,
                           run_id=tracker.run_id, registered_version=version, spec=spec)
    finally:
        tracker.end(status)


def make_spec(config: ExperimentConfig, model, records: Optional[Sequence[str]] = None):
    """The InferenceSpec of a model trained by ``config``: the input resolution (``input.mpp`` when training
    resamples, else the training records' median ``meta/mpp``), the records' nucleus type names, the output channels
    named by the training target, the model's padding divisor and the config's post-processing (``auto`` resolved)."""
    from zoo.inference import InferenceSpec, channel_names, describe_data, model_channels, model_divisor

    source = list(records) if records else config.data_dir
    split = "train" if config.fold is not None else config.train_split
    class_names, data_mpp = describe_data(source, split, config.fold)
    inp = _input_config(config)
    divisor = model_divisor(model)
    c = model_channels(model, divisor)
    typed = class_names if getattr(inp, "types", "none") == "merged" else ()
    return InferenceSpec(channels=channel_names(c, inp.target, typed), class_names=class_names,
                         mpp=inp.mpp if inp.mpp > 0 else data_mpp, divisor=divisor, stain=None,
                         postprocess=config.postprocess, model=config.model)


def _eval_source(config: ExperimentConfig, eval_records):
    """(source, split) for evaluation, or None when there is nothing to evaluate on."""
    if eval_records:
        return list(eval_records), "eval"
    if config.fold is not None:
        return config.data_dir, "test"
    if config.val_split and config.data_dir:
        from zoo.data import records

        try:
            records.list_shards(config.data_dir, config.val_split)
        except Exception:  # noqa: BLE001 — no such split: nothing to evaluate on
            return None
        return config.data_dir, config.val_split
    return None


def _tag_version(name: str, version: str, config: ExperimentConfig, metrics: dict) -> None:
    from zoo.training.tracking import _mlflow

    try:
        client = _mlflow().MlflowClient()
        client.set_model_version_tag(name, version, "config", json.dumps(config.to_dict())[:5000])
        for k, v in metrics.items():
            client.set_model_version_tag(name, version, f"metric.{k}", f"{v:.6g}")
    except Exception as e:  # noqa: BLE001
        print(f"histozoo: warning: could not tag {name} v{version} ({e})")


def plot_curves(history: dict, path: str) -> None:
    """Training curves (one panel per metric) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in history if k != "epoch_time_s" and history[k]]
    n = max(1, len(keys))
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3), squeeze=False)
    for ax, k in zip(axes[0], keys):
        ax.plot(range(1, len(history[k]) + 1), history[k], marker="o")
        ax.set_title(k)
        ax.set_xlabel("epoch")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
