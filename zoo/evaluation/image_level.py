"""Image-level classification from cell proportions (Hu et al. IEEE JBHI 2019, sec. III-B "Image-level
Classification" and IV-E).

Every nucleus of an image is assigned to one of k cell categories (Q's argmax, or any per-nucleus clustering); the
image's feature vector is its cell proportions P_i = X_i / sum_j X_j (X_i = the number of its nuclei in category i).
Two classifiers on the proportions, as IV-E:

- "k-means" (unsupervised): k-means on the proportions of the training images (k = the number of image classes,
  k-means++), each cluster labelled with the majority class of its training images (zoo.metrics.clustering
  .majority_mapping); a test image takes the label of its nearest cluster centre.
- "L2-SVM": scikit-learn LinearSVC (squared hinge, L2 penalty) on the proportions, standardised with the training
  images' statistics.

``cross_validate`` runs Hu et al.'s protocol (stratified k-fold over images, 4 folds; scores averaged over the folds)
with a per-fold nucleus assignment, so a nucleus clustering fitted on the training images only is possible; scores
are zoo.metrics.clustering.classification_report (precision / recall / F1 weighted by support, eq. 13).
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional, Sequence

import numpy as np

from zoo.errors import DataError

__all__ = ["cell_proportions", "NearestCentreClassifier", "svm_predict", "cross_validate", "METHODS"]

METHODS = ("k-means", "L2-SVM")


def cell_proportions(image_ids: Sequence, assignments, k: int,
                     images: Optional[Sequence] = None) -> tuple[list, np.ndarray]:
    """``(images, P)``: P[n, i] = X_i / sum_j X_j over the nuclei of image ``images[n]`` (Hu et al. sec. III-B),
    with ``image_ids[m]`` the image of nucleus m and ``assignments[m]`` its category in 0 .. k-1. ``images``
    defaults to the sorted distinct ids; an image without nuclei, or a category outside 0 .. k-1, is an error."""
    ids = np.asarray(list(image_ids), dtype=object)
    a = np.asarray(assignments).ravel()
    if ids.size != a.size:
        raise DataError("assignments", f"{a.size} entries but {ids.size} nucleus image ids")
    if a.size and (a.min() < 0 or a.max() >= k):
        raise DataError("assignments", f"categories must lie in 0 .. {k - 1}, got {a.min()} .. {a.max()}")
    order = sorted(set(ids.tolist())) if images is None else list(images)
    row = {im: n for n, im in enumerate(order)}
    unknown = set(ids.tolist()) - set(row)
    if unknown:
        raise DataError("image_ids", f"nuclei of images not in the image list: {sorted(unknown)[:3]}")
    counts = np.zeros((len(order), k), np.float64)
    np.add.at(counts, (np.array([row[i] for i in ids.tolist()], np.int64), a.astype(np.int64)), 1.0)
    total = counts.sum(1, keepdims=True)
    if (total == 0).any():
        raise DataError(str(order[int(np.flatnonzero(total.ravel() == 0)[0])]), "image without nuclei: no proportions")
    return order, counts / total


class NearestCentreClassifier:
    """Hu et al. IV-E "Our method (unsupervised)": k-means (k-means++, ``n_init`` restarts) on the training images'
    proportions, each centre labelled with the majority class of its training images; ``predict`` gives each
    sample the label of its nearest centre (Euclidean). ``k`` defaults to the number of training classes."""

    def __init__(self, k: Optional[int] = None, seed: int = 0, n_init: int = 10):
        self.k, self.seed, self.n_init = k, seed, n_init

    def fit(self, x, y) -> "NearestCentreClassifier":
        from sklearn.cluster import KMeans

        from zoo.metrics.clustering import majority_mapping

        x, y = np.asarray(x, np.float64), np.asarray(y)
        k = self.k or int(np.unique(y).size)
        if k > len(x):
            raise DataError("proportions", f"k-means with k = {k} needs at least {k} training images, got {len(x)}")
        with warnings.catch_warnings():  # fewer distinct points than k: handled below
            warnings.filterwarnings("ignore", message="Number of distinct clusters")
            km = KMeans(n_clusters=k, init="k-means++", n_init=self.n_init, random_state=self.seed).fit(x)
        # a centre no training image belongs to (fewer distinct proportion vectors than k, e.g. every nucleus in one
        # category) has no majority class: it is dropped
        used = np.unique(km.labels_)
        self.centres_ = km.cluster_centers_[used]
        mapping = majority_mapping(km.labels_, y)
        self.centre_labels_ = np.array([mapping[j] for j in used.tolist()])
        return self

    def predict(self, x) -> np.ndarray:
        x = np.asarray(x, np.float64)
        d = ((x[:, None, :] - self.centres_[None]) ** 2).sum(-1)
        return self.centre_labels_[d.argmin(1)]


def svm_predict(train_x, train_y, test_x, c: float = 1.0, seed: int = 0) -> np.ndarray:
    """Hu et al. IV-E "Our method (with SVM)": an L2-SVM (LinearSVC: squared hinge, L2 penalty, ``c``) trained on
    the training images' proportions standardised with their own mean / std (constant columns left at 0)."""
    from sklearn.svm import LinearSVC

    from zoo.evaluation.cluster import standardize

    tr, te = standardize(train_x, test_x, dtype=np.float64)
    svm = LinearSVC(C=c, loss="squared_hinge", penalty="l2", dual="auto", max_iter=10000, random_state=seed)
    return svm.fit(tr, np.asarray(train_y)).predict(te)


def _predict(method: str, train_x, train_y, test_x, seed: int) -> np.ndarray:
    if method == "k-means":
        return NearestCentreClassifier(seed=seed).fit(train_x, train_y).predict(test_x)
    if method == "L2-SVM":
        return svm_predict(train_x, train_y, test_x, seed=seed)
    raise DataError("method", f"unknown image-level classifier {method!r} (one of {METHODS})")


def cross_validate(nucleus_image_ids: Sequence, image_labels: dict, assign: Callable, k: int, folds: int = 4,
                   seed: int = 0, methods: Sequence[str] = METHODS) -> dict:
    """Hu et al. IV-E: stratified ``folds``-fold cross-validation over the images of ``image_labels`` ({image id:
    class}). Per fold, ``assign(train_nuclei)`` (a boolean mask over the nuclei: those of the fold's training
    images) returns every nucleus's category in 0 .. k-1; the proportions of the training and test images feed each
    method. Returns {method: {"precision", "recall", "f_score", "accuracy"} averaged over folds, "folds": per fold,
    "confusion" summed over folds, "labels"}, plus "proportions" {image: P} of the last fold's assignment."""
    from sklearn.model_selection import StratifiedKFold

    from zoo.metrics.clustering import classification_report

    nid = np.asarray(list(nucleus_image_ids), dtype=object)
    images = sorted(image_labels)
    missing = [im for im in images if not (nid == im).any()]
    if missing:
        raise DataError(str(missing[0]), "image without nuclei: no proportions")
    y = np.array([image_labels[im] for im in images])
    labels = np.unique(y)
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = {m: {"folds": [], "confusion": np.zeros((labels.size, labels.size), np.int64)} for m in methods}
    props = None
    for tr, te in skf.split(np.zeros(len(y)), y):
        train_images = {images[i] for i in tr}
        keep = np.isin(nid, list(image_labels))
        clusters = np.asarray(assign(np.array([i in train_images for i in nid.tolist()]) & keep))
        order, p = cell_proportions(nid[keep], clusters[keep], k, images)
        props = dict(zip(order, p.tolist()))
        for m in methods:
            pred = _predict(m, p[tr], y[tr], p[te], seed)
            rep = classification_report(y[te], pred, labels=labels)
            out[m]["folds"].append({"precision": rep["precision_weighted"], "recall": rep["sensitivity_weighted"],
                                    "f_score": rep["f1_weighted"], "accuracy": rep["accuracy"],
                                    "test_images": [images[i] for i in te]})
            out[m]["confusion"] += rep["confusion"]
    for m in methods:
        f = out[m]["folds"]
        out[m].update({key: float(np.mean([r[key] for r in f])) for key in ("precision", "recall", "f_score",
                                                                             "accuracy")})
        out[m]["confusion"] = out[m]["confusion"].tolist()
        out[m]["labels"] = labels.tolist()
    out["proportions"] = props
    return out
