"""Nuclear texture of synthetic images (Bhatia sec. 3.2.1, second step; Hou et al. 2019): nuclear material gathered
by sub-segmentation inside the real image's nuclei, diversified with eosin-channel textures (Bhatia: "nuclei form a
very small part of the image ... the textures from the eosin channel ... were also used").

- Sub-segmentation: the pixels of the top multi-level Otsu class of the hematoxylin channel, eroded by one pixel, so
  every pixel gathered lies strictly inside a nucleus; their optical densities OD = -log((I + 1) / 256) per RGB
  channel are the pool of nuclear colours.
- Per synthetic nucleus: a base OD, the median of ``POOL_DRAW`` pool pixels drawn at random, times a factor uniform in
  [1 - intensity_jitter, 1 + intensity_jitter].
- Texture: the eosin channel of another random crop of a real image, Gaussian-smoothed, standardised, and
  multiplied in: OD(p) = base_k * clip(1 + texture_strength * e(p), 0.2, 3).
- N = 256 exp(-OD) - 1 (the inverse of the OD above), uint8.
When a tile has too few nuclear pixels (< ``MIN_POOL``), the pool falls back to the darkest 1 % of the hematoxylin
channel.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from zoo.synthesis.background import eosin, hematoxylin, nuclear_threshold
from zoo.synthesis.config import SynthesisConfig

POOL_DRAW = 25
MIN_POOL = 50


def od(image: np.ndarray) -> np.ndarray:
    """Optical density -log((I + 1) / 256) of uint8 RGB, float32 (>= 0)."""
    return -np.log((image.astype(np.float32) + 1.0) / 256.0)


def from_od(density: np.ndarray) -> np.ndarray:
    """The inverse of ``od``: 256 exp(-OD) - 1, rounded and clipped to uint8."""
    return np.clip(np.rint(256.0 * np.exp(-density) - 1.0), 0, 255).astype(np.uint8)


def nuclear_pool(image: np.ndarray, config: SynthesisConfig, h: np.ndarray | None = None) -> np.ndarray:
    """(n, 3) ODs of the pixels sub-segmented strictly inside the real image's nuclei (module docstring)."""
    h = hematoxylin(image) if h is None else h
    inside = ndi.binary_erosion(h > nuclear_threshold(h, config.otsu_classes))
    if inside.sum() < MIN_POOL:
        inside = h >= np.percentile(h, 99)
    return od(image)[inside]


def eosin_texture(image: np.ndarray, sigma: float) -> np.ndarray:
    """The standardised (zero mean, unit std) eosin channel of an RGB tile, Gaussian-smoothed by ``sigma`` px."""
    e = eosin(image).astype(np.float32)
    if sigma > 0:
        e = ndi.gaussian_filter(e, sigma)
    std = e.std()
    return (e - e.mean()) / std if std > 0 else np.zeros_like(e)


def nuclear_image(rng: np.random.Generator, instances: np.ndarray, pool: np.ndarray, texture: np.ndarray,
                  config: SynthesisConfig) -> np.ndarray:
    """N (H, W, 3) uint8: every nucleus of ``instances`` filled with its own base colour from ``pool`` modulated by
    ``texture`` (module docstring); background pixels hold the mean nuclear colour (they are masked out by S)."""
    n = int(instances.max(initial=0))
    base = np.empty((n + 1, 3), np.float32)
    base[0] = pool.mean(axis=0)
    if n:
        picks = pool[rng.integers(0, len(pool), (n, POOL_DRAW))]
        scale = rng.uniform(1 - config.intensity_jitter, 1 + config.intensity_jitter, (n, 1))
        base[1:] = np.median(picks, axis=1) * scale
    mod = np.clip(1.0 + config.texture_strength * texture, 0.2, 3.0)[..., None]
    return from_od(base[instances] * mod)
