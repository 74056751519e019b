"""Classical (training-free) nuclei segmentation: Hu et al.'s colour-deconvolution pipeline and LoG blob detection.

Hu, Tang, Chang, Fan, Lai, Xu, "Unsupervised learning for cell-level visual representation in histopathology images
with generative adversarial networks" (IEEE JBHI 2019; arXiv 1711.11317), sec. III-B-1 and IV-B ("Segmentation
Parameters"), implemented with HistomicsTK. In the paper's order:

1. Reinhard colour normalisation to a standard image whose mean (+/- std) in the Ruderman l-alpha-beta space of
   HistomicsTK is [8.98 +/- 0.64, 0.08 +/- 0.11, 0.02 +/- 0.03].
2. Macenko PCA colour deconvolution: stain vectors from the 1 % and 99 % angle percentiles, pixels whose projected
   magnitude is below 16 excluded (HistomicsTK's SDA units; 16 SDA = 0.15 log10-OD, Macenko's beta), giving the
   hematoxylin channel. Here: zoo.stain's Macenko, whose tissue rule is OD >= 0.15 in every channel instead.
3. "Intensity thresholding in the hematoxylin stain image ... with a constant global threshold" of 120. The hematoxylin
   stain image is HistomicsTK's ``color_deconvolution(...).Stains[..., 0]``: the hematoxylin concentration rendered
   back as an 8-bit transmitted-light intensity, I_H = 256 ** (1 - c_SDA / 255) - 1 = 256 * exp(-OD_H) - 1, so
   nuclei are *dark*: nucleus pixels are I_H < 120, i.e. hematoxylin OD (natural log) > ln(256 / 121) = 0.749.
4. Post-processing: objects of fewer than 200 pixels are removed, then "an opening operation with 7x7 kernel size"
   separates touching cells; the connected components are the nuclei (Fig. 6e). The paper also removes thin
   protrusions with Wienert et al.'s minimum-model step [41] between the two; that step is not specified further
   and is not implemented here (the 7x7 opening removes protrusions thinner than 7 px anyway).

Yuan & Suh 2018, sec. 3.3: "the HistomicTK Python API ... to perform cell segmentation ... via the Laplacian of
Gaussian blob identification algorithm"; the paper gives no parameters. :func:`log_blobs` wraps
skimage.feature.blob_log with the scale expressed as a nucleus radius range in pixels (sigma = r / sqrt(2) for a 2-D
LoG), and :func:`seeded_watershed` turns the blob centres into instances inside a foreground mask.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from scipy import ndimage

from zoo.errors import ConfigError
from zoo.postprocess.instances import label_components, relabel_sequential, remove_small

__all__ = ["HU_REINHARD_TARGET", "HuConfig", "ClassicalResult", "hu_postprocess", "hu_segment",
           "reinhard_lalphabeta",
           "hematoxylin_intensity", "log_blobs", "seeded_watershed", "hu_log_segment"]

#: Hu et al. IV-B: mean and standard deviation of the standard image in HistomicsTK's Ruderman l-alpha-beta space.
HU_REINHARD_TARGET = {"mean": (8.98, 0.08, 0.02), "std": (0.64, 0.11, 0.03)}


@dataclasses.dataclass(frozen=True)
class HuConfig:
    """Hu et al.'s segmentation parameters (sec. IV-B); defaults are the paper's.

    threshold: global threshold on the 8-bit hematoxylin intensity image (nuclei are darker than it). Paper: 120.
      ``"otsu"`` picks it per image by Otsu's method on that image (not in the paper; a parameter-free variant).
    min_size: objects with fewer pixels are removed before the opening. Paper: 200.
    opening: side of the square structuring element of the opening. Paper: 7 (7x7).
    min_size_after: optional second size filter after the opening (0 = off; not in the paper).
    normalize: apply Reinhard normalisation to HU_REINHARD_TARGET first (step 1).
    angle_percentiles: Macenko angle percentiles of step 2 (paper: 1 %-99 %; zoo.stain takes them symmetric).
    macenko_beta: pixels with OD below this in any channel are left out of the stain estimate (zoo.stain's Macenko
      tissue rule, natural-log OD). HistomicsTK instead drops pixels whose projected OD magnitude is below 16 SDA
      units (0.15 log10-OD, 0.35 natural-log OD); 0.15 per channel is Macenko et al.'s own beta.
    connectivity: 4 or 8 for the final connected components.
    """

    threshold: float | str = 120.0
    min_size: int = 200
    opening: int = 7
    min_size_after: int = 0
    normalize: bool = True
    angle_percentiles: tuple = (0.01, 0.99)
    macenko_beta: float = 0.15
    connectivity: int = 8

    def __post_init__(self):
        if self.threshold != "otsu" and not (isinstance(self.threshold, (int, float)) and 0 < self.threshold < 256):
            raise ConfigError(f"HuConfig.threshold must be an 8-bit intensity in (0, 256) or 'otsu', "
                              f"got {self.threshold!r}")
        if self.min_size < 0 or self.min_size_after < 0:
            raise ConfigError("HuConfig.min_size and min_size_after must be >= 0")
        if self.opening < 0:
            raise ConfigError(f"HuConfig.opening must be >= 0, got {self.opening}")
        if self.connectivity not in (4, 8):
            raise ConfigError(f"HuConfig.connectivity must be 4 or 8, got {self.connectivity}")
        lo, hi = self.angle_percentiles
        if not (0 <= lo < hi <= 1) or abs((1.0 - hi) - lo) > 1e-9:
            raise ConfigError(f"HuConfig.angle_percentiles must be (lo, 1 - lo) with 0 <= lo < 0.5, "
                              f"got {self.angle_percentiles}")


@dataclasses.dataclass
class ClassicalResult:
    """instances: int32 (H, W) nuclei 1..N; hematoxylin: float32 (H, W) 8-bit-scale intensity (dark = stain);
    mask: the binary foreground before labelling; info: what the stain steps did (fallbacks included)."""

    instances: np.ndarray
    hematoxylin: np.ndarray
    mask: np.ndarray
    info: dict


def hu_postprocess(hematoxylin, threshold: float | str = 120.0, min_size: int = 200, opening: int = 7,
                   min_size_after: int = 0, connectivity: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Hu et al. steps 3-4 on an 8-bit-scale hematoxylin intensity image: ``I_H < threshold`` -> remove objects
    smaller than ``min_size`` px -> opening with a ``opening`` x ``opening`` square -> connected components.
    ``threshold="otsu"``: Otsu's threshold of this image's intensities. Returns ``(instances int32, mask bool)``."""
    h = np.asarray(hematoxylin, dtype=np.float32)
    if h.ndim != 2:
        raise ConfigError(f"hematoxylin must be a 2-D intensity image, got shape {h.shape}")
    if threshold == "otsu":
        from skimage.filters import threshold_otsu

        threshold = float(threshold_otsu(h)) if h.size and h.max() > h.min() else 0.0
    mask = h < threshold
    if min_size > 1:
        mask = remove_small(label_components(mask, connectivity), min_size) > 0
    if opening > 1:
        mask = ndimage.binary_opening(mask, structure=np.ones((opening, opening), bool))
    labels = label_components(mask, connectivity)
    if min_size_after > 1:
        labels = relabel_sequential(remove_small(labels, min_size_after))
    return labels, labels > 0


def hematoxylin_intensity(od_hematoxylin) -> np.ndarray:
    """HistomicsTK's 8-bit hematoxylin stain image from a hematoxylin optical density (natural log, unit stain
    vector, OD = -ln((I + 1) / 256)): I_H = 256 * exp(-OD) - 1, clipped to [0, 255] (``sda_to_rgb``, I_0 = None)."""
    od = np.asarray(od_hematoxylin, dtype=np.float32)
    return np.clip(256.0 * np.exp(-od) - 1.0, 0.0, 255.0).astype(np.float32)


def hu_segment(image, config: HuConfig | None = None) -> ClassicalResult:
    """Hu et al. sec. III-B-1 / IV-B, all four stages: Reinhard -> Macenko deconvolution -> I_H < 120 -> remove
    < 200 px -> 7x7 opening -> connected components. ``image``: (H, W, 3) uint8 RGB."""
    cfg = config or HuConfig()
    od_h, info = _hematoxylin_od(image, cfg)
    h = hematoxylin_intensity(od_h)
    inst, mask = hu_postprocess(h, cfg.threshold, cfg.min_size, cfg.opening, cfg.min_size_after, cfg.connectivity)
    return ClassicalResult(inst, h, mask, info)


def _check_rgb(image) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ConfigError(f"image must be (H, W, 3) uint8 RGB, got shape {a.shape} dtype {a.dtype}")
    return a


@functools.lru_cache(maxsize=8)
def _lalphabeta_normalizer(mean: tuple, std: tuple):
    from zoo.stain import ReinhardNormalizer

    return ReinhardNormalizer(space="lalphabeta").set_params({"lab_mean": mean, "lab_std": std})


def reinhard_lalphabeta(image, mean=HU_REINHARD_TARGET["mean"], std=HU_REINHARD_TARGET["std"]) -> np.ndarray:
    """Reinhard et al. 2001 colour transfer in the Ruderman l-alpha-beta space, as HistomicsTK's
    ``color_normalization.reinhard`` (the implementation Hu et al. used; their target statistics are in this space,
    not CIELAB): each channel is standardised over the image and rescaled to ``mean`` / ``std``. uint8 in and out
    (rounded). This is zoo.stain's ``ReinhardNormalizer(space="lalphabeta")`` with the statistics given; like every
    zoo.stain normalizer it returns a tile without tissue or with a flat channel unchanged."""
    norm = _lalphabeta_normalizer(tuple(float(v) for v in mean), tuple(float(v) for v in std))
    return norm.transform(_check_rgb(image))


def _hematoxylin_od(image, cfg: HuConfig) -> tuple[np.ndarray, dict]:
    """Steps 1-2: (H, W) hematoxylin optical density (natural log, unit stain vector, I_0 = 256 as HistomicsTK's
    SDA) from zoo.stain's Macenko deconvolution of the Reinhard-normalised image, and what the stain steps did."""
    from zoo.stain import FALLBACK_NAMES, MacenkoNormalizer

    img = _check_rgb(image)
    if cfg.normalize:
        img = reinhard_lalphabeta(img)
    mac = MacenkoNormalizer(alpha=100.0 * cfg.angle_percentiles[0], io=256.0, beta=cfg.macenko_beta, jit=False)
    conc, he, code = mac.deconvolve(img)
    info = {"stain_matrix": np.asarray(he).round(4).tolist(), "fallback": FALLBACK_NAMES[int(code)]}
    return np.asarray(conc)[..., 0], info


def log_blobs(nucleus_image, radius_range: tuple = (4.0, 12.0), num_sigma: int = 9, threshold: float = 0.05,
              overlap: float = 0.5, mask=None) -> np.ndarray:
    """Yuan & Suh 2018 sec. 3.3: Laplacian-of-Gaussian blob detection (skimage.feature.blob_log) of nuclei.

    nucleus_image: (H, W) float, nuclei *bright* (e.g. hematoxylin OD, or 1 - I_H / 255), roughly in [0, 1].
    radius_range: smallest and largest nucleus radius in pixels; the LoG scales are sigma = r / sqrt(2). The paper
      gives no values; (4, 12) px covers lymphocytes to large epithelial nuclei at 40x (0.25 um/px).
    threshold: blob_log's absolute threshold on the scale-normalised LoG response.
    mask: optional (H, W) bool; blobs whose centre falls outside it are dropped.
    Returns (N, 3) float: row, col, radius (= sqrt(2) sigma) in pixels, sorted by row then col.
    """
    from skimage.feature import blob_log

    img = np.asarray(nucleus_image, dtype=np.float32)
    if img.ndim != 2:
        raise ConfigError(f"nucleus_image must be 2-D, got shape {img.shape}")
    r0, r1 = radius_range
    if not (0 < r0 <= r1):
        raise ConfigError(f"radius_range must satisfy 0 < min <= max, got {radius_range}")
    if not img.size or not np.isfinite(img).all() or img.max() <= img.min():
        return np.zeros((0, 3), np.float64)
    blobs = blob_log(img, min_sigma=r0 / math.sqrt(2), max_sigma=r1 / math.sqrt(2),
                     num_sigma=num_sigma if r1 > r0 else 1, threshold=threshold, overlap=overlap,
                     exclude_border=False)
    blobs = np.asarray(blobs, dtype=np.float64).reshape(-1, 3)
    if mask is not None and len(blobs):
        m = np.asarray(mask, bool)
        rc = blobs[:, :2].astype(int)
        blobs = blobs[m[rc[:, 0], rc[:, 1]]]
    blobs[:, 2] *= math.sqrt(2)
    return blobs[np.lexsort((blobs[:, 1], blobs[:, 0]))]


def seeded_watershed(nucleus_image, mask, seeds_yx, min_size: int = 0, connectivity: int = 8) -> np.ndarray:
    """Marker-controlled watershed of the inverted ``nucleus_image`` (nuclei bright) inside ``mask``, one marker per
    seed (row, col); mask components that hold no seed stay one nucleus each. Returns int32 instances 1..N."""
    from skimage.segmentation import watershed

    img = np.asarray(nucleus_image, dtype=np.float32)
    m = np.asarray(mask, bool)
    if img.shape != m.shape:
        raise ConfigError(f"mask shape {m.shape} != image shape {img.shape}")
    markers = np.zeros(m.shape, np.int32)
    seeds = np.asarray(seeds_yx, dtype=float)
    seeds = np.zeros((0, 2)) if seeds.size == 0 else seeds.reshape(len(seeds), -1)[:, :2]
    if len(seeds):
        rc = np.clip(np.round(seeds).astype(int), 0, np.array(m.shape) - 1)
        rc = rc[m[rc[:, 0], rc[:, 1]]]
        markers[rc[:, 0], rc[:, 1]] = np.arange(1, len(rc) + 1, dtype=np.int32)
    # mask components without any seed get a marker of their own (the whole component)
    comp = label_components(m, connectivity)
    seeded = np.zeros(int(comp.max()) + 1, bool)
    seeded[comp[markers > 0]] = True
    orphan = ~seeded[comp] & (comp > 0)
    markers = np.where(orphan, comp + markers.max(), markers).astype(np.int32)
    if not markers.any():
        return np.zeros(m.shape, np.int32)
    labels = watershed(-img, markers, mask=m, connectivity=2 if connectivity == 8 else 1).astype(np.int32)
    if min_size > 1:
        labels = remove_small(labels, min_size)
    return relabel_sequential(labels)


def hu_log_segment(image, config: HuConfig | None = None, radius_range: tuple = (4.0, 12.0),
                   threshold: float = 0.05, smooth: float = 1.0) -> ClassicalResult:
    """Hu et al.'s foreground split by Yuan & Suh's LoG blobs: the Hu mask (steps 1-4), then a watershed of the
    (Gaussian-smoothed, ``smooth`` px) hematoxylin OD from the LoG blob centres found inside the mask."""
    cfg = config or HuConfig()
    od_h, info = _hematoxylin_od(image, cfg)
    h = hematoxylin_intensity(od_h)
    _, mask = hu_postprocess(h, cfg.threshold, cfg.min_size, cfg.opening, cfg.min_size_after, cfg.connectivity)
    od_s = ndimage.gaussian_filter(od_h.astype(np.float32), smooth) if smooth > 0 else od_h
    blobs = log_blobs(od_s, radius_range, threshold=threshold, mask=mask)
    inst = seeded_watershed(od_s, mask, blobs[:, :2], min_size=cfg.min_size_after, connectivity=cfg.connectivity)
    info = dict(info, log_blobs=int(len(blobs)))
    return ClassicalResult(inst, h, mask, info)


#: The classical (training-free) segmenters by name, as ``scripts/classical_baseline.py`` and ``histozoo quickstart``
#: score them: ``hu`` (paper parameters), ``hu_otsu`` (Otsu threshold per image), ``hu_log`` (LoG-seeded watershed).
METHODS = ("hu", "hu_otsu", "hu_log")


def segment(method: str, image) -> ClassicalResult:
    """Run the classical segmenter ``method`` (one of METHODS) on an RGB image."""
    if method == "hu":
        return hu_segment(image)
    if method == "hu_otsu":
        return hu_segment(image, HuConfig(threshold="otsu"))
    if method == "hu_log":
        return hu_log_segment(image)
    raise ConfigError(f"classical method {method!r}: expected one of {', '.join(METHODS)}")
