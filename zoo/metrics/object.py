"""Object-level metrics of Qu et al. (ISBI 2019, "Joint segmentation and fine-grained classification of nuclei",
sec. 3.1), whose formal definitions are those of the GlaS challenge (Sirinukunwattana et al., Medical Image
Analysis 35, 2017, sec. 3.2, eqs. 1-5): detection F1, object-level Dice, object-level Hausdorff distance, and
classification accuracy over the detected (true-positive) nuclei.

Objects are the instances of the given label maps (ids > 0, any numbering); the GlaS / Qu code relabels binary masks
into connected components first -- pass such maps if that is wanted. Overlaps come from one contingency table
(``zoo.metrics.labels.overlap``).

Conventions for empty maps (no raise): both maps empty -> F1 = Dice = 1, Hausdorff = 0; objects on one side only
-> F1 = Dice = 0 and Hausdorff = the image diagonal (the largest distance the frame allows; the Qu/GlaS code uses a
fixed cap of 1000 px there).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from zoo.metrics.labels import Overlap, _as_labels, _first_per_group, instance_classes, overlap, remap_label

__all__ = ["detection_f1", "detection_pairs", "object_dice", "object_hausdorff", "hausdorff_distance",
           "classification_accuracy"]


def _ov(gt, pred, overlap_table: Optional[Overlap] = None) -> Overlap:
    if isinstance(gt, Overlap):
        return gt
    return overlap_table if overlap_table is not None else overlap(gt, pred)


def _detection_pairs(ov: Overlap) -> tuple[np.ndarray, np.ndarray]:
    """(pred index, gt index) of the true-positive detections: each prediction takes the gt nucleus it overlaps
    most (ties: smaller gt id) and is a TP when the overlap exceeds half of that nucleus' area."""
    if ov.inter.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    best = _first_per_group(ov.pair_pred, ov.inter, tie=ov.pair_gt)
    tp = best[ov.inter[best] > 0.5 * ov.gt_area[ov.pair_gt[best]]]
    return ov.pair_pred[tp], ov.pair_gt[tp]


def detection_pairs(gt, pred=None) -> tuple[np.ndarray, np.ndarray]:
    """(pred index, gt index) into ``Overlap.pred_ids`` / ``gt_ids`` of the true-positive detections of
    ``detection_f1`` (zoo.metrics.typed scores the types of these pairs); ``gt`` may be an Overlap."""
    return _detection_pairs(_ov(gt, pred))


def detection_f1(gt, pred=None) -> dict:
    """Detection precision / recall / F1 -- Qu et al. sec. 3.1 and GlaS (Sirinukunwattana et al. 2017) eq. 1:
    "A segmented nucleus is considered as true positive if it overlaps with a ground-truth nucleus more than 50% of
    the area of the true nucleus", i.e. prediction S is a TP when |S ∩ G| > 0.5 |G| for the gt nucleus G that S
    overlaps most. The 50 % is of the **ground-truth** area, strictly more (Qu's published code uses >= 0.5; with >
    two disjoint predictions can never both claim one nucleus, so TP <= #gt). Other predictions are FP; gt nuclei
    without a TP are FN. F1 = 2 TP / (#pred + #gt).

    Returns ``{"precision", "recall", "f1", "tp", "fp", "fn"}``. Both maps empty: all ratios 1.0; one side empty:
    f1 = 0 (precision = 1 when there is no prediction, recall = 1 when there is no nucleus)."""
    ov = _ov(gt, pred)
    tp = int(_detection_pairs(ov)[0].size)
    ns, ng = ov.n_pred, ov.n_gt
    r = lambda a, b: 1.0 if b == 0 else a / b
    return {"precision": r(tp, ns), "recall": r(tp, ng), "f1": r(2 * tp, ns + ng), "tp": tp, "fp": ns - tp,
            "fn": ng - tp}


def _best_partner(ov: Overlap, side: str) -> tuple[np.ndarray, np.ndarray]:
    """For every object of ``side`` ("gt" or "pred"), the index of the other map's object it overlaps most
    (ties: smaller id), -1 when it touches nothing; and that overlap's size."""
    n = ov.n_gt if side == "gt" else ov.n_pred
    own, other = (ov.pair_gt, ov.pair_pred) if side == "gt" else (ov.pair_pred, ov.pair_gt)
    partner = np.full(n, -1, np.int64)
    inter = np.zeros(n, np.int64)
    if ov.inter.size:
        best = _first_per_group(own, ov.inter, tie=other)
        partner[own[best]] = other[best]
        inter[own[best]] = ov.inter[best]
    return partner, inter


def object_dice(gt, pred=None) -> float:
    """Object-level Dice -- GlaS (Sirinukunwattana et al. 2017) eq. 3, used by Qu et al. sec. 3.1:

        D_obj = 1/2 [ sum_i gamma_i Dice(G_i, S*(G_i)) + sum_j sigma_j Dice(G*(S_j), S_j) ],
        gamma_i = |G_i| / sum_p |G_p|,  sigma_j = |S_j| / sum_q |S_q|,

    S*(G_i) being the prediction that overlaps G_i most (Dice 0 when none does) and G*(S_j) likewise.
    Both maps empty: 1.0; one side empty: 0.0."""
    ov = _ov(gt, pred)
    if ov.n_gt == 0 and ov.n_pred == 0:
        return 1.0
    if ov.n_gt == 0 or ov.n_pred == 0:
        return 0.0
    pg, ig = _best_partner(ov, "gt")
    pp, ip = _best_partner(ov, "pred")
    area_of_g_partner = np.where(pg >= 0, ov.pred_area[np.maximum(pg, 0)], 0)
    area_of_p_partner = np.where(pp >= 0, ov.gt_area[np.maximum(pp, 0)], 0)
    dice_g = 2.0 * ig / (ov.gt_area + area_of_g_partner)
    dice_p = 2.0 * ip / (ov.pred_area + area_of_p_partner)
    return float(0.5 * ((ov.gt_area * dice_g).sum() / ov.gt_area.sum() + (ov.pred_area * dice_p).sum()
                        / ov.pred_area.sum()))


def hausdorff_distance(a, b) -> float:
    """Symmetric Hausdorff distance between two pixel sets (boolean masks of one shape), in pixels:
    max(max_{x in A} d(x, B), max_{y in B} d(y, A)) -- GlaS eq. 4; pixel centres, Euclidean, computed with
    Euclidean distance transforms on the pair's bounding box (exact: the nearest point of B always lies in it).
    Either set empty: inf."""
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    if not a.any() or not b.any():
        return math.inf
    box = _bbox(a | b)
    return _hd_crop(a[box], b[box])


def _bbox(mask: np.ndarray) -> tuple:
    idx = [np.flatnonzero(mask.any(axis=tuple(j for j in range(mask.ndim) if j != i))) for i in range(mask.ndim)]
    return tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)


def _hd_crop(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.ndimage import distance_transform_edt

    return float(max(distance_transform_edt(~b)[a].max(), distance_transform_edt(~a)[b].max()))


def _boxes(lab: np.ndarray, n: int) -> np.ndarray:
    """(n, 2 * ndim) array of [start_0, stop_0, start_1, stop_1, ...] for labels 1..n of a consecutive label map."""
    from scipy.ndimage import find_objects

    sl = find_objects(lab, max_label=n)
    return np.array([[v for s in box for v in (s.start, s.stop)] for box in sl], np.int64).reshape(n, 2 * lab.ndim)


def object_hausdorff(gt, pred, overlap_table: Optional[Overlap] = None) -> float:
    """Object-level Hausdorff distance -- GlaS (Sirinukunwattana et al. 2017) eq. 5, used by Qu et al. sec. 3.1:

        H_obj = 1/2 [ sum_i gamma_i H(G_i, S*(G_i)) + sum_j sigma_j H(G*(S_j), S_j) ]

    with the weights of ``object_dice``; S*(G_i) is the prediction overlapping G_i most, or -- when none overlaps --
    the prediction nearest to G_i in Hausdorff distance (GlaS; Qu's code searches the same). The distance per pair
    is exact on pixel centres (``hausdorff_distance``) and computed on the pair's bounding box only; the nearest
    non-overlapping object is found exactly by visiting candidates in order of bounding-box gap, a lower bound of
    the Hausdorff distance, and stopping once the gap exceeds the best distance found.
    Both maps empty: 0.0; objects on one side only: the image diagonal."""
    g = _as_labels(gt, "gt")
    p = _as_labels(pred, "pred")
    ov = _ov(g, p, overlap_table)
    if ov.n_gt == 0 and ov.n_pred == 0:
        return 0.0
    if ov.n_gt == 0 or ov.n_pred == 0:
        return float(math.sqrt(sum(s * s for s in g.shape)))
    gl = remap_label(g)
    pl = remap_label(p)
    gbox = _boxes(gl, ov.n_gt)
    pbox = _boxes(pl, ov.n_pred)

    cache: dict = {}  # H of a (gt, pred) pair, shared by both sums (mutual best matches are the common case)

    def side(own_lab, own_box, own_area, oth_lab, oth_box, partner, is_gt):
        total = 0.0
        for i in range(own_area.size):  # one small crop per object (not a full-frame mask per pair)
            j = int(partner[i])
            if j >= 0:
                key = (i, j) if is_gt else (j, i)
                d = cache.get(key)
                if d is None:
                    d = cache[key] = _pair_hd(own_lab, i + 1, own_box[i], oth_lab, j + 1, oth_box[j])
            else:
                d = _nearest_hd(own_lab, i + 1, own_box[i], oth_lab, oth_box)
            total += own_area[i] * d
        return total / own_area.sum()

    pg, _ = _best_partner(ov, "gt")
    pp, _ = _best_partner(ov, "pred")
    hg = side(gl, gbox, ov.gt_area, pl, pbox, pg, True)
    hp = side(pl, pbox, ov.pred_area, gl, gbox, pp, False)
    return float(0.5 * (hg + hp))


def _pair_hd(lab_a, ia, box_a, lab_b, ib, box_b) -> float:
    lo = np.minimum(box_a[0::2], box_b[0::2])
    hi = np.maximum(box_a[1::2], box_b[1::2])
    sl = tuple(slice(int(l), int(h)) for l, h in zip(lo, hi))
    return _hd_crop(lab_a[sl] == ia, lab_b[sl] == ib)


def _nearest_hd(lab_a, ia, box_a, lab_b, boxes_b) -> float:
    # gap between bounding boxes along each axis, in pixel-centre units: a lower bound of any point-to-set distance
    gap = np.maximum(0, np.maximum(boxes_b[:, 0::2] - box_a[1::2] + 1, box_a[0::2] - boxes_b[:, 1::2] + 1))
    lower = np.sqrt((gap.astype(np.float64) ** 2).sum(axis=1))
    best = math.inf
    for j in np.argsort(lower, kind="stable"):
        if lower[j] >= best:
            break
        best = min(best, _pair_hd(lab_a, ia, box_a, lab_b, int(j) + 1, boxes_b[j]))
    return best


def classification_accuracy(gt, pred, gt_classes, pred_classes, overlap_table: Optional[Overlap] = None) -> dict:
    """Fine-grained classification accuracy over true positives -- Qu et al. sec. 3.1: "we only consider the
    accuracy in true positives instead of all ground-truth nuclei". The TPs are the detection pairs of
    ``detection_f1`` (prediction covering > 50 % of a gt nucleus); accuracy = #(pred class == gt class) / #TP.
    Classes in any format of ``zoo.metrics.labels.instance_classes``.

    Returns ``{"accuracy", "correct", "tp"}``; accuracy is NaN when there is no TP (undefined; pool ``correct`` and
    ``tp`` over images instead)."""
    ov = _ov(gt, pred, overlap_table)
    gc = instance_classes(gt_classes, ov.gt_ids, gt, "gt_classes")
    pc = instance_classes(pred_classes, ov.pred_ids, pred, "pred_classes")
    ip, ig = _detection_pairs(ov)
    correct = int((pc[ip] == gc[ig]).sum())
    tp = int(ip.size)
    return {"accuracy": correct / tp if tp else math.nan, "correct": correct, "tp": tp}
