"""U-Net speed, side by side in one run (issue 4's bar: the training core's overhead <= 5%).

1. Training steps/s of Yuan & Suh's U-Net (zoo.models "unet", 3 classes, U-Net weight map, weighted CE, Adam 1e-4)
   A. through the real ``zoo.training.train`` (per-epoch atomic ``.keras`` checkpoint with optimizer state,
      state.json, MLflow metrics to an embedded sqlite store in a temporary folder; params, curves, artifacts
      and the logged model at the ends of the run), and
   B. by a plain ``model.fit`` of the same model, optimizer, loss and compile arguments, with no callbacks
      (only a clock that reads time.time() at each epoch end, as the core's callback does for ``epoch_time_s``).
   Both read the SAME batches at no input cost: ``zoo.training.train.training_dataset`` (the real input layer on
   MoNuSeg train records) is drawn from once, ``steps_per_epoch`` batches are kept in memory, and both sides train
   on ``from_tensor_slices(those).repeat()``. For A the benchmark swaps ``zoo.training.train.training_dataset`` for
   a function returning that in-memory stream (train() builds its own stream from records; nothing in zoo/training
   is changed), so the only difference between A and B is what the core adds around ``fit``.
   Runs alternate A B, B A, A B ... (each a fresh model, same seed) to cancel machine drift. Steady-state steps/s is
   measured over epochs 2..E (epoch 1 holds graph tracing, the same on both sides); A's epoch times include one
   checkpoint + log per epoch. Reported: median steps/s of each side, overhead = B_rate / A_rate - 1, the
   per-epoch cost of the core's callback split into model.save (+ rename), state.json and MLflow log_metrics, and
   the one-off costs of train() before and after fit (build/compile/MLflow run start; curves, artifacts, model
   logging), and the process CPU seconds per step of each side (less sensitive to other jobs than wall time).
   ``--control`` runs a second plain fit in A's place: the "overhead" it shows is the design's noise floor on the
   machine at hand (on 2 shared cores it was -12%, i.e. rate ratios there cannot resolve a 5% bar; the directly
   timed epoch-end work can).
2. Inference megapixels/s of the same U-Net (random weights: speed does not depend on them) on the 14 MoNuSeg
   test images (1000x1000) through ``zoo.inference.KerasForward`` (the forward pass of ``zoo.inference.predict``) (the model pads to its divisor), and
   through the exported SavedModel (``serving.export.export`` -> ``tf.saved_model.load`` -> the
   ``predict_images`` signature: probabilities + class map + in-graph instance labelling; its probabilities are
   checked equal to the first path's). Each path runs one untimed warm-up image first.

    /work/venv/bin/python benchmarks/unet_speed.py                      # the full config (GPU-sized)
    /work/venv/bin/python benchmarks/unet_speed.py --base-filters 16 --patch 128 --batch 4 --steps 20 --epochs 3 --reps 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import add_load_argument, start_guard  # noqa: E402  (benchmarks/_common.py)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)


def _core():
    """The module zoo.training.train (``zoo.training.train`` the attribute is the function)."""
    import importlib

    return importlib.import_module("zoo.training.train")


def _config(args, data: str):
    from zoo.training import ExperimentConfig

    return ExperimentConfig(
        name="bench-unet", model="unet",
        model_config={"num_classes": 3, "base_filters": args.base_filters, "depth": 4},
        data_dir=data, train_split="train", val_split="",
        input={"patch_size": args.patch, "batch_size": args.batch, "target": "three_class", "boundary_width": 2,
               "weight_map": "unet", "flip": True, "rot90": True, "patches_per_image": 4},
        loss="weighted_ce", optimizer="adam", learning_rate=1e-4, epochs=args.epochs,
        steps_per_epoch=args.steps, seed=0,
        tracking={"enabled": True, "experiment": "bench-unet", "register_as": "", "log_model": not args.no_log_model})


def cached_batches(config):
    """``steps_per_epoch`` batches of the real training stream, in memory, as a repeated tf.data stream."""
    import numpy as np
    import tensorflow as tf

    core = _core()

    xs, ys, ws = [], [], []
    for x, y, w in core.training_dataset(config).take(config.steps_per_epoch).as_numpy_iterator():
        xs.append(x), ys.append(y), ws.append(w)
    arrays = tuple(np.concatenate(a) for a in (xs, ys, ws))
    batch = config.input["batch_size"]
    return tf.data.Dataset.from_tensor_slices(arrays).batch(batch, drop_remainder=True).repeat(), arrays


def run_core(config, stream, out_dir: str) -> dict:
    """Side A: the real zoo.training.train, fed the in-memory stream; the core's epoch-end work timed piecewise."""
    core = _core()

    rec = {"epoch_end": [], "save": [], "state_json": [], "log_metrics": [], "cpu": []}
    marks = {}
    orig_dataset, orig_epoch_end, orig_write_json = core.training_dataset, core.epoch_end_callback, core.write_json

    def dataset(config, records=None, **kw):  # the core's resume arguments (first_epoch, skip, ...) do not matter here
        marks["fit_start"] = time.perf_counter()
        return stream

    def write_json(*a, **k):
        t = time.perf_counter()
        orig_write_json(*a, **k)
        if marks.get("in_epoch_end"):
            rec["state_json"].append(time.perf_counter() - t)

    def epoch_end(ckpt_dir, tracker, history, on_epoch=None, **kw):
        cb = orig_epoch_end(ckpt_dir, tracker, history, on_epoch, **kw)
        inner, log = cb.on_epoch_end, tracker.log_metrics

        def log_metrics(*a, **k):
            t = time.perf_counter()
            log(*a, **k)
            rec["log_metrics"].append(time.perf_counter() - t)

        def on_epoch_end(epoch, logs=None):
            n = len(rec["state_json"]) + len(rec["log_metrics"])
            marks["in_epoch_end"] = True
            rec["cpu"].append(time.process_time())  # CPU clock of the steps only: read on entry, restarted on exit
            t = time.perf_counter()
            inner(epoch, logs)
            rec["epoch_end"].append(time.perf_counter() - t)
            marks["in_epoch_end"] = False
            rec["cpu"].append(time.process_time())
            rec["save"].append(rec["epoch_end"][-1] - rec["state_json"][-1] - rec["log_metrics"][-1])
            assert len(rec["state_json"]) + len(rec["log_metrics"]) == n + 2
            marks["fit_end"] = time.perf_counter()

        tracker.log_metrics, cb.on_epoch_end = log_metrics, on_epoch_end
        return cb

    core.training_dataset, core.epoch_end_callback, core.write_json = dataset, epoch_end, write_json
    try:
        t0 = time.perf_counter()
        result = core.train(config, output_dir=out_dir, tracking=True, verbose=0)
        t1 = time.perf_counter()
    finally:
        core.training_dataset, core.epoch_end_callback, core.write_json = orig_dataset, orig_epoch_end, orig_write_json
    if result.run_id is None:
        raise SystemExit("MLflow tracking did not start: the benchmark needs it on")
    times = result.history["epoch_time_s"]
    return {"epoch_times": times, "steady": sum(times[1:]), "first": times[0], **rec,
            "setup": marks["fit_start"] - t0, "teardown": t1 - marks["fit_end"],
            "ckpt_mb": os.path.getsize(os.path.join(out_dir, "checkpoints", "last.keras")) / 1e6}


def run_plain(config, stream) -> dict:
    """Side B: build, compile and fit the same model on the same stream with plain Keras."""
    import keras

    from zoo import losses, models
    from zoo.training.train import make_optimizer

    class Clock(keras.callbacks.Callback):  # the same time.time() bookkeeping as the core's epoch_time_s
        def __init__(self):
            super().__init__()
            self.t0, self.times, self.cpu = time.time(), [], []

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.time() - self.t0)
            self.t0 = time.time()
            self.cpu.append(time.process_time())
            self.cpu.append(self.cpu[-1])

    t0 = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    model = models.build(config.model, config.model_config)
    model.compile(optimizer=make_optimizer(config), loss=losses.get_loss(config.loss, **config.loss_config),
                  weighted_metrics=[])
    clock = Clock()
    setup = time.perf_counter() - t0
    model.fit(stream, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch, verbose=0, callbacks=[clock])
    return {"epoch_times": clock.times, "steady": sum(clock.times[1:]), "first": clock.times[0], "setup": setup,
            "cpu": clock.cpu}


def bench_training(args, data: str, work: str) -> None:
    import keras

    config = _config(args, data)
    t = time.perf_counter()
    stream, arrays = cached_batches(config)
    print(f"batches: {args.steps} x {list(arrays[0].shape[1:])} (batch {args.batch}) from the real input layer on "
          f"{data} split train (3-class targets, U-Net weight map), kept in memory: "
          f"{sum(a.nbytes for a in arrays) / 1e6:.0f} MB, drawn in {time.perf_counter() - t:.1f} s")
    steady_steps = (args.epochs - 1) * args.steps
    a_runs, b_runs = [], []
    for r in range(args.reps):
        for side in ("AB" if r % 2 == 0 else "BA"):  # A B, B A, A B, ...: a linear drift of the machine cancels
            keras.backend.clear_session()
            if side == "A" and args.control:  # A/A control: side A is a second plain fit (the noise floor)
                a = run_plain(config, stream)
                a.update(epoch_end=[0.0] * args.epochs, save=[0.0], state_json=[0.0], log_metrics=[0.0], teardown=0.0,
                         ckpt_mb=0.0)
                a_runs.append(a)
                print(f"  pair {r + 1} A' plain model.fit:     epochs {['%.2f' % e for e in a['epoch_times']]} s -> "
                      f"{steady_steps / a['steady']:.3f} steps/s steady (control)", flush=True)
            elif side == "A":
                a = run_core(config, stream, os.path.join(work, f"run-a{r}"))
                a_runs.append(a)
                print(f"  pair {r + 1} A zoo.training.train: epochs {['%.2f' % e for e in a['epoch_times']]} s -> "
                      f"{steady_steps / a['steady']:.3f} steps/s steady; epoch-end work "
                      f"{['%.3f' % e for e in a['epoch_end']]} s", flush=True)
            else:
                b = run_plain(config, stream)
                b_runs.append(b)
                print(f"  pair {r + 1} B plain model.fit:      epochs {['%.2f' % e for e in b['epoch_times']]} s -> "
                      f"{steady_steps / b['steady']:.3f} steps/s steady", flush=True)

    rate = lambda runs: statistics.median(steady_steps / r["steady"] for r in runs)
    ra, rb = rate(a_runs), rate(b_runs)
    pairs = [(steady_steps / b["steady"]) / (steady_steps / a["steady"]) - 1 for a, b in zip(a_runs, b_runs)]
    med = lambda key: statistics.median(x for r in a_runs for x in r[key])
    b_epoch = statistics.median(b["steady"] / (args.epochs - 1) for b in b_runs)
    print(f"\nsteady-state training (epochs 2..{args.epochs}, {steady_steps} steps per run, {args.reps} runs each, "
          "interleaved A B, B A, ...):")
    print(f"  A zoo.training.train  : {ra:.3f} steps/s  ({ra * args.batch:.2f} patches/s)")
    print(f"  B plain keras fit     : {rb:.3f} steps/s  ({rb * args.batch:.2f} patches/s)")
    print(f"  overhead B/A - 1      : {rb / ra - 1:+.1%}  (per pair: {', '.join('%+.1f%%' % (100 * p) for p in pairs)};"
          f" bar <= 5%)")
    work_s = med("epoch_end")
    print(f"  core's epoch-end work : {work_s:.3f} s per epoch = model.save {med('save'):.3f} s "
          f"({a_runs[0]['ckpt_mb']:.1f} MB .keras with Adam state) + state.json {med('state_json') * 1e3:.1f} ms + "
          f"MLflow log_metrics {med('log_metrics') * 1e3:.1f} ms")
    print(f"  = {work_s / b_epoch:.1%} of a plain epoch of {args.steps} steps ({b_epoch:.2f} s): the core's whole "
          f"overhead, as it adds nothing per step (no batch hooks); at s steps/epoch of t s it is {work_s:.2f} / (s * t)")
    steps_only = statistics.median(steady_steps / (a["steady"] - sum(a["epoch_end"][:-1])) for a in a_runs)
    print(f"  A's steps alone (epoch-end work taken out): {steps_only:.3f} steps/s vs B {rb:.3f}: "
          f"{rb / steps_only - 1:+.1%} (per-step cost of the core, plus the machine's run-to-run noise)")
    # process CPU seconds of the steps of epochs 2..E (epoch-end work excluded): robust to other jobs on the machine
    cpu = lambda r: (sum(r["cpu"][2 * k] - r["cpu"][2 * k - 1] for k in range(1, args.epochs))) / steady_steps
    ca, cb = statistics.median(map(cpu, a_runs)), statistics.median(map(cpu, b_runs))
    print(f"  process CPU per step (steps only): A {ca:.3f} s, B {cb:.3f} s: A/B - 1 = {ca / cb - 1:+.1%}; "
          f"the epoch-end work costs {statistics.median(r['cpu'][2 * k + 1] - r['cpu'][2 * k] for r in a_runs for k in range(args.epochs)):.3f} CPU s")
    fa = statistics.median(a["first"] for a in a_runs)
    fb = statistics.median(b["first"] for b in b_runs)
    print(f"  first epoch (tracing): A {fa:.2f} s, B {fb:.2f} s")
    print(f"  one-off per run: A before fit {statistics.median(a['setup'] for a in a_runs):.2f} s (build, compile, "
          f"config.yaml, MLflow run start + params), after fit "
          f"{statistics.median(a['teardown'] for a in a_runs):.2f} s (history, curves.png, artifacts"
          f"{', logged model' if not args.no_log_model else ''}, end run); "
          f"B before fit {statistics.median(b['setup'] for b in b_runs):.2f} s (build, compile)")


def bench_inference(args, data: str, work: str) -> None:
    import numpy as np
    import tensorflow as tf

    from zoo import models
    from zoo.data import records
    from zoo.inference import KerasForward, default_spec

    images = [s.image for s in records.read_samples(records.list_shards(data, "test"))][: args.images]
    mp = sum(im.shape[0] * im.shape[1] for im in images[1:]) / 1e6
    print(f"\ninference: {len(images)} MoNuSeg test images {sorted({im.shape[:2] for im in images})} "
          f"(first one untimed warm-up; {mp:.2f} MP timed); U-Net base_filters={args.base_filters}, random weights")
    import keras

    keras.utils.set_random_seed(0)
    model = models.build("unet", {"num_classes": 3, "base_filters": args.base_filters, "depth": 4})
    forward = KerasForward(model, default_spec(model))  # the forward pass of zoo.inference.predict
    predict_probabilities = lambda m, im: forward(im[None])[0]  # noqa: E731
    predict_probabilities(model, images[0])
    t = time.perf_counter()
    for im in images[1:]:
        p = predict_probabilities(model, im)
    dt = time.perf_counter() - t
    assert p.shape == images[-1].shape[:2] + (3,)
    print(f"  zoo.inference.KerasForward: {mp / dt:.3f} MP/s ({dt / (len(images) - 1):.2f} s per image)")
    if args.no_savedmodel:
        return
    from serving.export import export

    t = time.perf_counter()
    path = export(model, os.path.join(work, "export"))
    fn = tf.saved_model.load(path).signatures["predict_images"]
    t_export = time.perf_counter() - t
    fn(images=tf.constant(images[0][None]))
    t = time.perf_counter()
    for im in images[1:]:
        out = fn(images=tf.constant(im[None]))
    dt2 = time.perf_counter() - t
    np.testing.assert_allclose(out["probabilities"].numpy()[0], p, atol=1e-4)  # one model, one padding rule
    print(f"  SavedModel predict_images (probabilities + class map + in-graph instances): {mp / dt2:.3f} MP/s "
          f"({dt2 / (len(images) - 1):.2f} s per image; export + load {t_export:.1f} s)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(REPO, "build", "monuseg"), help="built MoNuSeg records")
    ap.add_argument("--base-filters", type=int, default=32, help="U-Net width (32: 32..512 maps, the paper's)")
    ap.add_argument("--patch", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50, help="steps per epoch")
    ap.add_argument("--epochs", type=int, default=4, help="epochs per run (>= 2; epoch 1 is not timed)")
    ap.add_argument("--reps", type=int, default=4, help="A/B pairs (even: A B, B A, ... balances the order)")
    ap.add_argument("--images", type=int, default=14, help="MoNuSeg test images for inference (first untimed)")
    ap.add_argument("--no-log-model", action="store_true", help="A: do not log the model to MLflow at the end")
    ap.add_argument("--no-savedmodel", action="store_true", help="skip the exported SavedModel inference path")
    ap.add_argument("--control", action="store_true",
                    help="A/A control: run a second plain fit in A's place, to measure the noise floor of the design")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--skip-inference", action="store_true")
    add_load_argument(ap)
    args = ap.parse_args(argv)
    start_guard(args)
    if args.epochs < 2:
        ap.error("--epochs must be >= 2 (the first epoch traces the graph and is not timed)")
    data = os.path.abspath(args.data)
    if not os.path.isfile(os.path.join(data, "summary.json")):
        raise SystemExit(f"{data}: no built records; run `histozoo data build monuseg2018 "
                         f"--root ../shared/data/monuseg2018 --out build/monuseg`")
    import tensorflow as tf

    print(f"cores visible: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, TF {tf.__version__}, "
          f"devices: {[d.device_type for d in tf.config.list_physical_devices()]}")
    if not args.skip_training:
        print(f"U-Net base_filters={args.base_filters} depth 4, 3 classes, patch {args.patch}, batch {args.batch}, "
              f"Adam 1e-4, weighted CE; {args.steps} steps/epoch x {args.epochs} epochs, {args.reps} A/B pairs"
              f"{' (CONTROL: A is a plain fit too)' if args.control else ''}")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    with tempfile.TemporaryDirectory(prefix="unet-speed-") as work:
        os.chdir(work)  # the core's default tracking store: sqlite under ./mlruns, here a temporary folder
        if not args.skip_training:
            bench_training(args, data, work)
        if not args.skip_inference:
            bench_inference(args, data, work)
        os.chdir(REPO)
    return 0


if __name__ == "__main__":
    sys.exit(main())
