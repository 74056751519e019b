"""Format readers on small files written in exactly the published formats: CoNSeP / HoVer-Net .mat, PanNuke .npy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from zoo.data import records
from zoo.data.build import build
from zoo.data.readers import get_reader
from zoo.data.readers.pannuke import masks_to_instances
from zoo.errors import ConfigError, DataError


def write_consep(root, inst_map_dtype=np.float64):
    """Train/ 2 images, Test/ 1 image, 20x24 RGBA PNG + HoVer-Net .mat (inst ids 1..3 as float, types 1..7)."""
    rng = np.random.default_rng(0)
    for split, names in (("Train", ["train_1", "train_2"]), ("Test", ["test_1"])):
        (root / split / "Images").mkdir(parents=True)
        (root / split / "Labels").mkdir(parents=True)
        (root / split / "Overlay").mkdir(parents=True)
        for n in names:
            img = np.concatenate([rng.integers(0, 256, (20, 24, 3), dtype=np.uint8),
                                  np.full((20, 24, 1), 255, np.uint8)], 2)
            Image.fromarray(img, "RGBA").save(root / split / "Images" / f"{n}.png")
            inst = np.zeros((20, 24), inst_map_dtype)
            inst[1:5, 1:5], inst[8:12, 3:9], inst[14:18, 15:22] = 1, 2, 3
            inst_type = np.array([[4], [6], [2]], np.int32)  # dysplastic epi, muscle, inflammatory
            type_map = np.zeros((20, 24), np.int32)
            for i, t in enumerate(inst_type[:, 0], 1):
                type_map[inst == i] = t
            cen = np.array([[2.5, 2.5], [5.5, 9.5], [18.0, 15.5]])
            savemat(root / split / "Labels" / f"{n}.mat",
                    {"inst_map": inst, "type_map": type_map, "inst_type": inst_type, "inst_centroid": cen})
    return root


@pytest.mark.parametrize("classes, names, expect", [
    (7, ("other", "inflammatory", "healthy epithelial", "dysplastic/malignant epithelial", "fibroblast", "muscle",
         "endothelial"), [4, 6, 2]),
    (4, ("other", "inflammatory", "epithelial", "spindle-shaped"), [3, 4, 2])])
def test_consep(tmp_path, classes, names, expect):
    root = write_consep(tmp_path / "CoNSeP")
    r = get_reader("consep")(str(tmp_path), classes=classes)  # the parent folder works too
    assert r.class_names == names
    items = r.items()
    assert [(sp, p.rsplit("/", 1)[1]) for sp, p in items] == [("train", "train_1.png"), ("train", "train_2.png"),
                                                              ("test", "test_1.png")]
    s = r.read(items[2])
    assert s.image.shape == (20, 24, 3) and s.split == "test" and s.image_id == "test_1"
    assert s.instance_ids.tolist() == [1, 2, 3] and s.instance_classes.tolist() == expect
    assert s.class_map[2, 2] == expect[0] and s.class_map[16, 20] == expect[2] and s.class_map[0, 0] == 0
    assert s.num_instances == 3 and (s.instances == 2).sum() == 24
    summary = build("consep", str(root), str(tmp_path / "out"), progress=False, classes=classes)
    assert summary["splits"]["train"]["nuclei_by_class"] == {names[e - 1]: 2 for e in expect}
    back = next(records.read_samples(records.list_shards(str(tmp_path / "out"), "test")))
    np.testing.assert_array_equal(back.class_map, s.class_map)


def test_consep_bad_labels(tmp_path):
    root = write_consep(tmp_path / "c")
    lab = root / "Train" / "Labels" / "train_1.mat"
    inst = np.zeros((20, 24))
    inst[0, 0] = 1.5
    savemat(lab, {"inst_map": inst, "inst_type": np.array([[1]])})
    r = get_reader("consep")(str(root))
    with pytest.raises(DataError, match=r"train_1\.mat:inst_map: label values are not integers"):
        r.read(r.items()[0])
    inst[0, 0] = 5
    savemat(lab, {"inst_map": inst, "inst_type": np.array([[1]])})
    with pytest.raises(DataError, match="inst_map has id 5 but inst_type lists only 1"):
        r.read(r.items()[0])
    with pytest.raises(ConfigError, match="classes must be 7"):
        get_reader("consep")(str(root), classes=5)


def write_pannuke(root, n=(3, 2), size=16, float_images=True):
    """Fold 1..k in the published layout: images.npy (N,H,W,3) float64 0..255, masks.npy (N,H,W,6) float64,
    types.npy (N,) tissue names."""
    rng = np.random.default_rng(1)
    for k, count in enumerate(n, 1):
        img_dir, mask_dir = root / f"Fold {k}" / "images" / f"fold{k}", root / f"Fold {k}" / "masks" / f"fold{k}"
        img_dir.mkdir(parents=True)
        mask_dir.mkdir(parents=True)
        images = rng.integers(0, 256, (count, size, size, 3)).astype(np.float64 if float_images else np.uint8)
        masks = np.zeros((count, size, size, 6), np.float64)
        masks[:, 1:4, 1:4, 0] = 7      # a neoplastic nucleus, id 7
        masks[:, 6:9, 1:4, 1] = 7      # an inflammatory nucleus re-using id 7 (ids repeat across channels)
        masks[:, 10:14, 10:14, 4] = 12  # an epithelial nucleus
        masks[:, 12:14, 12:15, 2] = 3  # a connective nucleus overlapping the epithelial one at 12:14, 12:14
        masks[..., 5] = (masks[..., :5].sum(-1) == 0)
        np.save(img_dir / "images.npy", images)
        np.save(mask_dir / "masks.npy", masks)
        np.save(img_dir / "types.npy", np.array(["Breast", "Colon", "HeadNeck"][:count]))
    return root


def test_pannuke_masks_to_instances():
    m = np.zeros((6, 6, 6))
    m[0:2, 0:2, 0] = 7
    m[3:5, 0:2, 1] = 7
    m[3:6, 3:6, 4] = 2
    m[4:6, 4:6, 2] = 9  # overlaps the epithelial nucleus: the pixel goes to the first channel (2 = connective)
    inst, ids, cls, cmap = masks_to_instances(m)
    assert ids.tolist() == [1, 2, 3, 4] and cls.tolist() == [1, 2, 3, 5]
    assert (inst == 1).sum() == 4 and (inst == 3).sum() == 4 and (inst == 4).sum() == 5
    assert cmap[5, 5] == 3 and cmap[3, 3] == 5 and cmap[0, 0] == 1 and cmap[2, 2] == 0


def test_pannuke_build_splits_folds_tissue(tmp_path):
    root = write_pannuke(tmp_path / "pannuke")
    out = tmp_path / "out"
    summary = build("pannuke", str(root), str(out), progress=False, fold_splits={"1": "train", "2": "test"})
    sp = summary["splits"]
    assert (sp["train"]["images"], sp["test"]["images"]) == (3, 2)
    assert sp["train"]["nuclei_by_class"] == {"neoplastic": 3, "inflammatory": 3, "connective/soft tissue": 3,
                                              "epithelial": 3}
    folds = json.loads((out / "folds.json").read_text())["folds"]
    assert [(f["fold"], len(f["train"]), len(f["test"])) for f in folds] == [(1, 2, 3), (2, 3, 2)]
    s = {x.image_id: x for x in records.read_samples(records.list_shards(str(out)))}
    assert set(s) == {"fold1_00000", "fold1_00001", "fold1_00002", "fold2_00000", "fold2_00001"}
    x = s["fold1_00002"]
    assert (x.organ, x.tissue_class, x.source_id) == ("HeadNeck", 7, "fold1")
    raw = np.load(root / "Fold 1" / "images" / "fold1" / "images.npy")[2]
    np.testing.assert_array_equal(x.image, raw.astype(np.uint8))
    assert x.instance_classes.tolist() == [1, 2, 3, 5]


def test_pannuke_shape_errors(tmp_path):
    root = write_pannuke(tmp_path / "p", n=(2,))
    np.save(root / "Fold 1" / "masks" / "fold1" / "masks.npy", np.zeros((2, 16, 16, 5)))
    with pytest.raises(DataError, match=r"masks\.npy: expected \(N, H, W, 6\) masks"):
        get_reader("pannuke")(str(root)).items()
    with pytest.raises(ConfigError, match="fold_splits values"):
        get_reader("pannuke")(str(root), fold_splits={"1": "training"})


def test_pannuke_unexpected_failure_names_the_npy_file_and_index(tmp_path, monkeypatch):
    import zoo.data.readers.pannuke as pannuke

    root = write_pannuke(tmp_path / "p", n=(2,))

    def broken(masks):
        raise MemoryError("simulated")

    monkeypatch.setattr(pannuke, "masks_to_instances", broken)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"fold1/images\.npy\[0\]: failed to read \(MemoryError: simulated\)"):
        build("pannuke", str(root), str(out), progress=False)
    assert not any(p.name.endswith(records.SHARD_SUFFIX) or p.name == "summary.json" for p in out.rglob("*"))
