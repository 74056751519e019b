#!/usr/bin/env python
"""The README's picture, from a finished ``histozoo quickstart`` run: the held-out tile it predicted over gRPC, as
H&E | ground truth | the served prediction (the quickstart's own overlay PNG), written as a small palette PNG.

    histozoo quickstart && python scripts/readme_figure.py runs/quickstart --out docs/img/quickstart.png
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("quickstart", help="the quickstart's --out folder (holds quickstart.json)")
    ap.add_argument("--out", default="docs/img/quickstart.png")
    args = ap.parse_args()

    from PIL import Image
    from skimage.segmentation import find_boundaries

    from histozoo.quickstart import SAMPLE_DIR
    from zoo.atomic import atomic_path
    from zoo.data.imageio import read_label, read_rgb

    with open(os.path.join(args.quickstart, "quickstart.json")) as fh:
        s = json.load(fh)
    overlay = read_rgb(s["paths"]["overlay"])
    stem = os.path.basename(s["paths"]["overlay"])[: -len("_overlay.png")]
    image = read_rgb(os.path.join(SAMPLE_DIR, "images", stem + ".png"))
    truth = read_label(os.path.join(SAMPLE_DIR, "labels", stem + ".png"))
    gt = image.copy()
    gt[find_boundaries(truth, mode="inner")] = (255, 255, 0)
    gap = np.full((image.shape[0], 6, 3), 255, np.uint8)
    panel = np.concatenate([image, gap, gt, gap, overlay], axis=1)
    pal = Image.fromarray(panel).quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with atomic_path(args.out) as tmp:
        pal.save(tmp, format="PNG", optimize=True)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KiB) from {stem}: "
          f"{int(truth.max())} true nuclei, {s['served']['instances']} predicted")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
