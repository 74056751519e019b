"""scripts/clustering.py's pieces (the k-means / hand-made-feature / L2-SVM baselines of issue 20), cheaply: feature
extractors against values known by construction, k-means and the SVM on separable data, scores equal to
zoo.metrics.clustering, and the whole script on tiny typed crops with a tiny GAN model."""

import importlib.util
import json
import os
import pathlib

import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).parents[3] / "scripts" / "clustering.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("histozoo_clustering_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_raw_pixels_and_hand_made_features(script):
    white = np.full((2, 32, 32, 3), 255, np.uint8)
    raw = script.raw_pixel_features(white)
    assert raw.shape == (2, 3072) and np.all(raw == 1.0)
    h = script.color_histogram(white[0])
    # white: L = 100 (last of 8 bins over [0, 100]), a = b = 0 (bin 4 of 8 over [-128, 127])
    np.testing.assert_allclose(h, np.concatenate([np.eye(8)[7], np.eye(8)[4], np.eye(8)[4]]), atol=1e-6)
    # a flat image: every neighbour >= the centre, so each of the 30 x 30 inner pixels has the uniform code P = 8
    # (skimage counts neighbours outside the image as 0, below the centre, so the 124 border pixels differ)
    lbp = script.lbp_histogram(np.full((32, 32), 7, np.uint8))
    assert lbp.shape == (10,) and lbp.sum() == pytest.approx(1.0) and lbp[8] == pytest.approx(900 / 1024)
    assert script.hog_features(np.zeros((32, 32), np.uint8)).shape == (324,)  # 3 x 3 blocks x 2 x 2 cells x 9
    assert script.handmade_features(white).shape == (2, 24 + 10 + 324)


def test_kmeans_and_svm_on_separable_data_score_perfectly(script):
    from zoo.metrics.clustering import clustering_report

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (20, 5)), rng.normal(5, 0.1, (20, 5))])
    types = np.repeat([1, 2], 20)
    clusters = script.kmeans_clusters(x, 2)
    s = script.score_clusters(clusters, types)
    assert (s["purity"], s["entropy_bits"], s["f_score"], s["n"]) == (1.0, 0.0, 1.0, 40)
    # untyped crops (type 0) are left out; the scores are zoo.metrics.clustering's
    noisy = np.array([0, 1, 1, 0, 1, 0])
    t = np.array([1, 1, 2, 2, 0, 0])
    ref = clustering_report(noisy[:4], t[:4])
    got = script.score_clusters(noisy, t)
    assert (got["purity"], got["entropy_bits"], got["f_score"], got["n"]) == (ref["purity"], ref["entropy"],
                                                                                ref["f1_weighted"], 4)
    r = script.svm_report(x[::2], types[::2], x[1::2], types[1::2])
    assert (r["precision"], r["recall"], r["f_score"], r["n_train"], r["n_test"]) == (1.0, 1.0, 1.0, 20, 20)


def test_the_script_writes_every_table(script, tmp_path, toy_crops):
    import keras

    from zoo import models

    crops = toy_crops
    keras.utils.set_random_seed(0)
    net = models.build("infowgan_gp", {"image_size": 16, "categories": 2, "noise_dim": 4, "g_filters": 4,
                                       "d_filters": 4, "q_filters": 4})
    net.build()
    os.makedirs(tmp_path / "run/checkpoints")
    net.save(str(tmp_path / "run/checkpoints/last.keras"))
    out = str(tmp_path / "tables.json")
    assert script.main(["--crops", crops, "--model", str(tmp_path / "run/checkpoints/last.keras"), "--random-init",
                        "", "--k", "2", "3", "--dec", "--dec-pretrain-epochs", "2", "--dec-max-iterations", "300",
                        "--out", out]) == 0
    t = json.loads(pathlib.Path(out).read_text())
    methods = [(r["method"], r["k"]) for r in t["clustering"]]
    assert ("k-means on raw pixels", 2) in methods and ("k-means on raw pixels", 3) in methods
    assert ("k-means on D features (run)", 3) in methods and ("GAN Q (run)", 2) in methods
    assert ("DEC on HOG", 2) in methods and ("DEC on HOG", 3) in methods
    dec = [r for r in t["clustering"] if r["method"] == "DEC on HOG"]
    assert all(0 < r["dec_iterations"] <= 300 for r in dec)
    assert all(r["n"] == 12 and 0 <= r["purity"] <= 1 for r in t["clustering"])
    assert [r["features"] for r in t["features"]] == ["hand-made (Lab hist + LBP + HOG)", "D features (run)"]
    assert all(r["n_train"] == 12 and r["n_test"] == 12 for r in t["features"])
