"""The synthesis config (Bhatia, "Ground-truth-free nuclei segmentation", section 3.2.1; after Hou et al. 2019): one
frozen dataclass, validated at construction, that round-trips through plain dicts (YAML / JSON / summary.json)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional

from zoo.errors import ConfigError

INPAINT_METHODS = ("biharmonic", "nearest")


@dataclasses.dataclass(frozen=True)
class SynthesisConfig:
    """Every knob of the initial synthesis.

    tile_size: side of a synthetic image in pixels (a random crop of one real image gives its background and
        textures); 256 by default (Bhatia sec. 4 adds 400 x 400 crops; 256 is the U-Net's patch).
    nuclei_min, nuclei_max: the number of polygons per tile is uniform in [min, max] (Bhatia: "a random number of
        polygons"). Defaults 30..70; MoNuSeg's 30 training images hold 21..98 per 256 x 256 px (5th-95th
        percentile, ``histozoo synth --sizes-from build/monuseg``).
    radius_min, radius_max: a polygon's mean radius in pixels, uniform in [min, max] (defaults 5..11 px; MoNuSeg's
        training nuclei measure 4.6..18.4 px equivalent radius, 5th-95th percentile of 16,958);
        ``size_ranges_from_records`` measures them from a built dataset instead (its ground truth: not for a
        ground-truth-free run).
    elongation_max: the polygon's axis ratio is uniform in [1, elongation_max] (ellipse-like nuclei), rotated at
        random.
    vertices_min, vertices_max: vertices per polygon; irregularity: the relative jitter of each vertex's radius.
    max_overlap: the largest pairwise overlap allowed, as a fraction of the smaller polygon's area (Bhatia: 0.05).
        Where two polygons overlap, the later one is drawn on top (its instance owns the shared pixels).
    max_tries: placements tried per polygon before it is dropped (a tile can end with fewer than drawn).
    otsu_classes, remove_classes: the multi-level Otsu over-segmentation of the hematoxylin channel (Bhatia sec.
        3.2.1, after Hou et al.): ``otsu_classes`` classes, the top ``remove_classes`` of them removed (4 and 2: the
        top class of 3 left pale nuclei in the background, seen on MoNuSeg tiles; the top 2 of 4 removed them and 37-47
        % of the tile, the top 2 of 3 up to 83 %); the top class alone is nuclear material for the texture pool and
        the leftover check. remove_dilation: pixels the removed region is grown by (so that it "always contains the
        full foreground").
    inpaint: "nearest" (each hole pixel copies its nearest kept pixel, then a Gaussian of ``nearest_sigma`` inside
        the hole; the default, measured in zoo.synthesis.background) or "biharmonic"
        (skimage.restoration.inpaint_biharmonic). Telea's fast marching (Bhatia's [23]) has
        no maintained implementation here outside OpenCV; see zoo.synthesis.background for the measured choice.
    texture_strength: how strongly the eosin-channel texture modulates a nucleus' optical density (0 = flat).
    texture_sigma: Gaussian smoothing (px) of that texture.
    intensity_jitter: each nucleus' optical density is scaled by a factor uniform in [1 - j, 1 + j].
    val_fraction: the fraction of synthetic images written to the "val" split (Bhatia sec. 3.2.3: 80-20).
    """

    tile_size: int = 256
    nuclei_min: int = 30
    nuclei_max: int = 70
    radius_min: float = 5.0
    radius_max: float = 11.0
    elongation_max: float = 1.8
    vertices_min: int = 8
    vertices_max: int = 16
    irregularity: float = 0.15
    max_overlap: float = 0.05
    max_tries: int = 30
    otsu_classes: int = 4
    remove_classes: int = 2
    remove_dilation: int = 2
    inpaint: str = "nearest"
    nearest_sigma: float = 2.0
    texture_strength: float = 0.35
    texture_sigma: float = 1.0
    intensity_jitter: float = 0.15
    val_fraction: float = 0.2

    def __post_init__(self):
        def fail(key, problem):
            raise ConfigError(f"synthesis: option {key!r} {problem}, got {getattr(self, key)!r}")

        def integer(key, low):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                fail(key, f"must be an integer >= {low}")

        def number(key, low, high):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not low <= v <= high:
                fail(key, f"must be a number in [{low}, {high}]")

        integer("tile_size", 32)
        integer("nuclei_min", 0)
        integer("nuclei_max", 0)
        if self.nuclei_max < self.nuclei_min:
            fail("nuclei_max", f"must be >= nuclei_min ({self.nuclei_min})")
        number("radius_min", 1.0, 1e4)
        number("radius_max", 1.0, 1e4)
        if self.radius_max < self.radius_min:
            fail("radius_max", f"must be >= radius_min ({self.radius_min})")
        number("elongation_max", 1.0, 10.0)
        integer("vertices_min", 3)
        integer("vertices_max", 3)
        if self.vertices_max < self.vertices_min:
            fail("vertices_max", f"must be >= vertices_min ({self.vertices_min})")
        number("irregularity", 0.0, 0.9)
        number("max_overlap", 0.0, 1.0)
        integer("max_tries", 1)
        integer("otsu_classes", 2)
        integer("remove_classes", 1)
        if self.remove_classes >= self.otsu_classes:
            fail("remove_classes", f"must be < otsu_classes ({self.otsu_classes})")
        integer("remove_dilation", 0)
        if self.inpaint not in INPAINT_METHODS:
            fail("inpaint", f"must be one of {INPAINT_METHODS}")
        number("nearest_sigma", 0.0, 100.0)
        number("texture_strength", 0.0, 5.0)
        number("texture_sigma", 0.0, 100.0)
        number("intensity_jitter", 0.0, 0.9)
        number("val_fraction", 0.0, 1.0)

    @classmethod
    def from_dict(cls, data: Optional[Mapping[str, Any]] = None) -> "SynthesisConfig":
        """Config from a dict of options (unknown keys are a one-line ConfigError) or defaults for None."""
        if data is None:
            return cls()
        if isinstance(data, cls):
            return data
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"synthesis: unknown option(s) {', '.join(map(repr, unknown))} "
                              f"(known: {', '.join(sorted(known))})")
        return cls(**dict(data))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "SynthesisConfig":
        return dataclasses.replace(self, **changes)
