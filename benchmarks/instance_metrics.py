"""AJI / AJI+ / PQ of zoo.metrics beside the public HoVer-Net reference code, timed side by side on the same maps.

The reference is HoVer-Net's metrics/stats_utils.py (``get_fast_aji``, ``get_fast_aji_plus``, ``get_fast_pq``,
each after ``remap_label``, as its compute_stats.py calls them): one full-frame mask per instance and one mask
comparison per touching (gt, pred) pair. It is NOT part of histozoo and is never committed; point the benchmark at
a working copy of the repository outside this one:

    git clone https://github.com/vqdang/hover_net /work/ref/hover_net
    python benchmarks/instance_metrics.py --reference /work/ref/hover_net --json out.json

Maps: the MoNuSeg 2018 test images of the built records (``--data``, default build/monuseg) -- ground truth, and
the predictions of ``--model`` (default the shipped ``pretrained:nuclei-unet-monuseg``) through
``zoo.inference.predict``. Predictions are cached in ``--cache`` (an .npz in the temporary folder by default,
shared with scripts/crosscheck_hovernet_stats.py's format), so a timing run does not redo inference; inference, when
the cache is missing, runs before any timing. ``--perturbed`` uses the ground truth perturbed deterministically per
image instead (shift, dilation, erosion, merged and split nuclei, dropped nuclei, false detections, scrambled
non-consecutive ids), so every matching case occurs.

Timed per image: HoVer-Net's three functions once each (``--ref-repeat`` for best of N) and ``remap_label``
apart; ours best of ``--repeat`` on the raw ids. Printed: per-image times, totals, the speed-up of each metric and
of AJI + PQ, and the largest absolute difference of AJI, AJI+, DQ, SQ and PQ. HoVer-Net's SQ divides by
(TP + 1e-6), ours by TP exactly: its SQ (and PQ) is compared after multiplying by (TP + 1e-6) / TP, and the raw
difference that the 1e-6 causes is printed separately. HoVer-Net raises on an empty map, so none is fed to it.
Exit status 1 when a value differs by more than 1e-9 after that correction.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import tempfile
import time

import numpy as np
from scipy import ndimage as ndi

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)
from _common import add_load_argument, start_guard  # noqa: E402  (benchmarks/_common.py)

DEFAULT_MODEL = "pretrained:nuclei-unet-monuseg"


def crosscheck():
    """scripts/crosscheck_hovernet_stats.py as a module: the one loader of the reference and the prediction cache."""
    spec = importlib.util.spec_from_file_location("crosscheck_hovernet_stats",
                                                  os.path.join(REPO, "scripts", "crosscheck_hovernet_stats.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def default_cache(model: str, split: str) -> str:
    return os.path.join(tempfile.gettempdir(),
                        f"histozoo-instance-metrics-{re.sub(r'[^A-Za-z0-9._-]+', '_', model)}-{split}.npz")


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


def _best(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", "--hovernet", dest="reference",
                    default=os.environ.get("HOVERNET_REF", os.environ.get("HOVERNET_STATS_UTILS", "")),
                    help="working copy of github.com/vqdang/hover_net (or its metrics/stats_utils.py); "
                         "default $HOVERNET_REF")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="the model whose predictions are scored")
    ap.add_argument("--data", default=os.path.join(REPO, "build", "monuseg"), help="built MoNuSeg 2018 records")
    ap.add_argument("--split", default="test")
    ap.add_argument("--cache", default=None, help="predictions .npz (default: one per model in the temp folder)")
    ap.add_argument("--perturbed", action="store_true", help="perturbed ground truth instead of model predictions")
    ap.add_argument("--images", type=int, default=0, help="only the first N images (0 = all 14)")
    ap.add_argument("--repeat", type=int, default=3, help="timing repeats of our side (best of)")
    ap.add_argument("--ref-repeat", type=int, default=1, help="timing repeats of HoVer-Net's side (best of)")
    ap.add_argument("--json", default=None, help="also write every number here")
    add_load_argument(ap)
    args = ap.parse_args(argv)
    guard = start_guard(args)
    if not args.reference:
        ap.error("give --reference DIR (a working copy of github.com/vqdang/hover_net) or set HOVERNET_REF")
    if not os.path.isfile(os.path.join(args.data, "summary.json")):
        raise SystemExit(f"{args.data}: no built records; run `histozoo data build monuseg2018 "
                         f"--root ../shared/data/monuseg2018 --out build/monuseg`")
    cc = crosscheck()
    _, hv = cc.load_reference(args.reference)
    from zoo.metrics import aji, aji_plus, pq

    if args.perturbed:
        from zoo.evaluation.evaluate import iter_eval_samples

        items = [(s.image_id, np.asarray(s.instances, np.int32), None)
                 for s in iter_eval_samples(args.data, args.split, max_images=args.images)]
        items = [(i, g, perturb(g, k)) for k, (i, g, _) in enumerate(items)]
        source = "ground truth perturbed per image (benchmarks/instance_metrics.py perturb)"
    else:
        cache = args.cache or default_cache(args.model, args.split)
        items = cc.cached_predictions(args.model, args.data, args.split, cache, args.images)
        source = f"{args.model} through zoo.inference.predict (cache {cache})"
    print(f"{len(items)} {args.split} images, {sum(len(np.unique(g)) - 1 for _, g, _ in items)} gt nuclei; "
          f"predictions: {source}")

    keys = ("aji", "aji_plus", "pq")
    t_remap, t_ref, t_ours = 0.0, dict.fromkeys(keys, 0.0), dict.fromkeys(keys, 0.0)
    diff = dict.fromkeys(("aji", "aji_plus", "dq", "sq", "pq", "sq_raw"), 0.0)
    rows = []
    for image_id, gt, pred in items:
        r0 = time.perf_counter()
        G, P = hv.remap_label(gt), hv.remap_label(pred)  # its functions need consecutive ids: timed apart
        t_remap += time.perf_counter() - r0
        ta, ref_aji = _best(lambda: hv.get_fast_aji(G, P), args.ref_repeat)
        tap, ref_ajip = _best(lambda: hv.get_fast_aji_plus(G, P), args.ref_repeat)
        tq, ((ref_dq, ref_sq, ref_pq), pairing) = _best(lambda: hv.get_fast_pq(G, P), args.ref_repeat)
        oa, a = _best(lambda: aji(gt, pred), args.repeat)
        oap, ap_ = _best(lambda: aji_plus(gt, pred), args.repeat)
        oq, q = _best(lambda: pq(gt, pred), args.repeat)
        for key, ref_t, our_t in zip(keys, (ta, tap, tq), (oa, oap, oq)):
            t_ref[key] += ref_t
            t_ours[key] += our_t
        tp = q["tp"]
        assert tp == len(pairing[0]), (image_id, tp, len(pairing[0]))
        fixed = cc.corrected({"dq": ref_dq, "sq": ref_sq, "pq": ref_pq}, tp)
        d = {"aji": a - ref_aji, "aji_plus": ap_ - ref_ajip, "dq": q["dq"] - ref_dq, "sq": q["sq"] - fixed["sq"],
             "pq": q["pq"] - fixed["pq"], "sq_raw": q["sq"] - ref_sq}
        for k, v in d.items():
            diff[k] = max(diff[k], abs(v))
        rows.append({"image_id": image_id, "gt": int(len(np.unique(gt)) - 1), "pred": int(len(np.unique(pred)) - 1),
                     "aji": a, "aji_plus": ap_, "pq": q["pq"], "ref_s": {"aji": ta, "aji_plus": tap, "pq": tq},
                     "ours_s": {"aji": oa, "aji_plus": oap, "pq": oq}, "diff": d})

    print(f"{'image':<26}{'gt':>6}{'pred':>6}{'AJI':>8}{'AJI+':>8}{'PQ':>8}{'ref s':>8}{'ours ms':>9}")
    for r in rows:
        print(f"{r['image_id']:<26}{r['gt']:>6}{r['pred']:>6}{r['aji']:>8.4f}{r['aji_plus']:>8.4f}{r['pq']:>8.4f}"
              f"{sum(r['ref_s'].values()):>8.3f}{1000 * sum(r['ours_s'].values()):>9.2f}")
    print()
    speedup = {k: t_ref[k] / t_ours[k] for k in keys}
    for k in keys:
        print(f"{k:<9} HoVer-Net {t_ref[k]:8.3f} s   zoo.metrics {t_ours[k]:8.4f} s   speed-up x{speedup[k]:.0f}")
    ref_total, our_total = t_ref["aji"] + t_ref["pq"], t_ours["aji"] + t_ours["pq"]
    print(f"AJI + PQ  HoVer-Net {ref_total:8.3f} s   zoo.metrics {our_total:8.4f} s   speed-up x{ref_total / our_total:.0f}"
          f"   (HoVer-Net's remap_label, once per image pair, not included: {t_remap:.3f} s; with it "
          f"x{(ref_total + t_remap) / our_total:.0f}; ours takes raw ids, best of {args.repeat}; HoVer-Net best of "
          f"{args.ref_repeat})")
    print("max |difference|: " + ", ".join(f"{k} {v:.2e}" for k, v in diff.items() if k != "sq_raw"))
    print(f"(SQ compared with HoVer-Net's value times (TP + 1e-6) / TP; without that correction the "
          f"difference is {diff['sq_raw']:.2e}, the effect of its + 1e-6)")
    ok = max(v for k, v in diff.items() if k != "sq_raw") <= 1e-9
    print("values agree to 1e-9" if ok else "VALUES DIFFER by more than 1e-9")
    record = guard.finish()
    if args.json:
        from zoo.atomic import write_json

        write_json(args.json, {"benchmark": "instance_metrics", "commit": cc._commit(REPO), "predictions": source,
                               "images": len(rows), "seconds_hovernet": t_ref, "seconds_ours": t_ours,
                               "seconds_hovernet_remap_label": t_remap, "speedup": speedup,
                               "speedup_aji_and_pq": ref_total / our_total, "repeat": args.repeat,
                               "ref_repeat": args.ref_repeat, "max_abs_diff": diff, "equal_within_1e-9": ok,
                               "load": record, "per_image": rows}, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
