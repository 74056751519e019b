"""AJI, AJI+, PQ, per-class PQ / mPQ and Hu et al.'s IoU / F on hand-made label maps, answers worked by hand."""

import numpy as np
import pytest

from zoo.errors import DataError
from zoo.metrics import instance as im



def test_overlap_table_of_case_a(case_a):
    GT_A, PR_A = case_a
    ov = im.overlap(GT_A, PR_A)
    assert ov.gt_ids.tolist() == [10, 20, 30, 40] and ov.pred_ids.tolist() == [3, 5, 7, 9]
    assert ov.gt_area.tolist() == [6, 6, 8, 2] and ov.pred_area.tolist() == [4, 4, 12, 2]
    pairs = {(int(ov.gt_ids[g]), int(ov.pred_ids[p])): int(i) for g, p, i in zip(ov.pair_gt, ov.pair_pred, ov.inter)}
    assert pairs == {(10, 7): 6, (20, 7): 6, (30, 3): 4, (30, 5): 4}


def test_aji_merge_and_split(case_a):
    GT_A, PR_A = case_a
    # A -> 7 (6/12), B -> 7 (6/12), C -> 3 (IoU tie with 5, equal intersection: smaller id), D -> none (+2)
    # C = 6 + 6 + 4 = 16; U = 12 + 12 + 8 + |D| 2 + unused preds |5| 4 + |9| 2 = 40
    assert im.aji(GT_A, PR_A) == pytest.approx(16 / 40)


def test_aji_plus_pairs_one_to_one(case_a):
    GT_A, PR_A = case_a
    # one-to-one: 7 with A (or B), 3 (or 5) with C -> C = 6 + 4 = 10; U = 22 + 22 - 10 = 34
    assert im.aji_plus(GT_A, PR_A) == pytest.approx(10 / 34)


def test_pq_iou_exactly_half_is_not_a_match(case_a):
    GT_A, PR_A = case_a
    # every pair has IoU exactly 0.5; matching needs IoU > 0.5 -> TP 0, FP 4, FN 4 -> DQ 0, SQ 0, PQ 0
    r = im.pq(GT_A, PR_A)
    assert (r["tp"], r["fp"], r["fn"]) == (0, 4, 4)
    assert r["pq"] == r["dq"] == r["sq"] == 0.0


def test_hu_segmentation_case_a(case_a):
    GT_A, PR_A = case_a
    # matched iff |I ∩ G| > 0.5|G|: (A,7) 6 > 3 yes, (B,7) 6 > 3 yes, (C,3) 4 > 4 no, (C,5) no
    # TP = 12 px, FP = 22 - 12 = 10, FN = 22 - 12 = 10 -> IoU = 12/32, F = 24/44
    r = im.hu_segmentation(GT_A, PR_A)
    assert (r["tp"], r["fp"], r["fn"]) == (12, 10, 10)
    assert r["iou"] == pytest.approx(12 / 32) and r["fscore"] == pytest.approx(24 / 44)


# ---- case B: one good match (IoU .75), one IoU-.5 pair, one false positive
GT_B = np.zeros((8, 8), np.uint16)
GT_B[0:4, 0:4] = 3          # 16 px
GT_B[6:8, 6:8] = 8          # 4 px
PR_B = np.zeros((8, 8), np.int32)
PR_B[0:4, 0:3] = 100        # 12 px inside nucleus 3: IoU 12/16 = .75
PR_B[6:8, 6] = 200          # 2 px inside nucleus 8: IoU 2/4 = .5 (not > .5)
PR_B[0:2, 6:8] = 300        # 4 px on background: FP


def test_pq_dq_sq_case_b():
    # TP 1 (3-100), FP 2 (200, 300), FN 1 (8): DQ = 1 / (1 + 1 + 0.5) = 0.4, SQ = .75, PQ = .3
    r = im.pq(GT_B, PR_B)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 2, 1)
    assert r["dq"] == pytest.approx(0.4) and r["sq"] == pytest.approx(0.75) and r["pq"] == pytest.approx(0.3)
    # below 0.5 the max-IoU one-to-one matching is used: at IoU > 0.4, 8-200 (IoU .5) also matches
    r = im.pq(GT_B, PR_B, match_iou=0.4)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 0)
    assert r["sq"] == pytest.approx((0.75 + 0.5) / 2)


def test_aji_case_b_and_instance_metrics_dict():
    # C = 12 + 2 = 14; U = 16 + 4 (paired unions) + 4 (unused 300) = 24; AJI+ pairs the same: 20 + 18 - 14 = 24
    m = im.instance_metrics(GT_B, PR_B)
    assert m["aji"] == pytest.approx(14 / 24) and m["aji_plus"] == pytest.approx(14 / 24)
    assert (m["aji_c"], m["aji_u"]) == (14, 24)
    assert m["pq"] == pytest.approx(0.3) and (m["n_gt"], m["n_pred"]) == (2, 3)
    # Hu: (3,100) 12 > 8 matched, (8,200) 2 > 2 not: TP 12, FP 18 - 12 = 6, FN 20 - 12 = 8
    assert m["hu_iou"] == pytest.approx(12 / 26) and m["hu_fscore"] == pytest.approx(24 / (24 + 6 + 8))


def test_per_class_pq_and_mpq():
    # types: gt 3 -> 1, gt 8 -> 2; pred 100 -> 1, 200 -> 2, 300 -> 1
    # type 1: TP 1 (3-100, IoU .75), FP 1 (300), FN 0 -> DQ 1/1.5, SQ .75, PQ .5
    # type 2: TP 0 (8-200 has IoU .5 only), FP 1, FN 1 -> PQ 0;  mPQ = (0.5 + 0) / 2
    r = im.per_class_pq(GT_B, PR_B, {3: 1, 8: 2}, {100: 1, 200: 2, 300: 1})
    assert r["per_class"][1]["pq"] == pytest.approx(0.5) and r["per_class"][2]["pq"] == 0.0
    assert r["mpq"] == pytest.approx(0.25)
    # a right match with the wrong type counts for neither: pred 100 typed 2 -> type 1: FP 1, FN 1; type 2: FP 2
    r = im.per_class_pq(GT_B, PR_B, {3: 1, 8: 2}, {100: 2, 200: 2, 300: 1})
    assert r["per_class"][1]["tp"] == 0 and r["per_class"][2]["fp"] == 2 and r["mpq"] == 0.0


def test_per_class_pq_refuses_matching_below_half():
    with pytest.raises(DataError, match="match_iou >= 0.5"):
        im.per_class_pq(GT_B, PR_B, {3: 1}, {100: 1}, match_iou=0.3)


def test_class_formats_agree():
    ids = np.array([3, 8])
    cmap = np.zeros_like(GT_B)
    cmap[GT_B == 3] = 1
    cmap[GT_B == 8] = 2
    expect = [1, 2]
    assert im.instance_classes({3: 1, 8: 2}, ids).tolist() == expect
    assert im.instance_classes(([8, 3], [2, 1]), ids).tolist() == expect
    assert im.instance_classes(np.array([0, 0, 0, 1, 0, 0, 0, 0, 2]), ids).tolist() == expect
    assert im.instance_classes(cmap, ids, GT_B).tolist() == expect


def test_majority_class_ignores_untyped_and_contour_pixels():
    """Instance 1 is a 5x5 nucleus: a 3x3 core of type 2 (9 px) inside an untyped rim (16 px of class 0);
    instance 2 (1x4) has 2 px of type 1, 1 px of type 3 and 1 px of the contour class 4; instance 3 has no typed
    pixel at all. Votes counting class 0 would give [0, 1, 0]; ignoring 0 gives [2, 1, 0]; 4 also ignored: the same
    here, but with 3 contour px instance 2 would be voted 4 unless 4 is ignored."""
    lab = np.zeros((7, 12), np.int32)
    lab[1:6, 1:6] = 1
    lab[1, 8:12] = 2
    lab[4:6, 8:10] = 3
    cls = np.zeros_like(lab)
    cls[2:5, 2:5] = 2
    cls[1, 8:12] = [1, 1, 3, 4]
    ids = np.array([1, 2, 3])
    assert im.instance_classes(cls, ids, lab).tolist() == [2, 1, 0]
    assert im.instance_classes(cls, ids, lab, ignore=(4,)).tolist() == [2, 1, 0]
    cls[1, 8:12] = [1, 4, 4, 4]  # now 1 px of type 1, 3 px of contour
    assert im.instance_classes(cls, ids, lab).tolist() == [2, 4, 0]
    assert im.instance_classes(cls, ids, lab, ignore=[4]).tolist() == [2, 1, 0]
    # ties go to the smaller type; a class-map pixel outside any instance never votes
    cls[1, 8:12] = [3, 3, 1, 1]
    cls[0, 0] = 5
    assert im.instance_classes(cls, ids, lab).tolist() == [2, 1, 0]
    # only the ids asked for: instance 2 alone
    assert im.instance_classes(cls, np.array([2]), lab).tolist() == [1]


def test_empty_maps_never_raise():
    e = np.zeros((5, 5), int)
    m = im.instance_metrics(e, e)            # nothing to find, nothing found: perfect
    assert m["aji"] == m["aji_plus"] == m["pq"] == m["dq"] == m["sq"] == m["hu_iou"] == 1.0
    m = im.instance_metrics(GT_B, np.zeros_like(GT_B))   # empty prediction: all misses
    assert m["aji"] == m["aji_plus"] == m["pq"] == m["hu_fscore"] == 0.0 and m["pq_fn"] == 2
    m = im.instance_metrics(np.zeros_like(PR_B), PR_B)   # empty ground truth: all false detections
    assert m["aji"] == m["aji_plus"] == m["pq"] == 0.0 and m["pq_fp"] == 3
    assert im.per_class_pq(e, e, {}, {})["mpq"] == 1.0


def test_ids_need_not_be_consecutive_or_small(case_a):
    GT_A, PR_A = case_a
    # same partition under any renumbering, including ids too large for a lookup table (np.unique path)
    big_g = np.where(GT_A > 0, GT_A.astype(np.int64) * 10**9 + 7, 0)
    big_p = np.where(PR_A > 0, (50 - PR_A.astype(np.int64)) * 10**10, 0)
    a = im.instance_metrics(GT_A, PR_A)
    b = im.instance_metrics(big_g, big_p)
    for k in ("aji", "aji_plus", "pq", "hu_iou", "pq_fp"):
        assert a[k] == pytest.approx(b[k])
    assert im.remap_label(np.array([[0, 7], [1000, 7]])).tolist() == [[0, 1], [2, 1]]


def test_bad_label_maps_raise_project_error():
    with pytest.raises(DataError, match="negative"):
        im.aji(np.array([[-1, 0]]), np.array([[1, 0]]))
    with pytest.raises(DataError, match="shape"):
        im.aji(np.zeros((2, 2), int), np.zeros((3, 2), int))


def test_segmentation_report_has_every_level():
    from zoo.metrics import segmentation_report

    r = segmentation_report(GT_B, PR_B, {3: 1, 8: 2}, {100: 1, 200: 2, 300: 1})
    # pixel: TP 14, FP 4, FN 6 -> Dice 28 / 38
    assert r["pixel_dice"] == pytest.approx(28 / 38)
    # mean IU: nucleus 14 / 24, background TN / (TN + FP + FN) = 40 / 50 -> (0.583333 + 0.8) / 2 = 0.691667
    assert r["pixel_mean_iou"] == pytest.approx(0.691667, abs=1e-6)
    assert r["pixel_jaccard"] == pytest.approx(14 / 24)
    assert r["aji"] == pytest.approx(14 / 24) and r["pq"] == pytest.approx(0.3) and r["mpq"] == pytest.approx(0.25)
    # detection: 100 covers 12/16 of nucleus 3 -> TP; 200 covers 2/4 (not > 50 %) -> FP; 300 FP -> F1 = 2/5
    assert r["det_f1"] == pytest.approx(2 / 5) and r["cls_accuracy"] == 1.0 and r["cls_tp"] == 1
    assert {"obj_dice", "obj_hausdorff", "pq_class_1", "pq_class_2"} <= set(r)
    assert all(np.isscalar(v) for v in r.values())


def test_real_map_with_gaps_in_ids(shared_data):
    # PROVENANCE: the derived TCGA-HE-7128 map has 1,073 instances but max id 1,076 (ids not contiguous)
    import glob

    from zoo.data.imageio import read_label

    path = glob.glob(str(shared_data / "monuseg2018" / "derived" / "*" / "*TCGA-HE-7128*_label.png"))[0]
    lab = read_label(path)
    m = im.instance_metrics(lab, lab)
    assert m["n_gt"] == m["n_pred"] == m["pq_tp"] == 1073
    assert m["aji"] == m["aji_plus"] == m["pq"] == 1.0
    # dropping every nucleus with an odd id: AJI = kept area / total area, DQ = 2 TP / (TP + 1073)
    kept = np.where(lab % 2 == 0, lab, 0)
    tp = len(np.unique(kept)) - 1
    m = im.instance_metrics(lab, kept)
    assert m["aji"] == pytest.approx((kept > 0).sum() / (lab > 0).sum())
    assert m["dq"] == pytest.approx(2 * tp / (tp + 1073)) and m["sq"] == 1.0
