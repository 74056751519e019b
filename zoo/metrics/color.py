"""Colour similarity of a stain-normalised image to its target -- Yuan & Suh sec. 4.1, Table "Distance metric /
Color histogram": Euclidean distance (0 ideal), colour-histogram correlation averaged over R, G, B (1 ideal) and
Hellinger distance between the colour histograms (0 ideal).

The paper states no normalisation; the choices here (documented per function) follow OpenCV's ``compareHist``
(HISTCMP_CORREL, HISTCMP_HELLINGER), the usual tool for these two measures, with 256-bin histograms of 8-bit
channels. Images: (H, W, 3) uint8, or floats in [0, 1] (converted to 0..255 for histograms).
"""

from __future__ import annotations

import numpy as np

from zoo.errors import DataError

__all__ = ["euclidean_distance", "channel_histograms", "histogram_correlation", "hellinger_distance",
           "color_metrics"]


def _image(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise DataError(name, f"expected an (H, W, 3) RGB image, got shape {a.shape}")
    return a


def _unit(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) / 255.0 if np.issubdtype(a.dtype, np.integer) else a.astype(np.float64)


def _bytes(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.integer):
        return np.clip(a, 0, 255).astype(np.uint8)
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)


def euclidean_distance(a, b) -> float:
    """Yuan & Suh sec. 4.1 "L2 Euclidean distance between images", normalised per pixel:
    ||a - b||_2 / sqrt(H W) with intensities in [0, 1], i.e. the root-mean-square over pixels of the RGB-vector
    distance (range 0 .. sqrt(3); the paper does not say how its 0.98-1.25 values were scaled)."""
    x = _unit(_image(a, "a"))
    y = _unit(_image(b, "b"))
    if x.shape != y.shape:
        raise DataError("b", f"shape {y.shape} differs from {x.shape}")
    n = x.shape[0] * x.shape[1]
    return float(np.sqrt(((x - y) ** 2).sum() / n)) if n else 0.0


def channel_histograms(image, bins: int = 256) -> np.ndarray:
    """(3, bins) pixel counts of the R, G, B channels (8-bit values, equal-width bins over 0..255)."""
    a = _bytes(_image(image, "image")).reshape(-1, 3).astype(np.int64)
    idx = a * bins // 256 + np.arange(3) * bins
    return np.bincount(idx.ravel(), minlength=3 * bins).reshape(3, bins)


def histogram_correlation(a, b, bins: int = 256) -> float:
    """Colour-histogram correlation averaged over R, G, B -- Yuan & Suh sec. 4.1: per channel the Pearson
    correlation of the two histograms' bin counts (OpenCV HISTCMP_CORREL), then the mean of the three. A channel
    whose histogram is constant over all bins has no correlation defined: it scores 1.0 if both histograms are
    identical, else 0.0."""
    ha = channel_histograms(a, bins).astype(np.float64)
    hb = channel_histograms(b, bins).astype(np.float64)
    da = ha - ha.mean(axis=1, keepdims=True)
    db = hb - hb.mean(axis=1, keepdims=True)
    num = (da * db).sum(axis=1)
    den = np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))
    same = np.all(ha == hb, axis=1)
    corr = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(same, 1.0, 0.0))
    return float(corr.mean())


def hellinger_distance(a, b, bins: int = 256) -> float:
    """Hellinger distance between colour histograms -- Yuan & Suh sec. 4.1: per channel, with each histogram
    normalised to sum 1, H = sqrt(1 - sum_i sqrt(p_i q_i)) (range 0..1; equal to OpenCV HISTCMP_HELLINGER), then
    the mean over R, G, B. Empty images: 0.0."""
    ha = channel_histograms(a, bins).astype(np.float64)
    hb = channel_histograms(b, bins).astype(np.float64)
    sa = ha.sum(axis=1, keepdims=True)
    sb = hb.sum(axis=1, keepdims=True)
    if not sa.all() or not sb.all():
        return 0.0
    bc = np.sqrt((ha / sa) * (hb / sb)).sum(axis=1)
    return float(np.sqrt(np.clip(1.0 - bc, 0.0, 1.0)).mean())


def color_metrics(image, target, bins: int = 256) -> dict:
    """``{"euclidean", "correlation", "hellinger"}`` of ``image`` against ``target`` (the three columns of Yuan &
    Suh's sec. 4.1 table). The Euclidean distance needs equal shapes; it is NaN when the shapes differ."""
    x = _image(image, "image")
    y = _image(target, "target")
    euc = euclidean_distance(x, y) if x.shape == y.shape else float("nan")
    return {"euclidean": euc, "correlation": histogram_correlation(x, y, bins),
            "hellinger": hellinger_distance(x, y, bins)}
