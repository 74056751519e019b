"""D's features (Hu et al. IEEE JBHI 2019, IV-C / Table I: each of the critic's 4 resblock outputs max-pooled to
4 x 4, concatenated; zoo.evaluation.cluster.d_features) on tiny GANs, widths and pooled values by hand, and
scripts/clustering.py's --gan / --no-baselines rows."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from zoo.errors import DataError

SCRIPT = pathlib.Path(__file__).parents[3] / "scripts" / "clustering.py"


def _tiny(image_size, d_filters=2, q_filters=3):
    import keras

    from zoo import models

    keras.utils.set_random_seed(0)
    net = models.build("infowgan_gp", {"image_size": image_size, "categories": 2, "noise_dim": 2, "g_filters": 2,
                                       "d_filters": d_filters, "q_filters": q_filters})
    net.build()
    return net


def _crops(n, size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_d_features_width_and_values_by_hand():
    from zoo.evaluation.cluster import d_features

    net = _tiny(16)
    crops = _crops(3, 16)
    f = d_features(net, crops, batch_size=2)  # two batches: 2 + 1 crops
    # 4 resblocks x (4 x 4 bins) x d_filters = 4 * 16 * 2 = 128
    assert f.shape == (3, 128) and f.dtype == np.float32
    # the model's own test-process embedding (Q not needed for it)
    np.testing.assert_allclose(f, np.asarray(net(crops.astype(np.float32) / 255.0)["embedding"]), rtol=1e-5,
                               atol=1e-5)
    blocks = [np.asarray(b) for b in net.d_trunk(crops.astype(np.float32) / 127.5 - 1.0)]
    assert [b.shape[1] for b in blocks] == [8, 4, 4, 4]  # 16 -> mean-pool /2 -> /2 -> same -> same
    # block 1: 8 x 8 maps, 2 x 2 max pool to 4 x 4, flattened (row, column, channel)
    pooled = blocks[0].reshape(3, 4, 2, 4, 2, 2).max(axis=(2, 4))
    np.testing.assert_allclose(f[:, :32], pooled.reshape(3, 32), rtol=1e-5, atol=1e-5)
    # blocks 2-4: already 4 x 4, kept as they are, in order
    for i in (1, 2, 3):
        np.testing.assert_allclose(f[:, 32 * i:32 * (i + 1)], blocks[i].reshape(3, 32), rtol=1e-5, atol=1e-5)


def test_d_features_adaptive_bins_on_8px_crops():
    from zoo.evaluation.cluster import d_features

    net = _tiny(8, d_filters=3)
    crops = _crops(2, 8, seed=1)
    f = d_features(net, crops)
    assert f.shape == (2, 4 * 16 * 3)
    blocks = [np.asarray(b) for b in net.d_trunk(crops.astype(np.float32) / 127.5 - 1.0)]
    # block 2 is 2 x 2: bin i covers rows [floor(i * 2 / 4), ceil((i + 1) * 2 / 4)) = [0, 1), [0, 1), [1, 2),
    # [1, 2) (the same for columns): every pixel repeated twice along each axis
    up = np.repeat(np.repeat(blocks[1], 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(f[:, 48:96], up.reshape(2, 48), rtol=1e-5, atol=1e-5)
    with pytest.raises(DataError, match=r"\(8, 8, 3\)"):
        d_features(net, _crops(1, 16))


def test_clustering_script_gan_rows(tmp_path, toy_crops):
    """--gan RUN_OR_KERAS with --no-baselines: only the D-feature k-means rows (each --k), the GAN's Q row and the
    L2-SVM on D's features; a random-init model adds D-feature rows but no Q row."""
    import os


    spec = importlib.util.spec_from_file_location("histozoo_clustering_script_d", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    crops = toy_crops
    os.makedirs(tmp_path / "run/checkpoints")
    _tiny(16, d_filters=4, q_filters=4).save(str(tmp_path / "run/checkpoints/last.keras"))
    out = str(tmp_path / "t.json")
    assert script.main(["--crops", crops, "--gan", str(tmp_path / "run/checkpoints/last.keras"), "--no-baselines",
                        "--random-init", "infowgan_gp", "--k", "2", "3", "--out", out]) == 0
    t = json.loads(pathlib.Path(out).read_text())
    assert [(r["method"], r["k"]) for r in t["clustering"]] == [
        ("k-means on D features (run)", 2), ("k-means on D features (run)", 3),
        ("k-means on D features (infowgan_gp, random init)", 2),
        ("k-means on D features (infowgan_gp, random init)", 3),
        ("GAN Q (run)", 2)]
    assert all(r["n"] == 12 for r in t["clustering"])
    assert [r["features"] for r in t["features"]] == ["D features (run)", "D features (infowgan_gp, random init)"]
    assert all(r["n_train"] == 12 and r["n_test"] == 12 for r in t["features"])
    # a row is named by its run folder whether the folder or its checkpoint is given
    assert script._model_name(str(tmp_path / "run")) == script._model_name(str(tmp_path / "run/")) == "run"
    assert script._model_name("models:/hu-infowgan-gp/1") == "models:/hu-infowgan-gp/1"
