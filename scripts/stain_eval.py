"""Colour evaluation of the stain normalizers (Yuan & Suh sec. 4.1, Table 1): held-out images normalised to ONE target
style, scored against the target with zoo.metrics.color (Euclidean distance, RGB-histogram correlation, Hellinger
distance), for no normalisation, Reinhard, Macenko, Vahadane, the colorization CNN with and without the
classification loss, and ColorNormNet.

Data (MoNuSeg 2018, ../shared/data/monuseg2018): target = the training image TCGA-A7-A13E-01Z-00-DX1 (breast;
``--target``); held-out = the 14 MoNuSeg *test* images (1000 x 1000, other patients and sites, 7 organs), never seen
by any fit or training here. Two sets are scored:

- ``images``: the 14 whole test images against the whole target (Euclidean: same 1000 x 1000 size).
- ``background``: per test image the 256 x 256 window (stride 64) with the fewest tissue pixels (OD >= 0.15 in every
  channel, the Macenko rule zoo.stain uses), i.e. white / background-heavy tiles, the paper's failure case for SVD;
  histograms against the whole target, Euclidean against the target's own most-background window. Extra column
  ``bg_shift``: mean |change| (0-255) of the tile's non-tissue pixels (0 = background left white, as it should be).
  MoNuSeg crops are tissue-dense: these sparsest real windows still hold 39-84 % tissue by that rule.
- ``white``: constructed background-heavy tiles, since the data has no slide background: each test image's central
  128 x 128 crop pasted in the middle of a 256 x 256 field of near-white "glass" (RGB 235..250 uniform noise, seeded),
  i.e. 25 % tissue; Euclidean against the target's central crop framed the same way.

Each row also counts the tiles where the method fell back (returned the input: no tissue / degenerate estimate).

    python scripts/stain_eval.py                                  # classical rows (+ neural rows whose model exists)
    python scripts/stain_eval.py --colorization runs/stain-colorization-monuseg \\
        --colorization-noclass runs/stain-colorization-noclass-monuseg --colornormnet runs/stain-colornormnet-target
    python scripts/stain_eval.py --make-target-records build/stain_target   # ColorNormNet's training data

Writes ``--out`` (default .bench/stain_eval.json: means, stds, per-image values) and prints a markdown table.
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

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
DATA = os.environ.get("HISTOZOO_DATA", os.path.join(REPO, "..", "shared", "data"))
TARGET = "TCGA-A7-A13E-01Z-00-DX1"
TILE, STRIDE, BETA, IO = 256, 64, 0.15, 240.0
METHODS = ("none", "reinhard", "macenko", "vahadane", "colorization", "colorization_noclass", "colornormnet")
NEURAL = {"colorization": "colorization", "colorization_noclass": "colorization", "colornormnet": "colornormnet"}


def tissue(image: np.ndarray) -> np.ndarray:
    """Pixels with optical density >= BETA in every channel (zoo.stain's tissue rule, Macenko et al. 2009)."""
    od = -np.log((image.astype(np.float64) + 1.0) / IO)
    return np.all(od >= BETA, axis=-1)


def background_window(image: np.ndarray) -> tuple[int, int]:
    """(y, x) of the TILE x TILE window (stride STRIDE) with the fewest tissue pixels (first of ties)."""
    t = tissue(image).astype(np.int64)
    s = np.pad(t.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    best = None
    for y in range(0, image.shape[0] - TILE + 1, STRIDE):
        for x in range(0, image.shape[1] - TILE + 1, STRIDE):
            n = s[y + TILE, x + TILE] - s[y, x + TILE] - s[y + TILE, x] + s[y, x]
            if best is None or n < best[0]:
                best = (n, y, x)
    return best[1], best[2]


def load_data(target_id: str = TARGET):
    from zoo.data.imageio import read_rgb

    root = os.path.join(DATA, "monuseg2018")
    target = read_rgb(os.path.join(root, "MoNuSegTrainingData", "Tissue_Images", f"{target_id}.png"))
    tests = sorted(glob.glob(os.path.join(root, "MoNuSegTestData", "*.png")))
    if not tests:
        raise SystemExit(f"no MoNuSeg test images under {root}/MoNuSegTestData (set HISTOZOO_DATA)")
    images = {os.path.splitext(os.path.basename(p))[0]: read_rgb(p) for p in tests}
    tiles = {}
    for k, im in images.items():
        y, x = background_window(im)
        tiles[k] = im[y:y + TILE, x:x + TILE]
    ty, tx = background_window(target)
    white = {k: framed(im, i) for i, (k, im) in enumerate(images.items())}
    return target, target[ty:ty + TILE, tx:tx + TILE], images, tiles, white, framed(target, 99)


def framed(image: np.ndarray, seed: int) -> np.ndarray:
    """The image's central 128 x 128 crop in the middle of a 256 x 256 near-white field (RGB 235..250 noise)."""
    out = np.random.default_rng(seed).integers(235, 251, (TILE, TILE, 3)).astype(np.uint8)
    h, w = image.shape[:2]
    c = TILE // 4
    out[c:c + TILE // 2, c:c + TILE // 2] = image[h // 2 - c:h // 2 + c, w // 2 - c:w // 2 + c]
    return out


def make_normalizer(method: str, target: np.ndarray, model: str | None):
    from zoo import stain

    if method in NEURAL:
        norm = stain.get_normalizer(NEURAL[method], model=model)
        return norm.fit(target) if NEURAL[method] == "colorization" else norm.fit()
    return stain.get_normalizer(method).fit(target)


def score(method: str, norm, target, target_bg, images, tiles, white, target_white) -> dict:
    from zoo.metrics.color import color_metrics

    out = {"images": {}, "background": {}, "white": {}, "fallbacks": {"images": 0, "background": 0, "white": 0}}
    for kind, items, ref in (("images", images, target), ("background", tiles, target_bg),
                             ("white", white, target_white)):
        for name, im in items.items():
            if norm is None:
                res, info = im, {"fallback": None}
            else:
                res, info = norm.transform(im, return_info=True)
            if info["fallback"]:
                out["fallbacks"][kind] += 1
            m = color_metrics(res, target)
            if res.shape == ref.shape:
                m["euclidean"] = color_metrics(res, ref)["euclidean"]
            bg = ~tissue(im)
            m["bg_shift"] = float(np.abs(res.astype(np.float64) - im)[bg].mean()) if bg.any() else 0.0
            m["tissue_fraction"] = float(1.0 - bg.mean())
            out[kind][name] = m
    for kind in ("images", "background", "white"):
        vals = out[kind]
        out[f"{kind}_mean"] = {k: float(np.mean([v[k] for v in vals.values()])) for k in next(iter(vals.values()))}
        out[f"{kind}_std"] = {k: float(np.std([v[k] for v in vals.values()])) for k in next(iter(vals.values()))}
    return out


def make_target_records(out_dir: str, target: np.ndarray, target_id: str = TARGET) -> list[str]:
    """ColorNormNet's training data: the target image alone, as a record shard (the one schema) + summary.json."""
    from zoo.data import records
    from zoo.data.sample import Sample

    inst = np.zeros(target.shape[:2], np.int32)  # unlabelled for this purpose; the tissue_class target needs none
    paths = records.write_shards([Sample(image=target, image_id=target_id, dataset="monuseg2018",
                                         source_id=target_id[:12], split="train", instances=inst, organ="Breast",
                                         tissue_class=2)], out_dir, "train")
    with open(os.path.join(out_dir, "summary.json"), "w") as fh:
        json.dump({"dataset": "stain-target", "target": target_id, "splits": {"train": {"images": 1}}}, fh)
    return paths


def table(results: dict) -> str:
    lines = []
    for kind, title in (("images", "14 held-out MoNuSeg test images (1000 x 1000)"),
                        ("background", "14 sparsest real 256 x 256 windows (one per test image)"),
                        ("white", "14 constructed background-heavy tiles (25 % tissue in near-white glass)")):
        lines += [f"\n{title}\n", "| method | Euclidean (0 ideal) | correlation (1 ideal) | Hellinger (0 ideal) | "
                  "bg_shift | fallbacks |", "|---|---|---|---|---|---|"]
        for method, r in results.items():
            m, s = r[f"{kind}_mean"], r[f"{kind}_std"]
            lines.append(f"| {method} | {m['euclidean']:.3f} ± {s['euclidean']:.3f} | {m['correlation']:.3f} ± "
                         f"{s['correlation']:.3f} | {m['hellinger']:.3f} ± {s['hellinger']:.3f} | "
                         f"{m['bg_shift']:.1f} | {r['fallbacks'][kind]}/14 |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--target", default=TARGET, help="MoNuSeg training image id of the target style")
    ap.add_argument("--colorization", help="trained colorization model (.keras or run folder), with class loss")
    ap.add_argument("--colorization-noclass", dest="colorization_noclass", help="... trained without class loss")
    ap.add_argument("--colornormnet", help="ColorNormNet trained on the target image (.keras or run folder)")
    ap.add_argument("--make-target-records", metavar="DIR", help="write ColorNormNet's target data to DIR and exit")
    ap.add_argument("--out", default=os.path.join(REPO, ".bench", "stain_eval.json"))
    args = ap.parse_args(argv)

    t0 = time.time()
    target, target_bg, images, tiles, white, target_white = load_data(args.target)
    if args.make_target_records:
        print("\n".join(make_target_records(args.make_target_records, target, args.target)))
        return 0
    results = {}
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        if method not in METHODS:
            raise SystemExit(f"unknown method {method!r} (known: {', '.join(METHODS)})")
        model = getattr(args, method, None) if method in NEURAL else None
        if method in NEURAL and not model:
            print(f"skip {method}: no --{method.replace('_', '-')} model given")
            continue
        t = time.time()
        norm = None if method == "none" else make_normalizer(method, target, model)
        results[method] = score(method, norm, target, target_bg, images, tiles, white, target_white)
        results[method]["model"] = model
        print(f"{method}: {time.time() - t:.1f} s", flush=True)
    commit = os.environ.get("HISTOZOO_COMMIT") or subprocess.run(  # set it when running from an exported tree
        ["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"target": args.target, "commit": commit, "wall_s": time.time() - t0, "results": results}, fh,
                  indent=1)
    print(table(results))
    print(f"\ncommit {commit}, {time.time() - t0:.0f} s; written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
