"""Load benchmark of serving.local_server: N concurrent gRPC clients for T seconds on loopback with 256x256 tiles
(requests/s, p50/p99 latency, errors), and the gRPC overhead against an in-process call of the same SavedModel
signature at batch 8, measured side by side (alternating calls) in one run.

    python benchmarks/serving_load.py --clients 4 --seconds 20 --rounds 10

The model is zoo.models' U-Net (``--base-filters``, ``--depth``; 3 classes) when importable, else a small
U-Net-ish Keras model. The server runs in its own process (``histozoo serve``), as a deployment would.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np


def build_model(base_filters: int, depth: int):
    try:
        from zoo.models import build

        return build("unet", {"num_classes": 3, "base_filters": base_filters, "depth": depth}), "zoo.models unet"
    except Exception as e:  # noqa: BLE001 - the fallback is the point
        import keras

        print(f"(zoo.models unet unavailable: {type(e).__name__}; using a small U-Net-ish model)")
        x = keras.Input((None, None, 3))
        skips, h = [], x
        for i in range(depth):
            h = keras.layers.Conv2D(base_filters * 2 ** i, 3, padding="same", activation="relu")(h)
            skips.append(h)
            h = keras.layers.MaxPooling2D(2)(h)
        h = keras.layers.Conv2D(base_filters * 2 ** depth, 3, padding="same", activation="relu")(h)
        for i in reversed(range(depth)):
            h = keras.layers.UpSampling2D(2)(h)
            h = keras.layers.Concatenate()([h, skips[i]])
            h = keras.layers.Conv2D(base_filters * 2 ** i, 3, padding="same", activation="relu")(h)
        m = keras.Model(x, keras.layers.Conv2D(3, 1, activation="softmax")(h), name="unet_small")
        m.min_divisor = 2 ** depth
        return m, "small U-Net-ish (keras functional)"


def tiles(n: int, size: int, seed: int = 0) -> np.ndarray:
    import scipy.ndimage as ndi

    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.random((n, size, size)), (0, 3, 3))
    dark = field > np.quantile(field, 0.8)
    img = np.empty((n, size, size, 3), np.float32)
    img[:] = (235, 180, 210)
    img[dark] = (70, 40, 120)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def start_server(base: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "histozoo", "serve", base, "--port", "0", "--name", "nuclei",
                             "--workers", "16"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.time()
    while time.time() - t0 < 300:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("gRPC PredictionService on "):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain
            return proc, line.split()[3]
    proc.kill()
    raise RuntimeError("server did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--load-batch", type=int, default=1, help="tiles per request in the load test")
    ap.add_argument("--rounds", type=int, default=10, help="alternating in-process / gRPC calls at batch 8")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--base-filters", type=int, default=8)
    ap.add_argument("--depth", type=int, default=4)
    args = ap.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from serving.client import PredictClient, ServingError
    from serving.export import export

    model, kind = build_model(args.base_filters, args.depth)
    tmp = tempfile.mkdtemp(prefix="serving_load-")
    t0 = time.time()
    path = export(model, os.path.join(tmp, "nuclei"))
    print(f"model: {kind}, {model.count_params():,} params; export {time.time() - t0:.1f} s -> {path}")
    proc, target = start_server(os.path.dirname(path))
    try:
        fn = tf.saved_model.load(path).signatures["predict_images"]
        b8 = tiles(8, args.size)
        with PredictClient(target, retries=0, timeout=300) as c:
            for _ in range(2):  # warm-up both paths (graph building, first allocations)
                fn(images=tf.constant(b8))
                c.predict("nuclei", {"images": b8}, signature="predict_images")
            t_local, t_grpc = [], []
            for _ in range(args.rounds):
                t = time.perf_counter()
                ref = {k: v.numpy() for k, v in fn(images=tf.constant(b8)).items()}
                t_local.append(time.perf_counter() - t)
                t = time.perf_counter()
                out = c.predict("nuclei", {"images": b8}, signature="predict_images")
                t_grpc.append(time.perf_counter() - t)
            diff = float(np.abs(out["probabilities"] - ref["probabilities"]).max())
            same_inst = bool((out["instances"] == ref["instances"]).all())
        ml, mg = statistics.median(t_local), statistics.median(t_grpc)
        print(f"\nbatch 8 x {args.size}x{args.size}, {args.rounds} alternating rounds (median):")
        print(f"  in-process SavedModel call: {ml * 1e3:8.1f} ms")
        print(f"  gRPC Predict (loopback)   : {mg * 1e3:8.1f} ms")
        print(f"  gRPC overhead             : {100 * (mg - ml) / ml:+8.1f} %   (target <= 15 %)")
        print(f"  max |served - in-process| probabilities = {diff:.2e}; instances identical: {same_inst}")

        batch = tiles(args.load_batch, args.size, seed=1)
        lat, errors, lock = [], [], threading.Lock()
        stop = time.perf_counter() + args.seconds

        def worker():
            with PredictClient(target, retries=0, timeout=300) as cl:
                while time.perf_counter() < stop:
                    t = time.perf_counter()
                    try:
                        cl.predict("nuclei", {"images": batch}, signature="predict_images")
                        with lock:
                            lat.append(time.perf_counter() - t)
                    except ServingError as e:
                        with lock:
                            errors.append(e)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(args.clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0
        lat_ms = np.array(lat) * 1e3
        print(f"\nload: {args.clients} concurrent clients, {args.seconds:.0f} s, {args.load_batch} tile(s) of "
              f"{args.size}x{args.size} per request")
        print(f"  requests: {len(lat)} ok, {len(errors)} errors; {len(lat) / wall:.2f} req/s "
              f"({len(lat) * args.load_batch / wall:.2f} tiles/s)")
        if len(lat):
            print(f"  latency: p50 {np.percentile(lat_ms, 50):.1f} ms, p99 {np.percentile(lat_ms, 99):.1f} ms, "
                  f"max {lat_ms.max():.1f} ms")
        if errors:
            print(f"  first error: {errors[0]}")
        return 1 if errors else 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
