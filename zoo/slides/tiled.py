"""The tile grid and the seam rule that makes nuclei crossing tile borders one instance.

**Grid** (per axis, in the pixels of the level the model runs on): the axis is cut into *cores* that partition it;
each core is run inside a *tile* of ``tile`` pixels that extends at least ``margin = overlap // 2`` pixels beyond
the core on every side that is not the slide's edge. The first tile starts at 0 (core [0, tile - margin)), inner
cores are ``tile - 2 * margin`` long and centred in their tile, and the last tile is flush with the slide's edge, so
every tile has the same shape (an axis shorter than ``tile`` is one tile of the axis' length).

**Seam rule** (as HoVer-Net's and StarDist's big-image prediction): every tile is post-processed on its own by the
one inference function; of its instances only those whose **centroid lies in the tile's core** are kept (cores
partition the slide, so each nucleus is claimed by exactly one tile: no duplicates), and a kept nucleus is whole as
long as it reaches less than ``margin`` pixels beyond its centroid (no cut nuclei; one that touches a cut edge of its
tile is counted in ``cut_at_tile_edge``, the sign that the overlap is too small for the model's nuclei). Tiles are
resolved in raster order against the instances already accepted from earlier, overlapping tiles: a kept instance
whose pixels are >= 50 % covered by accepted ones is the same nucleus seen twice and is dropped (``duplicates``);
otherwise it keeps only its pixels that no accepted instance holds (earlier tiles win; ``trimmed``). The result of a
tile therefore depends only on its own pixels and the tiles before it, which is what makes a resumed run identical.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from zoo.errors import ConfigError

DUPLICATE_FRACTION = 0.5


@dataclasses.dataclass(frozen=True)
class Tile:
    """One tile: flat ``index`` (raster order), region ``y, x, h, w`` and core ``cy0..cy1, cx0..cx1`` (level px)."""

    index: int
    row: int
    col: int
    y: int
    x: int
    h: int
    w: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int

    def intersects(self, other: "Tile") -> bool:
        return (self.y < other.y + other.h and other.y < self.y + self.h and self.x < other.x + other.w
                and other.x < self.x + self.w)


def axis_cores(n: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """[(core_start, core_end, tile_start, tile_length)] along an axis of ``n`` pixels (module docstring)."""
    if n <= tile:
        return [(0, n, 0, n)]
    out, s = [], 0
    while True:
        t0 = 0 if s == 0 else min(s - margin, n - tile)
        if t0 + tile >= n:
            out.append((s, n, n - tile, tile))
            return out
        e = (tile - margin) if s == 0 else s + tile - 2 * margin
        out.append((s, e, t0, tile))
        s = e


def tile_grid(shape: tuple, tile: int, overlap: int) -> list[Tile]:
    """The tiles of a level of ``shape`` (H, W): ``tile`` pixels overlapping by ``overlap`` (margin = overlap // 2)."""
    margin = overlap // 2
    if tile < 1 or margin < 0 or tile - 2 * margin < 1:
        raise ConfigError(f"slide tiles: need tile_size > overlap >= 0, got tile_size={tile}, overlap={overlap}")
    ys, xs = axis_cores(shape[0], tile, margin), axis_cores(shape[1], tile, margin)
    return [Tile(i * len(xs) + j, i, j, ty, tx, th, tw, cy0, cy1, cx0, cx1)
            for i, (cy0, cy1, ty, th) in enumerate(ys) for j, (cx0, cx1, tx, tw) in enumerate(xs)]


def resolve_tile(instances: np.ndarray, classes: np.ndarray, tile: Tile, accepted: np.ndarray,
                 level_shape: tuple) -> tuple[np.ndarray, np.ndarray, dict]:
    """The seam rule for one tile: its instance map (h, w) 0..N and per-id classes (N + 1,), with ``accepted`` (h, w)
    the labels (> 0) of instances accepted earlier in this tile's region -> (kept map 0..K, kept classes (K + 1,),
    counts {kept, duplicates, trimmed, cut_at_tile_edge, outside_core})."""
    inst = np.asarray(instances)
    n = int(inst.max()) if inst.size else 0
    stats = {"kept": 0, "duplicates": 0, "trimmed": 0, "cut_at_tile_edge": 0, "outside_core": 0}
    if n == 0:
        return np.zeros(inst.shape, np.int32), np.zeros(1, np.int64), stats
    ids = np.arange(1, n + 1)
    area = np.bincount(inst.ravel(), minlength=n + 1)[1:].astype(np.float64)
    rows, cols = np.nonzero(inst)
    lab = inst[rows, cols]
    cy = np.bincount(lab, rows, minlength=n + 1)[1:] / np.maximum(area, 1)
    cx = np.bincount(lab, cols, minlength=n + 1)[1:] / np.maximum(area, 1)
    # pixel centres at integers: core rows [cy0, cy1) own the centroids in [cy0 - 0.5, cy1 - 0.5); the slide's own
    # edges own everything beyond them
    gy, gx = cy + tile.y, cx + tile.x
    lo_y = -np.inf if tile.cy0 == 0 else tile.cy0 - 0.5
    hi_y = np.inf if tile.cy1 == level_shape[0] else tile.cy1 - 0.5
    lo_x = -np.inf if tile.cx0 == 0 else tile.cx0 - 0.5
    hi_x = np.inf if tile.cx1 == level_shape[1] else tile.cx1 - 0.5
    keep = (area > 0) & (gy >= lo_y) & (gy < hi_y) & (gx >= lo_x) & (gx < hi_x)
    stats["outside_core"] = int((~keep & (area > 0)).sum())
    # overlap with accepted instances: pixels of each kept id already held
    held = (accepted > 0)
    covered = np.bincount(inst[held].ravel(), minlength=n + 1)[1:].astype(np.float64)
    dup = keep & (covered >= DUPLICATE_FRACTION * np.maximum(area, 1))
    stats["duplicates"] = int(dup.sum())
    keep &= ~dup
    stats["trimmed"] = int((keep & (covered > 0)).sum())
    lut = np.zeros(n + 1, np.int32)
    lut[ids[keep]] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    kept = lut[inst]
    kept[held] = 0
    # renumber after trimming (an instance trimmed to nothing disappears)
    present = np.zeros(int(keep.sum()) + 1, bool)
    present[np.unique(kept)] = True
    present[0] = False
    remap = np.zeros(len(present), np.int32)
    remap[present] = np.arange(1, int(present.sum()) + 1, dtype=np.int32)
    kept = remap[kept]
    old_of_new = ids[keep][present[1:]]
    kept_classes = np.concatenate([[0], np.asarray(classes)[old_of_new]]).astype(np.int64)
    stats["kept"] = int(len(old_of_new))
    # a kept nucleus touching a cut edge of its tile (an edge that is not the slide's) was cut by the tile
    edges = []
    if tile.y > 0:
        edges.append(kept[0])
    if tile.y + tile.h < level_shape[0]:
        edges.append(kept[-1])
    if tile.x > 0:
        edges.append(kept[:, 0])
    if tile.x + tile.w < level_shape[1]:
        edges.append(kept[:, -1])
    if edges:
        stats["cut_at_tile_edge"] = int(len(np.setdiff1d(np.unique(np.concatenate(edges)), [0])))
    return kept, kept_classes, stats
