"""Hu et al. eq. 13-14 and Yuan & Suh's per-class table on a 6-sample hand example."""

import math

import numpy as np
import pytest

from zoo.metrics import clustering as cm

CLUSTERS = np.array([0, 0, 0, 1, 1, 2])
CLASSES = np.array([1, 1, 2, 2, 2, 3])
# contingency: cluster 0 = {1: 2, 2: 1}, cluster 1 = {2: 2}, cluster 2 = {3: 1}


def test_purity_and_entropy():
    assert cm.purity(CLUSTERS, CLASSES) == pytest.approx(5 / 6)          # (2 + 2 + 1) / 6
    # cluster 0 holds classes (1, 1, 2): H0 = -(2/3 log2 2/3 + 1/3 log2 1/3) = 0.918296 bits; clusters 1, 2 are pure
    # weighted by size: 3/6 * 0.918296 = 0.459148 bits (the default, as Hu et al.'s Table III) = 0.318257 nats
    assert cm.entropy(CLUSTERS, CLASSES) == pytest.approx(0.459148, abs=1e-6)
    assert cm.entropy(CLUSTERS, CLASSES, base=2) == pytest.approx(0.459148, abs=1e-6)
    assert cm.entropy(CLUSTERS, CLASSES, base=math.e) == pytest.approx(0.318257, abs=1e-6)
    # eq. 14 as printed: entropy of the cluster sizes 3, 2, 1 = 0.5 + 0.528321 + 0.430827 = 1.459148 bits
    assert cm.entropy_eq14_as_printed(CLUSTERS) == pytest.approx(1.459148, abs=1e-6)
    assert cm.entropy_eq14_as_printed(CLUSTERS, base=math.e) == pytest.approx(1.011404, abs=1e-6)
    assert cm.entropy(CLUSTERS, CLUSTERS) == 0.0 and cm.purity(CLUSTERS, CLUSTERS) == 1.0
    assert cm.clustering_report(CLUSTERS, CLASSES)["entropy"] == pytest.approx(0.459148, abs=1e-6)


def test_entropy_in_bits_fits_hu_table_iii():
    """Dataset B of Hu et al.'s Table III has 3 classes and prints entropy 1.561 (MF+k-means): above the natural-log
    ceiling ln 3 = 1.0986, below the base-2 ceiling log2 3 = 1.585 -- so the table is in bits. The ceiling is reached
    by clusters that each hold the 3 classes equally."""
    clusters = np.repeat([0, 1, 2, 3, 4], 3)
    classes = np.tile([1, 2, 3], 5)
    assert cm.entropy(clusters, classes) == pytest.approx(1.584963, abs=1e-6)
    nats = cm.entropy(clusters, classes, base=math.e)
    assert nats == pytest.approx(1.098612, abs=1e-6) and nats < 1.561 < cm.entropy(clusters, classes)


def test_majority_mapping_and_fscore():
    assert cm.majority_mapping(CLUSTERS, CLASSES) == {0: 1, 1: 2, 2: 3}
    # predicted classes [1,1,1,2,2,3] vs true [1,1,2,2,2,3]
    # class 1: P 2/3, R 1, F .8; class 2: P 1, R 2/3, F .8; class 3: F 1; weighted (2*.8 + 3*.8 + 1) / 6 = 5/6
    assert cm.cluster_fscore(CLUSTERS, CLASSES) == pytest.approx(5 / 6)
    rep = cm.clustering_report(CLUSTERS, CLASSES)
    assert rep["accuracy"] == pytest.approx(5 / 6) and rep["purity"] == pytest.approx(5 / 6)
    assert rep["precision"].tolist() == pytest.approx([2 / 3, 1, 1])
    assert rep["sensitivity"].tolist() == pytest.approx([1, 2 / 3, 1])
    assert rep["confusion"].tolist() == [[2, 0, 0], [1, 2, 0], [0, 0, 1]]


def test_classification_report_yuan_suh_table():
    y_true = [1, 1, 1, 2, 2, 3]
    y_pred = [1, 2, 1, 2, 3, 3]
    r = cm.classification_report(y_true, y_pred)
    # confusion rows = true: 1 -> [2,1,0], 2 -> [0,1,1], 3 -> [0,0,1]
    assert r["confusion"].tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert r["precision"].tolist() == pytest.approx([1, 1 / 2, 1 / 2])
    assert r["sensitivity"].tolist() == pytest.approx([2 / 3, 1 / 2, 1])
    assert r["f1"].tolist() == pytest.approx([0.8, 0.5, 2 / 3])
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["f1_weighted"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 2 / 3) / 6)
    # a class never predicted has precision 0 (0/0), not an error
    assert cm.classification_report([1, 2], [1, 1])["precision"].tolist() == [0.5, 0.0]
