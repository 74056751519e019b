"""Click simulation and the interactive metrics (the f-BRS evaluation protocol: Sofiiuk et al. 2020, section 4.1,
after Xu et al. 2016 and Li et al. 2018; Bhatia issue 23's NoC on MoNuSeg nuclei).

- ``next_click(gt, pred)``: the next click at the point farthest from the boundary of the error regions: the
  Euclidean distance transform of the false negatives and of the false positives (each padded by one pixel of
  "correct", so the image border counts as boundary, as f-BRS's ``get_next_points``); a positive click at the
  arg-max of the false-negative distance when it is larger than the false-positive one, else a negative click at the
  arg-max of the false-positive distance. The point lies inside the error region with the largest inscribed disk.
- ``simulate(predict, gt, max_clicks)``: click, predict, repeat; the IoU after every click.
- ``noc(ious, threshold, max_clicks)``: NoC@t = the number of clicks after which IoU first reaches t, ``max_clicks``
  (20) when it never does (f-BRS's NoC@85 / NoC@90). ``mean_iou_at(curves, k)``: mean IoU after k clicks (a curve
  that stopped early keeps its last IoU).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MAX_CLICKS = 20


def iou(a, b) -> float:
    """Intersection over union of two bool masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def _inner_distance(region: np.ndarray) -> np.ndarray:
    """Distance of every pixel of ``region`` to the nearest pixel outside it or outside the image (0 elsewhere).
    Computed inside the region's bounding box padded by one pixel: the padding row / column is all outside, so for
    any pixel of the box it is at least as near as anything beyond it, and the answer is the whole image's."""
    out = np.zeros(region.shape, np.float64)
    rows, cols = np.any(region, 1), np.any(region, 0)
    if not rows.any():
        return out
    (y0, y1), (x0, x1) = np.flatnonzero(rows)[[0, -1]], np.flatnonzero(cols)[[0, -1]]
    out[y0:y1 + 1, x0:x1 + 1] = ndimage.distance_transform_edt(np.pad(region[y0:y1 + 1, x0:x1 + 1], 1))[1:-1, 1:-1]
    return out


def next_click(gt, pred) -> tuple[int, int, bool] | None:
    """(y, x, positive) of the next simulated click (module doc); None when ``pred`` equals ``gt``. Ties go to the
    first pixel in row-major order."""
    gt, pred = np.asarray(gt, bool), np.asarray(pred, bool)
    fn = _inner_distance(gt & ~pred)
    fp = _inner_distance(~gt & pred)
    fn_max, fp_max = fn.max(initial=0.0), fp.max(initial=0.0)
    if fn_max == 0 and fp_max == 0:
        return None
    positive = fn_max > fp_max
    y, x = np.unravel_index(np.argmax(fn if positive else fp), gt.shape)
    return int(y), int(x), bool(positive)


def simulate(predict, gt, max_clicks: int = MAX_CLICKS, stop_at: float | None = None):
    """Drive ``predict(clicks, prev_mask) -> bool mask`` with simulated clicks on the object ``gt`` (bool H x W)
    -> (clicks [(y, x, positive), ...], ious after each click). Stops after ``max_clicks``, when the prediction is
    exact, or (``stop_at``) once the IoU reaches that value."""
    gt = np.asarray(gt, bool)
    pred = np.zeros_like(gt)
    clicks, ious = [], []
    prev = None
    for _ in range(max_clicks):
        click = next_click(gt, pred)
        if click is None:
            break
        clicks.append(click)
        pred = np.asarray(predict(list(clicks), prev), bool)
        prev = pred
        ious.append(iou(gt, pred))
        if stop_at is not None and ious[-1] >= stop_at:
            break
    return clicks, ious


def noc(ious, threshold: float, max_clicks: int = MAX_CLICKS) -> int:
    """Clicks needed to reach IoU >= ``threshold`` (1-based), ``max_clicks`` when never reached (f-BRS NoC)."""
    for k, v in enumerate(ious[:max_clicks], 1):
        if v >= threshold:
            return k
    return max_clicks


def mean_iou_at(curves, k: int) -> float:
    """Mean IoU after ``k`` clicks over IoU curves; a curve shorter than k (it stopped: exact, or the target IoU
    reached) contributes its last value."""
    vals = [c[min(k, len(c)) - 1] if len(c) else 0.0 for c in curves]
    return float(np.mean(vals)) if vals else float("nan")
