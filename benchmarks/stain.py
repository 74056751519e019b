"""Stain-normalization throughput (megapixels/s) on the 14 MoNuSeg test images (1000x1000), side by side in one run:

- histozoo (zoo.stain, TF ops, XLA) — Reinhard, Macenko, Vahadane;
- a plain numpy implementation of each (below; the tests also use them as references);
- torchstain's numpy, torch and TF backends, and staintools (if installed), run in /work/bench-venv through a
  subprocess of this same script (``--peer``), on the same images, target and repeats;
- with ``--neural colorization,colornormnet``: the neural normalizers (zoo.stain.neural) beside them, each with its
  trained model (``--colorization-model`` / ``--colornormnet-model``) or, when none is given, the configs'
  architecture (configs/stain/*.yaml) with random weights: throughput does not depend on the weight values.
  They have no peers here (no public implementation of either is installable).

Usage (from the repo root; keep it modest, the machines have 2 shared cores):
    python benchmarks/stain.py --images 14 --repeats 3 [--methods reinhard] \
        [--peer-python /work/bench-venv/bin/python] [--max-load X] [--neural colorization,colornormnet]
Throughput = images x 1 MP / best-of-repeats wall time of transform() over all images (fit excluded; first
call warms up / compiles). Each peer also reports its mean |difference| (uint8) from ours as a sanity check.
The load average is printed at start and end; the run refuses to start above a 1-min load of 1.0 unless
``--max-load`` is given, and is then flagged (benchmarks/_common.py).

The peers' venv (never a histozoo dependency; torch is the CPU wheel these machines keep on disk):
    python -m venv /work/bench-venv
    /work/bench-venv/bin/pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl \
        torchstain staintools spams-bin opencv-python-headless
    # torchstain's TF backend: the project's TensorFlow, appended to the venv's path
    echo "$(python -c 'import tensorflow, os; print(os.path.dirname(os.path.dirname(tensorflow.__file__)))')" \
        > /work/bench-venv/lib/python3.11/site-packages/zz_histozoo_tf.pth
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import add_load_argument, start_guard  # noqa: E402  (benchmarks/_common.py)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("HISTOZOO_DATA", os.path.join(HERE, "..", "..", "shared", "data"))

# ------------------------------------------------------------------------------ plain numpy implementations
_XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                          [0.019334, 0.119193, 0.950227]])
_WHITE = np.array([0.95047, 1.0, 1.08883])


def np_rgb2lab(rgb_u8):
    x = rgb_u8.astype(np.float64) / 255.0
    lin = np.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
    xyz = lin @ _XYZ_FROM_RGB.T / _WHITE
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def np_lab2rgb_u8(lab):
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([lab[..., 1] / 500 + fy, fy, np.maximum(fy - lab[..., 2] / 200, 0)], -1)
    xyz = np.where(f > 0.2068966, f ** 3, (f - 16 / 116) / 7.787) * _WHITE
    lin = np.clip(xyz @ np.linalg.inv(_XYZ_FROM_RGB).T, 0, 1)
    srgb = np.where(lin > 0.0031308, 1.055 * lin ** (1 / 2.4) - 0.055, 12.92 * lin)
    return np.clip(np.round(srgb * 255), 0, 255).astype(np.uint8)


def np_reinhard_fit(target):
    lab = np_rgb2lab(target).reshape(-1, 3)
    return lab.mean(0), lab.std(0)


def np_reinhard(image, t_mean, t_std):
    lab = np_rgb2lab(image)
    m, s = lab.reshape(-1, 3).mean(0), lab.reshape(-1, 3).std(0)
    return np_lab2rgb_u8((lab - m) / s * t_std + t_mean)


def np_macenko_estimate(image, io=240.0, alpha=1.0, beta=0.15):
    """Macenko et al. 2009 as torchstain's numpy backend computes it (np.cov, eigh, arctan2, np.percentile),
    with the sign of the eigenvectors fixed so the tissue projects to positive t1. Returns (HE [2,3], maxC [2])."""
    od = -np.log((image.reshape(-1, 3).astype(np.float64) + 1) / io)
    odhat = od[~np.any(od < beta, axis=1)]
    _, v = np.linalg.eigh(np.cov(odhat.T))
    e1, e2 = v[:, 2] * (1 if v[:, 2].sum() >= 0 else -1), v[:, 1] * (1 if v[0, 1] >= 0 else -1)
    phi = np.arctan2(odhat @ e2, odhat @ e1)
    lo, hi = np.percentile(phi, alpha), np.percentile(phi, 100 - alpha)
    vmin = np.cos(lo) * e1 + np.sin(lo) * e2
    vmax = np.cos(hi) * e1 + np.sin(hi) * e2
    he = np.array([vmin, vmax]) if vmin[0] > vmax[0] else np.array([vmax, vmin])
    he /= np.linalg.norm(he, axis=1, keepdims=True)
    c = np.linalg.lstsq(he.T, od.T, rcond=None)[0]
    return he, np.percentile(c, 99, axis=1)


def np_macenko(image, he_ref, maxc_ref, io=240.0):
    he, maxc = np_macenko_estimate(image, io)
    od = -np.log((image.reshape(-1, 3).astype(np.float64) + 1) / io)
    c = np.linalg.lstsq(he.T, od.T, rcond=None)[0] * (maxc_ref / maxc)[:, None]
    out = io * np.exp(-(he_ref.T @ c))
    return np.clip(np.round(out.T), 0, 255).astype(np.uint8).reshape(image.shape)


def np_lasso2(x, w, lam):
    """Per-row exact non-negative lasso on two atoms (same closed form as zoo.stain.vahadane)."""
    g = w @ w.T
    r = x @ w.T - lam
    det = g[0, 0] * g[1, 1] - g[0, 1] ** 2
    b1 = (g[1, 1] * r[:, 0] - g[0, 1] * r[:, 1]) / det
    b2 = (g[0, 0] * r[:, 1] - g[0, 1] * r[:, 0]) / det
    both = (b1 > 0) & (b2 > 0)
    s1, s2 = np.maximum(r[:, 0], 0) / g[0, 0], np.maximum(r[:, 1], 0) / g[1, 1]
    use1 = s1 * r[:, 0] >= s2 * r[:, 1]
    h = np.zeros((len(x), 2))
    h[:, 0] = np.where(both, b1, np.where(use1, s1, 0))
    h[:, 1] = np.where(both, b2, np.where(use1, 0, s2))
    return h


def np_vahadane_estimate(image, io=255.0, beta=0.15, lam1=0.1, lam2=0.01, iters=30, max_samples=65536):
    od = -np.log((image.reshape(-1, 3).astype(np.float64) + 1) / io)
    stride = max(-(-len(od) // max_samples), 1)
    sub = od[::stride]
    sub = sub[np.all(sub >= beta, axis=1)]
    w = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]])
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    for _ in range(iters):
        h = np_lasso2(sub, w, lam1)
        a, bm = h.T @ h, h.T @ sub
        for j in range(2):
            if a[j, j] > 1e-9:
                u = np.maximum(w[j] + (bm[j] - a[j] @ w) / a[j, j], 0)
                w[j] = u / max(np.linalg.norm(u), 1.0)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    if w[0, 0] < w[1, 0]:
        w = w[::-1].copy()
    c = np_lasso2(od, w, lam2)
    return w, np.percentile(c, 99, axis=0)


def np_vahadane(image, w_ref, maxc_ref, io=255.0):
    w, maxc = np_vahadane_estimate(image, io)
    od = -np.log((image.reshape(-1, 3).astype(np.float64) + 1) / io)
    c = np_lasso2(od, w, 0.01) * (maxc_ref / maxc)
    out = io * np.exp(-(c @ w_ref))
    return np.clip(np.round(out), 0, 255).astype(np.uint8).reshape(image.shape)


# ----------------------------------------------------------------------------------------------- timing
def _time(fn, images, repeats):
    fn(images[0])  # warm-up / compile
    best = float("inf")
    outs = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        outs = [fn(im) for im in images]
        best = min(best, time.perf_counter() - t0)
    mp = sum(im.shape[0] * im.shape[1] for im in images) / 1e6
    return mp / best, outs


def _load(n):
    from PIL import Image

    files = sorted(glob.glob(os.path.join(DATA, "monuseg2018", "MoNuSegTestData", "*.png")))[:n]
    if not files:
        sys.exit(f"no MoNuSeg test images under {DATA} (set HISTOZOO_DATA)")
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def _peer(args):
    """Runs in the benchmark venv: torchstain backends and staintools; prints one JSON line."""
    images = _load(args.images)
    target = images[0]
    res = {}
    import torchstain

    def run(name, fn):
        try:
            mps, outs = _time(fn, images, args.repeats)
            np.save(os.path.join(args.out_dir, name.replace(" ", "_") + ".npy"), np.stack(outs))
            res[name] = mps
        except Exception as e:  # report, don't die: a peer failing is a result too
            res[name] = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"

    pairs = [(m, c) for m, c in [("macenko", "MacenkoNormalizer"), ("reinhard", "ReinhardNormalizer")]
             if m in args.methods]
    for method, cls_name in pairs:
        n = getattr(torchstain.normalizers, cls_name)(backend="numpy")
        n.fit(target)
        run(f"torchstain-numpy {method}", lambda im, n=n: np.asarray(n.normalize(im)[0] if method == "macenko"
                                                                     else n.normalize(im)).astype(np.uint8))
    try:
        import torch

        torch.set_num_threads(os.cpu_count())
        T = lambda im: torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1)))  # noqa: E731
        for method, cls_name in pairs:
            n = getattr(torchstain.normalizers, cls_name)(backend="torch")
            n.fit(T(target))
            if method == "macenko":
                run(f"torchstain-torch {method}", lambda im, n=n: n.normalize(I=T(im), stains=False)[0].numpy())
            else:
                run(f"torchstain-torch {method}", lambda im, n=n: n.normalize(I=T(im)).numpy())
    except Exception as e:
        res["torchstain-torch"] = f"failed: {type(e).__name__}: {e}"
    try:
        import tensorflow as tf

        for method, cls_name in pairs:
            n = getattr(torchstain.normalizers, cls_name)(backend="tensorflow")
            n.fit(tf.constant(np.transpose(target, (2, 0, 1)) if method == "macenko" else target))
            # torchstain's TF Macenko takes CHW, its TF Reinhard HWC
            f = (lambda im, n=n: n.normalize(I=tf.constant(np.transpose(im, (2, 0, 1))), stains=False)[0].numpy()) \
                if method == "macenko" else (lambda im, n=n: n.normalize(I=tf.constant(im)).numpy())
            run(f"torchstain-tf {method}", f)
    except Exception as e:
        res["torchstain-tf"] = f"failed: {type(e).__name__}: {e}"
    try:
        import staintools

        for method in args.methods:
            n = (staintools.ReinhardColorNormalizer() if method == "reinhard"
                 else staintools.StainNormalizer(method=method))
            n.fit(target.copy())
            run(f"staintools {method}", lambda im, n=n: n.transform(im.copy()))
    except Exception as e:
        res["staintools"] = f"failed: {type(e).__name__}: {e}"
    print("PEER_JSON " + json.dumps(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=14)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-python", default="/work/bench-venv/bin/python")
    ap.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out-dir", default=os.path.join(HERE, "..", ".bench", "stain"))
    ap.add_argument("--no-numpy", action="store_true", help="skip the plain numpy implementations")
    ap.add_argument("--methods", default="reinhard,macenko,vahadane",
                    help="comma-separated subset of reinhard,macenko,vahadane (ours and the peers)")
    ap.add_argument("--neural", default="", help="comma-separated subset of colorization,colornormnet")
    ap.add_argument("--colorization-model", help="trained colorization model (.keras / run folder)")
    ap.add_argument("--colornormnet-model", help="trained ColorNormNet (.keras / run folder)")
    add_load_argument(ap)
    args = ap.parse_args()
    args.methods = [m for m in ("reinhard", "macenko", "vahadane") if m in args.methods.split(",")]
    os.makedirs(args.out_dir, exist_ok=True)
    if args.peer:
        return _peer(args)
    start_guard(args)  # the peer subprocess runs inside this guarded run

    sys.path.insert(0, os.path.join(HERE, ".."))
    images = _load(args.images)
    target = images[0]
    rows, ours = {}, {}
    from zoo import stain

    for method in args.methods:
        n = stain.get_normalizer(method).fit(target)
        rows[f"histozoo {method}"], ours[method] = _time(n.transform, images, args.repeats)
        print(f"histozoo {method:9s} {rows[f'histozoo {method}']:8.2f} MP/s", flush=True)
    neural = [m for m in ("colorization", "colornormnet") if m in args.neural.split(",")]
    for method in neural:
        n = _neural_normalizer(method, getattr(args, f"{method}_model"), target, args.out_dir)
        rows[f"histozoo {method}"], _ = _time(n.transform, images, args.repeats)
        print(f"histozoo {method:9s} {rows[f'histozoo {method}']:8.2f} MP/s", flush=True)
    if not args.no_numpy and "reinhard" in args.methods:
        tm, ts = np_reinhard_fit(target)
        rows["numpy reinhard"], _ = _time(lambda im: np_reinhard(im, tm, ts), images, args.repeats)
    if not args.no_numpy and "macenko" in args.methods:
        he, mc = np_macenko_estimate(target)
        rows["numpy macenko"], _ = _time(lambda im: np_macenko(im, he, mc), images, args.repeats)
    if not args.no_numpy and "vahadane" in args.methods:
        w, mc = np_vahadane_estimate(target)
        rows["numpy vahadane"], _ = _time(lambda im: np_vahadane(im, w, mc), images, args.repeats)
    diffs = {}
    if args.peer_python and os.path.exists(args.peer_python):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        p = subprocess.run([args.peer_python, os.path.abspath(__file__), "--peer", "--images", str(args.images),
                            "--repeats", str(args.repeats), "--out-dir", args.out_dir,
                            "--methods", ",".join(args.methods)],
                           capture_output=True, text=True, env=env)
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("PEER_JSON ")]
        if not line:
            print("peer run failed:\n" + p.stderr[-3000:])
        else:
            for k, v in json.loads(line[0][len("PEER_JSON "):]).items():
                rows[k] = v
                f = os.path.join(args.out_dir, k.replace(" ", "_") + ".npy")
                method = k.split()[-1]
                if isinstance(v, float) and os.path.exists(f) and method in ours:
                    peer = np.load(f).astype(np.float64)
                    if peer.shape == np.stack(ours[method]).shape:
                        diffs[k] = float(np.abs(peer - np.stack(ours[method])).mean())
    print(f"\n{args.images} MoNuSeg test images (1000x1000), best of {args.repeats}; cores: {os.cpu_count()}")
    print(f"{'implementation':28s} {'MP/s':>9s} {'ours / it':>10s} {'mean|diff| vs ours':>19s}")
    for method in args.methods:
        mine = rows[f"histozoo {method}"]
        for k, v in rows.items():
            if k.split()[-1] != method:
                continue
            if isinstance(v, float):
                ratio = "" if k.startswith("histozoo") else f"{mine / v:9.2f}x"
                d = f"{diffs[k]:.2f}" if k in diffs else ""
                print(f"{k:28s} {v:9.2f} {ratio:>10s} {d:>19s}")
            else:
                print(f"{k:28s} {v}")
    for k, v in rows.items():
        if not isinstance(v, float) and k.split()[-1] not in ("reinhard", "macenko", "vahadane"):
            print(f"{k:28s} {v}")
    for method in neural:
        src = getattr(args, f"{method}_model") or "configs/stain architecture, random weights"
        print(f"{'histozoo ' + method:28s} {rows[f'histozoo {method}']:9.2f}   ({src})")


def _neural_normalizer(method, model, target, out_dir):
    """The fitted neural normalizer: the given trained model, else the config's architecture with random weights
    saved under out_dir (zoo.stain.neural loads networks from files)."""
    import keras

    from zoo import models, stain
    from zoo.training import ExperimentConfig

    if not model:
        cfg = ExperimentConfig.load(os.path.join(HERE, "..", "configs", "stain", {
            "colorization": "colorization_monuseg.yaml", "colornormnet": "colornormnet_target.yaml"}[method]))
        keras.utils.set_random_seed(0)
        net = models.build(method, cfg.model_config)
        net.build((None, None, None, 3))
        model = os.path.join(out_dir, f"{method}_random.keras")
        net.save(model)
    norm = stain.get_normalizer(method, model=model)
    return norm.fit(target) if method == "colorization" else norm.fit()


if __name__ == "__main__":
    main()
