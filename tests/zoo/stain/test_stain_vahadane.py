"""zoo.stain.vahadane: the exact two-atom non-negative lasso against scikit-learn's Lasso, known stains recovered,
agreement with scikit-learn's DictionaryLearning and with the plain numpy implementation, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.stain import VahadaneNormalizer
from zoo.stain.vahadane import nonneg_lasso2


def angle_deg(a, b):
    return np.degrees(np.arccos(np.clip(np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1),
                                        -1, 1)))


def test_nonneg_lasso2_equals_sklearn_lasso():
    from sklearn.linear_model import Lasso

    rng = np.random.default_rng(3)
    w = np.array([[0.65, 0.70, 0.29], [0.27, 0.90, 0.34]])
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    x = np.concatenate([rng.uniform(0, 1.5, (40, 2)) @ w + rng.normal(0, 0.05, (40, 3)),
                        rng.uniform(-0.2, 0.3, (10, 3))])  # incl. rows whose answer has zeros
    for lam in (0.01, 0.1):
        ours = nonneg_lasso2(x[None].astype(np.float32), w[None].astype(np.float32), lam).numpy()[0]
        # sklearn minimises 1/(2 n) ||x - h W||^2 + alpha |h|_1 over n = 3 channels: alpha = lam / 3
        ref = np.array([Lasso(alpha=lam / 3, positive=True, fit_intercept=False, tol=1e-12, max_iter=100000)
                        .fit(w.T, xi).coef_ for xi in x])
        np.testing.assert_allclose(ours, ref, atol=1e-4)
        assert (ours == 0).any()


def test_known_stains_recovered():
    stains = np.array([[0.55, 0.78, 0.30], [0.20, 0.85, 0.48]])
    stains /= np.linalg.norm(stains, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    c = rng.uniform(0.3, 1.2, (96 * 96, 2)) * (rng.random((96 * 96, 2)) < 0.6)
    img = np.clip(np.round(255 * np.exp(-(c @ stains)) - 1), 0, 255).astype(np.uint8).reshape(96, 96, 3)
    est = VahadaneNormalizer(jit=False, beta=0.01, iters=60).estimate(img)
    assert est["fallback"] == 0
    assert np.all(angle_deg(est["stain_matrix"], stains) < 2.0), est["stain_matrix"]


def test_agrees_with_sklearn_dictionary_learning_and_numpy(tiles, np_ref):
    from sklearn.decomposition import DictionaryLearning

    norm = VahadaneNormalizer(jit=False).fit(tiles["target"])
    od = -np.log((tiles["target"].reshape(-1, 3).astype(np.float64) + 1) / 255.0)
    od = od[np.all(od >= 0.15, axis=1)][::8]
    dl = DictionaryLearning(n_components=2, alpha=0.1, positive_code=True, positive_dict=True, fit_algorithm="cd",
                            transform_algorithm="lasso_cd", max_iter=200, random_state=0).fit(od)
    d = dl.components_ / np.linalg.norm(dl.components_, axis=1, keepdims=True)
    d = d if d[0, 0] >= d[1, 0] else d[::-1]
    assert np.all(angle_deg(norm.params["stain_matrix"], d) < 3.0), (norm.params["stain_matrix"], d)
    w, maxc = np_ref.np_vahadane_estimate(tiles["target"])
    assert np.all(angle_deg(norm.params["stain_matrix"], w) < 0.1)
    np.testing.assert_allclose(norm.params["max_conc"], maxc, rtol=5e-3)
    out = norm.transform(tiles["tnbc"])
    ref = np_ref.np_vahadane(tiles["tnbc"], w, maxc)
    assert np.abs(out.astype(int) - ref).mean() < 0.5


def test_blank_tiles_fall_back(tiles, blank_tiles):
    norm = VahadaneNormalizer(jit=False).fit(tiles["target"])
    batch = np.stack(list(blank_tiles.values()))
    out, infos = norm.transform(batch, return_info=True)
    assert [i["fallback"] for i in infos] == ["no_tissue"] * len(batch)
    np.testing.assert_array_equal(out, batch)
