"""AJI / AJI+ / PQ of zoo.metrics beside the public HoVer-Net reference code, on the 14 MoNuSeg 2018 test images.

The reference is HoVer-Net's metrics/stats_utils.py (get_fast_aji, get_fast_aji_plus, get_fast_pq, each after
remap_label): one full-frame mask per instance and one mask comparison per touching (gt, pred) pair -- the
straightforward per-instance loop that common reference code uses. It is NOT part of histozoo and is never
committed; point the benchmark at a copy of the file:

    git clone https://github.com/vqdang/hover_net /tmp/hover_net             # or, from a local mirror:
    git -C <mirror of vqdang/hover_net> show HEAD:metrics/stats_utils.py > /tmp/hv/stats_utils.py
    python benchmarks/instance_metrics.py --hovernet /tmp/hv/stats_utils.py  # or HOVERNET_STATS_UTILS=...

(``--hovernet`` also takes the clone's root directory.) stats_utils.py imports cv2 and matplotlib at module level
but the functions used here need neither; when they are not installed, empty stand-in modules are put in
sys.modules so the file imports (nothing of them is called).

Ground truth: the MoNuSeg test instance maps from ``zoo.data.readers.get_reader("monuseg2018")``. Predictions are
the ground truth perturbed deterministically per image (shift, dilation, erosion, merged neighbours, split nuclei,
dropped nuclei, false detections, scrambled non-consecutive ids), so every matching case occurs.

Printed: per-image and total wall time of each side, the speed-up ratio, and the largest absolute difference of
AJI, AJI+, DQ, SQ and PQ. HoVer-Net's SQ divides by (TP + 1e-6), ours by TP exactly: its SQ (and PQ) is compared
after multiplying by (TP + 1e-6) / TP, and the raw difference that the 1e-6 causes is printed separately.
HoVer-Net raises on an empty map (np.unique / division by zero); ours returns documented values, so no empty
case is fed to it here.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import types

import numpy as np
from scipy import ndimage as ndi

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from zoo.metrics import aji, aji_plus, pq  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import add_load_argument, start_guard  # noqa: E402  (benchmarks/_common.py)


def load_hovernet(path: str):
    if os.path.isdir(path):
        path = os.path.join(path, "metrics", "stats_utils.py")
    if not os.path.isfile(path):
        sys.exit(f"{path}: HoVer-Net metrics/stats_utils.py not found (see this script's docstring for how to get it)")
    for name in ("cv2", "matplotlib", "matplotlib.pyplot"):
        if name not in sys.modules:
            try:
                __import__(name)
            except ImportError:
                sys.modules[name] = types.ModuleType(name)
    if not hasattr(sys.modules["matplotlib"], "pyplot"):
        sys.modules["matplotlib"].pyplot = sys.modules["matplotlib.pyplot"]
    spec = importlib.util.spec_from_file_location("hovernet_stats_utils", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def monuseg_test_instances(root: str) -> list[tuple[str, np.ndarray]]:
    """(image id, instance map) of the 14 MoNuSeg test images, through the dataset reader."""
    from zoo.data.readers import get_reader

    reader = get_reader("monuseg2018")(root)
    out = []
    for item in reader.items():
        if item[0] != "test":  # items are (split, path); skip reading the 30 training images
            continue
        s = reader.read(item)
        out.append((s.image_id, np.asarray(s.instances)))
    return out


def perturb(gt: np.ndarray, seed: int) -> np.ndarray:
    """A 'prediction' made from the ground truth: every kind of matching error, deterministic per seed."""
    rng = np.random.default_rng(seed)
    ids = np.unique(gt)
    ids = ids[ids > 0]
    role = rng.integers(0, 8, size=ids.size)           # per nucleus: 0-2 keep, 3 dilate, 4 erode, 5 drop, 6 merge, 7 split
    lut = np.zeros(int(gt.max()) + 1, np.int64)
    lut[ids] = ids
    merge = ids[role == 6]
    lut[merge] = np.roll(ids, 1)[role == 6]            # relabel to the previous id (often a touching neighbour)
    lut[ids[role == 5]] = 0
    pred = lut[gt]
    er = np.isin(gt, ids[role == 4])
    pred[er & ~ndi.binary_erosion(pred > 0, iterations=2)] = 0
    dil = np.isin(gt, ids[role == 3])
    grown = ndi.grey_dilation(np.where(dil, pred, 0), size=(5, 5))
    pred = np.where((pred == 0) & (grown > 0), grown, pred)
    split = np.isin(gt, ids[role == 7])
    yy, xx = np.indices(gt.shape)
    pred = np.where(split & (xx % 16 < 8), pred + 100000, pred)   # halves of split nuclei get a new id
    pred = np.roll(pred, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
    for _ in range(20):                                            # false detections on background
        y, x = rng.integers(0, gt.shape[0] - 8), rng.integers(0, gt.shape[1] - 8)
        if not pred[y:y + 6, x:x + 6].any():
            pred[y:y + 6, x:x + 6] = 200000 + y * 1000 + x
    u, inv = np.unique(pred, return_inverse=True)                  # scramble to large, non-consecutive ids
    new = rng.permutation(u.size) * 7 + 3
    new[u == 0] = 0
    return new[inv].reshape(gt.shape).astype(np.int32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hovernet", default=os.environ.get("HOVERNET_STATS_UTILS", ""),
                    help="path to HoVer-Net's metrics/stats_utils.py or the repository root "
                         "(default: $HOVERNET_STATS_UTILS)")
    ap.add_argument("--data", default=os.path.join(os.environ.get("HISTOZOO_DATA", os.path.join(
        os.path.dirname(os.path.dirname(HERE)), "shared", "data")), "monuseg2018"))
    ap.add_argument("--repeat", type=int, default=3, help="timing repeats of our side (best of)")
    add_load_argument(ap)
    args = ap.parse_args(argv)
    start_guard(args)
    if not args.hovernet:
        ap.error("give --hovernet PATH or set HOVERNET_STATS_UTILS (see the docstring)")
    hv = load_hovernet(args.hovernet)
    images = monuseg_test_instances(args.data)
    print(f"{len(images)} MoNuSeg test images, {sum(len(np.unique(g)) - 1 for _, g in images)} gt nuclei")

    t_remap = 0.0
    t_ref = {"aji": 0.0, "aji_plus": 0.0, "pq": 0.0}
    t_ours = {"aji": 0.0, "aji_plus": 0.0, "pq": 0.0}
    diff = {"aji": 0.0, "aji_plus": 0.0, "dq": 0.0, "sq": 0.0, "pq": 0.0, "sq_raw": 0.0}
    rows = []
    for k, (image_id, gt) in enumerate(images):
        pred = perturb(gt, k)
        # reference: remap_label (its functions need consecutive ids; timed apart) then the per-instance loops
        r0 = time.perf_counter()
        G, P = hv.remap_label(gt), hv.remap_label(pred)
        t0 = time.perf_counter()
        ref_aji = hv.get_fast_aji(G, P)
        t1 = time.perf_counter()
        ref_ajip = hv.get_fast_aji_plus(G, P)
        t2 = time.perf_counter()
        (ref_dq, ref_sq, ref_pq), pairing = hv.get_fast_pq(G, P)
        t3 = time.perf_counter()
        t_remap += t0 - r0
        t_ref["aji"] += t1 - t0
        t_ref["aji_plus"] += t2 - t1
        t_ref["pq"] += t3 - t2

        best = {"aji": 1e9, "aji_plus": 1e9, "pq": 1e9}
        for _ in range(args.repeat):
            s0 = time.perf_counter()
            a = aji(gt, pred)
            s1 = time.perf_counter()
            ap_ = aji_plus(gt, pred)
            s2 = time.perf_counter()
            q = pq(gt, pred)
            s3 = time.perf_counter()
            best = {"aji": min(best["aji"], s1 - s0), "aji_plus": min(best["aji_plus"], s2 - s1),
                    "pq": min(best["pq"], s3 - s2)}
        for key in t_ours:
            t_ours[key] += best[key]

        tp = q["tp"]
        assert tp == len(pairing[0]), (image_id, tp, len(pairing[0]))
        ref_sq_exact = ref_sq * (tp + 1e-6) / tp if tp else ref_sq
        diff["aji"] = max(diff["aji"], abs(a - ref_aji))
        diff["aji_plus"] = max(diff["aji_plus"], abs(ap_ - ref_ajip))
        diff["dq"] = max(diff["dq"], abs(q["dq"] - ref_dq))
        diff["sq"] = max(diff["sq"], abs(q["sq"] - ref_sq_exact))
        diff["pq"] = max(diff["pq"], abs(q["pq"] - ref_dq * ref_sq_exact))
        diff["sq_raw"] = max(diff["sq_raw"], abs(q["sq"] - ref_sq))
        rows.append((image_id, len(np.unique(gt)) - 1, len(np.unique(pred)) - 1, a, ap_, q["pq"],
                     (t1 - t0) + (t3 - t2), best["aji"] + best["pq"]))

    print(f"{'image':<26}{'gt':>6}{'pred':>6}{'AJI':>8}{'AJI+':>8}{'PQ':>8}{'ref s':>8}{'ours ms':>9}")
    for r in rows:
        print(f"{r[0]:<26}{r[1]:>6}{r[2]:>6}{r[3]:>8.4f}{r[4]:>8.4f}{r[5]:>8.4f}{r[6]:>8.3f}{1000 * r[7]:>9.2f}")
    print()
    for key in ("aji", "aji_plus", "pq"):
        print(f"{key:<9} HoVer-Net {t_ref[key]:8.3f} s   zoo.metrics {t_ours[key]:8.4f} s   "
              f"speed-up x{t_ref[key] / t_ours[key]:.0f}")
    ref_total = t_ref["aji"] + t_ref["pq"]
    our_total = t_ours["aji"] + t_ours["pq"]
    print(f"AJI + PQ  HoVer-Net {ref_total:8.3f} s   zoo.metrics {our_total:8.4f} s   speed-up x{ref_total / our_total:.0f}"
          f"   (HoVer-Net's remap_label, once per image pair, not included: {t_remap:.3f} s; with it "
          f"x{(ref_total + t_remap) / our_total:.0f}; ours takes raw ids and is timed best of {args.repeat})")
    print("max |difference|: " + ", ".join(f"{k} {v:.2e}" for k, v in diff.items() if k != "sq_raw"))
    print(f"(SQ compared with HoVer-Net's value times (TP + 1e-6) / TP; without that correction the "
          f"difference is {diff['sq_raw']:.2e}, the effect of its + 1e-6)")
    ok = max(v for k, v in diff.items() if k != "sq_raw") <= 1e-9
    print("values agree to 1e-9" if ok else "VALUES DIFFER by more than 1e-9")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
