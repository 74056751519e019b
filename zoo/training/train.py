"""The ONE training core: ``train(config)``. The CLI (`histozoo train`), the MLflow project entry point and the TFX
Trainer's ``run_fn`` all call this function; there is no second training loop.

Per run, under ``output_dir`` (default ``runs/<name>``): ``config.yaml``, ``checkpoints/last.keras`` (written
atomically every epoch, and every ``checkpoint_every_s`` seconds when set, with the optimizer state),
``checkpoints/best.keras`` (with ``best_metric``), ``checkpoints/state.json`` (epochs and steps done, history, best
value, the MLflow run id), ``history.json``, ``curves.png``, ``overlays/*.png`` and ``evaluation.json``;
``checkpoints/spec.json`` is the model's InferenceSpec (zoo.inference), written before the first epoch, valid for both
checkpoints, logged with the MLflow model and used by every evaluation.

``resume=True`` continues from the last checkpoint, in the same MLflow run, and gives the run that was interrupted:
the input stream is a function of (seed, epoch, step) (zoo.data.input.epochs), the optimizer state (its step, hence
the learning-rate schedule) travels in last.keras, and a mid-epoch checkpoint resumes at its step.

Per-step overhead is zero: the core's one callback has epoch hooks only; a batch hook (one clock read per step) is
added only when ``checkpoint_every_s`` is set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
import warnings
from typing import Optional, Sequence

from zoo.atomic import atomic_path, write_json
from zoo.errors import ConfigError, ZooError
from zoo.training.config import ExperimentConfig
from zoo.training.tracking import Tracker

CKPT_DIR = "checkpoints"
LAST = "last.keras"
BEST = "best.keras"
STATE = "state.json"
SPEC = "spec.json"  # zoo.inference.SPEC_FILE: the model's InferenceSpec, beside last.keras and best.keras
KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel")  # the variables coupled L2 decays

clock = time.monotonic  # the clock of checkpoint_every_s (tests inject their own)


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


def make_schedule(config: ExperimentConfig):
    """The learning rate of ``config`` as a function of the optimizer step t (0-based), over T = epochs x
    steps_per_epoch steps (keras schedules, so a checkpoint carries it and a resumed run continues at its step):

    constant: lr.  step: lr * gamma ** floor(t / (step_epochs * steps_per_epoch)).
    poly: lr * (1 - t / T) ** power (Caffe's "poly", as FCN / DeconvNet were trained; power 0.9).
    cosine: linear warm-up from 0 to lr over W = warmup_epochs * steps_per_epoch steps (lr * t / W), then
    min_lr + (lr - min_lr) * (1 + cos(pi * (t - W) / (T - W))) / 2.
    """
    import keras

    sch = config.lr_schedule_config()
    lr, spe, total = config.learning_rate, config.steps_per_epoch, config.epochs * config.steps_per_epoch
    s = keras.optimizers.schedules
    if sch.name == "step":
        return s.ExponentialDecay(lr, decay_steps=sch.step_epochs * spe, decay_rate=sch.gamma, staircase=True)
    if sch.name == "poly":
        return s.PolynomialDecay(lr, decay_steps=total, end_learning_rate=0.0, power=sch.power)
    if sch.name == "cosine":
        warm = sch.warmup_epochs * spe
        kw = dict(warmup_target=lr, warmup_steps=warm) if warm else {}
        return s.CosineDecay(0.0 if warm else lr, decay_steps=max(total - warm, 1), alpha=sch.min_lr / lr, **kw)
    return lr


def make_optimizer(config: ExperimentConfig):
    """SGD with momentum (Naylor et al.: momentum 0.9, weight decay 5e-5) or Adam (Yuan & Suh: 1e-4; Qu et al.: betas
    0.9 / 0.99 from the config's ``beta_1`` / ``beta_2``), on the config's learning-rate schedule. ``weight_decay_mode: decoupled`` passes weight_decay to the Keras optimizer (decoupled,
    every variable); ``coupled`` leaves it out: ``apply_weight_decay`` adds the L2 penalty to the loss instead."""
    import keras

    lr = make_schedule(config)
    wd = (config.weight_decay or None) if config.weight_decay_mode == "decoupled" else None
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=config.momentum, weight_decay=wd)
    if config.optimizer == "adadelta":  # the colorization model sets rho / epsilon from its config at compile
        return keras.optimizers.Adadelta(lr)
    if config.optimizer == "adamw":
        decay = (config.weight_decay or 0.004) if config.weight_decay_mode == "decoupled" else 0.0
        return keras.optimizers.AdamW(lr, weight_decay=decay, beta_1=config.beta_1, beta_2=config.beta_2)
    return keras.optimizers.Adam(lr, weight_decay=wd, beta_1=config.beta_1, beta_2=config.beta_2)


def apply_weight_decay(model, config: ExperimentConfig) -> int:
    """Coupled L2 (``weight_decay_mode: coupled``): put (weight_decay / 2) * ||k||^2 on every kernel k in the loss, so
    its gradient weight_decay * k passes through momentum / Adam's moments as in Caffe's SGD ``weight_decay`` (Naylor
    et al.) and PyTorch's ``Adam(weight_decay=)`` (Qu et al.); biases and batch-norm parameters are not decayed.
    Regularizers are not saved in a checkpoint, so this runs after every build and load. Returns the kernels
    decayed."""
    import keras

    if config.weight_decay_mode != "coupled" or not config.weight_decay:
        return 0
    n = 0
    for v in model.trainable_variables:
        if v.path.rsplit("/", 1)[-1] in KERNELS:
            v.regularizer = keras.regularizers.L2(config.weight_decay / 2.0)
            n += 1
    return n


def _input_config(config: ExperimentConfig):
    return config.input_config()  # the input section, typed (its seed defaults to the config's)


def training_dataset(config: ExperimentConfig, records: Optional[Sequence[str]] = None, *, first_epoch: int = 0,
                     skip: int = 0, count: Optional[int] = None, steps: Optional[int] = None):
    """The tf.data training stream of (x, y, w) batches from epoch ``first_epoch`` on (zoo.data.input.epochs): each
    epoch's ``steps_per_epoch`` batches are a function of (seed, epoch, step), so a resumed run reads what the
    uninterrupted one read; ``skip`` batches of the first epoch are left out (a mid-epoch resume)."""
    from zoo.data.input import epochs
    from zoo.training.distribute import data_sharded

    source = list(records) if records else config.data_dir
    if not records:
        check_data_dir(config)
    split = "train" if config.fold is not None else config.train_split
    return data_sharded(epochs(source, _input_config(config), steps or config.steps_per_epoch, split=split,
                               fold=config.fold, first_epoch=first_epoch, skip=skip, count=count))


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


def epoch_end_callback(ckpt_dir: str, tracker: Tracker, history: dict, on_epoch=None, *,
                       config: Optional[ExperimentConfig] = None, state: Optional[dict] = None, offset: int = 0):
    """The core's only callback, an epoch-end hook: checkpoint atomically (last.keras; best.keras when
    ``config.best_metric`` improved), then log the epoch's metrics and learning rate to MLflow (tracking failures never
    stop training); early stopping after ``early_stopping_patience`` evaluations without improvement. A non-finite
    loss stops training before the checkpoint, so the last finite one is kept. It has no batch hooks: Keras then runs
    the steps exactly as a plain ``fit`` does (a batch hook such as TerminateOnNaN cost ~10 % of the steps/s,
    benchmarks/unet_speed.py). Only with ``checkpoint_every_s`` does it get one: a clock read per step, and a
    mid-epoch checkpoint (its step and the epoch's running means in state.json) when that many seconds have passed.
    ``offset``: the steps of the first epoch done before a mid-epoch resume (its logs become whole-epoch means)."""
    import keras

    state = {} if state is None else state
    spe = config.steps_per_epoch if config is not None else 0
    best_metric = config.best_metric if config is not None else ""
    every_s = config.checkpoint_every_s if config is not None else 0.0

    def save(model, name):
        with atomic_path(os.path.join(ckpt_dir, name)) as tmp:  # keeps the .keras suffix Keras needs
            model.save(tmp)

    class EpochEnd(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.diverged = None
            self.stopped_early = None
            self.t0 = time.time()
            self.offset = offset
            self.partial = dict(state.get("partial_logs") or {}) if offset else {}
            self.epoch = 0
            self.last_save = clock()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def _whole_epoch(self, logs, done):
            """Running means over this fit's ``done`` steps -> means over the epoch's first offset + done steps."""
            if not self.offset:
                return logs
            n = self.offset
            return {k: (self.partial[k] * n + v * done) / (n + done) if k in self.partial else v
                    for k, v in logs.items()}

        def on_epoch_end(self, epoch, logs=None):
            logs = self._whole_epoch({k: float(v) for k, v in (logs or {}).items()}, spe - self.offset)
            self.offset, self.partial = 0, {}
            if not math.isfinite(logs.get("loss", 0.0)):  # diverged: keep the last good checkpoint
                self.model.stop_training = True
                self.diverged = (epoch + 1, logs.get("loss"))
                return
            logs["epoch_time_s"] = time.time() - self.t0
            self.t0 = time.time()
            logs["learning_rate"] = _current_lr(self.model)
            evaluated = (on_epoch(epoch + 1, self.model) or {}) if on_epoch is not None else {}
            logs.update(evaluated)
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            save(self.model, LAST)
            if best_metric:
                self._best(epoch + 1, logs, evaluated)
            state.update(epochs_done=epoch + 1, steps_done=0, history=history, run_id=tracker.run_id,
                         seed_states=seed_states(self.model))
            state.pop("partial_logs", None)
            write_json(os.path.join(ckpt_dir, STATE), state)
            self.last_save = clock()
            tracker.log_metrics(logs, step=epoch + 1)

        def _best(self, epoch, logs, evaluated):
            if best_metric not in logs:
                if best_metric.startswith("val_") and evaluated:
                    raise ConfigError(f"best_metric: evaluation gave no {best_metric!r} (it gave: "
                                      f"{', '.join(sorted(evaluated))})")
                return
            v, b = logs[best_metric], state.get("best") or {}
            better = "value" not in b or (v > b["value"] if config.best_mode == "max" else v < b["value"])
            if better:
                save(self.model, BEST)
                state["best"] = {"metric": best_metric, "mode": config.best_mode, "value": v, "epoch": epoch,
                                 "stale": 0}
                return
            b["stale"] = b.get("stale", 0) + 1
            if config.early_stopping_patience and b["stale"] >= config.early_stopping_patience:
                self.model.stop_training = True
                self.stopped_early = epoch
                state["stopped_early"] = epoch

    if not every_s:
        return EpochEnd()

    class TimedCheckpoints(EpochEnd):
        def on_train_batch_end(self, batch, logs=None):
            if clock() - self.last_save < every_s:
                return
            done = batch + 1
            steps = self.offset + done
            if steps >= spe:  # the epoch-end checkpoint follows at once
                return
            logs = self._whole_epoch({k: float(v) for k, v in (logs or {}).items()}, done)
            if not math.isfinite(logs.get("loss", 0.0)):
                return
            save(self.model, LAST)
            state.update(epochs_done=self.epoch, steps_done=steps, partial_logs=logs, history=history,
                         run_id=tracker.run_id, seed_states=seed_states(self.model))
            write_json(os.path.join(ckpt_dir, STATE), state)
            self.last_save = clock()

    return TimedCheckpoints()


def _seed_variables(model) -> list:
    """The states of the model's random-number generators (dropout's keras SeedGenerator), in a fixed order."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def seed_states(model) -> list:
    """The generators' states as lists, for state.json: Keras does not restore them from a .keras file (a loaded
    model draws fresh seeds), so without them a resumed run's dropout masks would differ from the uninterrupted
    run's."""
    import keras

    return [keras.ops.convert_to_numpy(v).tolist() for v in _seed_variables(model)]


def restore_seed_states(model, states) -> None:
    variables = _seed_variables(model)
    if states and len(states) == len(variables):
        for v, s in zip(variables, states):
            v.assign(s)


def _current_lr(model) -> float:
    """The learning rate of the optimizer's next step (its schedule at its step count)."""
    import keras

    try:
        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    except Exception:  # noqa: BLE001 — a model without an optimizer
        return float("nan")


def _gpu_available() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _precision_policy(config: ExperimentConfig) -> str:
    """``mixed_float16`` when ``config.mixed_precision`` and a GPU is present; on a CPU-only machine a warning and
    ``float32`` (float16 math on a CPU is slower, not faster): a GPU config still runs everywhere."""
    if not config.mixed_precision:
        return "float32"
    if not _gpu_available():
        warnings.warn(f"{config.name}: mixed_precision: true, but this machine has no GPU: training in float32",
                      stacklevel=3)
        return "float32"
    return "mixed_float16"


def precise_bn(model, batches, num_batches: int) -> int:
    """Recompute every BatchNormalization layer's moving mean and variance as the plain average of the batch
    statistics of ``num_batches`` training batches (Wu & Johnson, "Rethinking batch in BatchNorm", 2021, sec. 3;
    the "precise BN" of Detectron2 / fvcore), instead of the exponential average of the last steps of training.
    Only the moving statistics change: the model runs forward in training mode and no gradient is applied. Returns the
    number of batches used."""
    import keras

    bns = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    if not bns or num_batches < 1:
        return 0
    momenta = [layer.momentum for layer in bns]
    n = 0
    try:
        for batch in batches.take(num_batches):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            n += 1
            for layer in bns:  # moving = moving * (n - 1) / n + batch / n: the running average of the n batches
                layer.momentum = (n - 1) / n
            model(x, training=True)
    finally:
        for layer, m in zip(bns, momenta):
            layer.momentum = m
    return n


def train(config: ExperimentConfig, *, train_records: Optional[Sequence[str]] = None,
          eval_records: Optional[Sequence[str]] = None, output_dir: Optional[str] = None, resume: bool = False,
          tracking: Optional[bool] = None, verbose: int = 1) -> TrainResult:
    """Train ``config.model`` on the config's data; evaluate it; log everything to MLflow; return the model.

    train_records / eval_records: explicit shard lists (the TFX Trainer passes its ExampleGen outputs); otherwise
    ``config.data_dir`` with ``train_split`` / ``val_split`` or ``fold``. With ``best_metric`` the model evaluated,
    logged and returned is the best checkpoint's; with ``precise_bn_batches`` its batch-norm statistics are
    recomputed first (and written back to its checkpoint). ``mixed_precision`` sets Keras' global dtype policy for
    the run and restores the previous one afterwards. ``distribute`` (zoo.training.distribute): the run happens under
    that tf.distribute strategy's scope.
    """
    from zoo.training import distribute

    # the config was validated when it was built; the data source is checked here, before any output, model or
    # MLflow run exists (a bad data_dir leaves nothing behind)
    if not train_records:
        check_data_dir(config)
    strategy = distribute.strategy(config)  # before anything else touches TF (multi_worker must come first)
    distribute.check_batch(config, strategy)
    output_dir = output_dir or os.path.join("runs", config.name)
    if not distribute.is_chief(config):  # a multi_worker run's other workers: own checkpoints, no MLflow run
        output_dir, tracking = os.path.join(output_dir, "workers", str(distribute.worker_task()[1])), False
    import keras

    ckpt_dir = os.path.join(output_dir, CKPT_DIR)
    os.makedirs(ckpt_dir, exist_ok=True)
    config.save(os.path.join(output_dir, "config.yaml"))
    policy = _precision_policy(config)
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:  # model, optimizer and loss are built (or loaded) under the strategy; fit splits each global batch
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            return _train(config, train_records, eval_records, output_dir, ckpt_dir, resume, tracking, verbose,
                          policy)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train(config, train_records, eval_records, output_dir, ckpt_dir, resume, tracking, verbose, policy):
    import keras

    from zoo import models, losses

    keras.utils.set_random_seed(config.seed)
    state_path = os.path.join(ckpt_dir, STATE)
    state = {"epochs_done": 0, "steps_done": 0, "history": {}, "run_id": None}
    if resume and os.path.isfile(state_path) and os.path.isfile(os.path.join(ckpt_dir, LAST)):
        with open(state_path) as fh:
            state = {"steps_done": 0, **json.load(fh)}
        model = keras.models.load_model(os.path.join(ckpt_dir, LAST))
        restore_seed_states(model, state.get("seed_states"))
        done = state["epochs_done"] * config.steps_per_epoch + state["steps_done"]
        if model.optimizer is not None and int(model.optimizer.iterations) != done:
            # killed between writing last.keras and state.json (or steps_per_epoch changed): say so, go on
            warnings.warn(f"{config.name}: {LAST} is at optimizer step {int(model.optimizer.iterations)} but "
                          f"{STATE} says {done} (epoch {state['epochs_done']}, step {state['steps_done']}); "
                          f"continuing from {STATE}'s position", stacklevel=2)
        if model.optimizer is not None:  # the schedule follows the config (more epochs: poly / cosine stretch)
            model.optimizer.learning_rate = make_schedule(config)
        if verbose:
            at = f", step {state['steps_done']}" if state["steps_done"] else ""
            print(f"resuming {config.name} from epoch {state['epochs_done']}{at} ({ckpt_dir})")
    else:
        if resume and verbose:
            start = (f"starting from init_weights {config.init_weights}" if config.init_weights
                     else "starting from scratch")
            print(f"no checkpoint in {ckpt_dir}: {start}")
        model = models.build(config.model, config.model_config)
        if config.init_weights:
            init_weights(model, config.init_weights)
        model.compile(optimizer=make_optimizer(config), loss=losses.get_loss(config.loss, **config.loss_config),
                      weighted_metrics=[])
    apply_weight_decay(model, config)

    track = config.tracking if tracking is None else {**config.tracking, "enabled": tracking}
    tracker = Tracker(enabled=bool(track.get("enabled", True)), experiment=track.get("experiment", "histozoo"),
                      run_name=config.name, run_id=state.get("run_id"))
    if state["epochs_done"] == 0 and not state["steps_done"]:
        tracker.log_params(config.to_dict())
        tracker.set_tags({"histozoo.model": config.model, "histozoo.data": config.data_dir or "records",
                          "histozoo.precision": policy})

    eval_source = _eval_source(config, eval_records)
    spec = make_spec(config, model, train_records)
    spec.save(os.path.join(ckpt_dir, SPEC))
    select_best = config.best_metric.startswith("val_")

    def periodic_eval(epoch, m):
        if (config.eval_every and eval_source and epoch % config.eval_every == 0
                and (epoch < config.epochs or select_best)):
            evaluate, _ = evaluators(m)
            res = evaluate(m, eval_source[0], split=eval_source[1], fold=config.fold, spec=spec, max_images=4,
                           hausdorff=False)
            return {f"val_{k}": v for k, v in res["mean"].items()}
        return {}

    history = state["history"]
    status = "FAILED"
    try:
        start, offset = state["epochs_done"], state["steps_done"]
        spe = config.steps_per_epoch
        fits = []  # (dataset, steps per epoch, first epoch, last epoch, steps already done in the first)
        if state.get("stopped_early") is None and start < config.epochs:
            if offset:  # the rest of an epoch checkpointed mid-way, then the epochs after it
                fits.append((training_dataset(config, train_records, first_epoch=start, skip=offset, count=1),
                             spe - offset, start, start + 1, offset))
                start += 1
            if start < config.epochs:
                fits.append((training_dataset(config, train_records, first_epoch=start), spe, start, config.epochs,
                             0))
        for ds, steps, first, last, done in fits:
            epoch_end = epoch_end_callback(ckpt_dir, tracker, history, periodic_eval, config=config, state=state,
                                           offset=done)
            model.fit(ds, epochs=last, initial_epoch=first, steps_per_epoch=steps, verbose=verbose,
                      callbacks=[epoch_end])
            if epoch_end.diverged:
                epoch, loss = epoch_end.diverged
                raise TrainingDiverged(
                    f"{config.name}: the loss became {loss} in epoch {epoch}; the last finite checkpoint "
                    f"(epoch {epoch - 1}) is kept in {ckpt_dir}. Lower learning_rate (now {config.learning_rate:g}) "
                    f"and run again, or --resume from it")
            if epoch_end.stopped_early:
                if verbose:
                    b = state["best"]
                    print(f"early stopping after epoch {epoch_end.stopped_early}: {b['metric']} last improved in "
                          f"epoch {b['epoch']} ({b['value']:.4g})")
                break
        write_json(os.path.join(output_dir, "history.json"), history)
        final = LAST
        if config.best_metric and os.path.isfile(os.path.join(ckpt_dir, BEST)):
            final = BEST
            model = keras.models.load_model(os.path.join(ckpt_dir, BEST))
        if config.precise_bn_batches and not state.get("precise_bn"):
            bn_stream = training_dataset(config, train_records, first_epoch=config.epochs, count=1,
                                         steps=config.precise_bn_batches)
            if precise_bn(model, bn_stream, config.precise_bn_batches):
                with atomic_path(os.path.join(ckpt_dir, final)) as tmp:
                    model.save(tmp)
            state.update(precise_bn=final, history=history, run_id=tracker.run_id)
            write_json(state_path, state)
        metrics = {}
        if eval_source:
            evaluate, save_overlays = evaluators(model)
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


def init_weights(model, uri: str) -> None:
    """Copy the weights of the model at ``uri`` (``pretrained:NAME``, .keras, run folder, MLflow URI; see
    zoo.training.tracking.load) into ``model``, variable by variable; a one-line ConfigError names the first
    variable whose shape differs (a different architecture or model_config)."""
    from zoo.training.tracking import load_model

    import numpy as np

    src = load_model(uri)
    if not model.weights:  # a subclassed model makes its variables on the first call
        side = max(int(getattr(model, "min_divisor", 1) or 1), 32)
        model(np.zeros((1, side, side, 3), "float32"))
    ours, theirs = model.weights, src.weights
    if len(ours) != len(theirs):
        raise ConfigError(f"init_weights: {uri} has {len(theirs)} weight tensors, the model {len(ours)}: not the "
                          f"same architecture (check model and model_config)")
    for a, b in zip(ours, theirs):
        if tuple(a.shape) != tuple(b.shape):
            raise ConfigError(f"init_weights: {uri}: {b.path} has shape {tuple(b.shape)}, the model's {a.path} "
                              f"{tuple(a.shape)} (check model_config)")
    model.set_weights(src.get_weights())


def evaluators(model):
    """(evaluate, save_overlays) for ``model``: zoo.evaluation's (instance metrics; overlays), or, for a model that
    clusters nucleus crops (zoo.models.gan), zoo.evaluation.cluster's (purity / entropy / F-score of Q's clusters;
    G's sample grid and a contact sheet per cluster)."""
    if hasattr(model, "sample_grid"):
        from zoo.evaluation.cluster import evaluate_clusters, save_samples

        return evaluate_clusters, save_samples
    from zoo.evaluation import evaluate, save_overlays

    return evaluate, save_overlays


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
    typed = class_names if getattr(inp, "types", "none") == "merged" else ()
    # models whose output is not a per-pixel map name their channels (the GAN models: one per cluster of Q)
    channels = getattr(model, "output_channel_names", None) or channel_names(model_channels(model, divisor),
                                                                            inp.target, typed)
    stain = None
    if getattr(inp, "stain", ""):  # the input layer's stain normalizer (zoo.data.input), applied again at inference
        from zoo.stain.base import load as load_stain

        stain = load_stain(inp.stain, jit=False).to_json()
    return InferenceSpec(channels=channels, class_names=class_names,
                         mpp=inp.mpp if inp.mpp > 0 else data_mpp, divisor=divisor, stain=stain,
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
