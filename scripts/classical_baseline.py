#!/usr/bin/env python
"""Score the classical (training-free) nuclei segmentation baselines on MoNuSeg 2018 test and TNBC.

    python scripts/classical_baseline.py --data ../shared/data --out build/classical_baseline.json

Methods (zoo.postprocess.classical): ``hu`` = Hu et al.'s pipeline with the paper's parameters (Reinhard ->
Macenko deconvolution -> hematoxylin intensity < 120 -> remove < 200 px -> 7x7 opening -> components);
``hu_otsu`` = the same with the threshold picked per image by Otsu's method instead of the fixed 120;
``hu_log`` = the paper's foreground split by a watershed from Yuan & Suh's LoG blob centres.
Datasets: ``monuseg2018:test`` (the 14 official test images, XML ground truth) and ``tnbc:all`` (all 50 tiles;
the method has no training, so no fold is held out). Metrics per image from zoo.metrics.segmentation_report;
the table gives the mean over images and AJI pooled over the dataset (sum of C / sum of U).
Prints a markdown table and writes every per-image number to ``--out`` (JSON, atomic write).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

from zoo.atomic import write_json

KEYS = ("pixel_dice", "aji", "aji_plus", "pq", "dq", "sq", "det_f1", "hu_iou", "hu_fscore")


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "zoo", "scripts"],
                               capture_output=True, text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except Exception:
        return "unknown"


def _samples(data_root: str, spec: str):
    from zoo.data.readers import get_reader

    name, _, split = spec.partition(":")
    folder = {"monuseg2018": "monuseg2018", "tnbc": "tnbc"}.get(name, name)
    reader = get_reader(name)(os.path.join(data_root, folder))
    for item in reader.items():
        # readers whose items carry their split (MoNuSeg: (split, path)) are filtered before reading
        if split and split != "all" and isinstance(item, tuple) and item and item[0] in ("train", "val", "test") \
                and item[0] != split:
            continue
        s = reader.read(item)
        if split and split != "all" and s.split != split:
            continue
        if s.instances is None:
            continue
        yield s


def run(data_root: str, datasets: list[str], methods: list[str], progress: bool = True) -> dict:
    from tqdm import tqdm

    from zoo.metrics import segmentation_report
    from zoo.postprocess import classical

    results = {"commit": _commit(), "python": platform.python_version(), "data_root": os.path.abspath(data_root),
               "rows": []}
    for spec in datasets:
        samples = list(_samples(data_root, spec))
        for method in methods:
            per_image, t0 = [], time.perf_counter()
            fallbacks = 0
            for s in tqdm(samples, desc=f"{method} on {spec}", disable=not progress, leave=False):
                res = classical.segment(method, s.image)
                fallbacks += bool(res.info.get("fallback"))
                rep = segmentation_report(s.instances, res.instances, hausdorff=False)
                per_image.append({"image_id": s.image_id, **{k: float(rep[k]) for k in KEYS},
                                  "aji_c": float(rep["aji_c"]), "aji_u": float(rep["aji_u"]),
                                  "n_gt": int(rep["n_gt"]), "n_pred": int(rep["n_pred"])})
            secs = time.perf_counter() - t0
            mean = {k: float(np.mean([r[k] for r in per_image])) for k in KEYS}
            pooled = sum(r["aji_c"] for r in per_image) / max(sum(r["aji_u"] for r in per_image), 1e-12)
            results["rows"].append({"dataset": spec, "method": method, "images": len(per_image), "mean": mean,
                                    "aji_pooled": pooled, "n_gt": sum(r["n_gt"] for r in per_image),
                                    "n_pred": sum(r["n_pred"] for r in per_image), "stain_fallbacks": fallbacks,
                                    "seconds": secs, "per_image": per_image})
    return results


def table(results: dict) -> str:
    head = ("| dataset (split) | method | images | pixel Dice | AJI | AJI (pooled) | AJI+ | PQ | DQ | SQ | "
            "det. F1 | nuclei GT / pred | s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results["rows"]:
        m = r["mean"]
        lines.append(f"| {r['dataset']} | {r['method']} | {r['images']} | {m['pixel_dice']:.4f} | {m['aji']:.4f} | "
                     f"{r['aji_pooled']:.4f} | {m['aji_plus']:.4f} | {m['pq']:.4f} | {m['dq']:.4f} | {m['sq']:.4f} | "
                     f"{m['det_f1']:.4f} | {r['n_gt']} / {r['n_pred']} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("HISTOZOO_DATA", os.path.join(here, "..", "..", "shared", "data")))
    ap.add_argument("--datasets", nargs="+", default=["monuseg2018:test", "tnbc:all"])
    ap.add_argument("--methods", nargs="+", default=["hu", "hu_otsu", "hu_log"])
    ap.add_argument("--out", default=None, help="per-image results as JSON")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    from zoo.errors import ZooError

    try:
        res = run(args.data, args.datasets, args.methods, progress=not args.no_progress)
    except ZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    res["command"] = "python " + " ".join([os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:]))
    print(f"commit {res['commit']}")
    print(table(res))
    if args.out:
        write_json(args.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
