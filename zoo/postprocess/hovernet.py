"""HoVer-Net's post-processing (Graham et al. 2019, section 3.4): NP probability + HV maps -> instance map.

The paper: S_m = max(H_x, H_y), H_x and H_y the Sobel gradients of the horizontal map along x and of the vertical
map along y, normalised so that they are high where the maps jump between touching nuclei; markers
M = sigma(q, h) - sigma(S_m, k) (thresholded NP minus thresholded energy); the energy landscape
E = [1 - tau(S_m, k)] * tau(q, h); then marker-controlled watershed of E inside the nucleus mask. Steps as the
public reference (vqdang/hover_net models/hovernet/post_proc.py, ``__proc_np_hv``), with scipy / scikit-image
instead of OpenCV:

1. mask = P(nucleus) >= ``threshold`` (0.5), components smaller than ``min_size`` (10) px removed;
2. each HV map min-max scaled to [0, 1] over the tile; Sobel of size ``sobel_size`` (21): the x-derivative of the
   horizontal map, the y-derivative of the vertical map (separable OpenCV-style kernels: binomial smoothing x
   binomial-smoothed central difference, mirrored borders like OpenCV's BORDER_REFLECT_101);
3. each gradient min-max scaled to [0, 1] and inverted: S = max(1 - g_x, 1 - g_y), minus (1 - mask), clipped at 0;
4. energy E = -(Gaussian 3x3, sigma 0.8 of (1 - S) * mask) (basins at the nucleus centres);
5. markers = mask and S < ``edge_threshold`` (0.4), holes filled, opened with OpenCV's 5 x 5 ellipse, labelled,
   marker components smaller than ``marker_min_size`` (10) px removed;
6. ``skimage.segmentation.watershed(E, markers, mask=mask)``, relabelled 1..N in raster order.

Every step is one vectorised array operation (no loop over nuclei); one watershed per tile. The exported SavedModel
returns the NP / HV [/ TP] maps; this function runs in the client or the local server (zoo.postprocess.config.apply,
method ``hovernet``). Per-instance types (majority vote of the TP argmax over the instance's pixels) come from
zoo.inference through the channels named ``type:<name>``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from zoo.errors import ConfigError

__all__ = ["hovernet_instances", "hv_watershed", "sobel_derivative", "hv_energy"]

# OpenCV's 5 x 5 MORPH_ELLIPSE structuring element (what the reference opens the markers with)
_ELLIPSE5 = np.array([[0, 0, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 1, 0, 0]], bool)


def _binomial(n: int) -> np.ndarray:
    row = np.ones(1)
    for _ in range(n):
        row = np.convolve(row, [1.0, 1.0])
    return row


def sobel_derivative(image: np.ndarray, axis: int, size: int = 21) -> np.ndarray:
    """OpenCV-style Sobel derivative of odd ``size`` along ``axis`` (1 = x, 0 = y) of a 2-D float map: the
    central difference smoothed by a binomial of length ``size`` along ``axis``, a binomial of length ``size``
    across it; mirrored borders (reflect-101)."""
    if size < 3 or size % 2 == 0:
        raise ConfigError(f"sobel_size must be an odd integer >= 3, got {size}")
    deriv = np.convolve(_binomial(size - 3), [1.0, 0.0, -1.0])  # convolution kernel: f(i + 1) - f(i - 1) at size 3
    smooth = _binomial(size - 1)
    out = ndimage.correlate1d(np.asarray(image, np.float64), deriv[::-1], axis=axis, mode="mirror")
    return ndimage.correlate1d(out, smooth, axis=1 - axis, mode="mirror")


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def hv_energy(mask: np.ndarray, hx: np.ndarray, hy: np.ndarray, sobel_size: int = 21) -> tuple[np.ndarray, np.ndarray]:
    """(S, E): the edge map S in [0, 1] (high between touching nuclei; 0 on the background) and the watershed
    energy E (steps 2-4 of the module docstring)."""
    gx = 1.0 - _minmax(sobel_derivative(_minmax(hx), 1, sobel_size))
    gy = 1.0 - _minmax(sobel_derivative(_minmax(hy), 0, sobel_size))
    m = mask.astype(np.float64)
    s = np.clip(np.maximum(gx, gy) - (1.0 - m), 0.0, None)
    energy = -ndimage.gaussian_filter((1.0 - s) * m, sigma=0.8, truncate=1.25, mode="mirror")
    return s, energy


def hv_watershed(prob, hx, hy, threshold: float = 0.5, edge_threshold: float = 0.4, sobel_size: int = 21,
                 min_size: int = 10, marker_min_size: int = 10) -> np.ndarray:
    """int32 instance map (0 background, 1..N) from P(nucleus) and the horizontal / vertical maps, each (H, W)."""
    from skimage.segmentation import relabel_sequential, watershed

    from zoo.postprocess.instances import label_components, remove_small

    if not 0.0 <= threshold < 1.0:
        raise ConfigError(f"threshold must be in [0, 1), got {threshold}")
    if not 0.0 < edge_threshold <= 1.0:
        raise ConfigError(f"edge_threshold must be in (0, 1], got {edge_threshold}")
    p = np.asarray(prob, np.float64)
    mask = remove_small(label_components(p >= threshold, 8), min_size) > 0 if min_size > 1 else p >= threshold
    if not mask.any():
        return np.zeros(p.shape, np.int32)
    s, energy = hv_energy(mask, np.asarray(hx, np.float64), np.asarray(hy, np.float64), sobel_size)
    marker = mask & (s < edge_threshold)
    marker = ndimage.binary_fill_holes(marker)
    marker = ndimage.binary_opening(marker, structure=_ELLIPSE5)
    markers = label_components(marker, 8)
    if marker_min_size > 1:
        markers = remove_small(markers, marker_min_size)
    out = watershed(energy, markers, mask=mask)
    return relabel_sequential(out)[0].astype(np.int32)


def hovernet_instances(maps, threshold: float = 0.5, edge_threshold: float = 0.4, sobel_size: int = 21,
                       min_size: int = 10, marker_min_size: int = 10) -> np.ndarray:
    """The ``hovernet`` post-processing method on a model's (H, W, C >= 4) output: channel 1 = P(nucleus), channels
    2, 3 = the horizontal and vertical maps (zoo.models.hovernet's layout; TP channels, if any, are ignored here)."""
    m = np.asarray(maps)
    if m.ndim != 3 or m.shape[-1] < 4:
        raise ConfigError(f"hovernet post-processing needs (H, W, C>=4) maps (NP 2, HV 2), got shape {m.shape}")
    return hv_watershed(m[..., 1], m[..., 2], m[..., 3], threshold, edge_threshold, sobel_size, min_size,
                        marker_min_size)
