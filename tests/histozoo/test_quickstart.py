"""``histozoo quickstart`` end to end (a 10-step budget) from a working folder with no datasets beside it, and the
packaged sample, the shipped model and ``histozoo predict``'s default model."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """Run the CLI in a fresh folder, with HISTOZOO_DATA pointing nowhere and no MLFLOW_TRACKING_URI: the sample
    and the shipped model inside the package must be all it needs."""
    work = tmp_path_factory.mktemp("quickstart")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["HISTOZOO_DATA"] = str(work / "no-such-data")
    proc = subprocess.run([sys.executable, "-m", "histozoo", "quickstart", "--steps", "10", "--out", "qs"], cwd=work,
                          env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work, json.loads((work / "qs" / "quickstart.json").read_text()), proc.stdout


def test_quickstart_writes_every_promised_artifact(quickstart):
    work, s, stdout = quickstart
    p = s["paths"]
    # GeoJSON: a FeatureCollection of Polygon detections with a classification, one per nucleus in the CSV
    gj = json.loads(pathlib.Path(p["geojson"]).read_text())
    assert gj["type"] == "FeatureCollection" and gj["features"]
    # Polygons (a nucleus whose pixels touch only at a corner is a MultiPolygon, which QuPath imports too)
    kinds = [f["geometry"]["type"] for f in gj["features"]]
    assert set(kinds) <= {"Polygon", "MultiPolygon"} and kinds.count("Polygon") >= 0.9 * len(kinds)
    for f in gj["features"]:  # QuPath detections; the shipped model is untyped, so no classification is set
        assert f["properties"]["objectType"] == "detection" and "classification" not in f["properties"]
        assert {m["name"] for m in f["properties"]["measurements"]} >= {"area_px", "centroid_x", "centroid_y"}
    with open(p["csv"]) as fh:
        rows = list(csv.DictReader(fh))
    from zoo.data.imageio import read_label

    stem = pathlib.Path(p["overlay"]).name[: -len("_overlay.png")]
    inst = read_label(str(pathlib.Path(p["predictions"]) / f"{stem}_instances.png"))
    n = len(np.unique(inst[inst > 0]))
    assert len(rows) == n == len(gj["features"]) == s["served"]["instances"] > 0
    assert s["served"]["equal_to_in_process"] is True
    assert pathlib.Path(p["overlay"]).stat().st_size > 0
    # the SavedModel loads and carries the spec
    import tensorflow as tf

    loaded = tf.saved_model.load(p["export"])
    assert "histozoo_spec" in loaded.signatures and "predict_images" in loaded.signatures
    # the MLflow run has the held-out metrics and a registered version, in the embedded store under the cwd
    assert s["mlflow"]["tracking_uri"] == f"sqlite:///{work / 'mlruns' / 'mlflow.db'}"
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=s["mlflow"]["tracking_uri"])
    run = client.get_run(s["mlflow"]["run_id"])
    assert run.data.metrics["test_aji"] == pytest.approx(s["fine_tuned"]["aji"])
    versions = client.search_model_versions("name='histozoo-quickstart'")
    assert [str(v.version) for v in versions] == [str(s["mlflow"]["version"])] == ["1"]
    # the report printed beside the baseline, and the baseline is the classical method on the same 4 images
    assert "classical (hu_otsu)" in stdout and s["held_out_images"] == 4
    ev = json.loads((work / "qs" / "evaluation.json").read_text())
    ids = lambda r: sorted(x["image_id"] for x in r["per_image"])  # noqa: E731
    assert ids(ev["fine_tuned"]) == ids(ev["baseline"]) == ids(ev["shipped"])


def test_sample_matches_its_sources_and_licence():
    from histozoo.quickstart import SAMPLE_DIR, held_out_tiles
    from zoo.data.imageio import read_label, read_rgb

    with open(os.path.join(SAMPLE_DIR, "sources.csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["split"] for r in rows) == ["test"] * 4 + ["train"] * 4
    for r in rows:
        img = read_rgb(os.path.join(SAMPLE_DIR, "images", r["image"] + ".png"))
        lab = read_label(os.path.join(SAMPLE_DIR, "labels", r["image"] + ".png"))
        assert img.shape == (256, 256, 3) and lab.shape == (256, 256)
        assert len(np.unique(lab[lab > 0])) == int(r["nuclei"]) == lab.max()  # renumbered 1..N
    assert len(held_out_tiles(SAMPLE_DIR)) == 4
    assert "CC BY-NC-SA 4.0" in pathlib.Path(SAMPLE_DIR, "LICENSE.md").read_text()


def test_shipped_model_loads_verified_and_its_card_is_consistent(tmp_path):
    from zoo import pretrained
    from zoo.errors import ConfigError, DataError
    from zoo.training.tracking import load

    name = pretrained.DEFAULT
    assert name in pretrained.available()
    card = pretrained.card(name)
    folder = pretrained.path(name)
    model_file = os.path.join(folder, pretrained.MODEL_FILE)
    assert card["sha256"] == pretrained.sha256(model_file)
    assert card["size_bytes"] == os.path.getsize(model_file) < 16 * 2**20
    m = load(f"pretrained:{name}")
    assert m.source == f"pretrained:{name}" and m.spec.to_dict() == card["spec"]
    assert m.model.count_params() == card["params"]
    # the held-out images of the quickstart are MoNuSeg test crops: the card says it trained on train images only
    assert "test" in card["training"]["split"].lower()
    with pytest.raises(ConfigError, match="no pretrained model 'nope'"):
        pretrained.path("nope")
    # a damaged copy is refused, naming the file (the fault injected into a copy of the package folder)
    bad = tmp_path / "pretrained"
    import shutil

    shutil.copytree(pretrained.DIR, bad, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    with open(bad / name / pretrained.MODEL_FILE, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02\x03")
    orig = pretrained.DIR
    try:
        pretrained.DIR = str(bad)
        with pytest.raises(DataError, match="sha256 differs"):
            pretrained.load(name)
    finally:
        pretrained.DIR = orig


def test_predict_defaults_to_the_shipped_model(tmp_path):
    from histozoo.quickstart import SAMPLE_DIR, held_out_tiles
    from zoo import pretrained
    from zoo.inference import predict
    from zoo.data.imageio import read_label, read_rgb

    tile = held_out_tiles(SAMPLE_DIR)[1]
    proc = subprocess.run([sys.executable, "-m", "histozoo", "predict", tile, "--out", str(tmp_path / "p"),
                           "--quiet"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert summary["model"] == f"pretrained:{pretrained.DEFAULT}"
    m = pretrained.load()
    want = predict(m.model, m.spec, read_rgb(tile)).instances
    stem = pathlib.Path(tile).stem
    got = read_label(str(tmp_path / "p" / f"{stem}_instances.png"))
    np.testing.assert_array_equal(got, want)
