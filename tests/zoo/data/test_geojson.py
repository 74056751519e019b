"""zoo.data.geojson: QuPath GeoJSON read (conventions, formats, errors), rasterise, write, and round trips on
hand-made shapes and on real MoNuSeg nuclei (derived maps and ImageScope XML polygons)."""

from __future__ import annotations

import glob
import json

import numpy as np
import pytest

from zoo.data.geojson import (geojson_instances, instance_outlines, instances_to_features, polygons_to_features,
                              read_geojson, write_features, write_geojson)
from zoo.errors import DataError


def _dump(path, obj):
    path.write_text(json.dumps(obj))
    return path


def _feature(coords, kind="Polygon", cls=None, object_type="annotation", key="objectType", **extra):
    props = {key: object_type}
    if cls is not None:
        props["classification"] = {"name": cls, "color": [255, 0, 0]}
    return {"type": "Feature", "geometry": {"type": kind, "coordinates": coords}, "properties": props, **extra}


def _square(x0, y0, x1, y1):
    return [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two instance maps are equal up to a one-to-one renumbering of their ids (0 stays 0)."""
    a, b = a.ravel().astype(np.int64), b.ravel().astype(np.int64)
    if not np.array_equal(a == 0, b == 0):
        return False
    pairs = np.unique(a * (int(b.max()) + 1) + b)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def _shapes() -> np.ndarray:
    """A 20x24 map: a 2x3 rectangle, an L, a ring with a hole, two pixels touching only at a corner (one id),
    two touching instances, and an instance on the image border; ids are not consecutive."""
    m = np.zeros((20, 24), np.int32)
    m[1:3, 1:4] = 5  # rectangle rows 1-2, cols 1-3
    m[5:9, 1] = 7
    m[8, 1:4] = 7  # L
    m[1:6, 8:13] = 9
    m[2:4, 10:12] = 0  # ring with a 2x2 hole (not centred: touches nothing)
    m[10, 10] = 11
    m[11, 11] = 11  # diagonal pair: one instance, two parts
    m[14:17, 2:5] = 12
    m[14:17, 5:8] = 13  # shares an edge with 12
    m[17:20, 20:24] = 40  # bottom-right corner of the image
    return m


def test_outline_vertices_are_pixel_corners_hand_worked():
    ids, geoms = instance_outlines(_shapes())
    g = dict(zip(ids.tolist(), geoms))
    # rows 1-2, cols 1-3 -> the square [1, 4] x [1, 3] in QuPath's corner coordinates
    assert g[5].geom_type == "Polygon" and g[5].area == 6
    assert sorted(map(tuple, np.asarray(g[5].exterior.coords)[:-1].tolist())) == [(1, 1), (1, 3), (4, 1), (4, 3)]
    assert g[7].area == 4 + 3 - 1 and len(g[7].exterior.coords) - 1 == 6  # an L has 6 corners (collinear ones removed)
    assert len(g[9].interiors) == 1 and g[9].area == 25 - 4
    assert g[11].geom_type == "MultiPolygon" and len(g[11].geoms) == 2
    assert g[40].bounds == (20, 17, 24, 20)


def test_write_then_read_gives_the_same_map_on_simple_shapes(tmp_path):
    m = _shapes()
    n = write_geojson(m, tmp_path / "s.geojson")
    assert n == 7
    obj = json.loads((tmp_path / "s.geojson").read_text())
    assert obj["type"] == "FeatureCollection"
    kinds = [f["geometry"]["type"] for f in obj["features"]]
    assert kinds.count("MultiPolygon") == 1 and all(f["properties"]["objectType"] == "annotation"
                                                    for f in obj["features"])
    back = geojson_instances(tmp_path / "s.geojson", m.shape)
    ids = np.unique(m)[1:]
    expected = np.searchsorted(np.r_[0, ids], m)  # ids renumbered 1..N in increasing order
    np.testing.assert_array_equal(back.instances, expected)
    assert back.skipped == [] and back.outside == []


def test_classes_are_written_and_read_back(tmp_path):
    m = _shapes()
    names = ("tumour", "lymphocyte")
    write_geojson(m, tmp_path / "c.geojson", classes={5: 2, 9: 1, 40: 2}, class_names=names, object_type="detection")
    feats = read_geojson(tmp_path / "c.geojson")
    assert [f.object_type for f in feats] == ["detection"] * 7
    assert [f.class_name for f in feats] == ["lymphocyte", None, "tumour", None, None, None, "lymphocyte"]
    obj = json.loads((tmp_path / "c.geojson").read_text())
    assert obj["features"][0]["properties"]["classification"]["color"] != \
        obj["features"][2]["properties"]["classification"]["color"]
    g = geojson_instances(tmp_path / "c.geojson", m.shape, class_names=names)
    assert g.instance_classes.tolist() == [2, 0, 1, 0, 0, 0, 2]


def test_corner_convention_half_pixel(tmp_path):
    """QuPath's square (0, 0)-(2, 2) is exactly pixels rows 0-1 x cols 0-1 (centres at .5), not a 3x3 block."""
    p = _dump(tmp_path / "sq.geojson", {"type": "FeatureCollection", "features": [_feature(_square(0, 0, 2, 2))]})
    inst = geojson_instances(p, (4, 4)).instances
    assert inst.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    shifted = geojson_instances(p, (4, 4), offset=(-1, -1)).instances  # tile origin at (-1, -1) of the slide
    assert np.argwhere(shifted).tolist() == [[1, 1], [1, 2], [2, 1], [2, 2]]


def test_bare_list_single_feature_old_keys_cells_holes_multipolygons(tmp_path):
    hole = _square(0, 0, 6, 6) + [[[2, 2], [4, 2], [4, 4], [2, 4], [2, 2]]]
    multi = [_square(7, 0, 8, 1), _square(9, 0, 10, 2)]
    cell = _feature(_square(0, 7, 10, 10), object_type="cell", cls="Immune cells",
                    nucleusGeometry={"type": "Polygon", "coordinates": _square(1, 8, 3, 9)})
    feats = [_feature(hole, cls="Tumor"), _feature(multi, "MultiPolygon", object_type="detection", key="object_type"),
             cell]
    p = _dump(tmp_path / "list.json", feats)  # a bare list, as QuPath writes without "FeatureCollection"
    g = geojson_instances(p, (10, 10), class_names=("Immune cells", "Tumor"))
    counts = np.bincount(g.instances.ravel(), minlength=4)
    assert counts[1:].tolist() == [36 - 4, 1 + 2, 2]  # hole removed; multipolygon = 1 instance; nucleus not cell
    assert g.instance_classes.tolist() == [2, 0, 1]
    assert [f.object_type for f in read_geojson(p)] == ["annotation", "detection", "cell"]
    one = _dump(tmp_path / "one.geojson", _feature(_square(0, 0, 1, 1), cls="Tumor"))
    assert geojson_instances(one, (2, 2)).instances.sum() == 1
    only = geojson_instances(p, (10, 10), object_types=["detection"])
    assert np.count_nonzero(only.instances) == 3


def test_overlap_smaller_wins(tmp_path):
    big, small = _square(0, 0, 4, 4), _square(2, 2, 5, 5)  # 16 and 9 pixels overlapping on 4
    p = _dump(tmp_path / "ov.geojson", [_feature(small), _feature(big)])
    inst = geojson_instances(p, (6, 6)).instances
    assert np.count_nonzero(inst == 1) == 9 and np.count_nonzero(inst == 2) == 16 - 4
    later = geojson_instances(p, (6, 6), overlap="later").instances
    assert np.count_nonzero(later == 2) == 16


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"type": "Topology"}', "not a GeoJSON FeatureCollection"),
    ('[{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}, "properties": {}}]',
     "feature 0: geometry type 'Point' is not supported"),
    ('[{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[1, 2]]}, "properties": {}}]',
     "feature 0:"),
    ('[{"type": "Feature", "properties": {}}]', "feature 0: no geometry"),
    ('[{"type": "Polygon"}]', "feature 0: not a GeoJSON Feature"),
])
def test_read_errors_name_the_file_and_the_problem(tmp_path, content, message):
    p = tmp_path / "bad.geojson"
    p.write_text(content)
    with pytest.raises(DataError, match=message) as e:
        read_geojson(p)
    assert str(p) in str(e.value)


def test_unknown_class_and_missing_file(tmp_path):
    p = _dump(tmp_path / "c.geojson", [_feature(_square(0, 0, 2, 2), cls="Stroma")])
    with pytest.raises(DataError, match="feature 0: class 'Stroma' is not in the class list"):
        geojson_instances(p, (4, 4), class_names=("Tumor",))
    with pytest.raises(DataError, match="file not found"):
        read_geojson(tmp_path / "absent.geojson")


def test_write_is_atomic(tmp_path, monkeypatch):
    p = tmp_path / "keep.geojson"
    p.write_text("previous")
    import zoo.data.geojson as gj

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(gj.json, "dump", boom)
    with pytest.raises(RuntimeError):
        write_geojson(_shapes(), p)
    assert p.read_text() == "previous" and sorted(x.name for x in tmp_path.iterdir()) == ["keep.geojson"]


# ------------------------------------------------------------------------------------------ real nuclei
def test_real_nuclei_round_trip_exactly(shared_data, tmp_path):
    """A 400x400 crop of a MoNuSeg derived instance map (touching nuclei, non-consecutive ids) -> GeoJSON -> map."""
    from zoo.data.imageio import read_label

    path = glob.glob(str(shared_data / "monuseg2018" / "derived" / "*" / "*_TCGA-HE-7128-01Z-00-DX1_label.png"))[0]
    m = read_label(path)[300:700, 300:700]
    n = write_geojson(m, tmp_path / "real.geojson")
    assert n == len(np.unique(m)) - 1 > 100  # 175 nuclei, several cut by the crop border
    back = geojson_instances(tmp_path / "real.geojson", m.shape).instances
    np.testing.assert_array_equal(back, np.searchsorted(np.unique(m), m))


def test_monuseg_xml_polygons_round_trip_through_geojson(shared_data, tmp_path):
    """ImageScope XML polygons written as QuPath GeoJSON and rasterised again give the monuseg2018 reader's map."""
    from zoo.data.polygons import imagescope_polygons, read_imagescope_xml
    from zoo.data.readers.monuseg import XML_SHIFT, xml_instances

    xml = shared_data / "monuseg2018" / "MoNuSegTestData" / "TCGA-HT-8564-01Z-00-DX1.xml.gz"
    ref, drawn, _ = xml_instances(str(xml), (1000, 1000))
    regions, _ = read_imagescope_xml(xml)
    polys, _ = imagescope_polygons(regions, XML_SHIFT)
    n = write_features(polygons_to_features(polys), tmp_path / "xml.geojson")
    assert n == drawn == 249  # PROVENANCE: 249 regions in this test image
    got = geojson_instances(tmp_path / "xml.geojson", (1000, 1000))
    assert _same_partition(got.instances, ref)
    assert len(np.unique(got.instances)) - 1 == len(np.unique(ref)) - 1


def test_instances_to_features_in_memory_matches_file(tmp_path):
    m = _shapes()
    feats = instances_to_features(m)
    write_geojson(m, tmp_path / "f.geojson")
    assert json.loads((tmp_path / "f.geojson").read_text())["features"] == json.loads(json.dumps(feats))


# ------------------------------------------------------------------------------ the vectorised outline tracer
def _pixel_union(m: np.ndarray) -> dict:
    """Reference outlines: each instance as the shapely union of its pixel squares (one union per instance: slow,
    for checking only)."""
    import shapely

    r, c = np.nonzero(m)
    o = np.argsort(m[r, c], kind="stable")
    ids, first = np.unique(m[r, c][o], return_index=True)
    parts = np.split(shapely.box(c, r, c + 1, r + 1)[o], first[1:])
    return {int(i): shapely.union_all(b) for i, b in zip(ids, parts)}


def _check_outlines(m: np.ndarray) -> dict:
    """instance_outlines(m) is valid, equals the union of pixel squares per instance (same Polygon / MultiPolygon
    parts and holes), has the pixel count as area, and has no collinear vertex (as many vertices as the union
    after removing collinear ones)."""
    import shapely

    ids, geoms = instance_outlines(m)
    ref = _pixel_union(m)
    assert ids.tolist() == sorted(ref)
    g = np.asarray(geoms, dtype=object)
    r = np.asarray([ref[i] for i in ids.tolist()], dtype=object)
    assert shapely.is_valid(g).all()
    assert shapely.equals(g, r).all()
    assert [a.geom_type for a in g] == [b.geom_type for b in r]
    np.testing.assert_array_equal(shapely.area(g), np.bincount(m.ravel())[ids])
    assert shapely.get_num_coordinates(g).tolist() == shapely.get_num_coordinates(shapely.simplify(r, 0)).tolist()
    return dict(zip(ids.tolist(), geoms))


def test_outlines_hole_diagonal_single_pixel_and_saddles(tmp_path):
    """A hole, a hole meeting the outline at a corner, two holes meeting at a corner, parts touching only at a
    corner, a one-pixel nucleus on the border, and random maps full of such corner contacts."""
    m = np.zeros((14, 14), np.int32)
    m[1:6, 1:6] = 1
    m[3, 3] = 0  # a hole
    m[0:3, 8:11] = 2
    m[1, 9] = 0
    m[2, 10] = 0  # the hole (1, 9) meets the background (2, 10) at one corner: its own ring, touching the exterior
    m[7:11, 7:11] = 3
    m[8, 8] = m[9, 9] = 0  # two holes meeting at a corner
    m[12, 0] = m[13, 1] = m[12, 2] = 4  # three pixels joined only at corners: three parts
    m[0, 13] = 5  # one pixel in the image corner
    g = _check_outlines(m)
    assert g[1].geom_type == "Polygon" and len(g[1].interiors) == 1 and g[1].area == 24
    assert g[2].geom_type == "Polygon" and len(g[2].interiors) == 1 and g[2].area == 7
    assert g[3].geom_type == "Polygon" and len(g[3].interiors) == 2 and g[3].area == 14
    assert g[4].geom_type == "MultiPolygon" and len(g[4].geoms) == 3 and g[4].area == 3
    assert g[5].bounds == (13, 0, 14, 1) and len(g[5].exterior.coords) == 5
    write_geojson(m, tmp_path / "h.geojson")
    np.testing.assert_array_equal(geojson_instances(tmp_path / "h.geojson", m.shape).instances, m)
    rng = np.random.default_rng(0)
    for m in (rng.integers(0, 4, (40, 50)), (rng.random((50, 40)) > 0.5).astype(np.int32)):
        _check_outlines(m)


def test_outlines_of_a_real_instance_map_equal_the_pixel_union(shared_data, tmp_path):
    """A 700x700 crop of a MoNuSeg instance map (touching nuclei, some cut by the crop border): the traced
    outlines equal the per-instance union of pixel squares, and the GeoJSON reads back to the same map."""
    from zoo.data.imageio import read_label

    path = glob.glob(str(shared_data / "monuseg2018" / "derived" / "*" / "*_TCGA-A7-A13E-01Z-00-DX1_label.png"))[0]
    m = read_label(path)[:700, :700]
    assert len(np.unique(m)) - 1 > 150
    _check_outlines(m)
    write_geojson(m, tmp_path / "p.geojson")
    back = geojson_instances(tmp_path / "p.geojson", m.shape).instances
    np.testing.assert_array_equal(back, np.searchsorted(np.unique(m), m))
