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


# ------------------------------------------------------------------ the staged transform (jit=True, the default)
@pytest.fixture(scope="module")
def full_images(shared_data):
    from zoo.data.imageio import read_rgb

    return [read_rgb(str(p)) for p in sorted((shared_data / "monuseg2018" / "MoNuSegTestData").glob("*.png"))[1:3]]


def test_fast_transform_equals_the_graph_definition(tiles, full_images, np_ref):
    """transform() with jit runs five stages (OD by a 256-entry table, moments by one matrix product, the output
    map folded into one 3x3 per image); tf_transform is the one-graph definition. On real tiles and two whole
    1000x1000 MoNuSeg images: never more than 1 uint8 level apart, under 5 % of the values off by that level (the
    float32 covariance of the graph is the less exact of the two: 3e-4 from float64 on a 1000x1000 image, the
    moments' 1e-7), and no farther from the float64 numpy Macenko than the graph."""
    fast = MacenkoNormalizer(jit=True).fit(tiles["target"])
    graph = MacenkoNormalizer(jit=False).set_params(fast.params)
    he_t, maxc_t = np_ref.np_macenko_estimate(tiles["target"])
    for name, img in [(n, tiles[n]) for n in ("monuseg", "tnbc", "crc")] + [("full1", full_images[0]),
                                                                           ("full2", full_images[1])]:
        a, b = fast.transform(img).astype(int), graph.transform(img).astype(int)
        assert np.abs(a - b).max() <= 1 and np.mean(a != b) < 0.05, (name, np.abs(a - b).max(), np.mean(a != b))
        ref = np_ref.np_macenko(img, he_t, maxc_t).astype(int)
        assert np.abs(a - ref).mean() <= np.abs(b - ref).mean() + 0.01, name


def test_fast_transform_falls_back_image_by_image(tiles, blank_tiles):
    """A batch mixing tissue, blank and single-colour tiles: the blank and flat ones come back unchanged with their
    codes, the tissue tile is normalised as on its own (float32 sums blocked differently in a batch: at most 1 level,
    on under 0.1 % of the values)."""
    norm = MacenkoNormalizer(jit=True).fit(tiles["target"])
    flat = np.zeros((256, 256, 3), np.uint8) + np.array([150, 80, 160], np.uint8)
    white = np.full((256, 256, 3), 255, np.uint8)
    batch = np.stack([tiles["monuseg"], white, flat])
    out, infos = norm.transform(batch, return_info=True)
    assert [i["fallback"] for i in infos] == [None, "no_tissue", "degenerate"]
    np.testing.assert_array_equal(out[1:], batch[1:])
    alone = norm.transform(tiles["monuseg"]).astype(int)
    assert np.abs(out[0] - alone).max() <= 1 and np.mean(out[0] != alone) < 0.001
    assert np.abs(out[0].astype(int) - tiles["monuseg"]).mean() > 3  # it did change


def test_od_table_is_the_optical_density_of_every_level():
    from zoo.stain.macenko import od_table

    t = od_table(240.0)
    assert t.dtype == np.float32 and t.shape == (256,)
    assert t[239] == 0.0 and abs(t[0] - np.log(240.0)) < 1e-6 and abs(t[255] - np.log(240 / 256)) < 1e-7
