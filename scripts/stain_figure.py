"""The same held-out tiles under every stain method, side by side (like Yuan & Suh Fig. 1 / 3): rows = tiles (two
tissue crops, the sparsest real window and one constructed background-heavy tile, scripts/stain_eval.py), columns =
the input, Reinhard, Macenko, Vahadane and each neural method whose model is given; the target style is top left.

    python scripts/stain_figure.py [--colorization RUN] [--colorization-noclass RUN] [--colornormnet RUN] \\
        [--out docs/img/stain_methods.png]

Data and target as scripts/stain_eval.py (the target TCGA-A7-A13E; the tiles come from the 14 test images).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)


def _eval_module():
    spec = importlib.util.spec_from_file_location("_stain_eval", os.path.join(HERE, "stain_eval.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--colorization")
    ap.add_argument("--colorization-noclass", dest="colorization_noclass")
    ap.add_argument("--colornormnet")
    ap.add_argument("--out", default=os.path.join(REPO, "docs", "img", "stain_methods.png"))
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zoo.atomic import atomic_path

    ev = _eval_module()
    target, _, images, tiles, white, _ = ev.load_data()
    names = sorted(images)
    # two tissue crops (centre 256 x 256 of two test images), the sparsest real window, a constructed white tile
    frac = {k: float(ev.tissue(t).mean()) for k, t in tiles.items()}
    bg = sorted(frac, key=frac.get)[:2]
    rows = [(f"{names[0][:12]} tissue", images[names[0]][372:628, 372:628]),
            (f"{names[7][:12]} tissue", images[names[7]][372:628, 372:628])]
    rows += [(f"{k[:12]} sparsest window ({100 * frac[k]:.0f}% tissue)", tiles[k]) for k in bg[:1]]
    rows += [(f"{names[3][:12]} in near-white glass (constructed)", white[names[3]])]
    methods = ["reinhard", "macenko", "vahadane"] + [m for m in ("colorization", "colorization_noclass",
                                                                 "colornormnet") if getattr(args, m)]
    outs = {}
    for m in methods:
        norm = ev.make_normalizer(m, target, getattr(args, m, None))
        outs[m] = [norm.transform(t) for _, t in rows]
    cols = ["input"] + methods
    fig, axes = plt.subplots(len(rows) + 1, len(cols), figsize=(2.0 * len(cols), 2.0 * (len(rows) + 1)))
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(target[372:628, 372:628])
    axes[0, 0].set_title(f"target {ev.TARGET[:12]}", fontsize=8)
    for j, c in enumerate(cols):
        axes[1, j].set_title(c, fontsize=9)
    for i, (label, tile) in enumerate(rows, start=1):
        axes[i, 0].imshow(tile)
        axes[i, 0].text(0, -6, label, fontsize=6)
        for j, m in enumerate(methods, start=1):
            axes[i, j].imshow(outs[m][i - 1])
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    print(f"written {args.out}: rows {[r[0] for r in rows]}, columns {cols}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
