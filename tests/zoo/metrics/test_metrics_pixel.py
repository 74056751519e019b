"""Pixel metrics on a hand-made 4x4 case (Naylor et al. Table 1, Yuan & Suh sec. 3.2)."""

import numpy as np
import pytest

from zoo.errors import DataError
from zoo.metrics import pixel

# gt foreground: the top-left 2x2 block; pred: the 2x2 block one column to the right.
GT = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
PRED = np.array([[0, 5, 5, 0], [0, 5, 5, 0], [0, 0, 0, 0], [0, 0, 0, 0]])  # label values > 0 count as foreground
# TP = 2 (column 1), FP = 2 (column 2), FN = 2 (column 0), TN = 16 - 6 = 10


def test_counts_and_each_definition():
    assert pixel.confusion_counts(GT, PRED) == (2, 2, 2, 10)
    assert pixel.accuracy(GT, PRED) == pytest.approx(12 / 16)          # (TP + TN) / N
    assert pixel.sensitivity(GT, PRED) == pytest.approx(2 / 4)         # TP / (TP + FN)
    assert pixel.recall(GT, PRED) == pixel.sensitivity(GT, PRED)
    assert pixel.specificity(GT, PRED) == pytest.approx(10 / 12)       # TN / (TN + FP)
    assert pixel.precision(GT, PRED) == pytest.approx(2 / 4)           # TP / (TP + FP)
    assert pixel.f1(GT, PRED) == pytest.approx(4 / 8)                  # 2TP / (2TP + FP + FN)
    assert pixel.dice(GT, PRED) == pixel.f1(GT, PRED)
    assert pixel.jaccard(GT, PRED) == pytest.approx(2 / 6)             # TP / (TP + FP + FN)
    assert pixel.performance(GT, PRED) == pytest.approx((0.5 + 10 / 12) / 2)  # (TPR + TNR) / 2 = 0.6667


def test_mean_iou_by_hand():
    """Long et al.'s mean IU over (background, nucleus) = Naylor et al.'s Table 1 "IU".
    Nucleus IU = TP / (TP + FP + FN) = 2 / 6; background IU = TN / (TN + FN + FP) = 10 / 14;
    mean = (1/3 + 5/7) / 2 = 11/21 = 0.523810."""
    assert pixel.mean_iou(GT, PRED) == pytest.approx(11 / 21)
    assert pixel.pixel_metrics(GT, PRED)["mean_iou"] == pytest.approx(0.523810, abs=1e-6)
    # 2x3 map: gt = top-left 1x2, pred = left column: TP 1, FP 1, FN 1, TN 3 -> (1/3 + 3/5) / 2 = 7/15
    g = np.array([[1, 1, 0], [0, 0, 0]])
    p = np.array([[1, 0, 0], [1, 0, 0]])
    assert pixel.mean_iou(g, p) == pytest.approx(7 / 15)
    # all background, predicted all background: both class IUs 0/0 = 1
    z = np.zeros((2, 2), int)
    assert pixel.mean_iou(z, z) == 1.0
    # perfect on a map with both classes, and the symmetric case of swapped roles
    assert pixel.mean_iou(g, g) == 1.0 and pixel.mean_iou(g, 1 - g) == 0.0


def test_naylor_table_1_iu_is_the_mean_iu_not_the_nucleus_jaccard():
    """Rebuild pixel fractions (TP, FP, FN, TN) of Naylor et al.'s FCN row from its own recall 0.855, precision
    0.878 and accuracy 0.958: the mean IU comes out at the printed IU 0.857, the nucleus Jaccard far below."""
    r, pr, acc = 0.855, 0.878, 0.958
    fg = (1 - acc) / ((1 - r) + r * (1 - pr) / pr)          # nucleus fraction that makes the accuracy right
    tp = r * fg
    fn, fp = fg - tp, tp * (1 - pr) / pr
    n = 10 ** 6                                             # as counts of a 10^6-pixel image
    gt = np.zeros(n, np.uint8)
    pred = np.zeros(n, np.uint8)
    ntp, nfn, nfp = round(tp * n), round(fn * n), round(fp * n)
    gt[:ntp + nfn] = 1
    pred[:ntp] = 1
    pred[ntp + nfn:ntp + nfn + nfp] = 1
    assert pixel.accuracy(gt, pred) == pytest.approx(acc, abs=1e-5)
    assert pixel.mean_iou(gt, pred) == pytest.approx(0.857, abs=0.002)
    assert pixel.jaccard(gt, pred) == pytest.approx(0.764, abs=0.002)


def test_pixel_metrics_dict_matches_functions():
    m = pixel.pixel_metrics(GT, PRED)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 2, 2, 10)
    assert m["dice"] == pytest.approx(0.5) and m["jaccard"] == pytest.approx(1 / 3)
    assert m["performance"] == pytest.approx(pixel.performance(GT, PRED))
    # Dice = 2J / (1 + J) must hold for any masks
    assert m["dice"] == pytest.approx(2 * m["jaccard"] / (1 + m["jaccard"]))


def test_empty_cases_follow_zero_over_zero_is_one():
    empty = np.zeros((3, 3), int)
    m = pixel.pixel_metrics(empty, empty)          # nothing to find, nothing found
    assert m["dice"] == m["jaccard"] == m["precision"] == m["recall"] == m["specificity"] == 1.0
    full = np.ones((3, 3), int)
    m = pixel.pixel_metrics(full, empty)           # TP 0, FN 9, FP 0, TN 0
    assert m["recall"] == 0.0 and m["dice"] == 0.0 and m["jaccard"] == 0.0
    assert m["precision"] == 1.0                   # no false call made
    assert m["specificity"] == 1.0                 # no background pixel to get wrong
    assert m["performance"] == 0.5 and m["accuracy"] == 0.0


def test_shape_mismatch_raises_project_error():
    with pytest.raises(DataError, match="shape"):
        pixel.pixel_metrics(np.zeros((2, 2)), np.zeros((2, 3)))


def test_lopo_derives_mean_iou_of_old_evaluations_exactly():
    """scripts/lopo.py re-tables evaluations written before pixel_mean_iou existed: per image, TP / N = (1 - A) J /
    (1 - J) from accuracy A and Jaccard J, so the mean IU follows exactly. Hand case (GT, PRED above): A = 12/16,
    J = 1/3 -> TP/N = (4/16)(1/3)/(2/3) = 1/8, background IU = (12/16 - 1/8) / (1 - 1/8) = 5/7, mean IU 11/21."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[3] / "scripts" / "lopo.py"
    spec = importlib.util.spec_from_file_location("histozoo_lopo_script", path)
    lopo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lopo)
    assert lopo._mean_iou_of_image(12 / 16, 1 / 3) == pytest.approx(11 / 21)
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(50):  # random masks, empty ones included
        g, p = rng.random((9, 11)) > rng.random(), rng.random((9, 11)) > rng.random()
        m = pixel.pixel_metrics(g, p)
        assert lopo._mean_iou_of_image(m["accuracy"], m["jaccard"]) == pytest.approx(m["mean_iou"], abs=1e-12)
        rows.append({"pixel_accuracy": m["accuracy"], "pixel_jaccard": m["jaccard"], "want": m["mean_iou"]})
    old = {"mean": {"pixel_accuracy": 0.5}, "per_image": rows}
    assert lopo._with_mean_iou(old)["pixel_mean_iou"] == pytest.approx(np.mean([r["want"] for r in rows]))
    new = {"mean": {"pixel_mean_iou": 0.25}, "per_image": rows}
    assert lopo._with_mean_iou(new)["pixel_mean_iou"] == 0.25  # a recorded value is kept
