"""Load benchmark of serving.local_server: N concurrent gRPC clients for T seconds on loopback with 256x256 tiles
(requests/s, p50/p99 latency, errors), and the gRPC overhead against an in-process call of the same SavedModel
signature at batch 8, measured side by side (alternating calls) in one run.

    python benchmarks/serving_load.py --clients 4 --seconds 20 --rounds 10
    python benchmarks/serving_load.py --clients 2 --seconds 10 --rounds 0 --bad-share 0.2

``--bad-share F`` mixes a share F of malformed and oversize requests (gRPC and REST; ``BAD_KINDS``) among the valid
ones: the run reports errors on the valid requests (must be 0), the status every bad kind got against the one it
must get, and fails (exit 1) on any valid error or wrong status. Always reported: the server's peak resident memory
(VmHWM from /proc/<pid>/status, the kernel's own peak; psutil's sampled RSS where /proc is absent) and the load
average at start and end (benchmarks/_common.py: refused above 1.0 unless --max-load, then flagged).

The model is zoo.models' U-Net (``--base-filters``, ``--depth``; 3 classes) when importable, else a small
U-Net-ish Keras model. The server runs in its own process (``histozoo serve``), as a deployment would.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import add_load_argument, start_guard  # noqa: E402  (benchmarks/_common.py)


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


def start_server(base: str) -> tuple[subprocess.Popen, str, int]:
    """``histozoo serve`` in its own process with gRPC and REST on free ports: (process, gRPC target, REST port)."""
    proc = subprocess.Popen([sys.executable, "-m", "histozoo", "serve", base, "--port", "0", "--rest-port", "0",
                             "--name", "nuclei", "--workers", "16"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.time()
    while time.time() - t0 < 300:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("gRPC PredictionService on "):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain
            words = line.replace(",", " ").split()
            rest = words[words.index("REST") + 2] if "REST" in words else ""
            return proc, words[3], int(rest.rsplit(":", 1)[1]) if rest else 0
    proc.kill()
    raise RuntimeError("server did not start")


def peak_rss_mib(pid: int, sampled: list) -> tuple[float, str]:
    """The server's peak resident memory: VmHWM (Linux), else the largest psutil sample taken during the run."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024, "VmHWM"
    except OSError:
        pass
    return (max(sampled) / 2 ** 20 if sampled else float("nan")), "psutil max sample"


def _sample_rss(pid: int, out: list, stop: threading.Event) -> None:
    try:
        import psutil
    except ImportError:
        return
    p = psutil.Process(pid)
    while not stop.is_set():
        try:
            out.append(p.memory_info().rss)
        except psutil.Error:
            return
        stop.wait(0.2)


# ------------------------------------------------------------------------------------------ the bad-request mix
def _png_header(h: int, w: int) -> bytes:
    """A PNG signature + IHDR claiming h x w and no pixel data (a decompression-bomb shape in 33 bytes)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


def _grpc_raw(stub, inputs_fn):
    """A PredictRequest built by hand (for tensors a well-behaved client would not send)."""
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest()
    req.model_spec.name = "nuclei"
    req.model_spec.signature_name = "predict_images"
    inputs_fn(req.inputs["images"])
    return stub.Predict(req, timeout=60)


def _declared_shape_bomb(tp):
    """One uint8 value declaring a [1, 8192, 8192, 3] tensor (tf.make_ndarray would broadcast it to 200 MB)."""
    from tensorflow.core.framework import types_pb2

    tp.dtype = types_pb2.DT_UINT8
    for d in (1, 8192, 8192, 3):
        tp.tensor_shape.dim.add(size=d)
    tp.int_val.append(7)


def _rest(port: int, body) -> str:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/nuclei:predict", data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
            return f"HTTP {r.status}"
    except urllib.error.HTTPError as e:
        e.read()
        return f"HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        return f"connection error ({type(getattr(e, 'reason', e)).__name__})"


def _rest_raw(port: int, head: bytes) -> str:
    """Raw request bytes on a socket kept open: the answer must come without the client closing."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(head)
            first = s.recv(4096).split(b"\r\n", 1)[0].split()
            return f"HTTP {int(first[1])}" if len(first) > 1 else "no answer"
    except (OSError, ValueError) as e:
        return f"no answer ({type(e).__name__})"


def bad_kinds(size: int):
    """{kind: (expected status, call(ctx) -> observed status)}; ctx has .client (PredictClient), .stub, .rest_port."""
    from serving.client import ServingError

    def grpc_call(fn):
        def run(ctx):
            try:
                fn(ctx)
                return "OK"
            except ServingError as e:
                return e.code
            except Exception as e:  # noqa: BLE001 - grpc.RpcError from the raw stub
                code = getattr(e, "code", None)
                return code().name if callable(code) else type(e).__name__
        return run

    img = np.full((1, size, size, 3), 200, np.uint8)
    pix = [[[300, 0, 0]] * 4] * 4
    return {
        "grpc empty image [1,0,W,3]": ("INVALID_ARGUMENT", grpc_call(lambda c: c.client.predict(
            "nuclei", {"images": img[:, :0]}, signature="predict_images"))),
        "grpc wrong dtype (float64)": ("INVALID_ARGUMENT", grpc_call(lambda c: c.client.predict(
            "nuclei", {"images": img.astype(np.float64)}, signature="predict_images"))),
        "grpc undecodable bytes": ("INVALID_ARGUMENT", grpc_call(lambda c: c.client.predict(
            "nuclei", {"image_bytes": np.array([b"not an image"], object)}, signature="predict_bytes"))),
        "grpc oversize PNG header 8192x8192": ("RESOURCE_EXHAUSTED", grpc_call(lambda c: c.client.predict(
            "nuclei", {"image_bytes": np.array([_png_header(8192, 8192)], object)}, signature="predict_bytes"))),
        "grpc oversize declared shape": ("RESOURCE_EXHAUSTED", grpc_call(
            lambda c: _grpc_raw(c.stub, _declared_shape_bomb))),
        "rest JSON array body": ("HTTP 400", lambda c: _rest(c.rest_port, [1, 2, 3])),
        "rest uint8 value 300": ("HTTP 400", lambda c: _rest(c.rest_port, {
            "signature_name": "predict_images", "instances": [pix]})),
        "rest bad base64": ("HTTP 400", lambda c: _rest(c.rest_port, {
            "signature_name": "predict_bytes", "instances": [{"b64": "!!not base64!!"}]})),
        "rest Content-Length -1": ("HTTP 400", lambda c: _rest_raw(
            c.rest_port, b"POST /v1/models/nuclei:predict HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")),
        "rest oversize PNG header": ("HTTP 413", lambda c: _rest(c.rest_port, {
            "signature_name": "predict_bytes",
            "instances": [{"b64": base64.b64encode(_png_header(8192, 8192)).decode()}]})),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--load-batch", type=int, default=1, help="tiles per request in the load test")
    ap.add_argument("--rounds", type=int, default=10, help="alternating in-process / gRPC calls at batch 8")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--base-filters", type=int, default=8)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--bad-share", type=float, default=0.0,
                    help="share of malformed / oversize requests mixed into the load (e.g. 0.2)")
    ap.add_argument("--seed", type=int, default=0)
    add_load_argument(ap)
    args = ap.parse_args()
    guard = start_guard(args)
    if not 0.0 <= args.bad_share < 1.0:
        ap.error("--bad-share must be in [0, 1)")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from serving.client import PredictClient, ServingError
    from serving.export import export

    model, kind = build_model(args.base_filters, args.depth)
    tmp = tempfile.mkdtemp(prefix="serving_load-")
    t0 = time.time()
    path = export(model, os.path.join(tmp, "nuclei"))
    print(f"model: {kind}, {model.count_params():,} params; export {time.time() - t0:.1f} s -> {path}")
    proc, target, rest_port = start_server(os.path.dirname(path))
    rss_samples, rss_stop = [], threading.Event()
    threading.Thread(target=_sample_rss, args=(proc.pid, rss_samples, rss_stop), daemon=True).start()
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
            if args.rounds:
                diff = float(np.abs(out["probabilities"] - ref["probabilities"]).max())
                # in-graph instances exist only when the spec's post-processing has a TF twin (threshold); else the
                # served class map is compared (the post-processing then runs client-side, as evaluation does)
                key = "instances" if "instances" in ref else "class_map"
                same_inst = bool((out[key] == ref[key]).all())
        if args.rounds:
            ml, mg = statistics.median(t_local), statistics.median(t_grpc)
            print(f"\nbatch 8 x {args.size}x{args.size}, {args.rounds} alternating rounds (median):")
            print(f"  in-process SavedModel call: {ml * 1e3:8.1f} ms")
            print(f"  gRPC Predict (loopback)   : {mg * 1e3:8.1f} ms")
            print(f"  gRPC overhead             : {100 * (mg - ml) / ml:+8.1f} %   (target <= 15 %)")
            print(f"  max |served - in-process| probabilities = {diff:.2e}; {key} identical: {same_inst}")

        batch = tiles(args.load_batch, args.size, seed=1)
        kinds = bad_kinds(args.size) if args.bad_share > 0 else {}
        if kinds and not rest_port:
            raise RuntimeError("--bad-share needs the server's REST port (histozoo serve --rest-port)")
        lat, errors, lock = [], [], threading.Lock()
        bad_seen = collections.defaultdict(collections.Counter)
        stop = time.perf_counter() + args.seconds

        def worker(i: int):
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc

            rng = random.Random(args.seed * 1000 + i)
            names = sorted(kinds)
            with PredictClient(target, retries=0, timeout=300) as cl, grpc.insecure_channel(target) as ch:
                ctx = argparse.Namespace(client=cl, stub=prediction_service_pb2_grpc.PredictionServiceStub(ch),
                                         rest_port=rest_port)
                while time.perf_counter() < stop:
                    if names and rng.random() < args.bad_share:
                        kind = rng.choice(names)
                        got = kinds[kind][1](ctx)
                        with lock:
                            bad_seen[kind][got] += 1
                        continue
                    t = time.perf_counter()
                    try:
                        cl.predict("nuclei", {"images": batch}, signature="predict_images")
                        with lock:
                            lat.append(time.perf_counter() - t)
                    except ServingError as e:
                        with lock:
                            errors.append(e)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0
        lat_ms = np.array(lat) * 1e3
        print(f"\nload: {args.clients} concurrent clients, {args.seconds:.0f} s, {args.load_batch} tile(s) of "
              f"{args.size}x{args.size} per request" + (f", bad-request share {args.bad_share:.2f}" if kinds else ""))
        print(f"  valid requests: {len(lat)} ok, {len(errors)} errors; {len(lat) / wall:.2f} req/s "
              f"({len(lat) * args.load_batch / wall:.2f} tiles/s)")
        if len(lat):
            print(f"  latency: p50 {np.percentile(lat_ms, 50):.1f} ms, p99 {np.percentile(lat_ms, 99):.1f} ms, "
                  f"max {lat_ms.max():.1f} ms")
        if errors:
            print(f"  first error: {errors[0]}")
        wrong = 0
        if kinds:
            print(f"  bad requests: {sum(sum(c.values()) for c in bad_seen.values())} sent")
            width = max(len(k) for k in kinds)
            for kind in sorted(kinds):
                want, seen = kinds[kind][0], bad_seen.get(kind, collections.Counter())
                ok = set(seen) <= {want}
                wrong += sum(n for st, n in seen.items() if st != want)
                got = ", ".join(f"{st} x{n}" for st, n in seen.most_common()) or "(not drawn)"
                print(f"    {kind:<{width}}  want {want:<18} got {got}{'' if ok else '   <-- WRONG'}")
        alive = proc.poll() is None
        rss, how = peak_rss_mib(proc.pid, rss_samples)
        print(f"  server: {'alive' if alive else f'DIED (exit {proc.returncode})'}; peak RSS {rss:.0f} MiB ({how})")
        guard.finish()  # the end line before the result line (else printed at exit)
        return 1 if errors or wrong or not alive else 0
    finally:
        rss_stop.set()
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
