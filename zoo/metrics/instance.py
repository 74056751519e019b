"""Instance-level segmentation metrics: AJI, AJI+, panoptic quality (PQ = DQ x SQ), per-class PQ / mPQ, and Hu et
al.'s segmentation IoU / F-score.

Every metric here is computed from one table of overlaps (``overlap(gt, pred)``, defined in zoo.metrics.labels):
the pixel count of every (ground-truth id, predicted id) pair that meets, read off in one ``np.bincount`` over
``gt * K + pred`` (or ``np.unique`` when the ids are too large for a dense table), plus the area of every instance.
Intersection, union and IoU of all touching pairs follow at once; no mask is ever built per instance.

Label maps: 2-D (or any-D) non-negative integer arrays of the same shape, 0 = background. Ids need not be
consecutive (``[0, 2, 7, 1000]`` is fine) and gt / pred ids are unrelated.

Empty maps never raise. Conventions (each function repeats its own):
  * no instance in either map: AJI = AJI+ = PQ = DQ = SQ = Hu IoU = Hu F = 1.0 (nothing to get wrong);
  * instances on one side only: all of them 0.0 (every instance is a miss or a false detection);
  * SQ with no true positive but some FP / FN: 0.0 (so PQ = DQ x SQ = 0 as in Kirillov et al.).
The raw counts (``tp, fp, fn, sum_iou``, AJI's ``C`` and ``U``) are returned too, so a dataset can be scored by
pooling counts instead of averaging per-image ratios.
"""

from __future__ import annotations

import numpy as np

from zoo.errors import DataError
from zoo.metrics.labels import (Overlap, _first_per_group, _get_overlap, instance_classes,  # noqa: F401
                                overlap, remap_label)

__all__ = ["Overlap", "overlap", "remap_label", "aji", "aji_plus", "pq", "pq_stats", "per_class_pq", "hu_segmentation",
           "instance_metrics", "instance_metrics_from_overlap", "instance_classes"]

def _max_iou_matching(ov: Overlap, min_iou: float = 0.0) -> np.ndarray:
    """A one-to-one matching of touching pairs that maximises the summed IoU (Munkres / Hungarian,
    scipy.optimize.linear_sum_assignment), keeping pairs with IoU > ``min_iou``. Returns indices into the pair
    arrays. The table is split first: pairs whose gt and pred touch nothing else are matched directly, and the
    assignment is solved only on the remaining (tangled) rows and columns."""
    from scipy.optimize import linear_sum_assignment

    if ov.inter.size == 0:
        return np.zeros(0, np.int64)
    iou = ov.iou
    deg_g = np.bincount(ov.pair_gt, minlength=ov.n_gt)
    deg_p = np.bincount(ov.pair_pred, minlength=ov.n_pred)
    simple = (deg_g[ov.pair_gt] == 1) & (deg_p[ov.pair_pred] == 1)
    chosen = [np.flatnonzero(simple)]
    rest = np.flatnonzero(~simple)
    if rest.size:
        rows, r_inv = np.unique(ov.pair_gt[rest], return_inverse=True)
        cols, c_inv = np.unique(ov.pair_pred[rest], return_inverse=True)
        mat = np.zeros((rows.size, cols.size))
        pos = np.full((rows.size, cols.size), -1, np.int64)
        mat[r_inv, c_inv] = iou[rest]
        pos[r_inv, c_inv] = rest
        ri, ci = linear_sum_assignment(mat, maximize=True)
        got = pos[ri, ci]
        chosen.append(got[got >= 0])
    sel = np.sort(np.concatenate(chosen))
    return sel[iou[sel] > min_iou]


def aji(gt, pred=None) -> float:
    """Aggregated Jaccard Index -- Kumar et al., IEEE TMI 2017 (MoNuSeg), sec. IV-A, Algorithm 1:

        AJI = sum_i |G_i ∩ S_j*(i)| / ( sum_i |G_i ∪ S_j*(i)| + sum_{S_k unused} |S_k| ),
        j*(i) = argmax_j |G_i ∩ S_j| / |G_i ∪ S_j|.

    A prediction may be the best match of several ground-truth nuclei (its union is then counted once per
    nucleus); "unused" predictions are those that are nobody's best match. A nucleus that touches no prediction
    contributes only |G_i| to the denominator (as in the public HoVer-Net ``get_fast_aji``, the reference value; the
    original MoNuSeg script would pair it with an arbitrary non-touching prediction). Ties in IoU go to the larger
    intersection, then the smaller prediction id. Both maps empty: 1.0; one empty: 0.0.
    ``gt`` may be an ``Overlap`` (then ``pred`` is ignored)."""
    return _aji_counts(_get_overlap(gt, pred))[0]


def _aji_counts(ov: Overlap) -> tuple[float, int, int]:
    if ov.n_gt == 0 and ov.n_pred == 0:
        return 1.0, 0, 0
    c = 0
    u = int(ov.gt_area.sum()) + int(ov.pred_area.sum())
    if ov.inter.size:
        best = _first_per_group(ov.pair_gt, ov.iou, ov.inter, tie=ov.pair_pred)
        used_p = np.unique(ov.pair_pred[best])
        c = int(ov.inter[best].sum())
        # paired gt: |G ∪ S| replaces |G|; a used prediction's own area leaves the "unused" sum
        u += int(ov.union[best].sum()) - int(ov.gt_area[ov.pair_gt[best]].sum()) - int(ov.pred_area[used_p].sum())
    return (c / u if u else 1.0), c, u


def aji_plus(gt, pred=None) -> float:
    """AJI+ -- Graham et al., HoVer-Net, Medical Image Analysis 2019, sec. 4.1 (and the HoVer-Net repository's
    ``get_fast_aji_plus``): AJI with a one-to-one pairing that maximises the summed IoU (Munkres) instead of each
    nucleus' best match, so one prediction is never charged to several nuclei. Unpaired gt and pred areas join the
    denominator. Both maps empty: 1.0; one empty: 0.0."""
    return _aji_plus_counts(_get_overlap(gt, pred))[0]


def _aji_plus_counts(ov: Overlap) -> tuple[float, int, int]:
    if ov.n_gt == 0 and ov.n_pred == 0:
        return 1.0, 0, 0
    sel = _max_iou_matching(ov, 0.0)
    c = int(ov.inter[sel].sum())
    u = int(ov.gt_area.sum()) + int(ov.pred_area.sum()) - c  # = sum of paired unions + unpaired areas
    return (c / u if u else 1.0), c, u


def pq_stats(gt, pred=None, match_iou: float = 0.5) -> dict:
    """Counts behind panoptic quality (Kirillov et al., "Panoptic Segmentation", CVPR 2019, eq. 1): ``tp, fp, fn``
    and ``sum_iou`` (summed IoU of the matched pairs), plus the matched index arrays ``match_gt, match_pred``
    (into ``Overlap.gt_ids / pred_ids``). Pairs match when IoU > ``match_iou``; for ``match_iou >= 0.5`` such pairs
    are unique by construction (Kirillov et al., Theorem 1), below 0.5 the maximum-IoU one-to-one matching is used
    first (as Graham et al. do)."""
    ov = _get_overlap(gt, pred)
    if ov.inter.size == 0:
        sel = np.zeros(0, np.int64)
    elif match_iou >= 0.5:
        sel = np.flatnonzero(ov.iou > match_iou)
    else:
        sel = _max_iou_matching(ov, match_iou)
    tp = int(sel.size)
    return {"tp": tp, "fp": ov.n_pred - tp, "fn": ov.n_gt - tp, "sum_iou": float(ov.iou[sel].sum()) if tp else 0.0,
            "match_gt": ov.pair_gt[sel], "match_pred": ov.pair_pred[sel], "match_iou": ov.iou[sel] if tp else
            np.zeros(0)}


def _pq_from_counts(tp: int, fp: int, fn: int, sum_iou: float) -> tuple[float, float, float]:
    """(pq, dq, sq) from counts -- Kirillov et al. eq. 1: DQ = TP / (TP + FP/2 + FN/2), SQ = sum IoU / TP."""
    if tp + fp + fn == 0:
        return 1.0, 1.0, 1.0
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = sum_iou / tp if tp else 0.0
    return dq * sq, dq, sq


def pq(gt, pred=None, match_iou: float = 0.5) -> dict:
    """Panoptic quality PQ = DQ x SQ -- Kirillov et al. CVPR 2019 eq. 1, as used for nuclei by Graham et al.
    (HoVer-Net) sec. 4.1: DQ = |TP| / (|TP| + |FP|/2 + |FN|/2) (the detection F1), SQ = mean IoU of the TP pairs,
    matched at IoU > ``match_iou``. SQ is sum IoU / TP exactly (the HoVer-Net code divides by TP + 1e-6).
    Returns ``{"pq", "dq", "sq", "tp", "fp", "fn", "sum_iou"}``. Both maps empty: pq = dq = sq = 1.0; no TP but
    some FP/FN: all 0.0."""
    s = pq_stats(gt, pred, match_iou)
    q, d, sq = _pq_from_counts(s["tp"], s["fp"], s["fn"], s["sum_iou"])
    return {"pq": q, "dq": d, "sq": sq, "tp": s["tp"], "fp": s["fp"], "fn": s["fn"], "sum_iou": s["sum_iou"]}


def per_class_pq(gt, pred, gt_classes, pred_classes, match_iou: float = 0.5, classes=None) -> dict:
    """Per-class PQ and the multi-class mPQ -- Graham et al. (HoVer-Net) sec. 4.1 / Table 4: for each nucleus type
    t, PQ_t is PQ between the gt instances of type t and the predicted instances of type t; mPQ is the mean of PQ_t
    over the types. Because a pair with IoU > 0.5 is unique whatever else is in the maps, the type-t matches are the
    all-instance matches whose gt and pred both have type t, so every class comes from the one overlap table.

    Classes are given as in ``instance_classes``; type 0 (unknown) is not scored. ``classes`` lists the types to
    score (default: every type present in either map). Returns ``{"mpq", "per_class": {t: {pq, dq, sq, tp, fp, fn,
    sum_iou}}}``; with no type to score, mpq = 1.0 if both maps are empty else 0.0."""
    if match_iou < 0.5:  # below 0.5 the max-IoU matching would have to be redone within each class
        raise DataError("match_iou", "per-class PQ supports match_iou >= 0.5 only")
    ov = overlap(gt, pred)
    gc = instance_classes(gt_classes, ov.gt_ids, gt, "gt_classes")
    pc = instance_classes(pred_classes, ov.pred_ids, pred, "pred_classes")
    s = pq_stats(ov, match_iou=match_iou)
    mg, mp = s["match_gt"], s["match_pred"]
    same = gc[mg] == pc[mp]
    if classes is None:
        classes = sorted((set(gc.tolist()) | set(pc.tolist())) - {0})
    out = {}
    ious = s["match_iou"]
    for t in classes:  # loop over nucleus types (a handful), not over instances
        hit = same & (gc[mg] == t)
        tp = int(hit.sum())
        fp = int((pc == t).sum()) - tp
        fn = int((gc == t).sum()) - tp
        siou = float(ious[hit].sum())
        q, d, sq = _pq_from_counts(tp, fp, fn, siou)
        out[int(t)] = {"pq": q, "dq": d, "sq": sq, "tp": tp, "fp": fp, "fn": fn, "sum_iou": siou}
    if out:
        mpq = float(np.mean([v["pq"] for v in out.values()]))
    else:
        mpq = 1.0 if ov.n_gt == 0 and ov.n_pred == 0 else 0.0
    return {"mpq": mpq, "per_class": out}


def hu_segmentation(gt, pred=None) -> dict:
    """Segmentation IoU and F-score of Hu et al. (IEEE JBHI 2019, "Unsupervised learning for cell-level visual
    representation in histopathology images with generative adversarial networks", sec. IV-D, Evaluation, with
    eq. 13): a predicted instance I is matched with a gt nucleus G only if |I ∩ G| > 0.5 |G| (so each G has at
    most one match). Over matched pairs the shared pixels are TP; every other predicted pixel is FP, every other
    gt pixel is FN. IoU = TP / (TP + FP + FN), F = 2TP / (2TP + FP + FN)
    (= 2PR / (P + R) of eq. 13). Returns ``{"iou", "fscore", "precision", "recall", "tp", "fp", "fn"}`` (pixel
    counts). Both maps empty: every ratio 1.0."""
    ov = _get_overlap(gt, pred)
    m = ov.inter > 0.5 * ov.gt_area[ov.pair_gt]
    tp = int(ov.inter[m].sum())
    fp = int(ov.pred_area.sum()) - tp
    fn = int(ov.gt_area.sum()) - tp
    r = lambda a, b: 1.0 if b == 0 else a / b
    return {"iou": r(tp, tp + fp + fn), "fscore": r(2 * tp, 2 * tp + fp + fn), "precision": r(tp, tp + fp),
            "recall": r(tp, tp + fn), "tp": tp, "fp": fp, "fn": fn}


def instance_metrics(gt, pred, match_iou: float = 0.5) -> dict:
    """AJI, AJI+, PQ / DQ / SQ and Hu et al.'s IoU / F-score from one overlap table.

    Keys: ``aji, aji_plus, pq, dq, sq`` (floats), ``pq_tp, pq_fp, pq_fn`` (instance counts), ``pq_sum_iou``,
    ``aji_c, aji_u`` (AJI's aggregated intersection and union, for pooling over images), ``hu_iou, hu_fscore``,
    ``n_gt, n_pred``. Definitions and empty-map values: see ``aji``, ``aji_plus``, ``pq``, ``hu_segmentation``."""
    return instance_metrics_from_overlap(overlap(gt, pred), match_iou)


def instance_metrics_from_overlap(ov: Overlap, match_iou: float = 0.5) -> dict:
    """``instance_metrics`` on an already computed ``Overlap``."""
    a, c, u = _aji_counts(ov)
    ap, _, _ = _aji_plus_counts(ov)
    p = pq(ov, match_iou=match_iou)
    h = hu_segmentation(ov)
    return {"aji": a, "aji_plus": ap, "pq": p["pq"], "dq": p["dq"], "sq": p["sq"], "pq_tp": p["tp"],
            "pq_fp": p["fp"], "pq_fn": p["fn"], "pq_sum_iou": p["sum_iou"], "aji_c": c, "aji_u": u,
            "hu_iou": h["iou"], "hu_fscore": h["fscore"], "n_gt": ov.n_gt, "n_pred": ov.n_pred}
