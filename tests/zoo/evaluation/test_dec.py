"""Deep Embedded Clustering (Xie et al. 2016; zoo.evaluation.dec), the HOG + DEC baseline of issue 20: eq. 1 and
eq. 3 against hand-worked values, the Keras clustering layer equal to eq. 1, and DEC recovering separated blobs."""

import numpy as np
import pytest

from zoo.evaluation.dec import dec_clusters, soft_assignment, target_distribution


def test_soft_assignment_eq1_by_hand():
    # alpha = 1: q ~ 1 / (1 + d^2); at distances 0 and 1: (1, 1/2) -> (2/3, 1/3)
    mu = np.array([[0.0, 0.0], [1.0, 0.0]])
    q = soft_assignment(np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0]]), mu)
    np.testing.assert_allclose(q, [[2 / 3, 1 / 3], [1 / 3, 2 / 3], [0.5, 0.5]])
    # alpha = 3: (1 + d^2 / 3)^-2 at d^2 = 3 -> 1/4, so (1, 1/4) -> (0.8, 0.2)
    q3 = soft_assignment(np.array([[0.0]]), np.array([[0.0], [np.sqrt(3.0)]]), alpha=3.0)
    np.testing.assert_allclose(q3, [[0.8, 0.2]])


def test_target_distribution_eq3_by_hand():
    # f = (1.4, 0.6); row 1: (0.25 / 1.4, 0.25 / 0.6) normalised = (0.3, 0.7); row 2: (0.81 / 1.4, 0.01 / 0.6)
    # normalised = (0.972, 0.028)
    p = target_distribution(np.array([[0.5, 0.5], [0.9, 0.1]]))
    np.testing.assert_allclose(p, [[0.3, 0.7], [0.972, 0.028]], atol=1e-12)


def test_dec_recovers_separated_blobs_and_its_layer_is_eq1():
    from zoo.metrics.clustering import clustering_report

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (3, 8))
    x = np.concatenate([c + rng.normal(0, 0.3, (60, 8)) for c in centres]).astype(np.float32)
    truth = np.repeat([1, 2, 3], 60)
    out = dec_clusters(x, 3, dims=(32, 32, 3), pretrain_epochs=40, batch_size=32, update_interval=20,
                       max_iterations=400)
    rep = clustering_report(out["clusters"], truth)
    assert rep["purity"] == 1.0 and rep["entropy"] == pytest.approx(0.0, abs=1e-9)
    assert out["q"].shape == (180, 3) and np.allclose(out["q"].sum(1), 1.0, atol=1e-5)
    # the Keras clustering layer computes eq. 1 of the final embedding and centroids
    np.testing.assert_allclose(out["q"], soft_assignment(out["embedding"], out["centroids"]), atol=1e-5)
    assert 0 < out["iterations"] <= 400 and 0.0 <= out["changed"] <= 1.0


def test_standardize_hand_worked():
    """zoo.evaluation.cluster.standardize: train [[1, 5], [3, 5]] has mean [2, 5], std [1, 0]; the constant column is
    left at 0 and the other rows use train's statistics: [7, 9] -> [5, 4]."""
    from zoo.evaluation.cluster import standardize

    tr, other = standardize(np.array([[1, 5], [3, 5]], np.float32), np.array([[7, 9]], np.float32))
    np.testing.assert_array_equal(tr, [[-1, 0], [1, 0]])
    np.testing.assert_array_equal(other, [[5, 4]])
    assert tr.dtype == np.float32
    (t64,) = standardize([[1, 5], [3, 5]], dtype=np.float64)
    assert t64.dtype == np.float64
