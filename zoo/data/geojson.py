"""QuPath / GeoJSON nucleus outlines <-> instance maps (read, rasterise, write).

**Coordinates** are pixels, x to the right, y down, in QuPath's convention: (0, 0) is the top-left *corner* of
the top-left pixel, so pixel (row r, col c) is the square [c, c + 1] x [r, r + 1] with its centre at
(c + 0.5, r + 0.5) (QuPath docs, "Exporting annotations: units and origin"). ``zoo.data.polygons`` puts pixel
centres at integer coordinates, so reading shifts every vertex by ``GEOJSON_SHIFT`` = (-0.5, -0.5) and then
rasterises with its pixel rule (a pixel belongs to a polygon when its centre is inside or on an edge) and its
overlap rule (**the smaller instance wins**; ``overlap=`` "later" / "earlier" are available).
``offset`` = (x0, y0) is subtracted first, for annotations exported in whole-slide coordinates of a tile whose
top-left corner is at (x0, y0).

**Writing** (``write_geojson`` / ``instances_to_features``) traces each instance along its pixel edges: the
outline is the boundary of the union of the instance's pixel squares (collinear vertices removed), so vertices
are integers in QuPath's convention, no pixel centre lies on an outline, and reading the file back gives the same
instance map exactly (ids renumbered 1..N in increasing id order). Holes are polygon interiors; an instance made
of parts touching only at corners (8-connected) or not at all is one MultiPolygon feature.

**Reading** (``read_geojson``) accepts what QuPath exports: a FeatureCollection, a bare list of Features (QuPath's
"export as single feature collection" unticked), or one Feature. Geometry types Polygon and MultiPolygon (holes =
the rings after the first); other types (Point, LineString, ...) are an error naming the feature. ``objectType``
(QuPath >= 0.4) or ``object_type`` (0.2-0.3) in properties: "annotation", "detection" and "cell" are all read;
for a "cell" the Feature's ``nucleusGeometry`` is used when present (a nucleus map is what histozoo trains on).
Class: ``properties.classification.name`` (or a plain string ``classification``); no classification = class 0
("unknown type" in DESIGN.md's convention). One Feature = one instance, numbered 1..N in file order.
Every failure raises ``DataError(path, problem)``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from zoo import atomic
from zoo.data.polygons import rasterize
from zoo.errors import DataError

GEOJSON_SHIFT = (-0.5, -0.5)  # QuPath pixel-corner origin -> zoo.data.polygons' pixel-centre coordinates
OBJECT_TYPES = ("annotation", "detection", "cell")
#: colours written for classes 1.. (QuPath shows them; cycled when there are more classes)
PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40))


@dataclasses.dataclass
class GeoFeature:
    """One Feature: ``polygons`` as ``(exterior, holes)`` x, y arrays exactly as in the file (no shift)."""

    polygons: list
    class_name: str | None = None
    object_type: str = ""
    index: int = 0  # position of the Feature in the file
    name: str = ""


class GeoLabels(NamedTuple):
    instances: np.ndarray  # (H, W) int32, ids 1..N in feature order (0 = background)
    instance_ids: np.ndarray  # (N,) ids of the features that were read (ids of features outside the image included)
    instance_classes: np.ndarray  # (N,) class index 0..K (class_names[i - 1]; 0 = unclassified)
    skipped: list  # feature indices (in the file) of degenerate polygons that drew nothing
    outside: list  # instance ids lying entirely outside the image


def _coords(c, k: int) -> np.ndarray:
    a = np.asarray(c, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] < 2:
        raise ValueError(f"feature {k}: a ring must be a list of [x, y] positions, got array of shape {a.shape}")
    return a[:, :2]


def _polygons(geom, path: str, k: int) -> list:
    if not isinstance(geom, dict) or "type" not in geom:
        raise DataError(path, f"feature {k}: no geometry object with a 'type'")
    t, c = geom["type"], geom.get("coordinates")
    try:
        if t == "Polygon":
            rings = [_coords(r, k) for r in c]
            return [(rings[0], rings[1:])] if rings else []
        if t == "MultiPolygon":
            out = []
            for p in c:
                rings = [_coords(r, k) for r in p]
                if rings:
                    out.append((rings[0], rings[1:]))
            return out
    except (TypeError, ValueError) as e:
        msg = str(e) if str(e).startswith("feature") else f"feature {k}: bad {t} coordinates ({e})"
        raise DataError(path, msg) from None
    raise DataError(path, f"feature {k}: geometry type {t!r} is not supported (Polygon or MultiPolygon only; "
                    "remove points / lines or convert them to areas in QuPath)")


def _class_name(props: dict) -> str | None:
    c = props.get("classification")
    if isinstance(c, dict):
        c = c.get("name")
    return str(c) if c not in (None, "") else None


def parse_features(obj, path: str = "<geojson>") -> list[GeoFeature]:
    """GeoJSON already loaded with ``json`` -> GeoFeatures (see the module docstring for what is accepted)."""
    if isinstance(obj, dict) and obj.get("type") == "FeatureCollection":
        feats = obj.get("features")
        if not isinstance(feats, list):
            raise DataError(path, "FeatureCollection without a 'features' list")
    elif isinstance(obj, dict) and obj.get("type") == "Feature":
        feats = [obj]
    elif isinstance(obj, list):
        feats = obj
    else:
        kind = obj.get("type") if isinstance(obj, dict) else type(obj).__name__
        raise DataError(path, f"not a GeoJSON FeatureCollection or list of Features (top level: {kind!r})")
    out = []
    for k, f in enumerate(feats):
        if not isinstance(f, dict) or f.get("type") != "Feature":
            raise DataError(path, f"feature {k}: not a GeoJSON Feature object")
        props = f.get("properties") or {}
        if not isinstance(props, dict):
            raise DataError(path, f"feature {k}: 'properties' is not an object")
        otype = str(props.get("objectType", props.get("object_type", "")) or "")
        geom = f.get("nucleusGeometry") if otype == "cell" and f.get("nucleusGeometry") else f.get("geometry")
        out.append(GeoFeature(_polygons(geom, path, k), _class_name(props), otype, k, str(props.get("name", "") or "")))
    return out


def read_geojson(path: str | os.PathLike) -> list[GeoFeature]:
    """Read a QuPath / GeoJSON file (``.geojson`` or ``.json``) into GeoFeatures, in file order."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(path, "file not found")
    try:
        with open(path, "rb") as fh:
            obj = json.loads(fh.read())
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"unreadable file ({type(e).__name__}: {e})") from None
    except json.JSONDecodeError as e:
        raise DataError(path, f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    return parse_features(obj, path)


def geojson_instances(path: str | os.PathLike, shape: tuple, class_names: Sequence[str] | None = None,
                      object_types: Sequence[str] | None = None, offset: tuple = (0.0, 0.0),
                      overlap: str = "smaller", features: list[GeoFeature] | None = None) -> GeoLabels:
    """Rasterise a GeoJSON file onto an (H, W) grid by the module's rules; returns ``GeoLabels``.

    class_names: the dataset's type names (type i = class_names[i - 1]); a classified feature whose name is not
    among them is an error. None: classes are not read (all 0). object_types: keep only features of these
    objectTypes (None: all; a feature without objectType is always kept). features: already parsed features.
    """
    path = os.fspath(path)
    feats = read_geojson(path) if features is None else features
    if object_types is not None:
        keep = set(object_types)
        feats = [f for f in feats if not f.object_type or f.object_type in keep]
    index = {n: i + 1 for i, n in enumerate(class_names or ())}
    d = np.asarray(offset, np.float64) - np.asarray(GEOJSON_SHIFT, np.float64)
    polys, ids, classes = [], [], []
    for n, f in enumerate(feats, start=1):
        c = 0
        if class_names is not None and f.class_name is not None:
            if f.class_name not in index:
                raise DataError(path, f"feature {f.index}: class {f.class_name!r} is not in the class list "
                                f"({', '.join(map(repr, class_names)) or 'empty'})")
            c = index[f.class_name]
        for ext, holes in f.polygons:
            polys.append((ext - d, [h - d for h in holes]))
            ids.append(n)
        classes.append(c)
    r = rasterize(polys, shape, ids=ids, overlap=overlap)
    bad = set(r.skipped)
    drawn = {ids[k] for k in range(len(polys)) if k not in bad}
    skipped = sorted({f.index for n, f in enumerate(feats, start=1) if n not in drawn})
    n = np.arange(1, len(feats) + 1, dtype=np.int64)
    return GeoLabels(r.instances, n, np.asarray(classes, np.int64), skipped, r.outside)


# ------------------------------------------------------------------------------------------------ writing
def instance_outlines(instances: np.ndarray) -> tuple[np.ndarray, list]:
    """Pixel-edge outlines of every instance: (ids, shapely Polygon / MultiPolygon per id), QuPath coordinates.

    The outline of an instance is the boundary of the union of its pixel squares, traced for all instances at once
    (numpy, no per-instance loop): each 4-connected part of one id (``skimage.measure.label``) is one Polygon; its
    boundary edges are directed with the part on their left and chained vertex to vertex, turning right where a part
    touches itself at a corner (so a hole that meets the outline or another hole at a corner is its own ring, as
    GEOS' valid form has it); rings are ordered by pointer jumping; the traversal sense tells the exterior (one
    per part) from the holes; only corners are kept (no collinear vertices). Parts of one id touching at corners
    or not at all make a MultiPolygon. Every geometry is valid and its area is the instance's pixel count.
    """
    import shapely
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components
    from skimage.measure import label

    lab = np.asarray(instances)
    if lab.ndim != 2:
        raise ValueError(f"instances must be 2-D, got shape {lab.shape}")
    w = lab.shape[1]
    part, n = label(lab, background=0, connectivity=1, return_num=True)  # 4-connected parts of one id
    if n == 0:
        return np.zeros(0, np.int64), []
    p = np.pad(part, 1)  # p[r + 1, c + 1] = part of pixel (r, c); 0 outside the image
    # every directed unit edge with its part on the left (x right, y down); directions 0 E, 1 S, 2 W, 3 N
    cols = []
    for one, two, dirs, v in ((p[:-1, 1:-1], p[1:, 1:-1], (0, 2), 0), (p[1:-1, 1:], p[1:-1, :-1], (1, 3), 1)):
        r, c = np.nonzero(one != two)  # v = 0: north / south of the line y = r at column c; 1: east / west of x = c
        for side, d, dx, dy in ((one[r, c], dirs[0], 0, 0), (two[r, c], dirs[1], 1 - v, v)):
            i = np.nonzero(side)[0]
            cols.append((c[i] + dx, r[i] + dy, np.full(len(i), d), side[i]))
    x, y, d, k = (np.concatenate(a).astype(np.int64) for a in zip(*cols))
    key = (y * (w + 1) + x) * 4 + d  # unique: one edge leaves a vertex in a direction
    o = np.argsort(key)
    x, y, d, k, key = x[o], y[o], d[o], k[o], key[o]
    step = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]])
    ex, ey = x + step[d, 0], y + step[d, 1]
    # left pixel of the edge leaving the end vertex in direction j: NE, SE, SW, NW of the vertex for j = 0..3
    q = np.stack([p[ey, ex + 1], p[ey + 1, ex + 1], p[ey + 1, ex], p[ey, ex]], 1)
    e = np.arange(len(k))
    right = (d + 1) % 4  # a right turn exists only at a concave corner or where the part touches itself diagonally
    nd = np.where(q[e, right] == k, right, np.where(q[e, d] == k, d, (d + 3) % 4))
    succ = np.searchsorted(key, (ey * (w + 1) + ex) * 4 + nd)
    # rings = cycles of succ; rank every edge by pointer jumping from its ring's first (lowest) edge
    nring, ring = connected_components(csr_matrix((np.ones(len(e), np.int8), (e, succ)), shape=(len(e),) * 2),
                                       directed=True, connection="weak")
    first = np.unique(ring, return_index=True)[1]
    last = succ == first[ring]
    togo = (~last).astype(np.int64)  # steps to the ring's last edge
    nxt = np.where(last, e, succ)
    while True:
        nn = nxt[nxt]
        if np.array_equal(nn, nxt):
            break
        togo = togo + togo[nxt]
        nxt = nn
    # a hole is traced the other way round: positive signed area (shoelace over unit edges) in y-down coordinates
    area2 = np.bincount(ring, weights=x * step[d, 1] - step[d, 0] * y, minlength=nring)
    hole = area2[ring] > 0
    corner = np.zeros(len(e), bool)
    corner[succ] = nd != d  # keep the start vertex of an edge that turns from its predecessor
    sel = np.nonzero(corner)[0]
    o = np.lexsort((-togo[sel], ring[sel], hole[sel], k[sel]))  # by part, its exterior first, then along the ring
    sel = sel[o]
    rs = ring[sel]
    new = np.r_[True, rs[1:] != rs[:-1]]
    rings = shapely.linearrings(np.stack([x[sel], y[sel]], 1).astype(np.float64), indices=np.cumsum(new) - 1)
    polys = shapely.polygons(rings, indices=k[sel][new] - 1)  # part j: rings of part j + 1, exterior first
    inst = np.zeros(n + 1, np.int64)  # the instance of each part: its id left of the part's edges
    inst[k] = lab[y + np.array([-1, 0, 0, -1])[d], x + np.array([0, 0, -1, -1])[d]]
    inst = inst[1:]
    o = np.argsort(inst, kind="stable")
    ids, start, count = np.unique(inst[o], return_index=True, return_counts=True)
    geoms = polys[o[start]]
    multi = count > 1
    if multi.any():
        rank = np.repeat(np.arange(len(ids)), count)
        keep = multi[rank]
        _, sub = np.unique(rank[keep], return_inverse=True)
        geoms[multi] = shapely.multipolygons(polys[o][keep], indices=sub)
    return ids.astype(np.int64), list(geoms)


def _geometries(geoms: list) -> list[dict]:
    """shapely Polygons / MultiPolygons -> GeoJSON geometry dicts (exteriors counter-clockwise by signed area, holes
    clockwise; a one-part MultiPolygon is written as its Polygon); coordinates taken out of shapely in one call each
    for parts, rings and vertices."""
    import shapely

    if not len(geoms):
        return []
    arr = shapely.orient_polygons(np.asarray(geoms, dtype=object))
    parts, of_geom = shapely.get_parts(arr, return_index=True)
    rings, of_part = shapely.get_rings(parts, return_index=True)  # exterior first, then the holes
    xy = shapely.get_coordinates(rings).tolist()
    ends = np.cumsum(shapely.get_num_coordinates(rings)).tolist()
    polys: list = [[] for _ in range(len(parts))]
    for p, a, b in zip(of_part.tolist(), [0] + ends[:-1], ends):
        polys[p].append(xy[a:b])
    out: list = [[] for _ in range(len(arr))]
    for g, poly in zip(of_geom.tolist(), polys):
        out[g].append(poly)
    return [{"type": "Polygon", "coordinates": c[0]} if len(c) == 1 else {"type": "MultiPolygon", "coordinates": c}
            for c in out]


def _properties(object_type: str, c: int, names: tuple) -> dict:
    """QuPath properties: objectType, and for class c > 0 classification {name, color}."""
    props = {"objectType": object_type}
    if c > 0:
        props["classification"] = {"name": names[c - 1] if c <= len(names) else f"Class {c}",
                                   "color": list(PALETTE[(c - 1) % len(PALETTE)])}
    return props


def instances_to_features(instances: np.ndarray, classes: Mapping[int, int] | None = None,
                          class_names: Sequence[str] | None = None, object_type: str = "annotation") -> list[dict]:
    """An instance map -> GeoJSON Features (in memory), one per instance id in increasing order.

    classes: {instance id: class index}; class i > 0 is written as ``classification`` {name: class_names[i - 1]
    (or "Class i" without names), color: [r, g, b]}; class 0 / absent ids are written unclassified.
    object_type: "annotation" (editable in QuPath) or "detection" (lighter, for many objects).
    """
    if object_type not in ("annotation", "detection"):
        raise ValueError(f"object_type must be 'annotation' or 'detection', got {object_type!r}")
    ids, geoms = instance_outlines(instances)
    classes = {int(k): int(v) for k, v in (classes or {}).items()}
    names = tuple(class_names or ())
    feats = []
    for i, g in zip(ids.tolist(), _geometries(geoms)):
        props = _properties(object_type, classes.get(i, 0), names)
        feats.append({"type": "Feature", "geometry": g, "properties": props})
    return feats


def write_geojson(instances: np.ndarray, path: str | os.PathLike, classes: Mapping[int, int] | None = None,
                  class_names: Sequence[str] | None = None, object_type: str = "annotation") -> int:
    """Write an instance map as a QuPath-importable GeoJSON FeatureCollection (atomic); returns the feature count.

    See ``instances_to_features`` for the arguments; the outlines follow pixel edges (module docstring), so
    ``geojson_instances`` on the file gives the map back exactly.
    """
    return write_features(instances_to_features(instances, classes, class_names, object_type), path)


def write_features(features: list[dict], path: str | os.PathLike) -> int:
    """Write GeoJSON Features as one FeatureCollection, atomically (temp file + rename); returns their count."""
    path = os.fspath(path)
    feats = list(features)
    with atomic.atomic_path(path) as tmp, open(tmp, "w") as fh:
        json.dump({"type": "FeatureCollection", "features": feats}, fh, separators=(",", ":"))
    return len(feats)


def polygons_to_features(polygons: Sequence, shift: tuple = (0.0, 0.0), classes: Sequence[int] | None = None,
                         class_names: Sequence[str] | None = None, object_type: str = "annotation") -> list[dict]:
    """``zoo.data.polygons``-style polygons ``(exterior, holes)`` (pixel-centre coordinates) -> GeoJSON Features
    in QuPath coordinates (vertex + 0.5 + shift), one Feature per polygon, vertices kept as floats.

    For outlines that exist as polygons already (e.g. ImageScope XML via ``imagescope_polygons``): nothing is
    re-traced, so ``geojson_instances`` reproduces ``rasterize(polygons)`` exactly. Degenerate polygons (fewer than
    3 distinct vertices) cannot be GeoJSON Polygons and are left out.
    """
    from zoo.data.polygons import is_degenerate

    d = np.asarray(shift, np.float64) - np.asarray(GEOJSON_SHIFT, np.float64)
    names = tuple(class_names or ())
    out = []
    for k, poly in enumerate(polygons):
        ext, holes = poly if isinstance(poly, tuple) and len(poly) == 2 else (poly, ())
        if is_degenerate(ext):
            continue
        rings = [np.asarray(r, np.float64).reshape(-1, 2) + d
                 for r in [ext, *[h for h in holes if not is_degenerate(h)]]]
        rings = [np.vstack([r, r[:1]]) if not np.array_equal(r[0], r[-1]) else r for r in rings]  # GeoJSON: closed
        out.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [r.tolist() for r in rings]},
                    "properties": _properties(object_type, int(classes[k]) if classes is not None else 0, names)})
    return out
