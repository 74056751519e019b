"""Hu et al.'s threshold / size / opening steps and Yuan & Suh's LoG blobs on synthetic images with known answers;
the whole Hu pipeline on real TNBC and MoNuSeg tiles."""

import numpy as np
import pytest

from zoo.errors import ConfigError
from zoo.postprocess.classical import (HuConfig, hematoxylin_intensity, hu_postprocess, log_blobs,
                                       seeded_watershed)


def disc_image(shape, discs, fg=60.0, bg=230.0):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    img = np.full(shape, bg)
    for cy, cx, r in discs:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = fg
    return img


def test_hu_postprocess_threshold_size_opening():
    h = np.full((60, 80), 200.0)
    h[2:12, 2:12] = 100.0             # 100 px: below min_size 200, removed
    h[30:50, 2:22] = 119.0            # 20x20 = 400 px, just darker than 120: kept, unchanged by a 7x7 opening
    h[5:20, 40:55] = 50.0             # two 15x15 squares joined by a 3-px-wide bridge: the opening cuts the bridge
    h[5:20, 62:77] = 50.0
    h[10:13, 55:62] = 50.0
    h[40:55, 40:60] = 120.0           # exactly 120 is not darker than the threshold: background
    inst, mask = hu_postprocess(h, threshold=120, min_size=200, opening=7)
    assert inst.dtype == np.int32 and inst.max() == 3
    assert mask.sum() == 400 + 2 * 225
    assert set(np.bincount(inst.ravel())[1:]) == {400, 225}
    assert not mask[2:12, 2:12].any() and not mask[10:13, 55:62].any() and not mask[40:55, 40:60].any()
    # without the opening the bridge keeps the two squares together
    inst_no_open, _ = hu_postprocess(h, threshold=120, min_size=200, opening=0)
    assert inst_no_open.max() == 2
    # min_size counts pixels before the opening: a 12x12 square (144 px) goes at 200, stays at 100
    h2 = np.full((20, 20), 200.0)
    h2[4:16, 4:16] = 10
    assert hu_postprocess(h2, min_size=200)[0].max() == 0
    assert hu_postprocess(h2, min_size=100)[0].max() == 1


def test_hematoxylin_intensity_matches_histomicstk_sda_convention():
    # I = 256 * exp(-OD) - 1: OD 0 -> 255 (white), threshold 120 <-> OD ln(256/121)
    od = np.array([0.0, np.log(256 / 121), 8.0])
    np.testing.assert_allclose(hematoxylin_intensity(od), [255.0, 120.0, 0.0], atol=1e-3)


def test_hu_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="threshold"):
        HuConfig(threshold=300)
    with pytest.raises(ConfigError, match="angle_percentiles"):
        HuConfig(angle_percentiles=(0.9, 0.1))


def test_log_blobs_find_dark_discs_at_known_centres_and_radii():
    discs = [(20, 20, 6), (25, 70, 9), (70, 40, 5), (75, 95, 11)]
    nucleus = 1 - disc_image((100, 120), discs) / 255.0
    blobs = log_blobs(nucleus, radius_range=(4, 12))
    assert blobs.shape == (4, 3)
    np.testing.assert_allclose(blobs[:, :2], [d[:2] for d in discs], atol=1.0)
    np.testing.assert_allclose(blobs[:, 2], [d[2] for d in discs], atol=1.5)
    # the mask drops blobs whose centre is outside it
    mask = np.zeros((100, 120), bool)
    mask[:50] = True
    assert len(log_blobs(nucleus, mask=mask)) == 2
    assert len(log_blobs(np.zeros((32, 32)))) == 0


def test_log_seeds_split_two_overlapping_discs():
    discs = [(30, 30, 10), (30, 47, 10)]       # centres 17 px apart, radius 10: they overlap
    img = disc_image((60, 80), discs)
    nucleus = 1 - img / 255.0
    from scipy import ndimage

    blobs = log_blobs(nucleus, radius_range=(4, 12))
    assert len(blobs) == 2
    np.testing.assert_allclose(np.sort(blobs[:, 1]), [30, 47], atol=2)
    mask = img < 120
    inst = seeded_watershed(ndimage.distance_transform_edt(mask), mask, blobs[:, :2])
    assert inst.max() == 2 and (inst > 0).sum() == mask.sum()
    assert inst[30, 25] != inst[30, 52]
    # a mask component holding no seed is kept as one nucleus; no seeds at all -> the components
    mask2 = mask.copy()
    mask2[5:10, 70:75] = True
    assert seeded_watershed(nucleus, mask2, blobs[:, :2]).max() == 3
    assert seeded_watershed(nucleus, mask2, np.zeros((0, 2))).max() == 2
