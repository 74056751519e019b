"""The Segmenter API contract (zoo.interactive docstring) and f-BRS lowering the loss on clicked pixels."""

import numpy as np
import pytest

from zoo import interactive, models
from zoo.errors import ConfigError
from zoo.interactive import fbrs, maps


@pytest.fixture(scope="module")
def seg():
    return interactive.tiny(seed=0)  # crop_size 32, expand 1.4


@pytest.fixture(scope="module")
def image():
    return (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)


def test_crop_box_hand_worked(seg):
    # one click: the 32-px minimum square centred on it; at the corner it is shifted inside the image
    assert seg.crop_box((50, 70), [(20, 30, True)]) == (4, 36, 14, 46)
    assert seg.crop_box((50, 70), [(2, 68, True)]) == (0, 32, 38, 70)
    # a 30 x 10 previous mask: rows 1.4 * 30 = 42 about its centre row 24.5 -> 3.5 .. 45.5 -> rows 4 .. 46;
    # columns stay the 32-px minimum about the centre of the mask and the click (column 7.5) -> shifted to 0 .. 32
    prev = np.zeros((50, 70), bool)
    prev[10:40, 5:15] = True
    assert seg.crop_box((50, 70), [(20, 10, True)], prev) == (4, 46, 0, 32)
    # negative clicks do not move the box while there is a positive one
    assert seg.crop_box((50, 70), [(20, 30, True), (49, 0, False)]) == (4, 36, 14, 46)


def test_segment_contract(seg, image):
    mask = seg.segment(image, [(20, 30, True)])
    assert mask.dtype == bool and mask.shape == (50, 70)
    outside = np.ones((50, 70), bool)
    outside[4:36, 14:46] = False
    assert not mask[outside].any()
    np.testing.assert_array_equal(mask, seg.segment(image, [(20, 30, True)]))  # deterministic
    prob = seg.probabilities(image, [(20, 30, True)])
    assert prob.dtype == np.float32 and np.array_equal(prob > seg.threshold, mask)
    # the previous mask and a negative click both reach the network
    prev = np.zeros((50, 70), bool)
    prev[15:25, 25:35] = True
    assert not np.allclose(seg.probabilities(image, [(20, 30, True)], prev_mask=prev), prob)
    assert not np.allclose(seg.probabilities(image, [(20, 30, True), (22, 33, False)]), prob)


@pytest.mark.parametrize("args, problem", [
    (dict(image=np.zeros((8, 8, 3), np.float32), clicks=[(1, 1, True)]), "uint8"),
    (dict(image=np.zeros((8, 8), np.uint8), clicks=[(1, 1, True)]), "uint8"),
    (dict(image=np.zeros((8, 8, 3), np.uint8), clicks=[]), "at least one click"),
    (dict(image=np.zeros((8, 8, 3), np.uint8), clicks=[(8, 1, True)]), "outside"),
    (dict(image=np.zeros((8, 8, 3), np.uint8), clicks=[(1, 1)]), "(y, x, positive)"),
    (dict(image=np.zeros((8, 8, 3), np.uint8), clicks=[(1, 1, True)], prev_mask=np.zeros((4, 4), bool)), "prev_mask"),
])
def test_bad_arguments_are_one_line_errors(seg, args, problem):
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        seg.segment(**args)


def test_load_accepts_a_built_model_and_refuses_others(seg, harness):
    assert interactive.load(seg.model).model is seg.model
    unet = models.build("unet", harness.tiny_config("unet"))
    with pytest.raises(ConfigError, match="not a click-conditioned model"):
        interactive.load(unet)


def test_fbrs_lowers_the_loss_on_clicked_pixels(seg, image):
    clicks = [(20, 30, True), (25, 36, True), (14, 24, False)]
    plain = seg.probabilities(image, clicks)
    seg.segment(image, clicks, fbrs=True)
    r = seg.last_fbrs
    # the loss at scale 1 / bias 0 is the plain network's: recompute it from the plain prediction's crop
    y0, y1, x0, x1 = seg.crop_box(image.shape[:2], [(y, x, p) for y, x, p in clicks])
    disks = maps.click_maps(np.array([(y - y0, x - x0) for y, x, _ in clicks], np.float32),
                            np.array([p for *_, p in clicks]), (y1 - y0, x1 - x0), seg.model.config.click_radius)
    assert r.loss_before == pytest.approx(float(fbrs.click_loss(plain[y0:y1, x0:x1], disks)), abs=1e-5)
    assert r.loss_after < 0.5 * r.loss_before
    assert float(fbrs.click_loss(r.prob, disks)) == pytest.approx(r.loss_after, abs=1e-5)
    assert r.scale.shape == (seg.model.feature_channels,) and 1 <= r.evaluations <= seg.fbrs_iterations + 5
