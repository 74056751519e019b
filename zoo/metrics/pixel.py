"""Pixel-level (semantic) segmentation metrics of a foreground mask against the ground truth.

Definitions: Naylor et al. 2017 (TNBC paper, sec. 4 and Table 1: accuracy, IU, recall, precision, F1 and
"performance" = (TPR + TNR) / 2), Long et al. 2015 (FCN, sec. 5 "Metrics": mean IU) and Yuan & Suh (sec. 3.2
"Evaluation": pixel-wise sensitivity, specificity, Dice and Jaccard). With TP, FP, FN, TN counted over pixels:

    accuracy    = (TP + TN) / (TP + FP + FN + TN)
    sensitivity = recall = TPR = TP / (TP + FN)
    specificity = TNR = TN / (TN + FP)
    precision   = TP / (TP + FP)
    F1 = Dice   = 2 TP / (2 TP + FP + FN)            (= 2 P R / (P + R) when P + R > 0)
    Jaccard = nucleus IU = TP / (TP + FP + FN)
    mean IU = (TP / (TP + FP + FN) + TN / (TN + FN + FP)) / 2   (Long et al.; Naylor et al. Table 1 "IU")
    performance = (TPR + TNR) / 2                    (Naylor et al.)

Naylor et al.'s Table 1 "IU" is the mean IU over the two classes, not the nucleus Jaccard: per image the Jaccard is
never above F1 (J = F1 / (2 - F1)), yet the table prints IU 0.857 beside F1 0.866 (FCN); and rebuilding pixel
fractions from its own precision, recall and accuracy gives mean IU 0.858 (FCN) and 0.760 (PangNet) against the
printed 0.857 / 0.759, while the nucleus Jaccard would be 0.764 / 0.590.

Inputs are masks or label maps of the same shape; any value > 0 is foreground (so instance maps work directly).

Empty cases: a ratio whose denominator counts no pixel (0 / 0) is **1.0** -- there was nothing to get wrong.
So two empty masks have Dice = Jaccard = precision = recall = 1; an empty prediction against a non-empty truth has
recall 0, Dice 0, Jaccard 0 and precision 1 (it made no false call); an all-foreground image has specificity 1.
"""

from __future__ import annotations

import numpy as np

from zoo.errors import DataError

__all__ = ["confusion_counts", "accuracy", "sensitivity", "recall", "specificity", "precision", "f1", "dice",
           "jaccard", "mean_iou", "performance", "pixel_metrics"]


def _ratio(num: float, den: float) -> float:
    """num / den with the module's convention 0 / 0 = 1.0."""
    return 1.0 if den == 0 else float(num) / float(den)


def confusion_counts(gt, pred) -> tuple[int, int, int, int]:
    """Pixel counts ``(tp, fp, fn, tn)`` of foreground (> 0) in ``pred`` against ``gt`` (same shape)."""
    g = np.asarray(gt)
    p = np.asarray(pred)
    if g.shape != p.shape:
        raise DataError("pred", f"shape {p.shape} differs from the ground truth's {g.shape}")
    g = g > 0
    p = p > 0
    n = g.size
    tp = int(np.count_nonzero(g & p))
    ng = int(np.count_nonzero(g))
    npred = int(np.count_nonzero(p))
    fp = npred - tp
    fn = ng - tp
    return tp, fp, fn, n - tp - fp - fn


def accuracy(gt, pred) -> float:
    """(TP + TN) / N -- Naylor et al. 2017, Table 1 "Accuracy". Empty image (N = 0): 1.0."""
    tp, fp, fn, tn = confusion_counts(gt, pred)
    return _ratio(tp + tn, tp + fp + fn + tn)


def sensitivity(gt, pred) -> float:
    """TPR = TP / (TP + FN) -- Yuan & Suh sec. 3.2 sensitivity, Naylor et al. Table 1 "Recall".
    No foreground in ``gt``: 1.0."""
    tp, fp, fn, tn = confusion_counts(gt, pred)
    return _ratio(tp, tp + fn)


recall = sensitivity


def specificity(gt, pred) -> float:
    """TNR = TN / (TN + FP) -- Yuan & Suh sec. 3.2 specificity. No background in ``gt``: 1.0."""
    tp, fp, fn, tn = confusion_counts(gt, pred)
    return _ratio(tn, tn + fp)


def precision(gt, pred) -> float:
    """TP / (TP + FP) -- Naylor et al. 2017, Table 1 "Precision". Empty ``pred``: 1.0 (no false call)."""
    tp, fp, fn, tn = confusion_counts(gt, pred)
    return _ratio(tp, tp + fp)


def f1(gt, pred) -> float:
    """F1 = Dice = 2 TP / (2 TP + FP + FN) -- Naylor et al. Table 1 "F1", Yuan & Suh sec. 3.2 Dice score.
    Both masks empty: 1.0."""
    tp, fp, fn, tn = confusion_counts(gt, pred)
    return _ratio(2 * tp, 2 * tp + fp + fn)


dice = f1


def jaccard(gt, pred) -> float:
    """Jaccard = nucleus IU = TP / (TP + FP + FN) -- Yuan & Suh sec. 3.2 Jaccard similarity (the IoU of the nucleus
    class alone; Naylor et al.'s "IU" is ``mean_iou``). Both masks empty: 1.0."""
    tp, fp, fn, tn = confusion_counts(gt, pred)
    return _ratio(tp, tp + fp + fn)


def _mean_iou(tp: int, fp: int, fn: int, tn: int) -> float:
    return 0.5 * (_ratio(tp, tp + fp + fn) + _ratio(tn, tn + fn + fp))


def mean_iou(gt, pred) -> float:
    """Mean IU over the two classes (background, nucleus) -- Long et al. 2015 (FCN, "Fully convolutional networks
    for semantic segmentation", sec. 5 "Metrics": mean IU = (1 / n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)) with
    n_cl = 2, as Naylor et al. 2017 Table 1 "IU" reports it (module docstring):

        mean IU = ( TP / (TP + FP + FN) + TN / (TN + FN + FP) ) / 2.

    Each class IU follows the 0 / 0 = 1 convention (an all-background image predicted all-background: 1.0)."""
    return _mean_iou(*confusion_counts(gt, pred))


def performance(gt, pred) -> float:
    """(TPR + TNR) / 2 -- Naylor et al. 2017, sec. 4 ("a performance score which is the mean between true positive
    rate and true negative rate"), Table 1 "Performance". Each rate follows the 0 / 0 = 1 convention."""
    tp, fp, fn, tn = confusion_counts(gt, pred)
    return 0.5 * (_ratio(tp, tp + fn) + _ratio(tn, tn + fp))


def pixel_metrics(gt, pred) -> dict:
    """Every pixel-level metric in one pass over the masks.

    Keys: ``accuracy, precision, recall`` (= ``sensitivity``), ``specificity, f1`` (= ``dice``), ``jaccard``,
    ``mean_iou``, ``performance`` (floats, definitions in the module docstring) and the counts ``tp, fp, fn, tn``
    (ints).
    """
    tp, fp, fn, tn = confusion_counts(gt, pred)
    rec = _ratio(tp, tp + fn)
    spec = _ratio(tn, tn + fp)
    f = _ratio(2 * tp, 2 * tp + fp + fn)
    return {
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
        "precision": _ratio(tp, tp + fp),
        "recall": rec,
        "sensitivity": rec,
        "specificity": spec,
        "f1": f,
        "dice": f,
        "jaccard": _ratio(tp, tp + fp + fn),
        "mean_iou": _mean_iou(tp, fp, fn, tn),
        "performance": 0.5 * (rec + spec),
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
    }
