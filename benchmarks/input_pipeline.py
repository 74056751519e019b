"""Input pipeline vs training step, side by side in one run (issue 10's bar: ratio >= 3 on 2 cores).

Measures, on MoNuSeg train records (build/monuseg; falls back to TNBC build/tnbc, and says so):
1. patches/s of zoo.data.input.dataset with full augmentation (flip, rot90, affine, elastic, blur, colour and HED
   jitter), 3-class targets and U-Net weight maps (w0 = 10, sigma = 5), 256x256 patches, batch 8;
2. patches/s (= steps/s x batch) of a training step of Yuan & Suh's U-Net (4 down / 4 up, 3 classes) at batch 8 on
   256x256 patches, per-pixel weighted sparse cross-entropy, Adam 1e-4 -- the registered zoo.models "unet" when it
   exists (with the --base-filters given: 32 = the registry's default, 32 ... 512 at the bottleneck as the paper
   states; 64 = 64 ... 1024), else the same shape built here with keras functional layers;
3. their ratio (input patches/s / training patches/s).

    /work/venv/bin/python benchmarks/input_pipeline.py [--data build/monuseg] [--batches 30] [--steps 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import add_load_argument, start_guard  # noqa: E402  (benchmarks/_common.py)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def _functional_unet(base: int, classes: int = 3, depth: int = 4):
    import keras

    x = inp = keras.Input((256, 256, 3))
    skips = []
    for i in range(depth):
        for _ in range(2):
            x = keras.layers.Conv2D(base * 2 ** i, 3, padding="same", activation="relu")(x)
        skips.append(x)
        x = keras.layers.MaxPooling2D()(x)
    for _ in range(2):
        x = keras.layers.Conv2D(base * 2 ** depth, 3, padding="same", activation="relu")(x)
    for i in reversed(range(depth)):
        x = keras.layers.Conv2DTranspose(base * 2 ** i, 2, strides=2)(x)
        x = keras.layers.Concatenate()([x, skips[i]])
        for _ in range(2):
            x = keras.layers.Conv2D(base * 2 ** i, 3, padding="same", activation="relu")(x)
    out = keras.layers.Conv2D(classes, 1, activation="softmax")(x)
    return keras.Model(inp, out)


def _model(base: int):
    try:
        from zoo import models

        if "unet" in models.available():
            return models.build("unet", {"num_classes": 3, "base_filters": base}), "zoo.models 'unet'"
    except ImportError:
        pass
    return _functional_unet(base), "functional keras U-Net (no registered 'unet')"


def bench_input(data: str, batches: int, batch: int, weight_map: str = "unet") -> float:
    from zoo.data.input import InputConfig, dataset

    cfg = InputConfig(patch_size=256, batch_size=batch, target="three_class", weight_map=weight_map, flip=True,
                      rot90=True, affine=True, elastic=True, blur=True, color_jitter=True, hed_jitter=True,
                      patches_per_image=16, seed=0)
    it = iter(dataset(data, cfg, split="train").repeat())
    for _ in range(3):  # fill the image cache and the shuffle buffer, trace the graph
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - t)


def bench_train(base: int, steps: int, batch: int) -> tuple[float, str, int]:
    import keras
    import numpy as np

    model, what = _model(base)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=keras.losses.SparseCategoricalCrossentropy())
    rng = np.random.default_rng(0)
    x = rng.random((batch, 256, 256, 3), np.float32)
    y = rng.integers(0, 3, (batch, 256, 256)).astype(np.int32)
    w = rng.uniform(1, 11, (batch, 256, 256)).astype(np.float32)
    model.train_on_batch(x, y, sample_weight=w)  # build + trace
    t = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y, sample_weight=w)
    return steps * batch / (time.perf_counter() - t), what, model.count_params()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="built records dir (default build/monuseg, else build/tnbc)")
    ap.add_argument("--batches", type=int, default=30, help="input batches timed (after 3 warm-up batches)")
    ap.add_argument("--steps", type=int, default=3, help="training steps timed (after 1 warm-up step)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--base-filters", type=int, nargs="+", default=[32, 64])
    add_load_argument(ap)
    args = ap.parse_args(argv)
    start_guard(args)
    repo = os.path.dirname(HERE)
    data = args.data
    if data is None:
        data = os.path.join(repo, "build", "monuseg")
        if not os.path.isdir(data):
            data = os.path.join(repo, "build", "tnbc")
            print(f"MoNuSeg records absent (build/monuseg): FALLING BACK to TNBC records at {data}")
    import tensorflow as tf

    print(f"cores visible: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, TF {tf.__version__}, "
          f"devices: {[d.device_type for d in tf.config.list_physical_devices()]}")
    print(f"data: {data} (split train)")
    ip = bench_input(data, args.batches, args.batch)
    print(f"input pipeline (full augmentation + 3-class + U-Net weight map, 256x256): {ip:.1f} patches/s "
          f"({args.batches} batches of {args.batch})")
    ip0 = bench_input(data, args.batches, args.batch, "none")
    print(f"  (for reference, the same without the weight map: {ip0:.1f} patches/s; the in-graph weight map costs "
          f"{1000 / ip - 1000 / ip0:.1f} ms per patch)")
    for base in args.base_filters:
        tp, what, n = bench_train(base, args.steps, args.batch)
        print(f"training step, {what}, base_filters={base} ({base}..{base * 16} maps, {n / 1e6:.1f} M params), "
              f"batch {args.batch}: {tp:.2f} patches/s ({tp / args.batch:.3f} steps/s)")
        print(f"  ratio input / training = {ip / tp:.1f}  (bar >= 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
