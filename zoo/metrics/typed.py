"""Per-class metrics of joint segmentation and classification -- Qu et al. (ISBI 2019, sec. 3.1, Tables 1-2):

- ``per_class_object_metrics``: Table 1's detection F1, object Dice and object Hausdorff (zoo.metrics.object, GlaS
  eqs. 1-5) for "All" nuclei and for each type, the maps **restricted to one class** (gt nuclei of type t against
  predicted instances of predicted type t; every other object set to background).
- ``classification_over_detections``: Table 2's accuracy over the TRUE-POSITIVE detections ("we only consider the
  accuracy in true positives instead of all ground-truth nuclei"; TP = ``object.detection_pairs``), all and per gt
  type, with the confusion matrix.
- ``centre_detection``: the same two for centre-annotated ground truth (CRCHistoPhenotypes): a centre is detected
  when it falls inside exactly one predicted instance, one-to-one -- the pixel of the (rounded) centre belongs to a
  predicted instance that contains no other centre. Merged nuclei (an instance holding several centres) detect
  none of them: that instance is a false positive and its centres false negatives, so TP <= min(#pred, #centres).
  Precision = TP / #pred, recall = TP / #centres, F1 = 2 TP / (#pred + #centres), all and per type (centres of
  type t against predicted instances of predicted type t, detected by the same rule among themselves).

Classes are nucleus types 1..K as everywhere in histozoo (zoo.metrics.labels.instance_classes formats; 0 =
unknown, never scored as a type, shown as the "unknown" row / column of the confusion matrix). Vectorised: one
overlap table per map pair, ``np.bincount`` for confusion matrices and centre counts; the only Python loops are over
the K types (object Hausdorff keeps zoo.metrics.object's per-object crops).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from zoo.errors import DataError
from zoo.metrics.labels import _as_labels, instance_classes, overlap
from zoo.metrics.object import detection_f1, detection_pairs, object_dice, object_hausdorff

__all__ = ["restrict_to_class", "per_class_object_metrics", "classification_summary", "classification_over_detections",
           "centre_detection", "type_f1"]


def _class_lut(labels: np.ndarray, ids: np.ndarray, cls: np.ndarray, keep: int) -> np.ndarray:
    """``labels`` with every instance whose class is not ``keep`` set to 0 (one lookup, no per-instance loop)."""
    keep_ids = ids[cls == keep]
    if keep_ids.size == 0:
        return np.zeros_like(labels)
    mask = np.isin(labels, keep_ids)
    return np.where(mask, labels, 0)


def restrict_to_class(labels, classes, cls: int, name: str = "labels") -> np.ndarray:
    """The label map keeping only the instances of class ``cls`` (classes in any ``instance_classes`` format)."""
    lab = _as_labels(labels, name)
    ids = np.unique(lab)
    ids = ids[ids > 0]
    return _class_lut(lab, ids, instance_classes(classes, ids, lab, name + " classes"), int(cls))


def _object_row(gt, pred, hausdorff: bool) -> dict:
    ov = overlap(gt, pred)
    row = dict(detection_f1(ov))
    row["dice"] = object_dice(ov)
    if hausdorff:
        row["hausdorff"] = object_hausdorff(gt, pred, ov)
    return row


def per_class_object_metrics(gt, pred, gt_classes, pred_classes, classes: Optional[Sequence[int]] = None,
                             class_names: Sequence[str] = (), hausdorff: bool = True) -> dict:
    """Table 1 of Qu et al.: ``{"All": row, name_t: row, ...}``, row = detection precision / recall / f1 / tp / fp
    / fn (GlaS eq. 1, zoo.metrics.object.detection_f1), "dice" (eq. 3) and "hausdorff" (eq. 5) -- "All" on the
    whole maps, type t on both maps restricted to type t (``restrict_to_class``; gt by its type, prediction by its
    predicted type). ``classes``: the types to score (default 1..len(class_names), else every type present);
    ``class_names[t - 1]`` names type t (default "t"). Empty-map conventions are zoo.metrics.object's."""
    g = _as_labels(gt, "gt")
    p = _as_labels(pred, "pred")
    gids = np.unique(g)
    gids = gids[gids > 0]
    pids = np.unique(p)
    pids = pids[pids > 0]
    gc = instance_classes(gt_classes, gids, g, "gt_classes")
    pc = instance_classes(pred_classes, pids, p, "pred_classes")
    classes = _classes(classes, class_names, gc, pc)
    out = {"All": _object_row(g, p, hausdorff)}
    for t in classes:  # a handful of types
        out[_name(t, class_names)] = _object_row(_class_lut(g, gids, gc, t), _class_lut(p, pids, pc, t), hausdorff)
    return out


def _classes(classes, class_names, *arrays) -> list[int]:
    if classes is not None:
        return [int(t) for t in classes]
    if class_names:
        return list(range(1, len(class_names) + 1))
    return sorted(set(np.concatenate([np.asarray(a, np.int64) for a in arrays]).tolist()) - {0})


def _name(t: int, class_names: Sequence[str]) -> str:
    return str(class_names[t - 1]) if 1 <= t <= len(class_names) else str(t)


def classification_summary(true_classes, pred_classes, num_types: int, class_names: Sequence[str] = ()) -> dict:
    """Accuracy of paired class vectors (the TP detections' gt and predicted types) -- Qu et al. Table 2.

    Pairs whose TRUE class is 0 (unknown type) are not scored. Returns ``{"accuracy", "correct", "n", "per_class":
    {name: {"accuracy", "correct", "n"}}, "labels": ["unknown", names...], "confusion"}``: ``confusion[i][j]`` =
    scored pairs of true class i predicted as j, i, j in 0..K (row 0 stays empty; column 0 = predicted without a
    type). Accuracy of no pair is NaN (pool ``correct`` and ``n`` over images instead)."""
    t = np.asarray(true_classes, np.int64).ravel()
    p = np.asarray(pred_classes, np.int64).ravel()
    if t.shape != p.shape:
        raise DataError("classes", f"{t.size} true classes but {p.size} predicted")
    k = int(num_types)
    if ((t < 0) | (t > k) | (p < 0) | (p > k)).any():
        raise DataError("classes", f"classes must lie in 0..{k}")
    scored = t > 0
    m = np.bincount(t[scored] * (k + 1) + p[scored], minlength=(k + 1) ** 2).reshape(k + 1, k + 1)
    correct = np.diag(m)
    n = m.sum(axis=1)
    acc = lambda c, total: c / total if total else math.nan  # noqa: E731
    per = {_name(i, class_names): {"accuracy": acc(int(correct[i]), int(n[i])), "correct": int(correct[i]),
                                   "n": int(n[i])} for i in range(1, k + 1)}
    tot_c, tot_n = int(correct[1:].sum()), int(n.sum())
    return {"accuracy": acc(tot_c, tot_n), "correct": tot_c, "n": tot_n, "per_class": per,
            "labels": ["unknown"] + [_name(i, class_names) for i in range(1, k + 1)], "confusion": m.tolist()}


def classification_over_detections(gt, pred, gt_classes, pred_classes, num_types: int,
                                   class_names: Sequence[str] = ()) -> dict:
    """Table 2 of Qu et al. on instance ground truth: ``classification_summary`` of the (gt type, predicted type)
    of every true-positive detection (zoo.metrics.object.detection_pairs: prediction covering > 50 % of a gt
    nucleus)."""
    ov = overlap(gt, pred)
    gc = instance_classes(gt_classes, ov.gt_ids, _as_labels(gt, "gt"), "gt_classes")
    pc = instance_classes(pred_classes, ov.pred_ids, _as_labels(pred, "pred"), "pred_classes")
    ip, ig = detection_pairs(ov)
    return classification_summary(gc[ig], pc[ip], num_types, class_names)


def _centre_match(rc: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(matched centre indices, their predicted instance ids) under the one-to-one centre-in-instance rule."""
    if rc.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    inst = pred[rc[:, 0], rc[:, 1]].astype(np.int64)
    inside = inst > 0
    counts = np.bincount(inst[inside], minlength=int(pred.max(initial=0)) + 1)
    hit = inside & (counts[inst] == 1)
    return np.flatnonzero(hit), inst[hit]


def _detection_row(tp: int, n_pred: int, n_true: int) -> dict:
    r = lambda a, b: 1.0 if b == 0 else a / b  # noqa: E731
    return {"precision": r(tp, n_pred), "recall": r(tp, n_true), "f1": r(2 * tp, n_pred + n_true), "tp": tp,
            "fp": n_pred - tp, "fn": n_true - tp}


def centre_detection(points_yx, point_classes, pred, pred_classes, num_types: int,
                     class_names: Sequence[str] = ()) -> dict:
    """Detection and classification against centre annotations (module docstring's one-to-one rule).

    points_yx: (N, 2) centre (row, col) in pixels (rounded to the nearest pixel; centres outside the map never
    match); point_classes: (N,) types 0..K (0 = detected but untyped: counts for detection, not for
    classification). pred: the predicted instance map; pred_classes: their types (``instance_classes`` formats).
    Returns ``{"detection": {"All": row, name_t: row}, "classification": classification_summary(...), "pairs"}``, a
    row being precision / recall / f1 / tp / fp / fn; classification is over the matched centres of known type;
    "pairs" = the types of the matched (true, pred) pairs and of the unmatched centres / instances (``type_f1``)."""
    p = _as_labels(pred, "pred")
    if p.ndim != 2:
        raise DataError("pred", f"centre detection needs a 2-D instance map, got shape {p.shape}")
    pts = np.asarray(points_yx, np.float64).reshape(-1, 2)
    cls = np.asarray(point_classes, np.int64).ravel()
    if cls.size != pts.shape[0]:
        raise DataError("point_classes", f"{pts.shape[0]} centres but {cls.size} classes")
    rc = np.round(pts).astype(np.int64)
    inside = (rc[:, 0] >= 0) & (rc[:, 0] < p.shape[0]) & (rc[:, 1] >= 0) & (rc[:, 1] < p.shape[1])
    pids = np.unique(p)
    pids = pids[pids > 0]
    pc = instance_classes(pred_classes, pids, p, "pred_classes")
    pclass_of = np.zeros(int(p.max(initial=0)) + 1, np.int64)
    pclass_of[pids] = pc

    def detect(sel_pts: np.ndarray, pred_map: np.ndarray, n_pred: int):
        keep = np.flatnonzero(sel_pts & inside)
        idx, inst = _centre_match(rc[keep], pred_map)
        return keep[idx], inst, _detection_row(int(idx.size), n_pred, int(sel_pts.sum()))

    matched, inst, row = detect(np.ones(cls.size, bool), p, int(pids.size))
    detection = {"All": row}
    for t in _classes(None, class_names, cls, pc):  # a handful of types
        restricted = np.where(pclass_of[p] == t, p, 0)
        detection[_name(t, class_names)] = detect(cls == t, restricted, int((pc == t).sum()))[2]
    typed = cls[matched] > 0
    unmatched_true = np.ones(cls.size, bool)
    unmatched_true[matched] = False
    pairs = {"true": cls[matched].tolist(), "pred": pclass_of[inst].tolist(),  # for type_f1, poolable over images
             "unpaired_true": cls[unmatched_true].tolist(),
             "unpaired_pred": pclass_of[pids[~np.isin(pids, inst)]].tolist()}
    return {"detection": detection,
            "classification": classification_summary(cls[matched][typed], pclass_of[inst][typed], num_types,
                                                     class_names),
            "pairs": pairs}


def type_f1(pairs: dict, num_types: int, class_names: Sequence[str] = ()) -> dict:
    """HoVer-Net's detection and classification quality (Graham et al. 2019, section 4.3, eq. 6-7; the reference's
    ``run_nuclei_type_stat``) from paired / unpaired types (``centre_detection``'s "pairs", pooled over images):

        F_d = 2 TP_d / (2 TP_d + FP_d + FN_d)
        F_c^t = 2 (TP_c + TN_c) / (2 (TP_c + TN_c) + 2 FP_c + 2 FN_c + FP_d^t + FN_d^t)

    over the pairs where the true or the predicted type is t (so TN_c is 0, as in the reference): TP_c = both t,
    FP_c = predicted t but true another, FN_c = true t but predicted another; FP_d^t / FN_d^t = unpaired predictions /
    truths of type t. ``accuracy`` = share of pairs whose types agree. Pairs whose true type is 0 (unknown) count for
    F_d only. Returns ``{"f_d", "accuracy", "f_c": {name: value}, "n_pairs"}`` (NaN where a denominator is 0)."""
    t = np.asarray(pairs["true"], np.int64)
    p = np.asarray(pairs["pred"], np.int64)
    ut = np.asarray(pairs["unpaired_true"], np.int64)
    up = np.asarray(pairs["unpaired_pred"], np.int64)
    if t.shape != p.shape:
        raise DataError("pairs", f"{t.size} true types but {p.size} predicted")
    ratio = lambda a, b: a / b if b else math.nan  # noqa: E731
    f_d = ratio(2 * t.size, 2 * t.size + up.size + ut.size)
    known = t > 0
    t, p = t[known], p[known]
    f_c = {}
    for k in range(1, int(num_types) + 1):
        sel = (t == k) | (p == k)
        tp = int(((t == k) & (p == k) & sel).sum())
        fp = int(((t != k) & (p == k)).sum())
        fn = int(((t == k) & (p != k)).sum())
        f_c[_name(k, class_names)] = ratio(2 * tp, 2 * tp + 2 * fp + 2 * fn + int((up == k).sum()) + int((ut == k).sum()))
    return {"f_d": f_d, "accuracy": ratio(int((t == p).sum()), t.size), "f_c": f_c, "n_pairs": int(known.sum())}
