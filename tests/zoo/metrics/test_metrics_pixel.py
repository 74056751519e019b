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
