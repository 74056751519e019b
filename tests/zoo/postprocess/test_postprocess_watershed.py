"""Naylor et al.'s dynamics watershed on hand-made posteriors whose dynamics are worked out by hand."""

import numpy as np
import pytest

from zoo.errors import ConfigError
from zoo.postprocess import dynamics_markers, dynamics_watershed
from zoo.postprocess.watershed import separate_touching


def dumbbell(left: int, saddle: int, right: int) -> np.ndarray:
    """A 7 x 13 posterior (0-255 levels / 255): background 0; rows 2-4 are foreground, columns 1-5 at ``left``,
    column 6 at ``saddle``, columns 7-11 at ``right``. Every path between the two plateaus crosses column 6, so the
    dynamics of the lower plateau is min(left, right) - saddle (Naylor et al. eq. 1)."""
    q = np.zeros((7, 13), np.float64)
    q[2:5, 1:6] = left
    q[2:5, 6] = saddle
    q[2:5, 7:12] = right
    return q / 255.0


def touching(inst) -> bool:
    """True when two different instances are 8-adjacent."""
    a = np.pad(inst, 1)
    h, w = inst.shape
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            b = a[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
            if ((inst > 0) & (b > 0) & (b != inst)).any():
                return True
    return False


def test_separate_touching_cuts_one_pixel_on_the_larger_label_side():
    lab = np.array([[1, 1, 2, 2],
                    [1, 1, 2, 2],
                    [0, 3, 3, 0]])
    out = separate_touching(lab)
    # (0,2), (1,2) touch 1; both 3s touch 1 or 2 (diagonals count); (1,3) touches only 2 and 3 (larger): kept
    np.testing.assert_array_equal(out, [[1, 1, 0, 2],
                                        [1, 1, 0, 2],
                                        [0, 0, 0, 0]])
    assert not touching(out)
    np.testing.assert_array_equal(separate_touching(np.zeros((2, 2), int)), 0)


@pytest.mark.parametrize("saddle, expected", [
    (150, 2),   # dynamics 200 - 150 = 50 > 7: split
    (192, 2),   # dynamics 8 > 7: split
    (193, 1),   # dynamics 7, not > 7: one nucleus (eq. 1 is strict)
    (199, 1),   # dynamics 1: one nucleus
])
def test_split_iff_dynamics_exceeds_lambda(saddle, expected):
    inst = dynamics_watershed(dumbbell(200, saddle, 220), lam=7)
    assert inst.dtype == np.int32
    assert inst.max() == expected
    assert set(np.unique(inst)) == set(range(expected + 1))
    fg = dumbbell(200, saddle, 220) > 0.5
    assert not (inst[~fg] > 0).any()            # nothing outside the foreground
    if expected == 1:
        assert (inst > 0).sum() == fg.sum() == 33  # 3 rows x 11 columns, nothing lost
    else:
        # the plateaus go to different nuclei, cut at the saddle by a one-column watershed line (3 px background)
        assert inst[3, 3] != inst[3, 9] and inst[3, 3] > 0 and inst[3, 9] > 0
        assert (inst > 0).sum() == 33 - 3
        assert ((inst[2:5, 5:8] == 0).sum(0) == 3).sum() == 1      # the cut is one of columns 5-7
        assert not touching(inst)


def test_lambda_is_on_the_0_255_scale():
    p = dumbbell(200, 180, 220)                  # dynamics 20
    assert dynamics_watershed(p, lam=19).max() == 2
    assert dynamics_watershed(p, lam=20).max() == 1


def test_markers_equal_skimage_h_minima_with_h_lambda_plus_one():
    from skimage.morphology import h_minima

    rng = np.random.default_rng(0)
    from scipy import ndimage

    p = ndimage.gaussian_filter(rng.random((64, 64)), 2)
    p = (p - p.min()) / (p.max() - p.min())
    p = np.round(p * 255) / 255
    inv = 255 - np.round(p * 255).astype(np.int32)
    inv[p <= 0.5] = 255
    for lam in (1, 3, 7, 15):
        ours = dynamics_markers(p, lam=lam) > 0
        theirs = h_minima(inv, lam + 1).astype(bool)
        # skimage marks the minimum pixels themselves, ours the flooded plateau around them: every one of their
        # minima lies in one of ours, and every one of ours holds at least one of theirs
        from scipy.ndimage import label

        lab, n = label(ours, np.ones((3, 3)))
        assert not (theirs & ~ours).any()
        assert set(np.unique(lab[theirs])) == set(range(1, n + 1))


def test_threshold_defines_the_foreground():
    # two plateaus at 0.9 joined by a bridge at 0.6 (dynamics 0.3 * 255 = 76.5)
    q = np.zeros((5, 15))
    q[1:4, 1:6] = 0.9
    q[2, 6:9] = 0.6
    q[1:4, 9:14] = 0.9
    assert dynamics_watershed(q, lam=100, threshold=0.5).max() == 1   # bridge is foreground, lambda too large
    assert dynamics_watershed(q, lam=7, threshold=0.5).max() == 2     # split at the bridge
    assert dynamics_watershed(q, lam=100, threshold=0.7).max() == 2   # bridge is background
    # exactly 0.5 is not foreground (prob > threshold)
    assert dynamics_watershed(np.full((8, 8), 0.5)).max() == 0
    one = dynamics_watershed(np.full((8, 8), 0.51))
    assert one.max() == 1 and (one == 1).sum() == 64


def test_empty_and_min_size():
    assert dynamics_watershed(np.zeros((16, 16))).max() == 0
    assert dynamics_watershed(np.zeros((0, 0))).shape == (0, 0)
    q = np.zeros((10, 20))
    q[1:3, 1:3] = 0.9          # 4 px
    q[4:9, 5:15] = 0.9         # 50 px
    inst = dynamics_watershed(q, min_size=5)
    assert inst.max() == 1 and (inst == 1).sum() == 50


def test_bad_input_raises_config_error():
    with pytest.raises(ConfigError, match="probability"):
        dynamics_watershed(np.full((4, 4), 2.0))
    with pytest.raises(ConfigError, match="2-D"):
        dynamics_watershed(np.zeros((4, 4, 2)))
    with pytest.raises(ConfigError, match="lam"):
        dynamics_watershed(np.zeros((4, 4)), lam=0)
