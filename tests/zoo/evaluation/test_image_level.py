"""Image-level classification from cell proportions (Hu et al. IEEE JBHI 2019, sec. III-B, IV-E;
zoo.evaluation.image_level and scripts/image_level.py): proportions, the nearest-centre k-means classifier and the
L2-SVM on hand-worked toy cases, the cross-validation protocol, and the MoNuSeg organ labels against PROVENANCE.md."""

import collections
import importlib.util
import pathlib

import numpy as np
import pytest

from zoo.errors import DataError
from zoo.evaluation.image_level import NearestCentreClassifier, cell_proportions, cross_validate, svm_predict

SCRIPT = pathlib.Path(__file__).parents[3] / "scripts" / "image_level.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("histozoo_image_level_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cell_proportions_by_hand():
    images, p = cell_proportions(["b", "a", "a", "b", "a"], [1, 0, 1, 2, 0], k=3)
    assert images == ["a", "b"]
    # a: categories 0, 1, 0 -> X = (2, 1, 0) / 3; b: categories 1, 2 -> (0, 1, 1) / 2
    np.testing.assert_allclose(p, [[2 / 3, 1 / 3, 0], [0, 0.5, 0.5]])
    _, p = cell_proportions(["a", "b"], [3, 3], k=4, images=["b", "a"])
    np.testing.assert_allclose(p, [[0, 0, 0, 1], [0, 0, 0, 1]])
    with pytest.raises(DataError, match="0 .. 2"):
        cell_proportions(["a"], [3], k=3)
    with pytest.raises(DataError, match="without nuclei"):
        cell_proportions(["a"], [0], k=2, images=["a", "c"])
    with pytest.raises(DataError, match="2 entries"):
        cell_proportions(["a"], [0, 1], k=2)


def test_nearest_centre_classifier_by_hand():
    # k = 2 (two classes): clusters {0, 0.2, 0.4} (classes 1, 1, 2 -> majority 1, centre 0.2) and {10} (class 2)
    clf = NearestCentreClassifier().fit([[0.0], [0.2], [0.4], [10.0]], [1, 1, 2, 2])
    order = np.argsort(clf.centres_.ravel())
    np.testing.assert_allclose(clf.centres_.ravel()[order], [0.2, 10.0])
    assert clf.centre_labels_[order].tolist() == [1, 2]
    # 5.0 is 4.8 from 0.2 and 5.0 from 10: class 1; 5.2 is 5.0 from 0.2 and 4.8 from 10: class 2
    assert clf.predict([[5.0], [5.2], [-3.0], [0.4]]).tolist() == [1, 2, 1, 1]
    two_d = NearestCentreClassifier().fit([[0, 0], [0, 1], [10, 10], [10, 11]], ["n", "n", "ab", "ab"])
    # (5.1, 5.6): squared distance 52.02 to (0, 0.5), 48.02 to (10, 10.5)
    assert two_d.predict([[1, 1], [9, 9], [5.1, 5.6]]).tolist() == ["n", "ab", "ab"]
    with pytest.raises(DataError, match="at least 3"):
        NearestCentreClassifier(k=3).fit([[0.0], [1.0]], [0, 1])


def test_nearest_centre_classifier_with_fewer_distinct_images_than_classes():
    # every image has the same proportions (a Q that puts every nucleus in one category): one distinct point for
    # k = 3 classes; the centres no image belongs to are dropped and every image gets the majority class (2)
    clf = NearestCentreClassifier().fit([[1.0, 0.0]] * 5, [0, 1, 2, 2, 2])
    np.testing.assert_allclose(clf.centres_, [[1.0, 0.0]])
    assert clf.centre_labels_.tolist() == [2]
    assert clf.predict([[1.0, 0.0], [0.0, 1.0]]).tolist() == [2, 2]


def test_l2_svm_separates_a_separable_toy_case():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(0.0, 0.3, (10, 3)), rng.uniform(0.7, 1.0, (10, 3))])
    y = np.repeat(["normal", "abnormal"], 10)
    test = np.array([[0.1, 0.2, 0.1], [0.9, 0.8, 0.95], [0.25, 0.1, 0.2]])
    assert svm_predict(x, y, test).tolist() == ["normal", "abnormal", "normal"]


def test_cross_validation_protocol():
    # 8 images, 2 classes; class "A" images' nuclei are mostly category 0, class "B" mostly category 1
    labels = {f"im{i}": "A" if i < 4 else "B" for i in range(8)}
    nid, cat = [], []
    for i in range(8):
        major = 0 if i < 4 else 1
        nid += [f"im{i}"] * 5
        cat += [major] * 4 + [1 - major]
    nid += ["other"] * 3  # nuclei of an unlabelled image are ignored
    cat += [0, 0, 0]
    masks = []

    def assign(mask):
        masks.append(mask.copy())
        return np.array(cat)

    res = cross_validate(nid, labels, assign, k=2, folds=2, seed=0)
    for m in ("k-means", "L2-SVM"):
        assert (res[m]["precision"], res[m]["recall"], res[m]["f_score"], res[m]["accuracy"]) == (1.0, 1.0, 1.0, 1.0)
        assert res[m]["labels"] == ["A", "B"] and res[m]["confusion"] == [[4, 0], [0, 4]]
        tests = [set(f["test_images"]) for f in res[m]["folds"]]
        assert len(tests) == 2 and tests[0] | tests[1] == set(labels) and not tests[0] & tests[1]
    # each fold's mask marks exactly the nuclei of its training images (the complement of its test images)
    nid_arr = np.array(nid)
    for mask, test in zip(masks, [set(f["test_images"]) for f in res["k-means"]["folds"]]):
        expect = np.array([n in labels and n not in test for n in nid])
        assert (mask == expect).all() and mask.sum() == 20 and not mask[nid_arr == "other"].any()
    np.testing.assert_allclose(res["proportions"]["im0"], [0.8, 0.2])
    with pytest.raises(DataError, match="without nuclei"):
        cross_validate(nid, {**labels, "empty": "A"}, assign, k=2, folds=2)


def test_image_labels_and_dropped_classes(script):
    crops = {"image_id": ["a/n1", "a/n2", "b/n1", "c/n1", "d/n1", "e/n1"],
             "organ": ["Breast", "Breast", "Breast", "Kidney", "Kidney", "Colon"]}
    kept, dropped = script.image_labels(crops, "organ", min_images=2)
    assert kept == {"a": "Breast", "b": "Breast", "c": "Kidney", "d": "Kidney"} and dropped == {"Colon": 1}
    with pytest.raises(DataError, match="two organs"):
        script.image_labels({"image_id": ["a/n1", "a/n2"], "organ": ["Breast", "Colon"]}, "organ", 1)
    with pytest.raises(DataError, match="fewer than 2"):
        script.image_labels(crops, "organ", min_images=3)


def test_monuseg_organ_classes_match_provenance(shared_data, script):
    """The organ labels of the 30 MoNuSeg training images (derived file names, PROVENANCE.md's organ table):
    Liver (TCGA lung codes) 6, Breast 6, Kidney 6, Prostate 6, Bladder 2, Colon 2, Stomach 2; with 4 folds the
    image-level task keeps the four 6-image organs (24 images)."""
    from zoo.data.readers.monuseg import ORGAN_OF

    names = sorted(p.name for p in (shared_data / "monuseg2018" / "derived").glob("*/*_label.png"))
    organ = {n.split("_", 1)[1][: -len("_label.png")]: n.split("_", 1)[0] for n in names}
    assert collections.Counter(organ.values()) == {"Liver": 6, "Breast": 6, "Kidney": 6, "Prostate": 6,
                                                   "Bladder": 2, "Colon": 2, "Stomach": 2}
    assert all(ORGAN_OF[im[:12]] == o for im, o in organ.items())  # the reader's records carry the same organ
    crops = {"image_id": [f"{im}/n1" for im in organ], "organ": list(organ.values())}
    kept, dropped = script.image_labels(crops, "organ", min_images=4)
    assert len(kept) == 24 and dropped == {"Bladder": 2, "Colon": 2, "Stomach": 2}


def test_the_script_end_to_end_with_a_gan_and_the_kmeans_baseline(script, tmp_path):
    """scripts/image_level.py on 8 synthetic images of 2 organs (4 each, 6 point crops per image): with a tiny GAN's
    Q (--gan) and with the raw-pixel k-means typing; JSON and PCA plot written, every image scored once per fold."""
    import json
    import os

    import keras

    from zoo import models
    from zoo.data.build import DatasetWriter
    from zoo.data.crops import CropConfig, write_crops
    from zoo.data.sample import Sample

    rng = np.random.default_rng(0)
    src = str(tmp_path / "src")
    with DatasetWriter(src) as w:
        for i in range(8):
            img = rng.integers(150, 256, (24, 24, 3), dtype=np.uint8)
            pts = np.array([(6 + 6 * (k // 3), 6 + 6 * (k % 3)) for k in range(6)], np.float32)
            w.add(Sample(image=img, image_id=f"img{i}", dataset="toy", source_id=f"p{i}", split="train",
                         organ="Breast" if i % 2 else "Kidney", points_yx=pts))
        w.commit("toy", "synthetic", {})
    crops = str(tmp_path / "crops")
    write_crops(src, crops, CropConfig(size=8), progress=False)
    keras.utils.set_random_seed(0)
    net = models.build("infowgan_gp", {"image_size": 8, "categories": 3, "noise_dim": 2, "g_filters": 2,
                                       "d_filters": 2, "q_filters": 2})
    net.build()
    net.save(str(tmp_path / "gan.keras"))
    for extra in (["--gan", str(tmp_path / "gan.keras")], ["--features", "raw", "--k", "2"]):
        out, pca = str(tmp_path / "r.json"), str(tmp_path / "pca.png")
        assert script.main(["--crops", crops, "--folds", "2", "--out", out, "--pca", pca] + extra) == 0
        r = json.loads(pathlib.Path(out).read_text())
        assert r["classes"] == {"Breast": 4, "Kidney": 4} and r["images"] == 8 and r["nuclei"] == 48
        assert r["k"] == (3 if "--gan" in extra else 2) and len(r["proportions"]) == 8
        assert all(abs(sum(p) - 1) < 1e-9 for p in r["proportions"].values())
        for m in ("k-means", "L2-SVM"):
            assert sorted(im for f in r[m]["folds"] for im in f["test_images"]) == [f"img{i}" for i in range(8)]
            assert np.sum(r[m]["confusion"]) == 8 and 0 <= r[m]["f_score"] <= 1
        assert os.path.getsize(pca) > 0


def test_pca_plot_of_identical_proportions_is_drawn_without_pca(script, tmp_path):
    # every image with the same proportions (a collapsed Q): no principal components exist; the plot says so
    import warnings

    props = {f"img{i}": [1.0, 0.0, 0.0] for i in range(4)}
    labels = {f"img{i}": "Breast" if i % 2 else "Kidney" for i in range(4)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = script.pca_plot(props, labels, str(tmp_path / "pca.png"), "t")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
