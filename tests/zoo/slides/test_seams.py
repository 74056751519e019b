"""The seam test (issue 24): a mosaic of real tiles predicted as a slide gives the same instances as the mosaic
predicted whole in memory with ``zoo.inference.predict``: none doubled, none cut at the seams."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from .conftest import MPP, tiny_spec


def _match(a: np.ndarray, b: np.ndarray):
    """(IoU of each overlapping (a id, b id) pair, a ids, b ids) from one contingency table."""
    pairs, cnt = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1, return_counts=True)
    area_a, area_b = np.bincount(a.ravel()), np.bincount(b.ravel())
    m = (pairs[0] > 0) & (pairs[1] > 0)
    iou = cnt[m] / (area_a[pairs[0][m]] + area_b[pairs[1][m]] - cnt[m])
    return iou, pairs[0][m], pairs[1][m]


def _read_csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("method", ["threshold", "dynamics_watershed"])
def test_slide_equals_whole_image(slides, mosaic, loaded, tmp_path, method):
    """Every nucleus of the whole-image prediction is found once in the slide's output. With connected components
    (``threshold``) they are identical pixel for pixel. With the dynamics watershed the same nuclei come back but a
    few pixels of a watershed line between touching nuclei may move: skimage's watershed breaks ties on plateaus by
    its flooding order, which depends on the whole array it floods, not only on the nucleus' neighbourhood."""
    from zoo.data.geojson import geojson_instances
    from zoo.inference import predict
    from zoo.postprocess.config import PostprocessConfig
    from zoo.slides import predict_slide, tile_grid

    model, spec = loaded.model, loaded.spec
    if method == "threshold":
        spec = spec.replace(postprocess=PostprocessConfig("threshold", {"min_size": 20}))
    s = predict_slide(slides["ome"], model, spec, str(tmp_path / "out"), tile_size=256, overlap=64, batch=2,
                      progress=False)
    whole = predict(model, spec, mosaic, MPP)
    n = whole.num_instances
    assert n > 100  # real nuclei, not an empty answer
    # the slide's QuPath GeoJSON, rasterised back on the slide's grid, is the whole-image instance map
    got = geojson_instances(str(tmp_path / "out" / "nuclei.geojson"), mosaic.shape[:2]).instances
    assert s["nuclei"] == got.max() == n
    iou, ia, ib = _match(whole.instances, got)
    one = iou > 0.5  # a one-to-one matching: every nucleus once, none doubled, none cut in two
    assert one.sum() == n and len(np.unique(ia[one])) == len(np.unique(ib[one])) == n
    if method == "threshold":
        assert len(iou) == n and (iou == 1.0).all()  # pixel for pixel
    else:
        assert (iou[one] == 1.0).mean() >= 0.95 and iou[one].min() >= 0.8
    # the test crosses seams: many whole-image nuclei straddle a core boundary of the grid
    tiles = tile_grid(mosaic.shape[:2], 256, 64)
    ys = sorted({t.cy0 for t in tiles} - {0})
    xs = sorted({t.cx0 for t in tiles} - {0})
    rows = np.nonzero(whole.instances)[0]
    cols = np.nonzero(whole.instances)[1]
    lab = whole.instances[rows, cols]
    ymin, ymax = np.full(n + 1, 10 ** 9), np.zeros(n + 1, int)
    np.minimum.at(ymin, lab, rows)
    np.maximum.at(ymax, lab, rows)
    xmin, xmax = np.full(n + 1, 10 ** 9), np.zeros(n + 1, int)
    np.minimum.at(xmin, lab, cols)
    np.maximum.at(xmax, lab, cols)
    crossing = sum(int(((ymin[1:] < y) & (ymax[1:] >= y)).sum()) for y in ys) + \
        sum(int(((xmin[1:] < x) & (xmax[1:] >= x)).sum()) for x in xs)
    assert crossing >= 10
    assert s["seams"]["cut_at_tile_edge"] == 0
    # background: the white band's tiles never ran; tissue area is the mosaic's
    assert s["tiles_background"] >= 2 and s["tiles_run"] < s["tiles"]
    assert abs(s["tissue_area_mm2"] - (2 * 320) ** 2 * MPP ** 2 / 1e6) < 0.05 * s["tissue_area_mm2"]
    assert s["nuclei_per_mm2"] == round(n / s["tissue_area_mm2"], 3)
    # per-nucleus CSV: slide pixels and µm, areas in µm², ids 1..N
    rows_ = _read_csv(tmp_path / "out" / "nuclei.csv")
    assert [int(r["id"]) for r in rows_] == list(range(1, n + 1))
    cx = np.array([float(r["centroid_x"]) for r in rows_])
    cy = np.array([float(r["centroid_y"]) for r in rows_])
    area = np.bincount(whole.instances.ravel())[1:]
    wy = np.bincount(whole.instances.ravel(), np.indices(mosaic.shape[:2])[0].ravel())[1:] / area
    got_area = np.sort([float(r["area_um2"]) for r in rows_])
    if method == "threshold":
        assert np.allclose(np.sort(cy), np.sort(wy), atol=1e-3)
        assert np.allclose(got_area, np.sort(area * MPP ** 2), atol=1e-3)
    else:
        assert np.allclose(np.sort(cy), np.sort(wy), atol=1.0)
        assert abs(got_area.sum() - area.sum() * MPP ** 2) < 0.01 * got_area.sum()
    assert np.allclose([float(r["centroid_x_um"]) for r in rows_], cx * MPP, atol=1e-3)
    assert all(float(r["mean_od_h"]) > 0 for r in rows_)
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "out" / "nuclei.parquet").num_rows == n
    from PIL import Image

    assert Image.open(tmp_path / "out" / "overlay.png").size[0] == mosaic.shape[1]


def test_svs_level_chosen_by_model_mpp(slides, mosaic, loaded, tmp_path):
    """A model at 0.5 µm/px runs on the SVS-like slide's level 1 (no resampling); centroids come back in level-0
    pixels: level pixel c is level-0 (c + 0.5) * 2 - 0.5."""
    from zoo.inference import predict
    from zoo.slides import open_slide, predict_slide

    spec = tiny_spec(mpp=2 * MPP)
    s = predict_slide(slides["svs"], loaded.model, spec, str(tmp_path / "out"), tile_size=128, overlap=32,
                      progress=False)
    assert s["format"] == "svs" and s["level"] == 1 and s["resample_factor"] == 1.0
    with open_slide(slides["svs"]) as sl:
        lv1 = sl.read_region(1, 0, 0, *sl.levels[1].shape)
    whole = predict(loaded.model, spec, lv1, 2 * MPP)
    assert s["nuclei"] == whole.num_instances > 20
    area = np.bincount(whole.instances.ravel())[1:]
    wx = np.bincount(whole.instances.ravel(), np.indices(lv1.shape[:2])[1].ravel())[1:] / area
    rows = _read_csv(tmp_path / "out" / "nuclei.csv")
    assert np.allclose(sorted(float(r["centroid_x"]) for r in rows), np.sort((wx + 0.5) * 2 - 0.5), atol=1e-3)


def test_resampled_when_no_level_matches(slides, mosaic, loaded, tmp_path):
    """A 0.4 µm/px model on a 0.25 / 0.5 / 1.0 µm/px pyramid: level 0, each tile resampled by 0.625 through the one
    inference function; the count stays within 10 % of predicting the whole mosaic at its own resolution."""
    from zoo.inference import predict
    from zoo.slides import predict_slide

    spec = tiny_spec(mpp=0.4)
    s = predict_slide(slides["ome"], loaded.model, spec, str(tmp_path / "out"), tile_size=192, overlap=48,
                      progress=False)
    assert s["level"] == 0 and s["resample_factor"] == 0.625 and s["tile_size_level"] == 307
    n = predict(loaded.model, spec, mosaic, MPP).num_instances
    assert abs(s["nuclei"] - n) <= 0.1 * n


def test_resolve_tile_rule():
    """The seam rule on a hand-made tile: centroid outside the core -> left to the neighbour; >= 50 % already
    accepted -> a duplicate, dropped; partly accepted -> trimmed to its free pixels; touching a cut edge -> counted."""
    from zoo.slides import Tile, resolve_tile

    tile = Tile(index=4, row=1, col=1, y=100, x=100, h=20, w=20, cy0=105, cy1=115, cx0=105, cx1=115)
    inst = np.zeros((20, 20), np.int32)  # core = local rows / columns 5..14: centroids in [4.5, 14.5)
    inst[0:4, 8:12] = 1      # centroid row 1.5: above the core -> the tile above owns it
    inst[6:10, 6:10] = 2     # in the core, free -> kept whole
    inst[11:15, 6:10] = 3    # in the core, 12 of its 16 pixels already accepted -> a duplicate
    inst[6:10, 11:15] = 4    # in the core, 4 of 16 pixels accepted -> trimmed to 12
    inst[16:19, 11:14] = 5   # centroid row 17: below the core
    inst[11:14, 11:14] = 6   # in the core, free -> kept
    accepted = np.zeros((20, 20), bool)
    accepted[11:14, 6:10] = True
    accepted[6, 11:15] = True
    kept, classes, stats = resolve_tile(inst, np.arange(7), tile, accepted, (1000, 1000))
    assert stats["duplicates"] == 1 and stats["trimmed"] == 1 and stats["outside_core"] == 2
    assert stats["kept"] == 3 and stats["cut_at_tile_edge"] == 0
    # kept ids renumbered in order: 2 -> 1, 4 -> 2, 6 -> 3; classes follow them
    assert [(kept == i).sum() for i in (1, 2, 3)] == [16, 12, 9] and list(classes) == [0, 2, 4, 6]
    assert not (kept[accepted] > 0).any()
    inst2 = np.zeros((20, 20), np.int32)
    inst2[4:20, 8:12] = 1    # centroid in the core, reaches the tile's bottom edge (a cut edge): counted
    assert resolve_tile(inst2, np.arange(2), tile, np.zeros((20, 20), bool), (1000, 1000))[2]["cut_at_tile_edge"] == 1


@pytest.mark.parametrize("n,tile,overlap", [(1000, 256, 64), (257, 256, 64), (256, 256, 64), (100, 256, 64),
                                            (5000, 512, 96), (513, 512, 256), (700, 300, 0), (1234, 128, 2)])
def test_grid_cores_partition_and_margins(n, tile, overlap):
    """Along an axis: cores partition [0, n); every tile has the same length (min(tile, n)), lies inside [0, n),
    and reaches at least overlap // 2 beyond its core on every side that is not the axis' end."""
    from zoo.slides.tiled import axis_cores

    m = overlap // 2
    cores = axis_cores(n, tile, m)
    assert cores[0][0] == 0 and cores[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(cores, cores[1:]))
    for c0, c1, t0, tl in cores:
        assert c1 > c0 and tl == min(tile, n) and 0 <= t0 and t0 + tl <= n
        assert c0 == 0 or c0 - t0 >= m
        assert c1 == n or t0 + tl - c1 >= m
