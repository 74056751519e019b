"""GAN training speed on this machine: iterations/s of the one GAN train_step (zoo.training.gan: 5 critic steps with
the gradient penalty, 1 generator step and the MI steps of the config's ``mi_schedule``: one Q step under ``paper``,
one after every critic step and after the G step under ``released``) for Hu et al.'s InfoWGAN-GP and Yuan & Suh's
InfoGAN, at the widths and batch of configs/gan/*.yaml (128 maps per resblock, 5 x 64 real crops per iteration)
unless overridden; ``--mi-schedule paper released`` times both schedules side by side.

Each variant: a fresh model from its config, compiled as the training core compiles it (G's Adam at the config's
learning_rate), trained by ``model.fit`` (what the core's fit runs) on random crops held in memory (the speed of a
step does not depend on the pixels; the input pipeline is benchmarks/input_pipeline.py's subject). ``--warmup``
iterations first (they hold the graph tracing), then ``--iterations`` timed ones; reported: iterations/s, real crops
consumed/s, process CPU seconds per iteration, the tracing+warm-up time. Load average at start and end
(benchmarks/_common.py); a run on a busy machine needs --max-load and is flagged.

    .venv/bin/python benchmarks/gan.py --iterations 20
    .venv/bin/python benchmarks/gan.py --iterations 20 --filters 32 --batch 80 --max-load 4   # a smaller, flagged run
    .venv/bin/python benchmarks/gan.py --iterations 4 --warmup 1 --mi-schedule paper released
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import add_load_argument, start_guard  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"hu": "configs/gan/hu_infowgan_gp.yaml", "yuan": "configs/gan/yuan_suh_infogan.yaml"}


def run_variant(name: str, iterations: int, warmup: int, filters: int | None, batch: int | None, seed: int = 0,
                schedule: str | None = None):
    import keras
    import numpy as np
    import tensorflow as tf

    from zoo import losses, models
    from zoo.training import ExperimentConfig
    from zoo.training.train import make_optimizer

    cfg = ExperimentConfig.load(os.path.join(REPO, CONFIGS[name]))
    mc = dict(cfg.model_config)
    if filters:
        mc.update({k: filters for k in ("g_filters", "d_filters", "q_filters") if k in mc})
    if schedule:
        mc["mi_schedule"] = schedule
    keras.utils.set_random_seed(seed)
    model = models.build(cfg.model, mc)
    model.compile(optimizer=make_optimizer(cfg), loss=losses.get_loss(cfg.loss, **cfg.loss_config))
    b = batch or cfg.input_config().batch_size
    s = model.config.image_size
    x = np.random.default_rng(seed).random((b, s, s, 3), dtype=np.float32)
    ds = tf.data.Dataset.from_tensors(x).repeat()
    t0 = time.perf_counter()
    model.fit(ds, steps_per_epoch=warmup, epochs=1, verbose=0)
    warm_s = time.perf_counter() - t0
    cpu0, t0 = time.process_time(), time.perf_counter()
    hist = model.fit(ds, steps_per_epoch=iterations, epochs=1, verbose=0).history
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert all(np.isfinite(v[-1]) for v in hist.values()), hist
    return {"variant": name, "model": cfg.model, "image_size": s, "filters": mc.get("d_filters"), "batch": b,
            "n_critic": model.config.n_critic,
            "mi_schedule": model.config.mi_schedule, "iterations": iterations, "seconds": wall,
            "iterations_per_s": iterations / wall, "real_crops_per_s": iterations * b / wall,
            "cpu_s_per_iteration": cpu / iterations, "warmup_iterations": warmup, "trace_and_warmup_s": warm_s,
            "final_logs": {k: float(v[-1]) for k, v in hist.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", choices=sorted(CONFIGS), default=["hu", "yuan"])
    ap.add_argument("--iterations", type=int, default=20, help="timed iterations per variant (default 20)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations first (graph tracing)")
    ap.add_argument("--filters", type=int, default=None, help="maps per resblock (default: the config's 128)")
    ap.add_argument("--batch", type=int, default=None, help="real crops per iteration (default: the config's 320)")
    ap.add_argument("--mi-schedule", nargs="+", choices=["paper", "released"], default=[None],
                    help="time these MI schedules (default: each config's own)")
    ap.add_argument("--json", default=None, help="also write the results here")
    add_load_argument(ap)
    args = ap.parse_args()
    guard = start_guard(args)
    import tensorflow as tf

    rows = []
    for v, schedule in [(v, sch) for v in args.variants for sch in args.mi_schedule]:
        r = run_variant(v, args.iterations, args.warmup, args.filters, args.batch, schedule=schedule)
        rows.append(r)
        print(f"{v:5s} {r['model']:17s} {r['mi_schedule']:8s} {r['image_size']}px {r['filters']} maps "
              f"batch {r['batch']}: {r['iterations_per_s']:.3f} iterations/s ({r['real_crops_per_s']:.1f} real "
              f"crops/s, {r['cpu_s_per_iteration']:.2f} CPU s/iteration; trace + {r['warmup_iterations']} warm-up "
              f"{r['trace_and_warmup_s']:.1f} s)", flush=True)
    record = guard.finish()
    out = {"rows": rows, "machine": {"tensorflow": tf.__version__, "gpus": len(tf.config.list_physical_devices("GPU")),
                                     **record}}
    if args.json:
        from zoo.atomic import write_json

        write_json(args.json, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
