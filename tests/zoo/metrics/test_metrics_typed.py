"""zoo.metrics.typed (Qu et al. Tables 1-2): per-class object metrics, classification over true-positive detections
with its confusion matrix, and centre-in-instance detection -- on hand-worked maps."""

import math

import numpy as np
import pytest

from zoo.errors import DataError
from zoo.metrics.object import detection_f1, object_dice
from zoo.metrics.typed import (centre_detection, type_f1, classification_over_detections, classification_summary,
                               per_class_object_metrics, restrict_to_class)

NAMES = ("tumour", "lymphocyte")


def _maps():
    """10x10. gt: A (id 1, type 1) rows 0-3 x cols 0-3 (16 px); B (id 2, type 2) rows 6-9 x cols 6-9 (16 px);
    C (id 3, type 2) rows 0-1 x cols 7-9 (6 px).
    pred: a (id 5, predicted type 1) = A exactly; b (id 6, predicted type 1) rows 6-9 x cols 7-9 (12 of B's 16 px,
    > 50 %: a TP, wrong type); c (id 7, predicted type 2) rows 4-5 x cols 0-1 (touches nothing: FP)."""
    gt = np.zeros((10, 10), np.int32)
    gt[0:4, 0:4], gt[6:10, 6:10], gt[0:2, 7:10] = 1, 2, 3
    pred = np.zeros((10, 10), np.int32)
    pred[0:4, 0:4], pred[6:10, 7:10], pred[4:6, 0:2] = 5, 6, 7
    return gt, pred, {1: 1, 2: 2, 3: 2}, {5: 1, 6: 1, 7: 2}


def test_restrict_to_class():
    gt, pred, gcl, pcl = _maps()
    np.testing.assert_array_equal(restrict_to_class(gt, gcl, 2), np.where(gt >= 2, gt, 0))
    np.testing.assert_array_equal(restrict_to_class(pred, pcl, 1), np.where(pred <= 6, pred, 0))
    assert not restrict_to_class(pred, pcl, 3).any()


def test_per_class_object_metrics_by_hand():
    gt, pred, gcl, pcl = _maps()
    out = per_class_object_metrics(gt, pred, gcl, pcl, class_names=NAMES)
    assert list(out) == ["All", "tumour", "lymphocyte"]
    # All: TP a-A, b-B; FP c; FN C -> F1 = 2*2 / (3 + 3)
    a = out["All"]
    assert (a["tp"], a["fp"], a["fn"]) == (2, 1, 1) and a["f1"] == pytest.approx(4 / 6)
    assert a["dice"] == pytest.approx(object_dice(gt, pred))
    # tumour: gt {A}, pred {a, b}: a-A TP, b FP (B is not a tumour) -> F1 = 2 / 3; Dice: gt side A: 1 (weight 1);
    # pred side: a (16 px) Dice 1, b (12 px) no partner 0 -> (16 * 1 + 12 * 0) / 28; D = (1 + 16/28) / 2
    t = out["tumour"]
    assert (t["tp"], t["fp"], t["fn"]) == (1, 1, 0) and t["f1"] == pytest.approx(2 / 3)
    assert t["dice"] == pytest.approx(0.5 * (1 + 16 / 28))
    # lymphocyte: gt {B, C}, pred {c}: no TP -> F1 = 0; Dice 0 (nothing overlaps)
    ly = out["lymphocyte"]
    assert (ly["tp"], ly["fp"], ly["fn"]) == (0, 1, 2) and ly["f1"] == 0.0 and ly["dice"] == 0.0
    assert math.isfinite(ly["hausdorff"]) and ly["hausdorff"] > 0
    assert t["hausdorff"] >= 0 and a["hausdorff"] >= 0
    # a type absent from both maps: the both-empty convention (F1 = Dice = 1, Hausdorff = 0)
    three = per_class_object_metrics(gt, pred, gcl, pcl, classes=[3], hausdorff=True)["3"]
    assert (three["f1"], three["dice"], three["hausdorff"]) == (1.0, 1.0, 0.0)


def test_classification_over_true_positive_detections_by_hand():
    gt, pred, gcl, pcl = _maps()
    out = classification_over_detections(gt, pred, gcl, pcl, num_types=2, class_names=NAMES)
    # TPs: (A type 1 -> a type 1) correct; (B type 2 -> b type 1) wrong; C (FN) and c (FP) are not scored
    assert (out["correct"], out["n"], out["accuracy"]) == (1, 2, 0.5)
    assert out["per_class"]["tumour"] == {"accuracy": 1.0, "correct": 1, "n": 1}
    assert out["per_class"]["lymphocyte"] == {"accuracy": 0.0, "correct": 0, "n": 1}
    assert out["labels"] == ["unknown", "tumour", "lymphocyte"]
    assert out["confusion"] == [[0, 0, 0], [0, 1, 0], [0, 1, 0]]
    assert detection_f1(gt, pred)["tp"] == out["n"]


def test_classification_summary_unknown_and_errors():
    s = classification_summary([1, 2, 2, 0, 3], [1, 2, 0, 2, 3], num_types=3)
    # the true-unknown pair is not scored; a prediction without type (0) counts as wrong
    assert (s["correct"], s["n"]) == (3, 4) and s["per_class"]["2"]["accuracy"] == 0.5
    assert s["confusion"][2] == [1, 0, 1, 0] and s["confusion"][0] == [0, 0, 0, 0]
    empty = classification_summary([], [], num_types=2)
    assert math.isnan(empty["accuracy"]) and empty["n"] == 0
    with pytest.raises(DataError):
        classification_summary([1, 5], [1, 1], num_types=2)
    with pytest.raises(DataError):
        classification_summary([1], [1, 1], num_types=2)


def test_centre_detection_one_to_one_by_hand():
    pred = np.zeros((10, 10), np.int32)
    pred[0:4, 0:4] = 1   # predicted type 1, holds centre 0 only -> TP
    pred[5:9, 0:4] = 2   # predicted type 2, holds centres 1 and 2 (merged nuclei) -> FP, both centres FN
    pred[0:3, 6:9] = 3   # predicted type 2, holds centre 3 (untyped) -> TP for detection, not classified
    pred[6:9, 6:9] = 4   # predicted type 1, no centre -> FP
    pts = [[1.2, 1.4],   # 0: type 1 in instance 1
           [6.0, 1.0],   # 1: type 2 in instance 2
           [7.6, 2.4],   # 2: type 1 in instance 2 (rounds to (8, 2))
           [1.0, 7.0],   # 3: type 0 (untyped) in instance 3
           [4.4, 5.4],   # 4: type 2 in background -> FN
           [12.0, 3.0]]  # 5: type 1 outside the map -> FN
    cls = [1, 2, 1, 0, 2, 1]
    out = centre_detection(pts, cls, pred, {1: 1, 2: 2, 3: 2, 4: 1}, num_types=2, class_names=NAMES)
    a = out["detection"]["All"]
    assert (a["tp"], a["fp"], a["fn"]) == (2, 2, 4)
    assert a["precision"] == 0.5 and a["recall"] == pytest.approx(2 / 6) and a["f1"] == pytest.approx(4 / 10)
    # tumour: centres {0, 2, 5} vs predicted-tumour instances {1, 4}: centre 0 in 1 (TP); 2 lies in instance 2,
    # which is not a predicted tumour -> FN; 5 outside -> FN; instance 4 FP
    t = out["detection"]["tumour"]
    assert (t["tp"], t["fp"], t["fn"]) == (1, 1, 2)
    # lymphocyte: centres {1, 4} vs instances {2, 3}: centre 1 alone in instance 2 now (centre 2 is not a
    # lymphocyte) -> TP; 4 in background FN; instance 3 holds only the untyped centre -> FP
    ly = out["detection"]["lymphocyte"]
    assert (ly["tp"], ly["fp"], ly["fn"]) == (1, 1, 1)
    c = out["classification"]
    # matched centres: 0 (type 1 -> instance 1 type 1, correct) and 3 (untyped: not scored)
    assert (c["correct"], c["n"], c["accuracy"]) == (1, 1, 1.0)
    assert c["confusion"] == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    # pairs: matched (centre 0 -> instance 1 type 1; centre 3 -> instance 3 type 2); unmatched centres 1, 2, 4, 5;
    # unmatched instances 2 (type 2) and 4 (type 1)
    assert out["pairs"] == {"true": [1, 0], "pred": [1, 2], "unpaired_true": [2, 1, 2, 1], "unpaired_pred": [2, 1]}
    h = type_f1(out["pairs"], 2, NAMES)
    assert h["f_d"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 4)) and h["accuracy"] == 1.0 and h["n_pairs"] == 1
    # type 1: TP_c 1, FP_c 0, FN_c 0, FP_d 1 (instance 4), FN_d 2 (centres 2, 5) -> 2 / (2 + 3)
    # type 2: no typed pair of type 2, FP_d 1 (instance 2), FN_d 2 (centres 1, 4) -> 0 / 3
    assert h["f_c"] == {"tumour": pytest.approx(2 / 5), "lymphocyte": 0.0}


def test_type_f1_by_hand():
    """HoVer-Net's F_c with the reference's weights (2, 2, 1, 1): 6 pairs of 3 types plus unpaired ones."""
    pairs = {"true": [1, 1, 1, 2, 2, 3], "pred": [1, 1, 2, 2, 3, 3], "unpaired_true": [1, 3], "unpaired_pred": [2]}
    h = type_f1(pairs, 3)
    assert h["f_d"] == pytest.approx(12 / (12 + 1 + 2)) and h["accuracy"] == pytest.approx(4 / 6)
    # type 1: tp 2, fp 0, fn 1 (1 -> 2), FP_d 0, FN_d 1: 4 / (4 + 2 + 1)
    # type 2: tp 1, fp 1 (1 -> 2), fn 1 (2 -> 3), FP_d 1, FN_d 0: 2 / (2 + 2 + 2 + 1)
    # type 3: tp 1, fp 1 (2 -> 3), fn 0, FP_d 0, FN_d 1: 2 / (2 + 2 + 1)
    assert h["f_c"] == {"1": pytest.approx(4 / 7), "2": pytest.approx(2 / 7), "3": pytest.approx(2 / 5)}
    assert math.isnan(type_f1({"true": [], "pred": [], "unpaired_true": [], "unpaired_pred": []}, 1)["f_d"])
    with pytest.raises(DataError, match="pairs"):
        type_f1({"true": [1], "pred": [], "unpaired_true": [], "unpaired_pred": []}, 1)


def test_centre_detection_empty_cases():
    empty = centre_detection(np.zeros((0, 2)), [], np.zeros((5, 5), np.int32), {}, num_types=2)
    assert empty["detection"]["All"]["f1"] == 1.0 and math.isnan(empty["classification"]["accuracy"])
    none = centre_detection([[1, 1]], [1], np.zeros((5, 5), np.int32), {}, num_types=1)
    assert none["detection"]["All"] == {"precision": 1.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "fn": 1}
    with pytest.raises(DataError):
        centre_detection([[1, 1]], [1, 2], np.zeros((5, 5), np.int32), {}, num_types=2)


def test_class_map_votes_give_instance_types():
    """Predicted types from a per-pixel class map (majority of typed pixels), as zoo.inference produces them."""
    gt, pred, gcl, _ = _maps()
    cmap = np.where(pred == 5, 1, 0) + np.where(pred == 6, 2, 0) + np.where(pred == 7, 2, 0)
    out = classification_over_detections(gt, pred, gcl, cmap, num_types=2)
    assert (out["correct"], out["n"]) == (2, 2)
