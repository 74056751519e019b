"""Image-level classification from cell proportions (Hu et al. IEEE JBHI 2019, sec. III-B and IV-E; issue 20) on
nucleus crops (``histozoo data crops``) whose parent images carry an image-level label:

1. every nucleus gets a category: with ``--gan MODEL`` Q's argmax (the paper's pipeline), else k-means with
   ``--k`` clusters on per-nucleus features (``--features``: raw pixels, hand-made = Lab histogram + LBP + HOG, or
   D's features of a random-init InfoWGAN-GP; scripts/clustering.py's extractors) fitted on the training images'
   nuclei of each fold (nearest centre for the others): a classical baseline that needs no trained GAN;
2. cell proportions P_i = X_i / sum X per image (zoo.evaluation.image_level.cell_proportions);
3. k-means on the proportions (centres from the training images, nearest centre for the test images) and an
   L2-SVM, stratified ``--folds``-fold cross-validation over images as IV-E (4 folds), precision / recall / F1
   weighted by support averaged over the folds (zoo.metrics.clustering.classification_report).

Image label (``--label``): ``organ`` (records' organ: for MoNuSeg training images WeakNucleiSeg's organ name from
the derived file names, PROVENANCE.md's table; its "Liver" images carry TCGA lung-cohort codes) or ``dataset`` (the
dataset of origin). Classes with fewer than ``--min-images`` images (default: --folds) are left out, and said so.

    .venv/bin/python scripts/image_level.py --crops build/crops/monuseg32 --split train --label organ \
        --features handmade --k 5 --out image_level.json --pca image_level_pca.png
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import io
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

FEATURES = ("raw", "handmade", "d-random")


def _clustering_script():
    """scripts/clustering.py (the one implementation of the per-crop feature extractors)."""
    spec = importlib.util.spec_from_file_location("histozoo_clustering_script",
                                                  os.path.join(REPO, "scripts", "clustering.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def parent_image(crop_id: str) -> str:
    """The image a crop was cut from: ``histozoo data crops`` names a crop ``<image id>/<suffix>``."""
    return str(crop_id).rsplit("/", 1)[0]


def image_labels(crops: dict, label: str, min_images: int) -> tuple[dict, dict]:
    """({image: class} of the kept images, {class: image count} of the dropped classes). A crop's image takes the
    crop's ``label`` field (``organ`` or ``dataset``); an image with an empty label is left out."""
    from zoo.errors import DataError

    lab = {}
    for cid, v in zip(crops["image_id"], crops[label]):
        im = parent_image(cid)
        if lab.setdefault(im, v) != v:
            raise DataError(im, f"crops of one image with two {label}s ({lab[im]!r}, {v!r})")
    lab = {im: v for im, v in lab.items() if v}
    counts = collections.Counter(lab.values())
    dropped = {c: n for c, n in sorted(counts.items()) if n < min_images}
    kept = {im: v for im, v in lab.items() if v not in dropped}
    if len(set(kept.values())) < 2:
        raise DataError(label, f"fewer than 2 image classes with >= {min_images} images ({dict(counts)})")
    return kept, dropped


def nucleus_features(images: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """Per-crop features for the k-means nucleus typing: scripts/clustering.py's raw pixels or hand-made features,
    or D's features (zoo.evaluation.cluster.d_features) of a random-init InfoWGAN-GP at the crops' size."""
    cl = _clustering_script()
    if kind == "raw":
        return cl.raw_pixel_features(images)
    if kind == "handmade":
        return cl.handmade_features(images)
    import keras

    from zoo import models
    from zoo.evaluation.cluster import d_features

    keras.utils.set_random_seed(seed)
    net = models.build("infowgan_gp", {"image_size": int(images.shape[1])})
    net.build()
    return d_features(net, images)


def kmeans_assigner(features: np.ndarray, k: int, seed: int = 0):
    """``assign(train_mask)``: k-means (k-means++, 10 restarts) on the standardised features of the masked nuclei
    (standardised with their statistics), every nucleus to its nearest centre."""
    from sklearn.cluster import KMeans

    from zoo.evaluation.cluster import standardize

    def assign(train_mask):
        tr, everything = standardize(features[train_mask], features)
        km = KMeans(n_clusters=k, init="k-means++", n_init=10, random_state=seed).fit(tr)
        return km.predict(everything.astype(km.cluster_centers_.dtype))

    return assign


def pca_plot(proportions: dict, labels: dict, path: str, title: str) -> str:
    """Hu et al. Fig. 10: the images' proportions projected on their first two principal components, one colour
    per image class, written as PNG (zoo.atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    from zoo.atomic import write_bytes

    ims = sorted(proportions)
    x = np.array([proportions[i] for i in ims])
    if np.ptp(x, axis=0).max() == 0:  # every image has the same proportions (e.g. one category for all nuclei)
        xy, title = np.zeros((len(ims), 2)), title + "\n(every image has the same proportions)"
    else:
        xy = PCA(n_components=2).fit_transform(x)
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for c in sorted(set(labels[i] for i in ims)):
        m = np.array([labels[i] == c for i in ims])
        ax.scatter(xy[m, 0], xy[m, 1], label=f"{c} ({m.sum()})", s=25)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title, fontsize=7)
    ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return write_bytes(path, buf.getvalue())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", required=True, action="append", help="crops folder (histozoo data crops); repeatable")
    ap.add_argument("--split", help="only this split of the crops (default: every split)")
    ap.add_argument("--label", choices=("organ", "dataset"), default="organ", help="the image-level label")
    ap.add_argument("--gan", help="a trained GAN model (.keras / run folder / URI): nuclei typed by Q's argmax")
    ap.add_argument("--features", choices=FEATURES, default="handmade",
                    help="without --gan: per-nucleus features of the k-means nucleus typing (default handmade)")
    ap.add_argument("--k", type=int, default=5, help="without --gan: nucleus categories (default 5, Hu et al.)")
    ap.add_argument("--folds", type=int, default=4, help="cross-validation folds over images (default 4, Hu IV-E)")
    ap.add_argument("--min-images", dest="min_images", type=int, help="leave out classes with fewer images "
                                                                      "(default: --folds)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--pca", help="write the PCA plot of the proportions (PNG) here")
    args = ap.parse_args(argv)

    from zoo.evaluation.cluster import assign, read_crops
    from zoo.evaluation.image_level import METHODS, cross_validate

    t0 = time.time()
    parts = [read_crops(c, args.split) for c in args.crops]
    crops = {key: (np.concatenate([p[key] for p in parts]) if key in ("images", "type")
                   else [v for p in parts for v in p[key]]) for key in ("images", "type", "image_id", "organ",
                                                                       "dataset")}
    labels, dropped = image_labels(crops, args.label, args.min_images or args.folds)
    nid = [parent_image(c) for c in crops["image_id"]]
    if args.gan:
        from zoo.training.tracking import load_model

        model = load_model(args.gan)
        clusters = assign(model, crops["images"]).argmax(1)
        k, typing = int(model.config.categories), f"GAN Q ({args.gan})"
        assigner = lambda mask: clusters  # noqa: E731 (Q is fixed: trained once, on its own training crops)
    else:
        k, typing = args.k, f"k-means (k = {args.k}) on {args.features} nucleus features, fitted per fold"
        assigner = kmeans_assigner(nucleus_features(crops["images"], args.features, args.seed), k, args.seed)
    res = cross_validate(nid, labels, assigner, k, folds=args.folds, seed=args.seed)
    counts = collections.Counter(labels.values())
    out = {"crops": [os.path.abspath(c) for c in args.crops], "split": args.split, "label": args.label,
           "classes": dict(sorted(counts.items())), "dropped_classes": dropped, "images": len(labels),
           "nuclei": int(sum(n in labels for n in nid)), "nucleus_typing": typing, "k": k, "folds": args.folds,
           **res, "seconds": time.time() - t0}
    print(f"{len(labels)} images, {out['nuclei']} nuclei, classes {out['classes']}, left out {dropped}; {typing}")
    for m in METHODS:
        r = res[m]
        print(f"{m:8s} P {r['precision']:.3f} R {r['recall']:.3f} F {r['f_score']:.3f} acc {r['accuracy']:.3f}")
    print(f"{out['seconds']:.0f} s")
    if args.out:
        from zoo.atomic import write_json

        write_json(args.out, out, indent=1)
    if args.pca:
        pca_plot(res["proportions"], labels, args.pca, f"cell proportions by {args.label}\n{typing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
