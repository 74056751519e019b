"""Nuclear masks of synthetic images (Bhatia sec. 3.2.1, "the zeroth step"; Hou et al. 2019): a random number of
random polygons of varying size and shape, at most ``max_overlap`` (5 %) pairwise overlap in area. The instance map
is the synthetic image's ground truth: polygon k (1-based, in drawing order) is instance k, a later polygon owns the
pixels it shares with an earlier one.

``size_ranges_from_records`` measures the radius and count ranges from a built dataset's instance maps (records of
zoo.data.records), for when the size statistics of real nuclei are given.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from skimage.draw import polygon as draw_polygon

from zoo.synthesis.config import SynthesisConfig


def random_polygon(rng: np.random.Generator, centre, radius: float, config: SynthesisConfig) -> np.ndarray:
    """Vertices (n, 2) as (row, col) of one random star-shaped polygon: ``n`` vertices at sorted, jittered angles,
    radius * (1 + irregularity * U(-1, 1)) each, stretched by an axis ratio in [1, elongation_max] and rotated at
    random (area-preserving stretch: sqrt(ratio) along one axis, 1/sqrt(ratio) along the other)."""
    n = int(rng.integers(config.vertices_min, config.vertices_max + 1))
    angles = np.sort((np.arange(n) + rng.uniform(-0.35, 0.35, n)) * (2 * np.pi / n))
    radii = radius * (1.0 + config.irregularity * rng.uniform(-1.0, 1.0, n))
    ratio = rng.uniform(1.0, config.elongation_max)
    pts = np.stack([radii * np.sin(angles) / np.sqrt(ratio), radii * np.cos(angles) * np.sqrt(ratio)], axis=1)
    theta = rng.uniform(0.0, np.pi)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return pts @ rot.T + np.asarray(centre, float)


def rasterize(vertices: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the pixels inside a polygon (skimage.draw.polygon), clipped to ``shape``."""
    return draw_polygon(vertices[:, 0], vertices[:, 1], shape=shape)


def paint(polygons: list, shape) -> np.ndarray:
    """The instance map (int32) of polygons painted in order: polygon k is instance k + 1, later ones on top."""
    out = np.zeros(shape, np.int32)
    for k, v in enumerate(polygons):
        rr, cc = rasterize(v, shape)
        out[rr, cc] = k + 1
    return out


def pairwise_overlaps(polygons: list, shape) -> np.ndarray:
    """(n, n) matrix of |P_i & P_j| / min(|P_i|, |P_j|) of the polygons' full rasters (before painting), 0 on the
    diagonal: the quantity ``max_overlap`` bounds. One sort of the covered pixels; only the (few) pixels covered twice
    or more are visited, no per-pair masks."""
    n = len(polygons)
    rows, ids = [], []
    for k, v in enumerate(polygons):
        rr, cc = rasterize(v, shape)
        rows.append(rr * shape[1] + cc)
        ids.append(np.full(len(rr), k))
    if not n:
        return np.zeros((0, 0))
    flat, owner = np.concatenate(rows), np.concatenate(ids)
    area = np.bincount(owner, minlength=n).astype(float)
    order = np.argsort(flat, kind="stable")
    flat, owner = flat[order], owner[order]
    inter = np.zeros((n, n))
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    counts = np.diff(np.r_[starts, len(flat)])
    for s, c in zip(starts[counts > 1], counts[counts > 1]):  # pixels covered by 2+ polygons (few)
        o = owner[s:s + c]
        inter[np.ix_(o, o)] += 1
    np.fill_diagonal(inter, 0)
    smaller = np.minimum(area[:, None], area[None, :])
    return np.divide(inter, smaller, out=np.zeros_like(inter), where=smaller > 0)


def random_nuclei(rng: np.random.Generator, config: SynthesisConfig, shape=None) -> tuple[np.ndarray, list]:
    """(instance map int32 (H, W), polygons) of one synthetic tile: a count uniform in [nuclei_min, nuclei_max],
    each polygon placed at a uniform random centre and kept only when its overlap with every polygon kept so far is
    <= max_overlap of the smaller area (up to ``max_tries`` placements, then dropped). Polygons that rasterize to no
    pixel inside the tile are not kept."""
    shape = (config.tile_size, config.tile_size) if shape is None else tuple(shape)
    centres: list = []
    extents: list[float] = []
    areas: list[int] = []
    cover: list[np.ndarray] = []  # flat pixel indices of each kept polygon's full raster
    polygons: list = []
    count = int(rng.integers(config.nuclei_min, config.nuclei_max + 1))
    for _ in range(count):
        radius = rng.uniform(config.radius_min, config.radius_max)
        for _try in range(config.max_tries):
            centre = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
            v = random_polygon(rng, centre, radius, config)
            rr, cc = rasterize(v, shape)
            if len(rr) == 0:
                continue
            # every kept polygon whose circumscribed circle meets this one's (an exact, complete candidate set)
            c, ext = v.mean(axis=0), np.sqrt(((v - v.mean(axis=0)) ** 2).sum(1)).max()
            dist = np.hypot(*(np.asarray(centres).reshape(-1, 2) - c).T)
            near = np.flatnonzero(dist <= np.asarray(extents) + ext + 2)
            flat = rr * shape[1] + cc
            ok = all(np.intersect1d(flat, cover[j], assume_unique=True).size
                     <= config.max_overlap * min(len(rr), areas[j]) for j in near)
            if ok:
                polygons.append(v)
                cover.append(rr * shape[1] + cc)
                areas.append(len(rr))
                centres.append(c)
                extents.append(ext)
                break
    return paint(polygons, shape), polygons


@dataclasses.dataclass(frozen=True)
class NucleusStats:
    """Size statistics of real nuclei measured from instance maps: equivalent radii sqrt(area / pi) at the 5th and
    95th percentile, nuclei per megapixel (5th / 95th percentile over images), and how many were measured."""

    radius_p5: float
    radius_p95: float
    per_megapixel_p5: float
    per_megapixel_p95: float
    nuclei: int
    images: int

    def apply(self, config: SynthesisConfig) -> SynthesisConfig:
        """``config`` with its radius and count ranges replaced by these (counts scaled to the tile's area)."""
        area = config.tile_size ** 2 / 1e6
        lo = int(round(self.per_megapixel_p5 * area))
        return config.replace(radius_min=round(self.radius_p5, 2), radius_max=round(max(self.radius_p95,
                              self.radius_p5), 2), nuclei_min=lo,
                              nuclei_max=max(lo, int(round(self.per_megapixel_p95 * area))))


def nucleus_stats(instance_maps) -> NucleusStats:
    """Measure ``NucleusStats`` from an iterable of instance maps (one bincount per map)."""
    radii, density = [], []
    for inst in instance_maps:
        inst = np.asarray(inst)
        area = np.bincount(inst.ravel())[1:]
        area = area[area > 0]
        radii.append(np.sqrt(area / np.pi))
        density.append(len(area) / inst.size * 1e6)
    from zoo.errors import DataError

    if not radii or not np.concatenate(radii).size:
        raise DataError("instance maps", "no nuclei to measure")
    r = np.concatenate(radii)
    return NucleusStats(float(np.percentile(r, 5)), float(np.percentile(r, 95)), float(np.percentile(density, 5)),
                        float(np.percentile(density, 95)), int(r.size), len(density))


def size_ranges_from_records(data_dir: str, split: str = "train") -> NucleusStats:
    """``nucleus_stats`` of the instance maps of a built dataset's split (zoo.data.records)."""
    from zoo.data import records
    from zoo.errors import DataError

    maps = [s.instances for s in records.read_samples(records.list_shards(data_dir, split)) if s.instances is not None]
    if not maps:
        raise DataError(data_dir, f"split {split!r} has no instance maps to measure nucleus sizes from")
    return nucleus_stats(maps)
