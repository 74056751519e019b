#!/usr/bin/env python
"""Bhatia's synthetic images side by side (issue 22): a row of real tiles (random crops of the real images), a row of
synthetic tiles (zoo.synthesis, the same seed as ``histozoo synth``), the same tiles with their instance maps'
outlines, and, given a trained SimGAN refiner, a row of the refined tiles.

    python scripts/synth_figure.py --images ../shared/data/monuseg2018/MoNuSegTrainingData/Tissue_Images \
        [--refiner runs/simgan-refiner/checkpoints/last.keras] --out docs/img/synthetic.png
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True, help="folder of real unlabelled images")
    ap.add_argument("--refiner", help="a trained simgan_refiner (.keras, run folder, MLflow URI)")
    ap.add_argument("--n", type=int, default=4, help="tiles per row")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/img/synthetic.png")
    args = ap.parse_args()

    from PIL import Image
    from skimage.segmentation import find_boundaries

    from zoo.atomic import atomic_path
    from zoo.data.imageio import read_rgb
    from zoo.synthesis import SynthesisConfig, synthesize
    from zoo.synthesis.compose import random_crop
    from zoo.synthesis.dataset import list_images, refine

    cfg = SynthesisConfig()
    paths = list_images(args.images)
    images = [read_rgb(p) for p in paths]
    rng = np.random.default_rng(args.seed + 1000)
    real = [random_crop(rng, images[int(rng.integers(len(images)))], cfg.tile_size)[0] for _ in range(args.n)]
    tiles = [synthesize(images, cfg, seed=args.seed, index=i, names=paths) for i in range(args.n)]
    synth = [t.image for t in tiles]
    outlined = []
    for t in tiles:
        o = t.image.copy()
        o[find_boundaries(t.instances, mode="inner")] = (255, 255, 0)
        outlined.append(o)
    rows = [real, synth, outlined]
    if args.refiner:
        from zoo.training.tracking import load_model

        model = load_model(args.refiner)
        rows.append([refine(model, s) for s in synth])
    g = 6
    white = lambda h, w: np.full((h, w, 3), 255, np.uint8)  # noqa: E731
    lines = []
    for row in rows:
        parts = []
        for k, tile in enumerate(row):
            parts += ([white(tile.shape[0], g)] if k else []) + [tile]
        lines += ([white(g, sum(p.shape[1] for p in parts))] if lines else []) + [np.concatenate(parts, axis=1)]
    panel = np.concatenate(lines, axis=0)
    pal = Image.fromarray(panel).quantize(colors=192, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    with atomic_path(args.out) as tmp:
        pal.save(tmp, format="PNG", optimize=True)
    labels = ["real", "synthetic", "synthetic + instance outlines"] + (["refined"] if args.refiner else [])
    print(f"wrote {args.out}: rows {', '.join(labels)} ({args.n} tiles of {cfg.tile_size} px each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
