"""zoo.data.polygons: hand-worked rasterisations, the overlap rules, ImageScope XML reading."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest

from zoo.data.polygons import (from_shapely, imagescope_polygons, rasterize, read_imagescope_mpp,
                               read_imagescope_xml)
from zoo.errors import DataError


def sq(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def test_square_includes_boundary_centres():
    r = rasterize([(sq(0, 0, 3, 3), [])], (5, 5))
    expect = np.zeros((5, 5), int)
    expect[0:4, 0:4] = 1
    np.testing.assert_array_equal(r.instances, expect)
    assert r.skipped == [] and r.outside == []


def test_hole_removes_the_centres_inside_it():
    r = rasterize([(sq(0, 0, 3, 3), [sq(0.5, 0.5, 2.5, 2.5)])], (5, 5))
    assert (r.instances == 1).sum() == 16 - 4
    assert r.instances[1:3, 1:3].sum() == 0


def test_multipolygon_parts_share_one_id_and_bare_exteriors_work():
    r = rasterize([sq(0, 0, 1, 1), (sq(3, 3, 4, 4), [])], (6, 6), ids=[7, 7])
    assert set(np.unique(r.instances)) == {0, 7}
    assert (r.instances == 7).sum() == 8


@pytest.mark.parametrize("rule, a_px, b_px", [("smaller", 25, 25), ("later", 15, 35), ("earlier", 25, 25)])
def test_overlap_rules(rule, a_px, b_px):
    a, b = sq(0, 0, 4, 4), sq(3, 0, 9, 4)  # 25 and 35 px, sharing columns 3-4 (10 px)
    inst = rasterize([(a, []), (b, [])], (10, 10), overlap=rule).instances
    assert ((inst == 1).sum(), (inst == 2).sum()) == (a_px, b_px)


def test_smaller_wins_keeps_a_nucleus_inside_a_bigger_one():
    inst = rasterize([(sq(0, 0, 9, 9), []), (sq(2, 2, 4, 4), [])], (10, 10)).instances
    assert (inst == 2).sum() == 9 and (inst == 1).sum() == 91


def test_no_instance_is_dropped_by_the_later_rule():
    # the small square comes first and is covered by the big one: it is painted on top rather than lost
    inst = rasterize([(sq(2, 2, 4, 4), []), (sq(0, 0, 9, 9), [])], (10, 10), overlap="later").instances
    assert (inst == 1).sum() == 9 and (inst == 2).sum() == 91


def test_clipping_degenerate_thin_and_outside():
    polys = [(sq(-2, -2, 2, 2), []),                      # 1: clipped to rows/cols 0..2
             (np.array([[1.0, 1.0], [3.0, 3.0]]), []),    # 2: two vertices: skipped
             (np.array([[4.2, 4.2], [4.4, 4.2], [4.3, 4.4]]), []),  # 3: covers no pixel centre
             (sq(20, 20, 30, 30), [])]                    # 4: entirely outside
    r = rasterize(polys, (6, 6))
    assert (r.instances == 1).sum() == 9 and r.instances[:3, :3].min() == 1
    assert r.skipped == [1]
    assert (r.instances == 3).sum() == 1 and r.instances[4, 4] == 3  # the pixel nearest to its vertices
    assert r.outside == [4]


def test_matches_skimage_on_random_polygons():
    from skimage.draw import polygon

    rng = np.random.default_rng(0)
    for _ in range(20):
        t = np.sort(rng.uniform(0, 2 * np.pi, 12))
        rad = rng.uniform(3, 12, 12)
        v = np.c_[20 + rad * np.cos(t), 20 + rad * np.sin(t)]
        ours = rasterize([(v, [])], (40, 40)).instances > 0
        rr, cc = polygon(v[:, 1], v[:, 0], (40, 40))
        ref = np.zeros((40, 40), bool)
        ref[rr, cc] = True
        np.testing.assert_array_equal(ours, ref)


def test_from_shapely_gives_the_same_map():
    from shapely import MultiPolygon, Polygon

    g = MultiPolygon([Polygon(sq(0, 0, 3, 3), [sq(0.5, 0.5, 2.5, 2.5)]), Polygon(sq(5, 5, 6, 6))])
    parts = from_shapely(g)
    a = rasterize(parts, (8, 8), ids=[1] * len(parts)).instances
    assert (a == 1).sum() == 12 + 4


XML = """<Annotations MicronsPerPixel="0.252700">
<Annotation Id="1" Name="nuclei"><Regions>
 <Region Id="1" Type="0" NegativeROA="0"><Vertices>
  <Vertex X="1" Y="1"/><Vertex X="5" Y="1"/><Vertex X="5" Y="5"/><Vertex X="1" Y="5"/></Vertices></Region>
 <Region Id="2" Type="0" NegativeROA="1"><Vertices>
  <Vertex X="2.5" Y="2.5"/><Vertex X="3.5" Y="2.5"/><Vertex X="3.5" Y="3.5"/><Vertex X="2.5" Y="3.5"/>
 </Vertices></Region>
 <Region Id="3" Type="2" NegativeROA="0"><Vertices><Vertex X="8" Y="8"/><Vertex X="12" Y="12"/></Vertices></Region>
 <Region Id="4" Type="0" NegativeROA="0"><Vertices><Vertex X="9.5" Y="1.25"/><Vertex X="9.5" Y="3"/></Vertices></Region>
</Regions></Annotation></Annotations>"""


@pytest.mark.parametrize("gz", [True, False])
def test_read_imagescope_xml(tmp_path, gz):
    p = tmp_path / ("a.xml.gz" if gz else "a.xml")
    p.write_bytes(gzip.compress(XML.encode()) if gz else XML.encode())
    regions, mpp = read_imagescope_xml(p)
    assert mpp == pytest.approx(0.2527) and read_imagescope_mpp(p) == pytest.approx(0.2527)
    assert [r.region_id for r in regions] == ["1", "2", "3", "4"] and regions[1].negative
    np.testing.assert_allclose(regions[3].vertices, [[9.5, 1.25], [9.5, 3.0]])
    polys, source = imagescope_polygons(regions, shift=(-1, -1))
    assert source == [0, 2, 3]  # the negative region became a hole of region 1
    r = rasterize(polys, (16, 16))
    assert (r.instances == 1).sum() == 25 - 1  # 5x5 square minus the centre pixel (2, 2) inside the hole
    assert r.instances[2, 2] == 0
    # ellipse in the box (7, 7)-(11, 11): disc of radius 2 around (9, 9), whose 13 pixel centres have dx²+dy² <= 4
    assert (r.instances == 2).sum() == 13 and r.instances[9, 7] == 2 and r.instances[8, 8] == 2
    assert r.skipped == [2]


def test_imagescope_errors(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_imagescope_xml(tmp_path / "nope.xml")
    bad = tmp_path / "trunc.xml.gz"
    bad.write_bytes(gzip.compress(XML.encode())[:60])
    with pytest.raises(DataError, match="trunc.xml.gz: unreadable XML"):
        read_imagescope_xml(bad)
    other = tmp_path / "other.xml"
    other.write_text("<svg/>")
    with pytest.raises(DataError, match="not an ImageScope XML"):
        read_imagescope_xml(other)


def test_elementtree_fallback_reads_the_same_regions(tmp_path):
    """Files not laid out as ImageScope writes them (here Y before X, a comment) take the ElementTree path."""
    fast, slow = tmp_path / "fast.xml", tmp_path / "slow.xml"
    fast.write_text(XML)
    swapped = re.sub(r'<Vertex X="([^"]*)" Y="([^"]*)"/>', r'<Vertex Y="\2" X="\1"/>', XML)
    slow.write_text("<!-- exported -->\n" + swapped)
    a, b = read_imagescope_xml(fast), read_imagescope_xml(slow)
    assert a[1] == b[1] and len(a[0]) == len(b[0]) == 4
    for ra, rb in zip(a[0], b[0]):
        np.testing.assert_array_equal(ra.vertices, rb.vertices)
        assert (ra.region_id, ra.type, ra.negative, ra.annotation_id) == (rb.region_id, rb.type, rb.negative,
                                                                          rb.annotation_id)
