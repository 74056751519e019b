"""Instance-level segmentation metrics: AJI, AJI+, panoptic quality (PQ = DQ x SQ), per-class PQ / mPQ, and Hu et
al.'s segmentation IoU / F-score.

Every metric here is computed from one table of overlaps (``overlap(gt, pred)``): the pixel count of every
(ground-truth id, predicted id) pair that meets, read off in one ``np.bincount`` over ``gt * K + pred`` (or
``np.unique`` when the ids are too large for a dense table), plus the area of every instance. Intersection, union
and IoU of all touching pairs follow at once; no mask is ever built per instance.

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

import dataclasses
from typing import Mapping, Optional

import numpy as np

from zoo.errors import DataError

__all__ = ["Overlap", "overlap", "remap_label", "aji", "aji_plus", "pq", "pq_stats", "per_class_pq", "hu_segmentation",
           "instance_metrics", "segmentation_report", "instance_classes"]

# a dense (n_gt + 1) x (n_pred + 1) bincount table is used up to this many cells, np.unique above it
_DENSE_LIMIT = 1 << 24


def _as_labels(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        return a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        if np.issubdtype(a.dtype, np.floating) and a.size and np.all(np.mod(a, 1) == 0):
            a = a.astype(np.int64)
        else:
            raise DataError(name, f"a label map must hold integers, got dtype {a.dtype}")
    if a.size and a.min() < 0:
        raise DataError(name, "a label map must not hold negative ids")
    return a


def _ids_and_areas(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Sorted non-zero ids, their pixel counts, and (when ids are small enough for a lookup table) a table
    ``lut`` with ``lut[id] = index + 1`` (0 for background / absent ids)."""
    if flat.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(1, np.int64)
    top = int(flat.max())
    if top <= 4 * flat.size + 65536:
        counts = np.bincount(flat)
        ids = np.flatnonzero(counts[1:]) + 1
        lut = np.zeros(top + 1, np.int64)
        lut[ids] = np.arange(1, ids.size + 1)
        return ids.astype(np.int64), counts[ids].astype(np.int64), lut
    ids, counts = np.unique(flat, return_counts=True)
    keep = ids > 0
    return ids[keep].astype(np.int64), counts[keep].astype(np.int64), None


def _index(flat: np.ndarray, ids: np.ndarray, lut: Optional[np.ndarray]) -> np.ndarray:
    """Map raw ids to 1-based consecutive indices (0 stays background)."""
    if lut is not None:
        return lut[flat]
    return np.searchsorted(ids, flat) + 1 - (flat == 0)  # ids are sorted and exclude 0; background -> 0


@dataclasses.dataclass(frozen=True)
class Overlap:
    """All (gt, pred) overlaps of two label maps.

    gt_ids, pred_ids: the original non-zero ids, sorted; gt_area, pred_area: their pixel counts.
    pair_gt, pair_pred: indices (into gt_ids / pred_ids) of every pair that shares at least one pixel;
    inter: the shared pixel count of each pair. union and iou follow.
    """

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    gt_area: np.ndarray
    pred_area: np.ndarray
    pair_gt: np.ndarray
    pair_pred: np.ndarray
    inter: np.ndarray

    @property
    def n_gt(self) -> int:
        return int(self.gt_ids.size)

    @property
    def n_pred(self) -> int:
        return int(self.pred_ids.size)

    @property
    def union(self) -> np.ndarray:
        return self.gt_area[self.pair_gt] + self.pred_area[self.pair_pred] - self.inter

    @property
    def iou(self) -> np.ndarray:
        return self.inter / self.union


def overlap(gt, pred) -> Overlap:
    """The contingency table of two label maps, read in one pass: ``bincount(g * (n_pred + 1) + p)`` over the
    pixels where both are foreground (g, p = consecutive indices of the ids), or ``np.unique`` of the same keys
    when the dense table would exceed 2**24 cells."""
    g = _as_labels(gt, "gt")
    p = _as_labels(pred, "pred")
    if g.shape != p.shape:
        raise DataError("pred", f"label map shape {p.shape} differs from the ground truth's {g.shape}")
    gf = g.ravel()
    pf = p.ravel()
    gids, garea, glut = _ids_and_areas(gf)
    pids, parea, plut = _ids_and_areas(pf)
    both = (gf > 0) & (pf > 0)
    gi = _index(gf[both], gids, glut)
    pi = _index(pf[both], pids, plut)
    width = pids.size + 1
    keys = gi.astype(np.int64) * width + pi
    cells = (gids.size + 1) * width
    if cells <= _DENSE_LIMIT:
        counts = np.bincount(keys, minlength=cells)
        nz = np.flatnonzero(counts)
        inter = counts[nz]
    else:
        nz, inter = np.unique(keys, return_counts=True)
    return Overlap(gids, pids, garea, parea, (nz // width - 1).astype(np.int64), (nz % width - 1).astype(np.int64),
                   inter.astype(np.int64))


def remap_label(labels) -> np.ndarray:
    """Renumber a label map's ids to 1..n in increasing order of the original id (0 stays 0), vectorised."""
    a = _as_labels(labels, "labels")
    flat = a.ravel()
    ids, _, lut = _ids_and_areas(flat)
    return _index(flat, ids, lut).reshape(a.shape).astype(np.int32)


def _get_overlap(gt, pred) -> Overlap:
    return gt if isinstance(gt, Overlap) else overlap(gt, pred)


def _first_per_group(group: np.ndarray, *keys_desc: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Row index of the best row per value of ``group``: largest ``keys_desc[0]``, then ``keys_desc[1]``...,
    then smallest ``tie``."""
    order = np.lexsort((tie,) + tuple(-k for k in reversed(keys_desc)) + (group,))
    g = group[order]
    first = np.ones(g.size, bool)
    first[1:] = g[1:] != g[:-1]
    return order[first]


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


def instance_classes(classes, ids: np.ndarray, labels: Optional[np.ndarray] = None, name: str = "classes"):
    """The class of each id in ``ids`` from one of: a mapping ``{id: class}``; a ``(ids, classes)`` pair of
    sequences (the record schema's label/instance_ids + label/instance_classes); a 1-D array indexed by id
    (``classes[id]``); or a per-pixel class map of the label map's shape (each instance takes its majority class,
    ties to the smaller class; class 0 is background / unknown). Missing ids get class 0."""
    ids = np.asarray(ids, np.int64)
    if isinstance(classes, Mapping):
        return np.array([int(classes.get(int(i), 0)) for i in ids.tolist()], np.int64)
    if isinstance(classes, tuple) and len(classes) == 2:
        cid = np.asarray(classes[0], np.int64).ravel()
        ccl = np.asarray(classes[1], np.int64).ravel()
        if cid.size != ccl.size:
            raise DataError(name, f"{cid.size} instance ids but {ccl.size} classes")
        out = np.zeros(ids.size, np.int64)
        if cid.size:
            order = np.argsort(cid)
            cid, ccl = cid[order], ccl[order]
            pos = np.minimum(np.searchsorted(cid, ids), cid.size - 1)
            hit = cid[pos] == ids
            out[hit] = ccl[pos[hit]]
        return out
    arr = np.asarray(classes)
    if labels is not None and arr.shape == np.shape(labels) and arr.ndim >= 2:
        lab = _as_labels(labels, name).ravel()
        cm = _as_labels(arr, name).ravel()
        fg = lab > 0
        if ids.size == 0:
            return np.zeros(0, np.int64)
        idx = np.searchsorted(ids, lab[fg])
        ncls = int(cm.max()) + 1 if cm.size else 1
        table = np.bincount(idx * ncls + cm[fg], minlength=ids.size * ncls).reshape(ids.size, ncls)
        return table.argmax(axis=1).astype(np.int64)
    if arr.ndim == 1:
        out = np.zeros(ids.size, np.int64)
        ok = ids < arr.size
        out[ok] = arr[ids[ok]]
        return out
    raise DataError(name, "classes must be a {id: class} mapping, an (ids, classes) pair, a 1-D array indexed by "
                          f"id, or a class map of the label map's shape; got an array of shape {arr.shape}")


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
    """Segmentation IoU and F-score of Hu et al. (IEEE TMI 2019, "Unsupervised learning for cell-level visual
    representation", sec. IV-E, Evaluation, with eq. 13): a predicted instance I is matched with a gt nucleus G
    only if |I ∩ G| > 0.5 |G| (so each G has at most one match). Over matched pairs the shared pixels are TP; every
    other predicted pixel is FP, every other gt pixel is FN. IoU = TP / (TP + FP + FN), F = 2TP / (2TP + FP + FN)
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


def segmentation_report(gt_instances, pred_instances, gt_classes=None, pred_classes=None,
                        hausdorff: bool = True) -> dict:
    """Pixel, object and instance metrics of one image in one flat dict (the evaluation core's entry point).

    Keys (all scalars):
      pixel level (zoo.metrics.pixel, foreground = id > 0): ``pixel_accuracy, pixel_precision, pixel_recall,
        pixel_specificity, pixel_dice`` (= pixel F1, the "Dice" of nuclei papers), ``pixel_jaccard`` (IU),
        ``pixel_performance`` (Naylor's (TPR + TNR) / 2);
      object level (zoo.metrics.object, Qu et al. / GlaS): ``det_precision, det_recall, det_f1, det_tp, det_fp,
        det_fn`` (> 50 % of a gt nucleus covered), ``obj_dice``, ``obj_hausdorff`` (omitted when
        ``hausdorff=False``);
      instance level (this module): ``aji, aji_plus, pq, dq, sq, pq_tp, pq_fp, pq_fn, pq_sum_iou, aji_c, aji_u,
        hu_iou, hu_fscore, n_gt, n_pred``;
      with both ``gt_classes`` and ``pred_classes`` (formats: ``instance_classes``): ``cls_accuracy`` (Qu: accuracy
        over detection true positives, NaN when there is none), ``cls_tp``, ``mpq`` and ``pq_class_<t>`` per type.
    """
    from zoo.metrics import object as obj
    from zoo.metrics.pixel import pixel_metrics

    ov = overlap(gt_instances, pred_instances)
    out = {}
    px = pixel_metrics(gt_instances, pred_instances)
    for k in ("accuracy", "precision", "recall", "specificity", "dice", "jaccard", "performance"):
        out[f"pixel_{k}"] = px[k]
    det = obj.detection_f1(ov)
    out.update({"det_precision": det["precision"], "det_recall": det["recall"], "det_f1": det["f1"],
                "det_tp": det["tp"], "det_fp": det["fp"], "det_fn": det["fn"]})
    out["obj_dice"] = obj.object_dice(ov)
    if hausdorff:
        out["obj_hausdorff"] = obj.object_hausdorff(gt_instances, pred_instances, overlap_table=ov)
    out.update(instance_metrics_from_overlap(ov))
    if gt_classes is not None and pred_classes is not None:
        ca = obj.classification_accuracy(gt_instances, pred_instances, gt_classes, pred_classes, overlap_table=ov)
        out["cls_accuracy"] = ca["accuracy"]
        out["cls_tp"] = ca["tp"]
        pc = per_class_pq(gt_instances, pred_instances, gt_classes, pred_classes)
        out["mpq"] = pc["mpq"]
        for t, v in pc["per_class"].items():
            out[f"pq_class_{t}"] = v["pq"]
    return out


def instance_metrics_from_overlap(ov: Overlap, match_iou: float = 0.5) -> dict:
    """``instance_metrics`` on an already computed ``Overlap``."""
    a, c, u = _aji_counts(ov)
    ap, _, _ = _aji_plus_counts(ov)
    p = pq(ov, match_iou=match_iou)
    h = hu_segmentation(ov)
    return {"aji": a, "aji_plus": ap, "pq": p["pq"], "dq": p["dq"], "sq": p["sq"], "pq_tp": p["tp"],
            "pq_fp": p["fp"], "pq_fn": p["fn"], "pq_sum_iou": p["sum_iou"], "aji_c": c, "aji_u": u,
            "hu_iou": h["iou"], "hu_fscore": h["fscore"], "n_gt": ov.n_gt, "n_pred": ov.n_pred}
