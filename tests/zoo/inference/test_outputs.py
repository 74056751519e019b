"""zoo.inference.outputs / ``histozoo predict`` in process: overlay, QuPath GeoJSON, per-nucleus CSV."""

from __future__ import annotations

import csv
import json

import numpy as np

from zoo.inference import Prediction


def _two_nuclei() -> tuple[Prediction, np.ndarray]:
    inst = np.zeros((10, 12), np.int32)
    inst[1:4, 1:5] = 1        # 3 x 4 = 12 px, centroid (x 2.5, y 2.0), typed "tumour"
    inst[6:9, 8:10] = 2       # 3 x 2 = 6 px, centroid (x 8.5, y 7.0), untyped
    probs = np.stack([(inst == 0), (inst > 0)], -1).astype(np.float32)
    img = np.full((10, 12, 3), 230, np.uint8)
    img[inst > 0] = (90, 60, 140)
    return Prediction(probs, inst, np.array([0, 1, 0]), ("tumour", "stroma"), 0.5), img


def test_nucleus_table_hand_worked():
    from zoo.inference.outputs import nucleus_table

    pred, img = _two_nuclei()
    t = nucleus_table(pred, img)
    assert t["id"].tolist() == [1, 2] and t["class"].tolist() == [1, 0]
    assert t["class_name"].tolist() == ["tumour", ""]
    assert t["area_px"].tolist() == [12, 6] and np.allclose(t["area_um2"], [3.0, 1.5])  # 0.5 um/px
    assert np.allclose(t["centroid_x"], [2.5, 8.5]) and np.allclose(t["centroid_y"], [2.0, 7.0])
    assert [t[k].tolist() for k in ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1")] == [[1, 8], [1, 6], [5, 10], [4, 9]]
    from skimage.color import rgb2hed

    h = rgb2hed(np.array([[[90, 60, 140]]], np.uint8))[0, 0]
    assert np.allclose(t["mean_od_h"], h[0], atol=1e-5) and np.allclose(t["mean_od_e"], h[1], atol=1e-5)



def test_nucleus_table_equals_regionprops_on_a_real_map(shared_data):
    """On a MoNuSeg image and its instance map with ids left out (as the slide's kept nuclei have), the vectorised
    table equals skimage's regionprops_table (area, centroid, bbox, mean of rgb2hed's H and E) id by id."""
    import glob

    from skimage.color import rgb2hed
    from skimage.measure import regionprops_table

    from zoo.data.imageio import read_label, read_rgb
    from zoo.inference.outputs import nucleus_table

    path = glob.glob(str(shared_data / "monuseg2018" / "derived" / "*" / "*_TCGA-HE-7128-01Z-00-DX1_label.png"))[0]
    img = read_rgb(glob.glob(str(shared_data / "monuseg2018" / "MoNuSegTrainingData" / "**" /
                                 "TCGA-HE-7128-01Z-00-DX1.*"), recursive=True)[0])
    inst = read_label(path)
    inst[inst % 3 == 0] = 0  # ids with gaps
    ids = np.unique(inst)[1:]
    classes = np.zeros(int(inst.max()) + 1, np.int64)
    classes[ids] = ids % 3
    pred = Prediction(np.zeros(inst.shape + (2,), np.float32), inst, classes, ("a", "b"), 0.25)
    t = nucleus_table(pred, img)
    ref = regionprops_table(inst, intensity_image=rgb2hed(img)[..., :2].astype(np.float32),
                            properties=("label", "area", "centroid", "bbox", "intensity_mean"))
    assert len(ids) > 200 and t["id"].tolist() == ids.tolist() == ref["label"].tolist()
    assert t["class"].tolist() == (ids % 3).tolist()
    assert t["class_name"].tolist() == [("", "a", "b")[i % 3] for i in ids]
    np.testing.assert_array_equal(t["area_px"], ref["area"])
    np.testing.assert_allclose(t["area_um2"], ref["area"] * 0.0625)
    for k, r in (("centroid_y", "centroid-0"), ("centroid_x", "centroid-1")):
        np.testing.assert_allclose(t[k], ref[r], rtol=0, atol=1e-9)
    for k, r in (("bbox_y0", "bbox-0"), ("bbox_x0", "bbox-1"), ("bbox_y1", "bbox-2"), ("bbox_x1", "bbox-3")):
        np.testing.assert_array_equal(t[k], ref[r])
    for k, r in (("mean_od_h", "intensity_mean-0"), ("mean_od_e", "intensity_mean-1")):
        np.testing.assert_allclose(t[k], ref[r], rtol=1e-5, atol=1e-7)

def test_written_files_read_back(tmp_path):
    from zoo.data.geojson import geojson_instances
    from zoo.inference.outputs import CSV_COLUMNS, write_prediction

    pred, img = _two_nuclei()
    row = write_prediction(pred, img, str(tmp_path), "tile")
    assert row["instances"] == 2 and row["by_class"] == {"tumour": 1, "untyped": 1}
    with open(tmp_path / "tile_nuclei.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(CSV_COLUMNS) and len(rows) == 2 and rows[0]["class_name"] == "tumour"
    gj = json.loads((tmp_path / "tile.geojson").read_text())
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == 2
    f0, f1 = gj["features"]
    assert f0["geometry"]["type"] == "Polygon" and f0["properties"]["objectType"] == "detection"
    assert f0["properties"]["classification"]["name"] == "tumour" and "classification" not in f1["properties"]
    assert {m["name"]: m["value"] for m in f0["properties"]["measurements"]}["area_px"] == 12
    back = geojson_instances(str(tmp_path / "tile.geojson"), pred.instances.shape, ("tumour", "stroma"))
    np.testing.assert_array_equal(back.instances, pred.instances)  # QuPath's polygons give the map back exactly
    ov = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(tmp_path / "tile_overlay.png"))
    assert tuple(ov[1, 1]) == (230, 25, 75) and tuple(ov[6, 8]) == (0, 255, 0)  # type colour / untyped green
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_predict_cli_in_process(quickstart_model, shared_data, tmp_path, capsys):
    from histozoo.cli import main

    _, _, run = quickstart_model
    folder = shared_data / "tnbc" / "TNBC_NucleiSegmentation" / "Slide_09"
    assert main(["predict", str(folder), "--model", str(run), "--out", str(tmp_path / "p"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert len(summary["images"]) == 6 and summary["spec"]["channels"] == ["background", "interior", "boundary"]
    for r in summary["images"]:
        with open(tmp_path / "p" / r["csv"]) as fh:
            assert sum(1 for _ in fh) - 1 == r["instances"]  # one CSV row per nucleus
        assert len(json.loads((tmp_path / "p" / r["geojson"]).read_text())["features"]) == r["instances"]
    out = capsys.readouterr().out
    assert f"{summary['total_instances']} instances in 6 images" in out
    assert main(["predict", str(tmp_path / "nothing"), "--model", str(run), "--out", str(tmp_path / "q")]) == 2
    assert "nothing: no such image file or folder" in capsys.readouterr().err
