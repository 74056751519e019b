"""Clustering and feature-quality tables of issue 20 (Hu et al. IEEE JBHI 2019 Tables I-III; Yuan & Suh sec. 4.2.1) on
typed nucleus crops (``histozoo data crops``), every score from zoo.metrics.clustering:

- Table III (clustering, typed crops of the evaluation split): purity, entropy (bits), F-score with majority
  assignment (eq. 14, eq. 13), accuracy, per-class precision / sensitivity / F1, confusion matrix, for
  k-means (k-means++ init, as Hu et al. IV-B) on raw pixels (Yuan & Suh's baseline), on hand-made features (Lab colour
  histogram + uniform LBP histogram + HOG, scikit-image; Hu et al.'s "MF" is SIFT + LBP + Lab histogram), on D's
  features (the 8192-d embedding of IV-C: of the trained GAN given with --model, and of the same architecture at
  random initialisation, "CNN features, random-init"), and the GAN's own clusters (argmax Q(c|x)); with --dec, Deep
  Embedded Clustering on HOG (Xie et al. 2016, zoo.evaluation.dec: "HOG + DEC").
- Table II: the k-means rows at each k of --k (4 5 6); the GAN's k is its number of categories.
- Table I (feature quality): an L2-SVM (scikit-learn LinearSVC: squared hinge, L2 penalty) trained on the typed crops
  of --train-split and tested on those of --split (CRCHistoPhenotypes: split by image = source), on D's features vs
  hand-made features; precision / recall / F1 weighted by support.

    .venv/bin/python scripts/clustering.py --crops build/crops/crc32 --model runs/hu-infowgan-gp \
        --split test --train-split train --k 4 5 6 --out docs/results/clustering_hu.json

Untyped crops (type 0) are left out of every score.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


# ------------------------------------------------------------------------------------------------ features
def raw_pixel_features(images: np.ndarray) -> np.ndarray:
    """Each crop as one vector of its pixels in [0, 1] (Yuan & Suh's "squeezed 3072-length vector" at 32 x 32)."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def color_histogram(image: np.ndarray, bins: int = 8) -> np.ndarray:
    """Lab colour histogram: ``bins`` bins per channel over L in [0, 100], a and b in [-128, 127], each normalised
    to sum 1 (white padding included, as the crops are)."""
    from skimage.color import rgb2lab

    lab = rgb2lab(image).reshape(-1, 3)
    ranges = ((0.0, 100.0), (-128.0, 127.0), (-128.0, 127.0))
    hists = [np.histogram(lab[:, c], bins=bins, range=ranges[c])[0] for c in range(3)]
    return np.concatenate([h / max(h.sum(), 1) for h in hists]).astype(np.float32)


def lbp_histogram(gray: np.ndarray, points: int = 8, radius: int = 1) -> np.ndarray:
    """Histogram of uniform rotation-invariant LBP codes (Ojala et al. 2002; skimage ``method="uniform"``: P + 2
    codes), normalised to sum 1."""
    from skimage.feature import local_binary_pattern

    codes = local_binary_pattern(gray, points, radius, method="uniform")
    h = np.bincount(codes.astype(np.int64).ravel(), minlength=points + 2)[:points + 2]
    return (h / max(h.sum(), 1)).astype(np.float32)


def hog_features(gray: np.ndarray, cell: int = 8) -> np.ndarray:
    """HOG (Dalal & Triggs; skimage): 9 orientations, ``cell`` px cells, 2 x 2 blocks, L2-Hys."""
    from skimage.feature import hog

    return hog(gray, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2),
               block_norm="L2-Hys", feature_vector=True).astype(np.float32)


def gray8(image: np.ndarray) -> np.ndarray:
    """An RGB crop as 8-bit grey levels (skimage ``rgb2gray``), the input of the LBP and HOG features."""
    from skimage.color import rgb2gray

    return (rgb2gray(image) * 255).astype(np.uint8)


def hog_only_features(images: np.ndarray) -> np.ndarray:
    """Per crop: its grey-level HOG alone (324 at 32 x 32), the input of the HOG + DEC baseline."""
    return np.stack([hog_features(gray8(img)) for img in images])


def handmade_features(images: np.ndarray) -> np.ndarray:
    """Per crop: Lab colour histogram (24) + uniform LBP histogram (10) + HOG (324 at 32 x 32), concatenated."""
    return np.stack([np.concatenate([color_histogram(img), lbp_histogram(g), hog_features(g)])
                     for img, g in ((img, gray8(img)) for img in images)])


# ------------------------------------------------------------------------------------------------ methods
def kmeans_clusters(features: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means with k-means++ initialisation (Hu et al. IV-B), 10 restarts, on standardised features."""
    from sklearn.cluster import KMeans

    from zoo.evaluation.cluster import standardize

    (x,) = standardize(features)
    return KMeans(n_clusters=k, init="k-means++", n_init=10, random_state=seed).fit_predict(x)


def score_clusters(clusters: np.ndarray, types: np.ndarray) -> dict:
    """zoo.metrics.clustering.clustering_report of the typed crops, as JSON-friendly values."""
    from zoo.metrics.clustering import clustering_report

    typed = types > 0
    rep = clustering_report(clusters[typed], types[typed])
    return {"purity": rep["purity"], "entropy_bits": rep["entropy"], "f_score": rep["f1_weighted"],
            "accuracy": rep["accuracy"], "precision": rep["precision"].tolist(),
            "sensitivity": rep["sensitivity"].tolist(), "f1": rep["f1"].tolist(), "labels": rep["labels"].tolist(),
            "confusion": rep["confusion"].tolist(), "mapping": {str(a): b for a, b in rep["mapping"].items()},
            "n": int(typed.sum())}


def svm_report(train_x, train_y, test_x, test_y, seed: int = 0, c: float = 1.0) -> dict:
    """Hu et al. Table I: the L2-SVM of zoo.evaluation.image_level.svm_predict (LinearSVC: squared hinge loss, L2
    penalty, standardised features); precision, recall and F1 weighted by support (eq. 13) from
    zoo.metrics.clustering.classification_report."""
    from zoo.evaluation.image_level import svm_predict
    from zoo.metrics.clustering import classification_report

    pred = svm_predict(train_x, train_y, test_x, c=c, seed=seed)
    rep = classification_report(test_y, pred, labels=np.unique(np.concatenate([train_y, test_y])))
    return {"precision": rep["precision_weighted"], "recall": rep["sensitivity_weighted"],
            "f_score": rep["f1_weighted"], "accuracy": rep["accuracy"], "n_train": int(len(train_y)),
            "n_test": int(len(test_y))}


def gan_features(model, images: np.ndarray, batch_size: int = 256):
    """(Q's clusters, D's embedding) of uint8 crops (zoo.evaluation.cluster.assign)."""
    from zoo.evaluation.cluster import assign

    probs, emb = assign(model, images, batch_size, embedding=True)
    return probs.argmax(1), emb


def d_features(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """D's features alone (Hu et al. Table I: each resblock max-pooled to 4 x 4, concatenated), Q not run
    (zoo.evaluation.cluster.d_features)."""
    from zoo.evaluation.cluster import d_features as extract

    return extract(model, images, batch_size)


# ------------------------------------------------------------------------------------------------ tables
def dec_rows(images, types, ks, seed: int = 0, **options) -> list:
    """HOG + DEC rows (Xie et al. 2016, zoo.evaluation.dec.dec_clusters; ``options`` go to it) at every k, with DEC's
    own k-means initialisation scored beside it and whether its assignments converged."""
    from zoo.evaluation.dec import dec_clusters

    x = hog_only_features(images)
    rows = []
    for k in ks:
        t = time.time()
        out = dec_clusters(x, k, seed, **options)
        rows.append({"method": "DEC on HOG", "k": k, **score_clusters(out["clusters"], types),
                     "dec_iterations": out["iterations"], "dec_converged": out["converged"],
                     "seconds": time.time() - t})
        rows.append({"method": "k-means on DEC's pretrained HOG embedding (its initialisation)", "k": k,
                     **score_clusters(out["kmeans_clusters"], types)})
    return rows


def clustering_table(images, types, ks, models_: dict, seed: int = 0, baselines: bool = True,
                     random_init: tuple = (), dec: dict | None = None) -> list:
    """Rows of Table II / III: k-means on raw pixels and hand-made features (unless not ``baselines``) and on each
    model's D features at every k, each trained model's own Q clusters (not those of the ``random_init``
    models: an untrained Q clusters nothing, only their D features are scored), and HOG + DEC when ``dec`` is a dict
    of dec_clusters options."""
    rows = dec_rows(images, types, ks, seed, **dec) if dec is not None else []
    feats = ({"raw pixels": raw_pixel_features(images), "hand-made (Lab hist + LBP + HOG)": handmade_features(images)}
             if baselines else {})
    per_model = {name: (gan_features(m, images) if name not in random_init else (None, d_features(m, images)))
                 for name, m in models_.items()}
    for name, (_, emb) in per_model.items():
        feats[f"D features ({name})"] = emb
    for fname, x in feats.items():
        for k in ks:
            rows.append({"method": f"k-means on {fname}", "k": k, **score_clusters(kmeans_clusters(x, k, seed), types)})
    for name, (clusters, _) in per_model.items():
        if clusters is None:
            continue
        m = models_[name]
        rows.append({"method": f"GAN Q ({name})", "k": int(m.config.categories), **score_clusters(clusters, types)})
    return rows


def feature_table(train, test, models_: dict, seed: int = 0, baselines: bool = True) -> list:
    """Rows of Table I: the L2-SVM on hand-made features (unless not ``baselines``) and on each model's D
    features (``d_features``: D's trunk only)."""
    rows = []
    (tx, ty), (vx, vy) = train, test
    if baselines:
        rows.append({"features": "hand-made (Lab hist + LBP + HOG)",
                     **svm_report(handmade_features(tx), ty, handmade_features(vx), vy, seed)})
    for name, m in models_.items():
        rows.append({"features": f"D features ({name})",
                     **svm_report(d_features(m, tx), ty, d_features(m, vx), vy, seed)})
    return rows


def _model_name(uri: str) -> str:
    """A model's row name: its run folder's name (given the folder, or RUN/checkpoints/X.keras), else the URI."""
    if os.path.isdir(uri):
        return os.path.basename(os.path.normpath(uri))
    if uri.endswith(".keras") and os.path.basename(os.path.dirname(uri)) == "checkpoints":
        return os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(uri))))
    return uri


def _typed(crops: dict):
    keep = crops["type"] > 0
    return crops["images"][keep], crops["type"][keep]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", required=True, help="crops folder (histozoo data crops) with typed crops")
    ap.add_argument("--model", "--gan", dest="model", action="append", default=[],
                    help="a trained GAN model (.keras / run folder / MLflow URI; --gan RUN_OR_KERAS is the same): "
                         "rows k-means on its D features (each --k), its Q clusters, L2-SVM on its D features; "
                         "repeatable")
    ap.add_argument("--no-baselines", dest="baselines", action="store_false",
                    help="only the GAN rows (no raw-pixel / hand-made k-means, no hand-made L2-SVM)")
    ap.add_argument("--random-init", default="infowgan_gp", help="also score this GAN architecture at random "
                                                                 "initialisation (its default config; '' = no)")
    ap.add_argument("--dec", action="store_true", help="also HOG + DEC (Xie et al. 2016) at each --k")
    ap.add_argument("--dec-pretrain-epochs", type=int, default=100, help="DEC's autoencoder epochs")
    ap.add_argument("--dec-max-iterations", type=int, default=20000, help="DEC's clustering-stage SGD batches at most")
    ap.add_argument("--split", default="test", help="the evaluation split (clustering and SVM test)")
    ap.add_argument("--train-split", default="train", help="the SVM's training split ('' = no Table I)")
    ap.add_argument("--k", type=int, nargs="+", default=[4, 5, 6])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the tables as JSON here")
    args = ap.parse_args(argv)

    import keras

    from zoo import models
    from zoo.evaluation.cluster import read_crops
    from zoo.training.tracking import load_model

    t0 = time.time()
    test = read_crops(args.crops, args.split)
    nets = {_model_name(p): load_model(p) for p in args.model}
    random = ()
    if args.random_init:
        keras.utils.set_random_seed(args.seed)
        net = models.build(args.random_init, {"image_size": int(test["images"].shape[1])})
        net.build()
        random = (f"{args.random_init}, random init",)
        nets[random[0]] = net
    images, types = _typed(test)
    out = {"crops": os.path.abspath(args.crops), "split": args.split, "class_names": list(test["class_names"]),
           "clustering": clustering_table(images, types, args.k, nets, args.seed, args.baselines, random,
                                          {"pretrain_epochs": args.dec_pretrain_epochs,
                                           "max_iterations": args.dec_max_iterations} if args.dec else None)}
    if args.train_split:
        out["features"] = feature_table(_typed(read_crops(args.crops, args.train_split)), (images, types), nets,
                                        args.seed, args.baselines)
    out["seconds"] = time.time() - t0
    print(f"{'method':60s} {'k':>2s} {'purity':>7s} {'entropy':>7s} {'F':>6s} {'acc':>6s}")
    for r in out["clustering"]:
        print(f"{r['method']:60s} {r['k']:2d} {r['purity']:7.3f} {r['entropy_bits']:7.3f} {r['f_score']:6.3f} "
              f"{r['accuracy']:6.3f}")
    for r in out.get("features", []):
        print(f"L2-SVM on {r['features']:50s} P {r['precision']:.3f} R {r['recall']:.3f} F {r['f_score']:.3f}")
    if args.out:
        from zoo.atomic import write_json

        write_json(args.out, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
