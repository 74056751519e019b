"""Tissue detection on a low-resolution view of a slide, so background tiles are never run.

Rule (the usual whole-slide recipe, e.g. TIAToolbox's OtsuTissueMasker): grey levels of the slide's thumbnail
(``Slide.thumbnail``) -> Otsu's threshold (Otsu 1979), raised to at least ``min_threshold`` so that a field that is
all tissue (nothing bright for Otsu to separate) is not split into nuclei vs stroma -> tissue = darker than the
threshold -> morphology (scikit-image): closing with a disk, small holes filled, small objects removed; then a
dilation (``select``) so tiles at the rim of the tissue are run (the tissue area is the undilated mask). Sizes are
in µm when the slide's resolution is known, else in thumbnail pixels (``fallback_px``).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class TissueMask:
    """mask: bool (h, w) tissue on the thumbnail grid (its area is the tissue area); select: the mask dilated, which
    decides the tiles that run; downsample: level-0 pixels per mask pixel; threshold: the grey level used."""

    mask: np.ndarray
    select: np.ndarray
    downsample: float
    threshold: float

    def fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0

    def area_mm2(self, mpp: float) -> float:
        """Tissue area in mm² (0 when the resolution is unknown)."""
        return float(self.mask.sum()) * (self.downsample * mpp / 1000.0) ** 2 if mpp else 0.0

    def any_in(self, y0: float, x0: float, y1: float, x1: float) -> bool:
        """Whether level-0 box [y0, y1) x [x0, x1) holds tissue on the mask grid."""
        d = self.downsample
        a, b = int(np.floor(y0 / d)), int(np.ceil(y1 / d))
        c, e = int(np.floor(x0 / d)), int(np.ceil(x1 / d))
        return bool(self.select[max(a, 0):max(b, a + 1), max(c, 0):max(e, c + 1)].any())


def detect_tissue(slide, mask_um: float = 4.0, max_side: int = 2048, min_threshold: float = 200.0,
                  closing_um: float = 16.0, min_object_um2: float = 2000.0, dilate_um: float = 32.0,
                  fallback_px: int = 2) -> TissueMask:
    """The slide's tissue mask by the module's rule, on a thumbnail of about ``mask_um`` µm per pixel (at most
    ``max_side`` pixels on its longer side; ``max_side`` itself when the resolution is unknown); ``fallback_px`` is
    the disk radius for closing and dilation when the resolution is unknown."""
    from skimage.filters import threshold_otsu
    from skimage.morphology import closing, dilation, disk, remove_small_holes, remove_small_objects

    side = max_side
    if slide.mpp:
        side = int(min(max_side, max(64, np.ceil(max(slide.shape) * slide.mpp / mask_um))))
    thumb, d = slide.thumbnail(side)
    grey = thumb.astype(np.float32).mean(-1)
    t = float(threshold_otsu(grey)) if np.ptp(grey) > 0 else 0.0
    t = max(t, float(min_threshold))
    mask = grey < t
    px = d * slide.mpp if slide.mpp else 0.0  # µm per mask pixel
    r_close = max(1, int(round(closing_um / px))) if px else fallback_px
    r_dil = max(1, int(round(dilate_um / px))) if px else fallback_px
    min_obj = max(1, int(round(min_object_um2 / px ** 2))) if px else 16
    if mask.any():
        mask = np.pad(mask, r_close, mode="edge")  # closing must not erode at the thumbnail's border
        mask = closing(mask, disk(r_close))[r_close:-r_close, r_close:-r_close]
        mask = remove_small_holes(mask, max_size=min_obj)
        mask = remove_small_objects(mask, max_size=min_obj)
    select = dilation(mask, disk(r_dil)) if mask.any() else mask
    return TissueMask(mask.astype(bool), select.astype(bool), d, t)
