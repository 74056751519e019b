"""zoo.stain.macenko: stain vectors of a synthetic image made from known vectors are recovered; agreement with the
plain numpy Macenko (np.cov / eigh / arctan2 / np.percentile); no-tissue fallbacks; deconvolution."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.errors import ConfigError
from zoo.stain import MacenkoNormalizer
from zoo.stain.deconvolution import RGB_FROM_HED

H_E = RGB_FROM_HED[:2] / np.linalg.norm(RGB_FROM_HED[:2], axis=1, keepdims=True)


def synthetic(stains, io=240.0, n=96, seed=0):
    """An image I = io exp(-C S) - 1 (the OD convention of the method) whose pixels are 30% pure first stain,
    30% pure second, 40% mixtures, concentrations in [0.3, 1.2]."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(0.3, 1.2, (n * n, 2))
    kind = rng.random(n * n)
    c[kind < 0.3, 1] = 0
    c[(kind >= 0.3) & (kind < 0.6), 0] = 0
    return np.clip(np.round(io * np.exp(-(c @ stains)) - 1), 0, 255).astype(np.uint8).reshape(n, n, 3), c


def angle_deg(a, b):
    return np.degrees(np.arccos(np.clip(np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1),
                                        -1, 1)))


@pytest.mark.parametrize("stains", [H_E, np.array([[0.55, 0.78, 0.30], [0.20, 0.85, 0.48]])])
def test_known_stain_vectors_recovered(stains):
    stains = stains / np.linalg.norm(stains, axis=1, keepdims=True)
    img, c = synthetic(stains)
    # beta = 0.01: a pure-eosin pixel's red OD (0.07 c <= 0.084) is below the default beta = 0.15, which would
    # (as in every Macenko implementation) leave the pure-eosin end of the angle range out
    est = MacenkoNormalizer(beta=0.01, jit=False).estimate(img)
    assert est["fallback"] == 0
    assert np.all(angle_deg(est["stain_matrix"], stains) < 1.0), est["stain_matrix"]
    np.testing.assert_allclose(est["max_conc"], np.percentile(c, 99, axis=0), rtol=0.03)


def test_agrees_with_plain_numpy_macenko(tiles, np_ref):
    norm = MacenkoNormalizer(jit=False).fit(tiles["target"])
    he_t, maxc_t = np_ref.np_macenko_estimate(tiles["target"])
    assert np.all(angle_deg(norm.params["stain_matrix"], he_t) < 0.05)
    np.testing.assert_allclose(norm.params["max_conc"], maxc_t, rtol=2e-3)
    for name in ("monuseg", "tnbc", "crc"):
        ours = norm.transform(tiles[name])
        ref = np_ref.np_macenko(tiles[name], he_t, maxc_t)
        d = np.abs(ours.astype(int) - ref)
        assert d.mean() < 0.25 and d.max() <= 2, (name, d.mean(), d.max())  # histogram percentiles, float32


def test_normalized_image_has_the_target_stains(tiles):
    """The defining property: re-estimating on the output gives the target's stain vectors and max
    concentrations (up to uint8 rounding and the pixels clipped at 255)."""
    norm = MacenkoNormalizer(jit=False).fit(tiles["target"])
    for name in ("monuseg", "crc"):
        est = norm.estimate(norm.transform(tiles[name]))
        src = norm.estimate(tiles[name])
        assert np.all(angle_deg(est["stain_matrix"], norm.params["stain_matrix"]) < 2.0), name
        assert np.any(angle_deg(src["stain_matrix"], norm.params["stain_matrix"]) > 3.0), name  # it did move
        np.testing.assert_allclose(est["max_conc"], norm.params["max_conc"], rtol=0.12, err_msg=name)


def test_blank_tiles_fall_back_and_never_nan(tiles, blank_tiles):
    norm = MacenkoNormalizer(jit=False).fit(tiles["target"])
    names = list(blank_tiles)
    batch = np.stack([blank_tiles[n] for n in names])
    out, infos = norm.transform(batch, return_info=True)
    assert [i["fallback"] for i in infos] == ["no_tissue"] * len(names)
    np.testing.assert_array_equal(out, batch)
    c, he, code = norm.deconvolve(batch)
    assert np.all(np.isfinite(c.numpy())) and np.all(code.numpy() == 1)
    np.testing.assert_allclose(he.numpy()[0], norm.params["stain_matrix"])  # the fitted reference
    with pytest.raises(ConfigError, match="no tissue"):
        MacenkoNormalizer().fit(blank_tiles["near_white"])


def test_single_colour_tissue_is_degenerate_not_nan(tiles):
    flat = np.zeros((64, 64, 3), np.uint8) + np.array([150, 80, 160], np.uint8)  # one colour: no plane
    out, info = MacenkoNormalizer(jit=False).fit(tiles["target"]).transform(flat, return_info=True)
    assert info["fallback"] == "degenerate"
    np.testing.assert_array_equal(out, flat)


def test_deconvolve_gives_hematoxylin_and_eosin(tiles):
    img, c = synthetic(H_E, n=64)
    conc, he, code = MacenkoNormalizer(beta=0.01, jit=False).deconvolve(img)
    assert int(code) == 0 and conc.shape == (64, 64, 2)
    np.testing.assert_allclose(conc.numpy().reshape(-1, 2), c, atol=0.03)
