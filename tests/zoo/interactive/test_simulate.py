"""Click simulation (f-BRS protocol) and NoC on hand-made maps whose clicks were worked out by hand."""

import numpy as np

from zoo.interactive import simulate


def _square_gt():
    gt = np.zeros((30, 30), bool)
    gt[5:25, 5:25] = True  # 20 x 20 object; its four 10 x 10 quadrants are revealed one per positive click
    return gt


def _quadrant_predictor(gt):
    quads = [(slice(5, 15), slice(5, 15)), (slice(5, 15), slice(15, 25)), (slice(15, 25), slice(5, 15)),
             (slice(15, 25), slice(15, 25))]

    def predict(clicks, prev):
        out = np.zeros_like(gt)
        for y, x, positive in clicks:
            for q in quads:
                if positive and q[0].start <= y < q[0].stop and q[1].start <= x < q[1].stop:
                    out[q] = True
        return out

    return predict


def test_clicks_and_noc_hand_counted():
    """By hand: click 1 at the square's deepest point (14, 14) (EDT 10; first in row-major order) -> top-left
    quadrant, IoU 1/4; click 2 in the remaining L: (18, 19), (19, 18), (19, 19) lie 6 px from its boundary (bottom
    row / right column 6-7 px, the top-left quadrant's corner (14, 14) sqrt(41) px), (18, 19) first -> IoU 2/4;
    click 3: two 10 x 10 quadrants, depth 5, first at (9, 19) (top-right) -> 3/4; click 4 at (19, 9) -> exact."""
    gt = _square_gt()
    clicks, ious = simulate.simulate(_quadrant_predictor(gt), gt)
    assert clicks == [(14, 14, True), (18, 19, True), (9, 19, True), (19, 9, True)]
    assert ious == [0.25, 0.5, 0.75, 1.0]
    assert simulate.noc(ious, 0.85) == 4 and simulate.noc(ious, 0.90) == 4 and simulate.noc(ious, 0.5) == 2
    assert simulate.mean_iou_at([ious, [0.1, 0.3]], 1) == (0.25 + 0.1) / 2
    assert simulate.mean_iou_at([ious, [0.1, 0.3]], 5) == (1.0 + 0.3) / 2  # short curves keep their last IoU


def test_negative_click_on_the_deepest_false_positive():
    gt = np.zeros((30, 30), bool)
    gt[2:5, 2:5] = True
    pred = gt.copy()
    pred[20:27, 20:27] = True  # 7 x 7 false positive: depth 4 at its centre (23, 23)
    assert simulate.next_click(gt, pred) == (23, 23, False)
    assert simulate.next_click(gt, gt) is None


def test_noc_is_capped_at_20():
    gt = _square_gt()
    clicks, ious = simulate.simulate(lambda c, p: np.zeros_like(gt), gt)
    assert len(clicks) == 20 and ious == [0.0] * 20
    assert simulate.noc(ious, 0.85) == 20
    assert simulate.iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0


def test_bounding_box_distance_equals_the_whole_image_one():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for t in range(20):
        region = ndimage.binary_opening(rng.random((60, 70)) > 0.4) if t % 2 else np.zeros((60, 70), bool)
        if t % 5 == 0:
            region[10:30, 0:20] = True  # touching the image edge
        whole = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
        np.testing.assert_array_equal(simulate._inner_distance(region), whole)
