#!/usr/bin/env python
"""Cross-check zoo.metrics against the public HoVer-Net ``compute_stats.py`` on any model's predictions (issue 18).

    python scripts/crosscheck_hovernet_stats.py --reference /work/ref/hover_net \\
        --model pretrained:nuclei-unet-monuseg --data build/monuseg --split test --out /tmp/crosscheck.json

``--reference``: a working copy of https://github.com/vqdang/hover_net (at least ``compute_stats.py`` and
``metrics/stats_utils.py``), kept OUTSIDE this repository and never committed. Predictions come from THE inference
function (``zoo.inference.predict``, the model's spec: resolution, stain, post-processing) on every labelled image
of the split and are cached to ``--cache`` (an .npz beside ``--out`` unless given), so a second run (or
``benchmarks/instance_metrics.py``) does not redo inference.

The reference side runs HoVer-Net's own ``compute_stats.run_nuclei_inst_stat`` unchanged: each (ground truth,
prediction) pair is written as ``inst_map`` in a .mat file (as HoVer-Net's inference writes them), and it reads
them back, applies ``remap_label`` and computes, per image, Dice (``get_dice_1``), AJI (``get_fast_aji``), DQ, SQ,
PQ (``get_fast_pq``, match IoU 0.5) and AJI+ (``get_fast_aji_plus``). Our side: ``zoo.metrics`` on the same maps
with their raw ids (pixel ``f1``, ``aji``, ``aji_plus``, ``pq``).

Where the two may differ, and the comparison that accounts for it (both printed and written):
  * SQ / PQ: HoVer-Net divides the summed IoU by ``TP + 1e-6``, zoo.metrics by TP (Kirillov et al. eq. 1), so its
    SQ is smaller by SQ * 1e-6 / (TP + 1e-6) (about 1e-9 for a few hundred matches). ``corrected`` compares
    HoVer-Net's SQ times (TP + 1e-6) / TP (TP from our matching) and its DQ x that; ``raw`` compares as printed.
  * AJI / AJI+: HoVer-Net pairs by IoU = inter / (union + 1e-6); on integer areas this cannot reorder two unequal
    IoUs (they differ by >= 1 / (union_1 * union_2), far above the 1e-12 shift), and it breaks exact IoU ties toward
    the larger union, i.e. the larger intersection, as zoo.metrics does. A tie between assignments of equal summed
    IoU (AJI+'s Munkres) could still pick different pairs; the per-image differences show whether that happened.
A value differing by more than ``--tol`` (1e-9) after the correction makes the exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import types

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

KEYS = ("dice", "aji", "aji_plus", "dq", "sq", "pq")
#: row order of the metrics array returned by HoVer-Net's run_nuclei_inst_stat
REFERENCE_ROWS = ("dice", "aji", "dq", "sq", "pq", "aji_plus")
CACHE_FORMAT = 1


def _commit(path: str) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=path)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "zoo", "scripts",
                                "benchmarks"], capture_output=True, text=True, cwd=path)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except Exception:  # noqa: BLE001 — not a git checkout
        return "unknown"


def load_reference(root: str):
    """HoVer-Net's ``compute_stats`` and ``metrics.stats_utils`` modules from a working copy at ``root`` (the
    repository folder, or its ``metrics/stats_utils.py``). Their module-level ``import cv2`` / ``matplotlib`` are
    satisfied by empty stand-ins when those packages are absent: none of the functions used here calls them."""
    root = os.path.abspath(root)
    if os.path.isfile(root):  # .../metrics/stats_utils.py
        root = os.path.dirname(os.path.dirname(root))
    for rel in ("compute_stats.py", os.path.join("metrics", "stats_utils.py")):
        if not os.path.isfile(os.path.join(root, rel)):
            raise SystemExit(f"{root}: not a HoVer-Net working copy ({rel} missing); fetch "
                             "https://github.com/vqdang/hover_net outside this repository")
    for name in ("cv2", "matplotlib", "matplotlib.pyplot"):
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except ImportError:
                sys.modules[name] = types.ModuleType(name)
    if not hasattr(sys.modules["matplotlib"], "pyplot"):
        sys.modules["matplotlib"].pyplot = sys.modules["matplotlib.pyplot"]
    saved = {k: sys.modules.pop(k) for k in ("metrics", "metrics.stats_utils", "compute_stats") if k in sys.modules}
    sys.path.insert(0, root)
    try:
        stats_utils = importlib.import_module("metrics.stats_utils")
        compute_stats = importlib.import_module("compute_stats")
    finally:
        sys.path.remove(root)
        for k in ("metrics", "metrics.stats_utils", "compute_stats"):
            sys.modules.pop(k, None)
        sys.modules.update(saved)
    return compute_stats, stats_utils


def _cache_meta(model: str, data: str, split: str) -> dict:
    return {"format": CACHE_FORMAT, "model": model, "data": os.path.abspath(data), "split": split}


def cached_predictions(model: str, data: str, split: str, cache: str, max_images: int = 0) -> list:
    """[(image_id, ground truth, predicted instances)] for the labelled images of ``split`` in the built records
    ``data``, predicted by ``model`` (any URI ``zoo.training.tracking.load`` takes) through ``zoo.inference.predict``.
    Read from ``cache`` (.npz) when it holds the same model / data / split, else predicted and written there
    (atomically)."""
    meta = _cache_meta(model, data, split)
    if os.path.isfile(cache):
        with np.load(cache, allow_pickle=False) as z:
            if json.loads(str(z["meta"])) == meta:
                ids = [str(i) for i in z["image_ids"]]
                items = [(i, z[f"gt/{i}"], z[f"pred/{i}"]) for i in ids]
                print(f"predictions: {len(items)} images from the cache {cache}")
                return items[:max_images] if max_images else items
        print(f"predictions: {cache} holds another model / data / split; predicting again")
    from zoo import atomic
    from zoo.evaluation.evaluate import iter_eval_samples
    from zoo.inference import as_forward, predict
    from zoo.training.tracking import load

    loaded = load(model)
    forward = as_forward(loaded.model, loaded.spec)
    items = []
    t = time.perf_counter()
    for s in iter_eval_samples(data, split):
        pred = predict(forward, loaded.spec, s.image, mpp=s.mpp).instances
        items.append((s.image_id, np.asarray(s.instances, np.int32), np.asarray(pred, np.int32)))
    if not items:
        raise SystemExit(f"{data}: no labelled images in split {split!r}")
    print(f"predictions: {len(items)} images predicted by {model} in {time.perf_counter() - t:.1f} s")
    arrays = {"meta": np.array(json.dumps(meta)), "image_ids": np.array([i for i, _, _ in items])}
    for i, g, p in items:
        arrays[f"gt/{i}"], arrays[f"pred/{i}"] = g, p
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic.write_bytes(cache, buf.getvalue())
    return items[:max_images] if max_images else items


def reference_stats(compute_stats, items: list) -> list:
    """Per image, HoVer-Net's ``run_nuclei_inst_stat`` on .mat files of the maps: [{dice, aji, dq, sq, pq,
    aji_plus}] in the order of ``items``."""
    import scipy.io as sio

    with tempfile.TemporaryDirectory(prefix="hovernet-stats-") as work:
        true_dir, pred_dir = os.path.join(work, "true"), os.path.join(work, "pred")
        os.makedirs(true_dir)
        os.makedirs(pred_dir)
        for k, (_, gt, pred) in enumerate(items):  # names without dots: it keeps basename.split(".")[0]
            sio.savemat(os.path.join(true_dir, f"img{k:05d}.mat"), {"inst_map": gt.astype(np.int32)})
            sio.savemat(os.path.join(pred_dir, f"img{k:05d}.mat"), {"inst_map": pred.astype(np.int32)})
        with contextlib.redirect_stdout(io.StringIO()):  # it prints the folder and the means
            metrics = np.asarray(compute_stats.run_nuclei_inst_stat(pred_dir, true_dir, print_img_stats=False))
    assert metrics.shape == (len(REFERENCE_ROWS), len(items)), metrics.shape
    return [{k: float(metrics[r, j]) for r, k in enumerate(REFERENCE_ROWS)} for j in range(len(items))]


def our_stats(gt: np.ndarray, pred: np.ndarray) -> dict:
    """zoo.metrics on the raw maps: pixel Dice, AJI, AJI+, and PQ's dq / sq / pq / tp."""
    from zoo.metrics import aji, aji_plus, pq
    from zoo.metrics.pixel import f1

    q = pq(gt, pred)
    return {"dice": float(f1(gt > 0, pred > 0)), "aji": float(aji(gt, pred)), "aji_plus": float(aji_plus(gt, pred)),
            "dq": float(q["dq"]), "sq": float(q["sq"]), "pq": float(q["pq"]), "tp": int(q["tp"]),
            "fp": int(q["fp"]), "fn": int(q["fn"])}


def corrected(ref: dict, tp: int) -> dict:
    """HoVer-Net's values with its SQ denominator ``TP + 1e-6`` replaced by TP (SQ and PQ = DQ x SQ)."""
    out = dict(ref)
    if tp:
        out["sq"] = ref["sq"] * (tp + 1e-6) / tp
        out["pq"] = ref["dq"] * out["sq"]
    return out


def compare(items: list, reference: list) -> dict:
    """Per-image values of both sides and their differences (raw, and after :func:`corrected`)."""
    rows = []
    for (image_id, gt, pred), ref in zip(items, reference):
        ours = our_stats(gt, pred)
        fixed = corrected(ref, ours["tp"])
        rows.append({"image_id": image_id, "gt_instances": int(len(np.unique(gt)) - 1),
                     "pred_instances": int(len(np.unique(pred)) - 1), "ours": ours, "hovernet": ref,
                     "diff_raw": {k: ours[k] - ref[k] for k in KEYS},
                     "diff_corrected": {k: ours[k] - fixed[k] for k in KEYS},
                     "sq_raw_expected": ours["sq"] * 1e-6 / (ours["tp"] + 1e-6) if ours["tp"] else 0.0})
    max_raw = {k: max(abs(r["diff_raw"][k]) for r in rows) for k in KEYS}
    max_cor = {k: max(abs(r["diff_corrected"][k]) for r in rows) for k in KEYS}
    mean = {side: {k: float(np.mean([r[side][k] for r in rows])) for k in KEYS} for side in ("ours", "hovernet")}
    return {"images": len(rows), "mean": mean, "max_abs_diff_raw": max_raw, "max_abs_diff_corrected": max_cor,
            "per_image": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", required=True, help="working copy of github.com/vqdang/hover_net (outside the repo)")
    ap.add_argument("--model", required=True, help="run folder, .keras, MLflow URI or pretrained:NAME")
    ap.add_argument("--data", required=True, help="built records (histozoo data build ...)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", required=True, help="JSON with every per-image value of both sides")
    ap.add_argument("--cache", default=None, help="predictions .npz (default: --out with .predictions.npz)")
    ap.add_argument("--max-images", type=int, default=0, help="only the first N images (0 = all)")
    ap.add_argument("--tol", type=float, default=1e-9)
    args = ap.parse_args(argv)
    if not os.path.isfile(os.path.join(args.data, "summary.json")):
        raise SystemExit(f"{args.data}: no built records (summary.json missing); run `histozoo data build ...`")
    compute_stats, _ = load_reference(args.reference)
    cache = args.cache or os.path.splitext(args.out)[0] + ".predictions.npz"
    items = cached_predictions(args.model, args.data, args.split, cache, args.max_images)
    t = time.perf_counter()
    reference = reference_stats(compute_stats, items)
    t_ref = time.perf_counter() - t
    result = compare(items, reference)
    ok = max(result["max_abs_diff_corrected"].values()) <= args.tol
    ref_commit = _commit(os.path.abspath(args.reference)) if os.path.isdir(os.path.join(args.reference, ".git")) \
        else "working copy (no .git)"
    result = {"model": args.model, "data": os.path.abspath(args.data), "split": args.split, "commit": _commit(REPO),
              "reference": os.path.abspath(args.reference), "reference_commit": ref_commit, "tol": args.tol,
              "equal_within_tol": ok, "reference_seconds": round(t_ref, 2), **result}
    from zoo.atomic import write_json

    write_json(args.out, result, indent=1)
    print(f"{'image':<26}{'gt':>5}{'pred':>6}" + "".join(f"{k:>10}" for k in KEYS) + "   max|diff| corrected")
    for r in result["per_image"]:
        print(f"{r['image_id']:<26}{r['gt_instances']:>5}{r['pred_instances']:>6}"
              + "".join(f"{r['ours'][k]:>10.5f}" for k in KEYS)
              + f"   {max(abs(v) for v in r['diff_corrected'].values()):.1e}")
    print("mean zoo.metrics " + " ".join(f"{k} {v:.5f}" for k, v in result["mean"]["ours"].items()))
    print("mean HoVer-Net   " + " ".join(f"{k} {v:.5f}" for k, v in result["mean"]["hovernet"].items()))
    print("max |diff| raw:       " + ", ".join(f"{k} {v:.2e}" for k, v in result["max_abs_diff_raw"].items()))
    print("max |diff| corrected: " + ", ".join(f"{k} {v:.2e}" for k, v in result["max_abs_diff_corrected"].items())
          + "  (HoVer-Net's SQ x (TP + 1e-6) / TP)")
    print(f"{'equal' if ok else 'DIFFERENT'} within {args.tol:g} after the SQ correction; wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
