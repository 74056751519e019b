"""Backgrounds of synthetic images (Bhatia sec. 3.2.1, first step; Hou et al. 2019): remove the nuclear material of
a real unlabelled image and inpaint the holes from their surroundings.

- Hematoxylin: zoo.stain.deconvolution.rgb_to_hed (Ruifrok & Johnston's colour deconvolution), channel 0.
- Over-segmentation: multi-level Otsu thresholds of the hematoxylin channel (skimage.filters.threshold_multiotsu,
  ``otsu_classes`` classes); the top ``remove_classes`` classes are removed, holes filled and grown by
  ``remove_dilation`` px so the removed region "always contains the full foreground" (Bhatia: removing some
  background too does not matter).
- Inpainting: Bhatia uses Telea's fast marching method ([23]). Its maintained implementation is OpenCV's
  ``cv2.inpaint(..., INPAINT_TELEA)``; the project does not depend on OpenCV and no other maintained package in the
  environment (ENVIRONMENT.md, constraints/host.txt) provides it, so two cv2-free options were measured on 5 MoNuSeg
  training tiles of 256 x 256 px, the centre crop of the first 5 images in name order, default config (top 2 of 4
  Otsu classes removed), ``python -m zoo.synthesis.background`` at load average 9.4 on the shared 2-core machine
  (times inflated by the load; the ratio is the point): scikit-image's ``inpaint_biharmonic`` (``biharmonic``: a
  smooth biharmonic fill from the hole's border) took 0.326 s a tile and left 4.4 % of the removed pixels above the
  removal threshold (6.8 % on the worst tile: the fill overshoots inside large holes); the nearest-kept-pixel copy
  smoothed inside the hole (``nearest``, scipy's exact distance transform) took 0.018 s and left 0.0 % (every filled
  value comes from a kept pixel, all below the threshold, and the in-hole Gaussian only averages them). ``nearest`` is
  the default: it meets the "no hematoxylin-dark pixels left" bar that biharmonic misses, ~18x faster;
  ``inpaint: biharmonic`` stays selectable. The numbers are repeated in docs/results/ground_truth_free.md.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage as ndi

from zoo.synthesis.config import SynthesisConfig


def hematoxylin(image: np.ndarray) -> np.ndarray:
    """The hematoxylin amount (H, W) float32 of an RGB uint8 image (zoo.stain.deconvolution.rgb_to_hed)."""
    from zoo.stain.deconvolution import rgb_to_hed

    return np.asarray(rgb_to_hed(image))[..., 0]


def eosin(image: np.ndarray) -> np.ndarray:
    """The eosin amount (H, W) float32 of an RGB uint8 image (zoo.stain.deconvolution.rgb_to_hed)."""
    from zoo.stain.deconvolution import rgb_to_hed

    return np.asarray(rgb_to_hed(image))[..., 1]


def nuclear_threshold(h: np.ndarray, classes: int = 3, top: int = 1) -> float:
    """The multi-level Otsu threshold below the ``top`` highest of ``classes`` classes of a hematoxylin channel (top=1:
    the highest threshold; pixels above it are nuclear material). A channel
    with too few distinct values for ``classes`` classes falls back to the two-class Otsu threshold; a flat one has
    no nuclear class (the threshold lies above its value)."""
    from skimage.filters import threshold_multiotsu, threshold_otsu

    if np.ptp(h) == 0:
        return float(h.max()) + 1.0
    try:
        return float(threshold_multiotsu(h, classes=classes)[-top])
    except ValueError:  # skimage: "the input image has only N different values"
        return float(threshold_otsu(h))


def nuclear_region(h: np.ndarray, config: SynthesisConfig, threshold: float | None = None) -> np.ndarray:
    """The over-segmented nuclear material (bool (H, W)): the top ``remove_classes`` Otsu classes (or above
    ``threshold``), holes filled, grown by remove_dilation."""
    t = nuclear_threshold(h, config.otsu_classes, config.remove_classes) if threshold is None else threshold
    region = ndi.binary_fill_holes(h > t)
    if config.remove_dilation:
        region = ndi.binary_dilation(region, iterations=config.remove_dilation)
    return region


def inpaint(image: np.ndarray, holes: np.ndarray, method: str = "biharmonic", sigma: float = 2.0) -> np.ndarray:
    """Fill ``holes`` (bool (H, W)) of an RGB uint8 image from the pixels around them; returns uint8.

    biharmonic: skimage.restoration.inpaint_biharmonic per RGB channel (Damelin & Hoang 2018).
    nearest: each hole pixel takes the colour of its nearest kept pixel (scipy.ndimage.distance_transform_edt), then a
    Gaussian of ``sigma`` px (normalised over the hole) smooths the copied values inside the hole only.
    """
    holes = np.asarray(holes, bool)
    if not holes.any():
        return image.copy()
    if holes.all():
        return np.broadcast_to(np.uint8(255), image.shape).copy()  # nothing to fill from: blank glass
    if method == "biharmonic":
        from skimage.restoration import inpaint_biharmonic

        out = inpaint_biharmonic(image.astype(np.float32) / 255.0, holes, channel_axis=-1)
        return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
    if method == "nearest":
        idx = ndi.distance_transform_edt(holes, return_distances=False, return_indices=True)
        filled = image[idx[0], idx[1]].astype(np.float32)
        if sigma > 0:
            filled = np.stack([ndi.gaussian_filter(filled[..., c], sigma) for c in range(3)], -1)
        out = np.where(holes[..., None], filled, image.astype(np.float32))
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    raise ValueError(f"inpaint: unknown method {method!r}")


def background(image: np.ndarray, config: SynthesisConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """(background uint8 (H, W, 3), removed region bool (H, W), the removal threshold) of a real RGB tile: the
    region is ``nuclear_region`` (the hematoxylin above the threshold below the top ``remove_classes`` Otsu classes,
    holes filled, grown), inpainted."""
    h = hematoxylin(image)
    t = nuclear_threshold(h, config.otsu_classes, config.remove_classes)
    region = nuclear_region(h, config, t)
    return inpaint(image, region, config.inpaint, config.nearest_sigma), region, t


def leftover_dark_fraction(background_image: np.ndarray, region: np.ndarray, threshold: float) -> float:
    """The fraction of removed pixels whose inpainted hematoxylin is still above ``threshold`` (the removal
    threshold: what is left would have been removed as nuclear material)."""
    if not region.any():
        return 0.0
    return float((hematoxylin(background_image)[region] > threshold).mean())


def compare_inpainting(tiles, config: SynthesisConfig = SynthesisConfig()) -> dict:
    """Per method: mean seconds per tile and the mean leftover-dark fraction (``leftover_dark_fraction``)."""
    out = {}
    for method in ("biharmonic", "nearest"):
        secs, dark = [], []
        for tile in tiles:
            h = hematoxylin(tile)
            t = nuclear_threshold(h, config.otsu_classes, config.remove_classes)
            region = nuclear_region(h, config, t)
            t0 = time.perf_counter()
            bg = inpaint(tile, region, method, config.nearest_sigma)
            secs.append(time.perf_counter() - t0)
            dark.append(leftover_dark_fraction(bg, region, t))
        out[method] = {"s_per_tile": float(np.mean(secs)), "leftover_dark": float(np.mean(dark)),
                       "leftover_dark_max": float(np.max(dark)), "tiles": len(secs)}
    return out


if __name__ == "__main__":  # the measurement quoted in the module docstring
    import glob
    import json
    import os
    import sys

    from zoo.data.imageio import read_rgb

    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.environ.get("HISTOZOO_DATA", "../shared/data"), "monuseg2018/MoNuSegTrainingData/Tissue_Images")
    tiles = []
    for path in sorted(glob.glob(os.path.join(folder, "*.png")))[:5]:
        img = read_rgb(path)
        tiles.append(img[372:628, 372:628])
    print("load average at start:", os.getloadavg())
    print(json.dumps(compare_inpainting(tiles), indent=1))
    print("load average at end:", os.getloadavg())
