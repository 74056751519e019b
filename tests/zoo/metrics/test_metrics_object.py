"""Qu et al. / GlaS object-level metrics on hand-made label maps (case A: tests/zoo/metrics/conftest.py)."""

import math

import numpy as np
import pytest

from zoo.metrics import object as om


def test_detection_f1_merge_split(case_a):
    GT, PR = case_a
    # each pred takes the gt it overlaps most: 7 -> A (tie with B, smaller id): 6 > 0.5 * 6 -> TP
    # 3 -> C: 4 > 0.5 * 8 ? no (exactly half) -> FP; 5 likewise FP; 9 touches nothing -> FP
    # TP 1, #pred 4, #gt 4 -> F1 = 2 / 8
    r = om.detection_f1(GT, PR)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 3, 3)
    assert r["f1"] == pytest.approx(0.25) and r["precision"] == pytest.approx(0.25)


def test_detection_50_percent_is_of_the_ground_truth_area():
    gt = np.zeros((8, 8), int)
    gt[3:5, 3:5] = 1                 # small nucleus, 4 px
    big = np.zeros((8, 8), int)
    big[1:7, 1:7] = 2                # 36 px prediction covering all of it: 4 > 2 -> TP (although IoU = 4/36)
    assert om.detection_f1(gt, big)["tp"] == 1
    gt2 = np.zeros((8, 8), int)
    gt2[1:7, 1:7] = 1                # big nucleus, 36 px
    small = np.zeros((8, 8), int)
    small[3:5, 3:5] = 2              # prediction entirely inside it but covering 4/36 < 50 % -> FP
    assert om.detection_f1(gt2, small)["tp"] == 0


def test_object_dice(case_a):
    GT, PR = case_a
    # gt side: A-7 2*6/(6+12) = 2/3, B-7 2/3, C-3 2*4/(8+4) = 2/3, D none 0; weights 6,6,8,2 / 22 -> (20/22)(2/3)
    # pred side: 7-A 2/3, 3-C 2/3, 5-C 2/3, 9 none 0; weights 12,4,4,2 / 22 -> (20/22)(2/3)
    assert om.object_dice(GT, PR) == pytest.approx(20 / 33)


def test_object_hausdorff_with_nearest_object_for_misses(case_a):
    GT, PR = case_a
    # gt side: H(A,7) = 3 (col 5 of 7 is 3 px from A), H(B,7) = 3, H(C,3) = 2,
    #   D touches nothing -> nearest pred by Hausdorff is 5: farthest point (3,2) of 5 to D's (5,6) = sqrt(4+16)
    #   (candidates: 9 -> 6, 3 -> sqrt(40), 7 -> sqrt(61))
    # pred side: H(7,A) = 3, H(3,C) = 2, H(5,C) = 2,
    #   9 touches nothing -> nearest gt is C: farthest point (3,3) of C to 9's (5,1) = sqrt(4+4)   (D: 6)
    # H_obj = 1/2 [ (6*3 + 6*3 + 8*2 + 2*sqrt 20)/22 + (12*3 + 4*2 + 4*2 + 2*sqrt 8)/22 ]
    expect = 0.5 * ((52 + 2 * math.sqrt(20)) / 22 + (52 + 2 * math.sqrt(8)) / 22)
    assert om.object_hausdorff(GT, PR) == pytest.approx(expect)


def test_hausdorff_distance_pair():
    a = np.zeros((5, 9), bool)
    a[2, 1] = True
    b = np.zeros((5, 9), bool)
    b[2, 1:8] = True                  # (2,7) is 6 from a; a is inside b -> H = 6
    assert om.hausdorff_distance(a, b) == pytest.approx(6.0)
    assert om.hausdorff_distance(a, np.zeros_like(a)) == math.inf


def test_object_metrics_on_empty_maps(case_a):
    GT, PR = case_a
    e = np.zeros((3, 4), int)
    assert om.detection_f1(e, e)["f1"] == 1.0 and om.object_dice(e, e) == 1.0 and om.object_hausdorff(e, e) == 0.0
    assert om.detection_f1(GT, np.zeros_like(GT))["f1"] == 0.0 and om.object_dice(np.zeros_like(GT), PR) == 0.0
    assert om.object_hausdorff(GT, np.zeros_like(GT)) == pytest.approx(math.hypot(6, 8))   # image diagonal


def test_classification_accuracy_over_true_positives():
    gt = np.zeros((6, 6), int)
    gt[0:2, 0:2] = 1
    gt[0:2, 4:6] = 2
    gt[4:6, 0:2] = 3                  # missed: not counted in the accuracy
    pr = np.zeros((6, 6), int)
    pr[0:2, 0:2] = 11                 # TP of 1
    pr[0:2, 4:6] = 12                 # TP of 2
    # types: gt 1 -> 1, 2 -> 2, 3 -> 1; pred 11 -> 1 (right), 12 -> 1 (wrong): 1 correct of 2 TPs
    r = om.classification_accuracy(gt, pr, {1: 1, 2: 2, 3: 1}, {11: 1, 12: 1})
    assert (r["correct"], r["tp"]) == (1, 2) and r["accuracy"] == 0.5
    assert math.isnan(om.classification_accuracy(gt, np.zeros_like(pr), {1: 1}, {})["accuracy"])
