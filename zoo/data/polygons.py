"""Polygons -> instance maps: rasterise nucleus outlines (MoNuSeg / ImageScope XML, GeoJSON, QuPath) into a label map.

A polygon is ``(exterior, holes)``: ``exterior`` an (N, 2) array of **x, y** vertices (x = column, y = row) in
0-based pixel coordinates, where pixel (row r, col c) has its centre at (x=c, y=r); ``holes`` a list of such
arrays (rings may be open or closed). A MultiPolygon is several polygons given the same instance id (``ids``);
``from_shapely`` turns shapely geometries into this form.

**Pixel rule** (the same as ``skimage.draw.polygon``, which it reproduces on MoNuSeg's 11,648 polygons up to
a few pixels of rounding per image, 10-20x faster): a pixel belongs to a polygon when its centre lies inside it
or on any of its rings (exterior or hole). It is computed for all polygons at once by an even-odd scanline fill
(half-open in y) plus the pixel centres lying exactly on an edge, in numpy without a per-polygon loop. Vertices
may lie outside the image: the polygon is rasterised as drawn and clipped to the image.

Rules (chosen by matched IoU against MoNuSeg's derived instance maps; see ``zoo/data/readers/monuseg.py``):
- **Overlaps: the smaller instance wins.** A pixel covered by several instances goes to the one with the fewest
  pixels (ties: the later one). Overlaps between MoNuSeg nuclei are mostly shared boundary pixels; on the 13
  training images with XML, "smaller wins" gives mean matched IoU 0.970 vs 0.961 for "later overwrites earlier"
  (file order). ``overlap="later"`` and ``"earlier"`` are available.
- **No instance is dropped** by the overlap rule or by being thinner than a pixel: a polygon that covers no pixel
  centre gets the pixels nearest to its vertices; an instance whose every pixel was taken by smaller ones is
  painted on top at the end. Only instances entirely outside the image are absent (``Rasterized.outside``).
- **Degenerate polygons** (fewer than 3 distinct vertices, or non-finite vertices) are skipped; their indices
  are returned in ``Rasterized.skipped``. A degenerate hole is ignored.

ImageScope (Aperio) XML (``read_imagescope_xml``, ``imagescope_polygons``): ``<Annotations MicronsPerPixel=..>``
/ ``<Annotation>`` / ``<Regions>`` / ``<Region Type= NegativeROA=>`` / ``<Vertices>`` / ``<Vertex X= Y=>``, plain
or gzip-compressed. Vertices are floats in the file's own (MATLAB-era, 1-based) pixel coordinates; the caller
chooses the shift to 0-based coordinates (MoNuSeg: (-1, -1), measured). Region types: 0 freehand / 1 rectangle /
4 polyline-as-drawn are polygons; 2 = ellipse given by its two bounding-box corners (turned into a 64-gon);
3 = arrow and 5 = ruler are not areas (skipped). A ``NegativeROA="1"`` region is a hole of the positive region of
the same annotation that contains its first vertex.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import re
from typing import NamedTuple, Sequence

import numpy as np

from zoo.errors import DataError

OVERLAP_RULES = ("smaller", "later", "earlier")


class Rasterized(NamedTuple):
    instances: np.ndarray  # (H, W) int32 instance map, 0 = background
    skipped: list  # indices into ``polygons`` of degenerate polygons (not drawn)
    outside: list  # instance ids of drawn polygons lying entirely outside the image (absent from the map)


def _ring(v) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a.reshape(-1, 2) if a.size else np.zeros((0, 2))


def is_degenerate(vertices) -> bool:
    """True when a ring has fewer than 3 distinct vertices or a non-finite one (it encloses nothing)."""
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 2 or len(v) < 3 or not np.all(np.isfinite(v)):
        return True
    return len(np.unique(v[:, 0] + 1j * v[:, 1])) < 3


def _unique(a: np.ndarray) -> np.ndarray:
    """Sorted unique values by sort + compare (numpy 2.4's hash-based ``np.unique`` is ~40x slower on 1e5+ ints)."""
    s = np.sort(a, kind="stable")
    return s[np.r_[True, s[1:] != s[:-1]]] if s.size else s


def _runs(lo: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expand runs: for each k, the integers lo[k] .. lo[k] + n[k] - 1; returns (run index, value)."""
    k = np.repeat(np.arange(len(n)), n)
    start = np.cumsum(n) - n
    return k, lo[k] + (np.arange(len(k)) - start[k])


def _edges(rings: Sequence[np.ndarray], groups: np.ndarray):
    """Edge arrays (x0, y0, x1, y1, group) of closed rings (the last vertex joins the first)."""
    if not rings:
        z = np.zeros(0)
        return z, z, z, z, np.zeros(0, np.int64)
    v = np.concatenate(rings)
    g = np.repeat(groups, [len(r) for r in rings])
    nxt = np.arange(1, len(v) + 1)
    ends = np.cumsum([len(r) for r in rings]) - 1
    nxt[ends] = ends - np.array([len(r) for r in rings]) + 1  # close each ring
    return v[:, 0], v[:, 1], v[nxt, 0], v[nxt, 1], g


def scanline_pixels(rings: Sequence, groups: Sequence[int], shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(pixel index row * W + col, group) pairs covered by rings, even-odd within a group, clipped to ``shape``.

    Rings of one group are one polygon (exterior + holes). A pixel is covered when its centre is inside
    (even-odd rule) or exactly on an edge of the group's rings. Pairs may repeat.
    """
    h, w = int(shape[0]), int(shape[1])
    rings = [_ring(r) for r in rings]
    x0, y0, x1, y1, g = _edges(rings, np.asarray(groups, np.int64))
    horiz = y0 == y1
    dy = np.where(horiz, 1.0, y1 - y0)
    # 1. interior: scan rows r with ymin <= r < ymax (half-open: every row crosses a closed ring evenly)
    ymin, ymax = np.minimum(y0, y1), np.maximum(y0, y1)
    lo = np.maximum(np.ceil(ymin), 0).astype(np.int64)
    hi = np.minimum(np.ceil(ymax) - 1, h - 1).astype(np.int64)
    e, r = _runs(lo, np.where(horiz, 0, np.maximum(hi - lo + 1, 0)))
    x = x0[e] + (r - y0[e]) * (x1[e] - x0[e]) / dy[e]
    ge = g[e]
    o = np.lexsort((x, r, ge))
    xa, xb, r, ge = x[o][0::2], x[o][1::2], r[o][0::2], ge[o][0::2]
    ca = np.maximum(np.ceil(xa), 0).astype(np.int64)
    cb = np.minimum(np.floor(xb), w - 1).astype(np.int64)
    k, c = _runs(ca, np.maximum(cb - ca + 1, 0))
    pix, grp = [r[k] * w + c], [ge[k]]
    # 2. boundary: pixel centres exactly on a non-horizontal edge (closed in y) ...
    lo2, hi2 = np.ceil(ymin).astype(np.int64), np.floor(ymax).astype(np.int64)
    e, r = _runs(lo2, np.where(horiz, 0, np.maximum(hi2 - lo2 + 1, 0)))
    x = x0[e] + (r - y0[e]) * (x1[e] - x0[e]) / dy[e]
    on = np.abs(x - np.round(x)) < 1e-9
    rows, cols, gs = [r[on]], [np.round(x[on]).astype(np.int64)], [g[e][on]]
    # ... or on a horizontal edge lying on a pixel row
    hz = np.flatnonzero(horiz & (y0 == np.round(y0)))
    a = np.ceil(np.minimum(x0[hz], x1[hz])).astype(np.int64)
    b = np.floor(np.maximum(x0[hz], x1[hz])).astype(np.int64)
    k, c = _runs(a, np.maximum(b - a + 1, 0))
    rows.append(y0[hz][k].astype(np.int64))
    cols.append(c)
    gs.append(g[hz][k])
    rows, cols, gs = np.concatenate(rows), np.concatenate(cols), np.concatenate(gs)
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    pix.append(rows[inside] * w + cols[inside])
    grp.append(gs[inside])
    return np.concatenate(pix), np.concatenate(grp)


def rasterize(polygons: Sequence, shape: tuple, ids: Sequence[int] | None = None,
              overlap: str = "smaller") -> Rasterized:
    """Rasterise polygons into an (H, W) int32 instance map by the rules in the module docstring.

    polygons: sequence of ``(exterior, holes)`` (or a bare exterior); x, y vertices in 0-based pixel
    coordinates. shape: (H, W). ids: instance id of each polygon (default 1, 2, ...; polygons with equal ids
    form one MultiPolygon instance; ids >= 1). overlap: "smaller" (default), "later" or "earlier".
    """
    if overlap not in OVERLAP_RULES:
        raise ValueError(f"overlap must be one of {OVERLAP_RULES}, got {overlap!r}")
    h, w = int(shape[0]), int(shape[1])
    ids = np.arange(1, len(polygons) + 1) if ids is None else np.asarray(ids, dtype=np.int64).ravel()
    if len(ids) != len(polygons):
        raise ValueError(f"{len(ids)} ids for {len(polygons)} polygons")
    if len(ids) and ids.min() < 1:
        raise ValueError("instance ids must be >= 1 (0 is background)")
    rings, groups, skipped = [], [], []
    for k, poly in enumerate(polygons):
        exterior, holes = poly if isinstance(poly, tuple) and len(poly) == 2 else (poly, ())
        if is_degenerate(exterior):
            skipped.append(k)
            continue
        rings.append(_ring(exterior))
        groups.append(k)
        for hole in holes or ():
            if not is_degenerate(hole):
                rings.append(_ring(hole))
                groups.append(k)
    out = np.zeros(h * w, np.int32)
    drawn = np.setdiff1d(np.arange(len(ids)), skipped)
    pix, part = scanline_pixels(rings, groups, (h, w))
    # polygons thinner than a pixel: the pixels nearest to their vertices
    covered = np.zeros(len(ids), bool)
    covered[part] = True
    thin = drawn[~covered[drawn]]
    if thin.size:
        v = [np.round(_ring(polygons[k][0] if isinstance(polygons[k], tuple) else polygons[k])) for k in thin]
        vv = np.concatenate(v).astype(np.int64)
        kk = np.repeat(thin, [len(a) for a in v])
        ok = (vv[:, 1] >= 0) & (vv[:, 1] < h) & (vv[:, 0] >= 0) & (vv[:, 0] < w)
        pix = np.concatenate([pix, vv[ok, 1] * w + vv[ok, 0]])
        part = np.concatenate([part, kk[ok]])
    lab = ids[part] if part.size else part
    uid_all = np.unique(ids[drawn]) if drawn.size else drawn
    if not pix.size:
        return Rasterized(out.reshape(h, w), skipped, uid_all.tolist())
    base = int(lab.max()) + 1
    pair = _unique(pix * base + lab)  # one (pixel, id) pair per covered pixel of each instance
    pix, lab = pair // base, pair % base
    uid, size = np.unique(lab, return_counts=True)
    _, first = np.unique(ids, return_index=True)  # position of each id's first polygon
    pos = first[np.searchsorted(np.unique(ids), uid)]
    if overlap == "smaller":  # priority: fewer pixels, then later position
        order = np.lexsort((-pos, size))
    elif overlap == "later":
        order = np.argsort(-pos, kind="stable")
    else:
        order = np.argsort(pos, kind="stable")
    rank_of = np.empty(len(uid), np.int64)
    rank_of[order] = np.arange(len(uid))  # 0 = highest priority
    o = np.lexsort((rank_of[np.searchsorted(uid, lab)], pix))
    pix_o, lab_o = pix[o], lab[o]
    keep = np.ones(len(pix_o), bool)
    keep[1:] = pix_o[1:] != pix_o[:-1]
    out[pix_o[keep]] = lab_o[keep]
    present = np.zeros(base, bool)
    present[out] = True
    lost = uid[~present[uid]]
    if lost.size:  # covered entirely by higher-priority instances: paint them on top
        is_lost = np.zeros(base, bool)
        is_lost[lost] = True
        m = is_lost[lab]
        out[pix[m]] = lab[m]
    return Rasterized(out.reshape(h, w), skipped, np.setdiff1d(uid_all, uid).tolist())


def from_shapely(geom) -> list[tuple]:
    """The parts of a shapely Polygon / MultiPolygon as ``(exterior, holes)`` x, y vertex arrays."""
    parts = getattr(geom, "geoms", [geom])
    return [(np.asarray(p.exterior.coords)[:, :2], [np.asarray(r.coords)[:, :2] for r in p.interiors])
            for p in parts if not p.is_empty]


# ------------------------------------------------------------------------------------------ ImageScope XML
@dataclasses.dataclass
class XmlRegion:
    """One ``<Region>`` of an ImageScope XML: vertices (N, 2) x, y exactly as in the file (no shift)."""

    vertices: np.ndarray
    region_id: str = ""
    annotation_id: str = ""
    annotation_name: str = ""
    type: int = 0
    negative: bool = False


_ANNOTATION = re.compile(rb"<Annotation\s([^>]*)>")
_VERTEX = re.compile(rb'<Vertex\s+X="([^"]*)"\s+Y="([^"]*)"')
_ATTR = re.compile(rb'([\w:.-]+)="([^"]*)"')


def _regions_fast(raw: bytes) -> list[XmlRegion] | None:
    """Regex parse of ImageScope's fixed layout (several times faster than ElementTree on 4 MB files); None when
    the file is not laid out as ImageScope writes it (then ElementTree parses it)."""
    if not raw.rstrip().endswith(b"</Annotations>") or b"<!--" in raw or b"CDATA" in raw:
        return None
    verts = _VERTEX.findall(raw)
    chunks = raw.split(b"<Region ")  # chunk k >= 1 starts with region k - 1's attributes
    per_region = [c.count(b"<Vertex ") for c in chunks]
    if per_region[0] or sum(per_region) != len(verts) or raw.count(b"<Vertex") != len(verts):
        return None  # vertices outside regions or attributes in another order: let ElementTree handle it
    xy = np.array(verts, dtype=np.float64).reshape(-1, 2) if verts else np.zeros((0, 2))
    anns = [(m.start(), dict(_ATTR.findall(m.group(1)))) for m in _ANNOTATION.finditer(raw)]
    astart = np.array([p for p, _ in anns], np.int64)
    rstart = np.cumsum([len(c) + len(b"<Region ") for c in chunks[:-1]])
    cuts = np.r_[0, np.cumsum(per_region[1:])]
    out = []
    for k, chunk in enumerate(chunks[1:]):
        at = dict(_ATTR.findall(chunk[: chunk.find(b">")]))
        a = anns[int(np.searchsorted(astart, rstart[k], side="right")) - 1][1] if anns else {}
        out.append(XmlRegion(xy[cuts[k]:cuts[k + 1]], at.get(b"Id", b"").decode(), a.get(b"Id", b"").decode(),
                             a.get(b"Name", b"").decode(), int(at.get(b"Type", b"0") or 0),
                             at.get(b"NegativeROA", b"0") == b"1"))
    return out


def read_imagescope_xml(path: str | os.PathLike) -> tuple[list[XmlRegion], float]:
    """Read an Aperio ImageScope XML (``.xml`` or ``.xml.gz``): (regions in file order, microns per pixel or 0.0).

    Raises ``DataError(path, problem)`` for a missing, truncated or non-ImageScope file.
    """
    import xml.etree.ElementTree as ET

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(path, "file not found")
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as fh:
            raw = fh.read()
        head = raw[:4096].lstrip()
        root = None if head.startswith(b"<Annotations") else ET.fromstring(raw)
    except (OSError, EOFError, ET.ParseError) as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise DataError(path, f"unreadable XML ({type(e).__name__}: {first})") from None
    if root is not None and root.tag != "Annotations":
        raise DataError(path, f"not an ImageScope XML (root element <{root.tag}>, expected <Annotations>)")
    try:
        m = re.match(rb"<Annotations\s([^>]*)>", head)
        mpp = float(dict(_ATTR.findall(m.group(1))).get(b"MicronsPerPixel", 0) or 0) if m else 0.0
        regions = _regions_fast(raw) if root is None else None
        if regions is None:
            root = ET.fromstring(raw) if root is None else root
            mpp = float(root.get("MicronsPerPixel") or 0.0)
            regions = []
            for ann in root.iter("Annotation"):
                for reg in ann.iter("Region"):
                    v = np.array([(x.get("X"), x.get("Y")) for x in reg.iter("Vertex")], dtype=np.float64)
                    regions.append(XmlRegion(v.reshape(-1, 2), reg.get("Id", ""), ann.get("Id", ""),
                                             ann.get("Name", ""), int(reg.get("Type", "0") or 0),
                                             reg.get("NegativeROA", "0") == "1"))
    except ET.ParseError as e:
        raise DataError(path, f"unreadable XML (ParseError: {e})") from None
    except (TypeError, ValueError) as e:
        raise DataError(path, f"bad number in ImageScope XML ({e})") from None
    return regions, mpp


def read_imagescope_mpp(path: str | os.PathLike) -> float:
    """``MicronsPerPixel`` of an ImageScope XML (0.0 when absent), reading only the file's first element."""
    import xml.etree.ElementTree as ET

    path = os.fspath(path)
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as fh:
            for _, elem in ET.iterparse(fh, events=("start",)):
                return float(elem.get("MicronsPerPixel") or 0.0)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (OSError, EOFError, ET.ParseError, ValueError) as e:
        raise DataError(path, f"unreadable XML ({type(e).__name__}: {e})") from None
    return 0.0


def _ellipse(corners: np.ndarray, n: int = 64) -> np.ndarray:
    (xa, ya), (xb, yb) = corners[0], corners[-1]
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.c_[(xa + xb) / 2 + abs(xb - xa) / 2 * np.cos(t), (ya + yb) / 2 + abs(yb - ya) / 2 * np.sin(t)]


def imagescope_polygons(regions: Sequence[XmlRegion], shift: tuple = (0.0, 0.0)) -> tuple[list[tuple], list[int]]:
    """ImageScope regions -> (polygons ``(exterior, holes)`` shifted by ``shift`` = (dx, dy), source indices).

    ``source[i]`` is the index in ``regions`` of polygon i. Negative regions become holes (not polygons);
    arrows and rulers are dropped. Degenerate regions are kept, for ``rasterize`` to skip and count.
    """
    d = np.asarray(shift, np.float64)
    polys, source = [], []
    for k, r in enumerate(regions):
        if r.negative or r.type in (3, 5):
            continue
        v = _ellipse(r.vertices) if r.type == 2 and len(r.vertices) >= 2 else r.vertices
        polys.append((v + d, []))
        source.append(k)
    negatives = [r for r in regions if r.negative and len(r.vertices) >= 3]
    if negatives:
        from shapely import Point, Polygon

        shapes = {i: Polygon(p[0]) for i, p in enumerate(polys) if not is_degenerate(p[0])}
        for r in negatives:
            pt = Point(r.vertices[0] + d)
            cands = [i for i, sh in shapes.items() if regions[source[i]].annotation_id == r.annotation_id
                     and sh.is_valid and sh.contains(pt)]
            if cands:
                polys[min(cands, key=lambda i: shapes[i].area)][1].append(r.vertices + d)
    return polys, source
