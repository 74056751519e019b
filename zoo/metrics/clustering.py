"""Clustering and classification metrics for unsupervised nucleus typing.

Hu et al. (IEEE Journal of Biomedical and Health Informatics (JBHI) 2019, "Unsupervised learning for cell-level
visual representation in histopathology images with generative adversarial networks", sec. IV-D "Cell-level
Clustering"): each cluster w_k is assigned the class argmax_j |w_k ∩ c_j|; then per-class precision / recall /
F-score (eq. 13) averaged weighted by support, and purity / entropy (eq. 14). Entropies are in bits (log base 2) by
default, as Hu et al.'s Table III is: its dataset B has 3 classes, so a natural-log entropy could not exceed
ln 3 = 1.099, yet the table prints 1.561 (<= log2 3 = 1.585).
Yuan & Suh (sec. 4.2.1): confusion matrix, per-class precision and sensitivity, F1 and accuracy.

Inputs are 1-D integer arrays of equal length (one entry per nucleus): ``clusters`` (any ids) and ``classes`` (true
classes, any ids). Every count comes from one contingency table (``np.unique`` of the label pairs).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from zoo.errors import DataError

__all__ = ["contingency", "purity", "entropy", "entropy_eq14_as_printed", "majority_mapping", "confusion_matrix",
           "classification_report", "cluster_fscore", "clustering_report"]


def _pair(a, b, names=("clusters", "classes")) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a).ravel()
    b = np.asarray(b).ravel()
    if a.size != b.size:
        raise DataError(names[1], f"{b.size} entries but {names[0]} has {a.size}")
    return a, b


def contingency(clusters, classes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(table, cluster_ids, class_ids)`` with ``table[k, j] = |w_k ∩ c_j|`` (rows: sorted cluster ids,
    columns: sorted class ids)."""
    a, b = _pair(clusters, classes)
    ka, ia = np.unique(a, return_inverse=True)
    kb, ib = np.unique(b, return_inverse=True)
    table = np.bincount(ia * kb.size + ib, minlength=ka.size * kb.size).reshape(ka.size, kb.size)
    return table, ka, kb


def purity(clusters, classes) -> float:
    """purity = (1/N) sum_k max_j |w_k ∩ c_j| -- Hu et al. eq. 14. Larger is better; 1.0 for N = 0."""
    t, _, _ = contingency(clusters, classes)
    n = t.sum()
    return float(t.max(axis=1).sum() / n) if n else 1.0


def entropy(clusters, classes, base: float = 2.0) -> float:
    """Clustering entropy (Zhao & Karypis 2001, the measure Hu et al. IEEE JBHI 2019 sec. IV-D eq. 14 names): the
    size-weighted entropy of the class distribution inside each cluster,

        E = sum_k (|w_k| / N) * ( - sum_j (n_kj / |w_k|) log_base(n_kj / |w_k|) ),

    unnormalised, in bits by default (``base=2``): Hu et al.'s Table III values are (1.561 for 3 classes is above
    ln 3 = 1.099 but below log2 3 = 1.585). ``base=math.e`` gives nats. Smaller is better; 0 for pure clusters
    and for N = 0. Eq. 14 as printed in the paper drops the class term (see ``entropy_eq14_as_printed``), which
    cannot be what was measured: it does not depend on the classes at all."""
    t, _, _ = contingency(clusters, classes)
    n = t.sum()
    if n == 0:
        return 0.0
    size = t.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = t / size
        h = -np.where(t > 0, p * np.log(p), 0.0).sum(axis=1)
    return float((size.ravel() / n * h).sum() / math.log(base))


def entropy_eq14_as_printed(clusters, base: float = 2.0) -> float:
    """Hu et al. (IEEE JBHI 2019) sec. IV-D eq. 14 exactly as printed: -(1/N) sum_k |w_k| log_base(|w_k| / N),
    the entropy of the cluster sizes (independent of the classes), in bits by default. Kept to make the difference
    with ``entropy`` explicit. 0 for N = 0."""
    a = np.asarray(clusters).ravel()
    if a.size == 0:
        return 0.0
    _, size = np.unique(a, return_counts=True)
    q = size / a.size
    return float(-(q * np.log(q)).sum() / math.log(base))


def majority_mapping(clusters, classes) -> dict:
    """``{cluster id: class id}``, each cluster assigned argmax_j |w_k ∩ c_j| (Hu et al. sec. IV-D; ties: the
    smaller class id)."""
    t, ka, kb = contingency(clusters, classes)
    return {k.item(): kb[j].item() for k, j in zip(ka, t.argmax(axis=1))}


def confusion_matrix(y_true, y_pred, labels: Optional[Sequence] = None) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix, labels)``: ``matrix[i, j]`` = number of samples of true class ``labels[i]`` predicted as
    ``labels[j]`` (Yuan & Suh, Fig. 6). ``labels`` defaults to the sorted union of both arrays."""
    t, p = _pair(y_true, y_pred, ("y_true", "y_pred"))
    lab = np.unique(np.concatenate([t, p])) if labels is None else np.asarray(labels)
    it = np.searchsorted(lab, t)
    ip = np.searchsorted(lab, p)
    ok = (it < lab.size) & (ip < lab.size)
    ok[ok] &= (lab[it[ok]] == t[ok]) & (lab[ip[ok]] == p[ok])
    m = np.bincount(it[ok] * lab.size + ip[ok], minlength=lab.size ** 2).reshape(lab.size, lab.size)
    return m, lab


def classification_report(y_true, y_pred, labels: Optional[Sequence] = None) -> dict:
    """Per-class precision = TP/(TP+FP), sensitivity (recall) = TP/(TP+FN), F1 = 2PR/(P+R) -- Hu et al. eq. 13,
    Yuan & Suh sec. 4.2.1 table -- their support-weighted averages (Hu et al.: "weighted by support"), and accuracy
    = trace / N (Yuan & Suh). A 0/0 ratio is 0.0 for a class (as scikit-learn's default), accuracy of N = 0 is 1.0.

    Returns ``{"labels", "confusion", "precision", "sensitivity", "f1", "support"`` (arrays per class),
    ``"accuracy", "precision_weighted", "sensitivity_weighted", "f1_weighted"}``."""
    m, lab = confusion_matrix(y_true, y_pred, labels)
    tp = np.diag(m).astype(np.float64)
    pred_n = m.sum(axis=0)
    true_n = m.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(pred_n > 0, tp / pred_n, 0.0)
        sens = np.where(true_n > 0, tp / true_n, 0.0)
        f1 = np.where(prec + sens > 0, 2 * prec * sens / (prec + sens), 0.0)
    n = m.sum()
    w = true_n / n if n else np.zeros_like(tp)
    return {"labels": lab, "confusion": m, "precision": prec, "sensitivity": sens, "f1": f1, "support": true_n,
            "accuracy": float(tp.sum() / n) if n else 1.0, "precision_weighted": float((w * prec).sum()),
            "sensitivity_weighted": float((w * sens).sum()), "f1_weighted": float((w * f1).sum())}


def cluster_fscore(clusters, classes) -> float:
    """Hu et al. sec. IV-D average F-score: clusters mapped to their majority class (``majority_mapping``), then the
    support-weighted mean of the per-class F-scores of eq. 13."""
    a, b = _pair(clusters, classes)
    if a.size == 0:
        return 1.0
    return clustering_report(a, b)["f1_weighted"]


def clustering_report(clusters, classes, base: float = 2.0) -> dict:
    """Everything of Hu et al. Table III and Yuan & Suh sec. 4.2.1 for one clustering: ``purity``, ``entropy`` (in
    log ``base``, bits by default as Table III), ``mapping`` (cluster -> class), and the ``classification_report``
    keys of the mapped predictions (``f1_weighted`` is Hu et al.'s F-score; ``accuracy``, per-class
    ``precision``/``sensitivity``/``f1`` are Yuan & Suh's table)."""
    a, b = _pair(clusters, classes)
    t, ka, kb = contingency(a, b)
    mapping = {k.item(): kb[j].item() for k, j in zip(ka, t.argmax(axis=1))} if t.size else {}
    if ka.size:
        pred = kb[t.argmax(axis=1)][np.searchsorted(ka, a)]
    else:
        pred = b
    rep = classification_report(b, pred, labels=kb)
    n = t.sum()
    rep.update({"purity": float(t.max(axis=1).sum() / n) if n else 1.0, "entropy": entropy(a, b, base),
                "mapping": mapping})
    return rep
