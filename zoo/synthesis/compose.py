"""One synthetic image (Bhatia sec. 3.2.1; Hou et al. 2019): nuclear mask M (zoo.synthesis.masks), background B
(zoo.synthesis.background), nuclear texture N (zoo.synthesis.texture), composed as

    S = M * N + (1 - M) * B                                            (Bhatia sec. 3.2.1, Hou et al. sec. 3.1)

with M the binary mask of the instance map (hard, so the instance map is exactly the composited nuclei, pixel for
pixel). Deterministic: the same real image, config and seed give the same (S, instance map).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from zoo.errors import DataError
from zoo.synthesis.background import background, hematoxylin
from zoo.synthesis.config import SynthesisConfig
from zoo.synthesis.masks import random_nuclei
from zoo.synthesis.texture import eosin_texture, nuclear_image, nuclear_pool


@dataclasses.dataclass
class Synthetic:
    """One synthetic tile: image S (uint8 (T, T, 3)), instances (int32 (T, T)), and its parts: background B, nuclear
    texture N, the polygons (vertices (n, 2) as row, col), the removed region of the real tile, and where the tile was
    cut from (source index, row, col)."""

    image: np.ndarray
    instances: np.ndarray
    background: np.ndarray
    nuclei: np.ndarray
    polygons: list
    removed: np.ndarray
    source: int
    corner: tuple


def compose(mask: np.ndarray, nuclei: np.ndarray, back: np.ndarray) -> np.ndarray:
    """S = M * N + (1 - M) * B with a binary M (H, W), N and B (H, W, 3) uint8; returns uint8."""
    return np.where(np.asarray(mask, bool)[..., None], nuclei, back).astype(np.uint8)


def random_crop(rng: np.random.Generator, image: np.ndarray, size: int, name: str = "<image>") -> tuple:
    """(crop, (row, col)) of a ``size`` x ``size`` crop at a uniform random corner; DataError when too small."""
    h, w = image.shape[:2]
    if h < size or w < size:
        raise DataError(name, f"image is {h} x {w} px, smaller than the synthetic tile ({size} px)")
    r, c = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return image[r:r + size, c:c + size], (r, c)


def synthesize(images: list, config: SynthesisConfig = SynthesisConfig(), seed: int = 0, index: int = 0,
               names: list | None = None) -> Synthetic:
    """Synthetic tile number ``index`` of the stream ``seed`` from the real RGB uint8 ``images`` (unlabelled): one
    image gives the background and the nuclear pool, another random crop (of a random image) the eosin texture. The
    random state is ``numpy.random.default_rng([seed, index])``, so tile i does not depend on the tiles before it."""
    if not images:
        raise DataError("--images", "no real images to synthesize from")
    rng = np.random.default_rng([seed, index])
    names = names or [f"<image {i}>" for i in range(len(images))]
    src = int(rng.integers(0, len(images)))
    tile, corner = random_crop(rng, images[src], config.tile_size, names[src])
    h = hematoxylin(tile)
    back, removed, _ = background(tile, config)
    pool = nuclear_pool(tile, config, h)
    other = int(rng.integers(0, len(images)))
    texture = eosin_texture(random_crop(rng, images[other], config.tile_size, names[other])[0], config.texture_sigma)
    instances, polygons = random_nuclei(rng, config)
    nuclei = nuclear_image(rng, instances, pool, texture, config)
    return Synthetic(compose(instances > 0, nuclei, back), instances, back, nuclei, polygons, removed, src, corner)
