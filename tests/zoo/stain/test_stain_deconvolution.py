"""zoo.stain.deconvolution: Ruifrok & Johnston H&E-DAB deconvolution against skimage, and least-squares
separation with a known stain matrix."""

from __future__ import annotations

import numpy as np
import skimage.color

from zoo.stain import hed_to_rgb, rgb_to_hed, separate_stains, stain_image
from zoo.stain.deconvolution import RGB_FROM_HED


def test_rgb_to_hed_equals_skimage_on_real_tiles(tiles):
    for name, tile in tiles.items():
        ours = rgb_to_hed(tile).numpy()
        np.testing.assert_allclose(ours, skimage.color.rgb2hed(tile), atol=1e-5, err_msg=name)


def test_rgb_to_hed_all_uint8_values_and_floats():
    v = np.arange(256, dtype=np.uint8)
    grid = np.stack(np.meshgrid(v, v[::17], v[::5], indexing="ij"), -1).reshape(64, -1, 3)  # every R value
    np.testing.assert_allclose(rgb_to_hed(grid).numpy(), skimage.color.rgb2hed(grid), atol=1e-5)
    f = np.random.default_rng(1).random((2, 16, 16, 3))  # batch of floats in [0, 1)
    np.testing.assert_allclose(rgb_to_hed(f).numpy(), skimage.color.rgb2hed(f), atol=1e-5)


def test_hed_to_rgb_equals_skimage_and_inverts(tiles):
    hed = skimage.color.rgb2hed(tiles["tnbc"])
    np.testing.assert_allclose(hed_to_rgb(hed).numpy(), skimage.color.hed2rgb(hed), atol=1e-5)
    back = hed_to_rgb(rgb_to_hed(tiles["tnbc"])).numpy()
    exact = np.all(hed > 0, axis=-1)  # rgb2hed clips negative amounts at 0; elsewhere it is invertible
    assert exact.mean() > 0.3
    np.testing.assert_allclose(back[exact], tiles["tnbc"][exact] / 255.0, atol=2e-4)


def test_separate_stains_recovers_known_concentrations():
    """I = 240 exp(-C S) - 1 built from Ruifrok's H and E vectors: least squares gives C back (up to the uint8
    rounding: |dOD| <= 0.5 / I)."""
    s = RGB_FROM_HED[:2] / np.linalg.norm(RGB_FROM_HED[:2], axis=1, keepdims=True)
    c = np.random.default_rng(2).uniform(0.0, 1.0, (32, 32, 2))
    img = np.clip(np.round(240.0 * np.exp(-(c @ s)) - 1.0), 0, 255).astype(np.uint8)
    got = separate_stains(img, s).numpy()
    np.testing.assert_allclose(got, c, atol=0.02)
    # per-image matrices give the same answer as a shared one
    np.testing.assert_allclose(separate_stains(img[None], s[None]).numpy()[0], got, atol=1e-6)
    h = stain_image(got[..., 0], s[0]).numpy()
    assert h.dtype == np.uint8 and h.shape == (32, 32, 3)
    np.testing.assert_allclose(h, np.round(240 * np.exp(-np.maximum(got[..., :1], 0) * s[0])), atol=1)
