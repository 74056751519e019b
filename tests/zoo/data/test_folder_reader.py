"""The `folder` reader (your own images + labels): real TNBC / MoNuSeg files re-laid as plain folders give records
byte-identical to the named readers'; formats, classes, sources, splits, GeoJSON labels, and every mismatch message."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest
import tifffile
from PIL import Image

from zoo.data import records
from zoo.data.build import build, load_summary
from zoo.data.readers import get_reader
from zoo.data.readers.folder import hash_split, read_class_names
from zoo.errors import ConfigError, DataError


def _records(out) -> dict:
    """{split: [serialized records in shard order]} of a built folder."""
    by = {}
    for p in records.list_shards(str(out)):
        by.setdefault(os.path.basename(p).split("-")[0], []).extend(records.iter_records([p]))
    return by


def _cli(*argv) -> int:
    from histozoo.cli import main

    return main(["data", "build", *map(str, argv), "--quiet"])


# ---------------------------------------------------------------------------------- real data, re-laid
def test_tnbc_relaid_as_plain_folders_builds_identical_records(shared_data, tmp_path):
    """3 patients x 2 images: TNBC layout (tnbc reader) vs images/ + labels/<stem>_mask.png (--binary)."""
    src = shared_data / "tnbc" / "TNBC_NucleiSegmentation"
    named, plain = tmp_path / "tnbc", tmp_path / "plain"
    (plain / "images").mkdir(parents=True)
    (plain / "labels").mkdir()
    for pat in ("01", "04", "07"):
        (named / f"Slide_{pat}").mkdir(parents=True)
        (named / f"GT_{pat}").mkdir()
        for img in sorted((src / f"Slide_{pat}").glob("*.png"))[:2]:
            os.symlink(img, named / f"Slide_{pat}" / img.name)
            os.symlink(src / f"GT_{pat}" / img.name, named / f"GT_{pat}" / img.name)
            os.symlink(img, plain / "images" / img.name)
            os.symlink(src / f"GT_{pat}" / img.name, plain / "labels" / f"{img.stem}_mask.png")
    build("tnbc", str(named), str(tmp_path / "out_tnbc"), progress=False)
    assert _cli("folder", "--root", plain, "--binary", "--source-pattern", r"^(?P<source>\d+)_", "--test-fraction",
                "0", "--option", "name=tnbc", "--option", "organ=Breast", "--option", "folds=true",
                "--out", tmp_path / "out_folder") == 0
    a, b = _records(tmp_path / "out_tnbc"), _records(tmp_path / "out_folder")
    assert list(a) == ["all"] and len(a["all"]) == 6 and a == b  # byte-identical records
    sa, sb = load_summary(str(tmp_path / "out_tnbc")), load_summary(str(tmp_path / "out_folder"))
    assert sa["splits"] == sb["splits"] and sb["splits"]["all"]["sources"] == 3
    fa = json.loads((tmp_path / "out_tnbc" / "folds.json").read_text())
    fb = json.loads((tmp_path / "out_folder" / "folds.json").read_text())
    assert fa["folds"] == fb["folds"] and len(fb["folds"]) == 3


def test_monuseg_relaid_as_plain_folders_builds_identical_records(shared_data, tmp_path):
    """2 MoNuSeg training images + their derived instance maps (<id>_label.png), meta from a sources CSV."""
    from zoo.data.readers.monuseg import ORGANS

    root = shared_data / "monuseg2018"
    named, plain = tmp_path / "monuseg", tmp_path / "plain"
    (named / "MoNuSegTrainingData" / "Tissue_Images").mkdir(parents=True)
    (named / "derived" / "train").mkdir(parents=True)
    (plain / "images").mkdir(parents=True)
    (plain / "labels").mkdir()
    rows = ["image,patient,split,organ,site,tissue_class"]
    for image_id in ("TCGA-B0-5711-01Z-00-DX1", "TCGA-G9-6362-01Z-00-DX1"):
        img = root / "MoNuSegTrainingData" / "Tissue_Images" / f"{image_id}.png"
        lab = glob.glob(str(root / "derived" / "*" / f"*_{image_id}_label.png"))[0]
        organ = os.path.basename(lab).split("_")[0]
        os.symlink(img, named / "MoNuSegTrainingData" / "Tissue_Images" / img.name)
        os.symlink(lab, named / "derived" / "train" / os.path.basename(lab))
        os.symlink(img, plain / "images" / img.name)
        os.symlink(lab, plain / "labels" / f"{image_id}_label.png")
        rows.append(f"{image_id}.png,{image_id[:12]},train,{organ},{image_id[5:7]},{ORGANS.index(organ)}")
    (plain / "sources.csv").write_text("\n".join(rows) + "\n")
    build("monuseg2018", str(named), str(tmp_path / "out_named"), progress=False)
    build("folder", str(plain), str(tmp_path / "out_folder"), progress=False, sources="sources.csv",
          name="monuseg2018")
    a, b = _records(tmp_path / "out_named"), _records(tmp_path / "out_folder")
    assert list(a) == ["train"] and len(a["train"]) == 2 and a == b
    s = records.to_sample(b["train"][0])
    assert s.num_instances > 300 and s.organ == "Kidney" and s.tissue_class == ORGANS.index("Kidney")


# ---------------------------------------------------------------------------------- synthetic folders
def _rgb(h=12, w=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _blobs(h=12, w=16, ids=(1, 2)) -> np.ndarray:
    m = np.zeros((h, w), np.int64)
    for k, i in enumerate(ids):
        m[1 + 4 * k: 3 + 4 * k, 1:4] = i
    return m


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _tree(tmp_path, n=3) -> str:
    """images/img{k}.png + labels/img{k}_label.png (16-bit, 2 nuclei each)."""
    for k in range(n):
        _png(tmp_path / "images" / f"img{k}.png", _rgb(seed=k))
        _png(tmp_path / "labels" / f"img{k}_label.png", _blobs().astype(np.uint16))
    return str(tmp_path)


def _reader(root, **opt):
    return get_reader("folder")(str(root), quiet=True, **opt)


def test_image_and_label_formats(tmp_path):
    rgba = np.concatenate([_rgb(), np.full((12, 16, 1), 255, np.uint8)], 2)
    _png(tmp_path / "images" / "a.png", rgba)
    grey16 = (np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * 300)
    (tmp_path / "images" / "sub").mkdir()
    tifffile.imwrite(tmp_path / "images" / "sub" / "b.tif", grey16)
    Image.fromarray(_rgb(seed=3)).save(tmp_path / "images" / "c.jpg", quality=95)
    _png(tmp_path / "labels" / "a_label.png", _blobs(ids=(1, 300)).astype(np.uint16))
    (tmp_path / "labels" / "sub").mkdir(parents=True)
    tifffile.imwrite(tmp_path / "labels" / "sub" / "b.tif", _blobs(ids=(70000, 5)).astype(np.uint32))
    np.save(tmp_path / "labels" / "c_mask.npy", _blobs(ids=(4, 9)))
    r = _reader(tmp_path, test_fraction=0)
    assert r.items() == ["a", "c", "sub/b"]
    s = {k: r.read(k) for k in r.items()}
    np.testing.assert_array_equal(s["a"].image, rgba[:, :, :3])
    assert sorted(np.unique(s["a"].instances)) == [0, 1, 300]
    b = s["sub/b"]
    assert np.all(b.image[:, :, 0] == b.image[:, :, 2])  # grey replicated
    assert b.image[0, 1, 0] == round(300 / 257)  # 16-bit -> 8-bit by v / 257
    # ids above 65535 are renumbered 1..N in increasing order: 5 -> 1, 70000 -> 2
    np.testing.assert_array_equal(b.instances, _blobs(ids=(2, 1)))
    assert sorted(np.unique(s["c"].instances)) == [0, 4, 9] and s["c"].split == "all"


def test_binary_masks_connectivity_and_binary_checks(tmp_path):
    m = np.zeros((12, 16), np.uint8)
    m[1:3, 1:3] = 255
    m[3:5, 3:5] = 255  # touches the first square at a corner only
    m[8:10, 8:12] = 255
    _png(tmp_path / "images" / "x.png", _rgb())
    _png(tmp_path / "labels" / "x.png", m)
    assert _reader(tmp_path, binary=True).read("x").num_instances == 2  # 8-connected (default, as TNBC)
    assert _reader(tmp_path, binary=True, connectivity=4).read("x").num_instances == 3
    with pytest.raises(DataError, match="looks like a binary mask .* pass --binary"):
        _reader(tmp_path).read("x")
    assert _reader(tmp_path, binary=False).read("x").num_instances == 1
    _png(tmp_path / "labels" / "x.png", _blobs(ids=(1, 2)).astype(np.uint8))
    with pytest.raises(DataError, match="binary mask expected .* found 3 values"):
        _reader(tmp_path, binary=True).read("x")


def test_classes_from_csv_names_and_indices(tmp_path):
    _tree(tmp_path, 2)
    (tmp_path / "classes.txt").write_text("# nucleus types\ntumour\n\nlymphocyte\n")
    (tmp_path / "cls.csv").write_text("image,instance,class\nimg0,1,lymphocyte\nimg0.png,2,1\nimg1,2,tumour\n")
    r = _reader(tmp_path, classes="classes.txt", instance_classes="cls.csv")
    assert r.class_names == ("tumour", "lymphocyte")
    a, b = r.read("img0"), r.read("img1")
    assert a.instance_ids.tolist() == [1, 2] and a.instance_classes.tolist() == [2, 1]
    assert b.instance_classes.tolist() == [0, 1]  # instance 1 not in the CSV: unknown type 0
    # without a classes file, the names found in the CSV, sorted
    (tmp_path / "names.csv").write_text("image,id,type\nimg0,1,b\nimg1,2,a\n")
    assert _reader(tmp_path, instance_classes="names.csv").class_names == ("a", "b")


@pytest.mark.parametrize("csv_text, message", [
    ("image,instance,class\nimg0,1,stroma\n", "line 2: unknown class 'stroma'"),
    ("image,instance,class\nimg0,1,tumour\nimg0,7,tumour\n", "image 'img0': instance 7 is not in its label map"),
    ("image,instance,class\nimg0,1,5\n", r"line 2: class index 5 outside 0..2"),
    ("image,nucleus_id,class\nimg0,1,tumour\n", "no 'instance' column"),
])
def test_class_csv_errors(tmp_path, csv_text, message):
    _tree(tmp_path, 1)
    (tmp_path / "classes.txt").write_text("tumour\nlymphocyte\n")
    (tmp_path / "cls.csv").write_text(csv_text)
    with pytest.raises(DataError, match=message) as e:
        _reader(tmp_path, classes="classes.txt", instance_classes="cls.csv").read("img0")
    assert "cls.csv" in str(e.value)


def test_class_names_files(tmp_path):
    for name, text, expected in [("a.json", '["x", "y"]', ("x", "y")), ("b.json", '{"y": 2, "x": 1}', ("x", "y")),
                                 ("c.json", '{"2": "y", "1": "x"}', ("x", "y")),
                                 ("d.json", '{"classes": ["x"]}', ("x",))]:
        (tmp_path / name).write_text(text)
        assert read_class_names(str(tmp_path / name)) == expected
    for name, text, message in [("e.txt", "background\ntumour\n", "is class 0"), ("f.txt", "a\nb\na\n", "twice: a"),
                                ("g.json", '{"x": 0, "y": 1}', "exactly 1..2"), ("h.json", "[1", "not valid JSON")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=message):
            read_class_names(str(tmp_path / name))


def test_class_maps_majority_per_instance(tmp_path):
    _png(tmp_path / "images" / "x.png", _rgb())
    inst = _blobs(ids=(1, 2)).astype(np.uint8)  # two 2x3 nuclei (6 pixels each)
    _png(tmp_path / "labels" / "x.png", inst)
    cm = np.zeros((12, 16), np.uint8)
    cm[1:3, 1:4] = 2
    cm[1, 1:3] = 1  # instance 1: four pixels of class 2, two of class 1 -> 2
    cm[5:7, 1:4] = 0
    cm[5, 1] = 3  # instance 2: one class-3 pixel, the rest unlabelled -> 3
    _png(tmp_path / "types" / "x_class.png", cm)
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    s = _reader(tmp_path, classes="classes.txt", class_maps="types").read("x")
    assert s.instance_classes.tolist() == [2, 3]
    with pytest.raises(ConfigError, match="class_maps need --classes"):
        _reader(tmp_path, class_maps="types")


def test_geojson_labels_with_qupath_names_and_classes(tmp_path):
    from zoo.data.geojson import write_geojson

    (tmp_path / "images").mkdir()
    tifffile.imwrite(tmp_path / "images" / "t.tif", _rgb())
    m = _blobs(ids=(3, 8))
    write_geojson(m, tmp_path / "qp" / "t.tif.geojson", classes={3: 2, 8: 1}, class_names=("Tumor", "Immune"))
    r = _reader(tmp_path, geojson="qp")
    assert r.class_names == ("Immune", "Tumor")  # sorted names found in the files
    s = r.read("t")
    np.testing.assert_array_equal(s.instances, _blobs(ids=(1, 2)))
    assert s.instance_classes.tolist() == [1, 2]  # Tumor -> 2, Immune -> 1 in the sorted list


def test_sources_csv_split_pattern_and_hash_split(tmp_path):
    for k in range(6):
        sub = "train" if k < 4 else "test"
        _png(tmp_path / "images" / sub / f"p{k // 2}_{k}.png", _rgb(seed=k))
        _png(tmp_path / "labels" / sub / f"p{k // 2}_{k}.png", _blobs().astype(np.uint8))
    r = _reader(tmp_path, split_pattern=r"^(train|test)/", source_pattern=r"/(?P<source>p\d)_")
    assert {k: r.split[k] for k in r.items()} == {"test/p2_4": "test", "test/p2_5": "test", "train/p0_0": "train",
                                                  "train/p0_1": "train", "train/p1_2": "train", "train/p1_3": "train"}
    assert r.read("train/p1_3").source_id == "p1"
    (tmp_path / "src.csv").write_text("image;patient;split;mpp\np0_0;A;val;0.25\n" +
                                      "".join(f"p{k // 2}_{k}.png;B;train;\n" for k in range(1, 6)))
    r = _reader(tmp_path, sources="src.csv")
    s = r.read("train/p0_0")
    assert (s.source_id, s.split, s.mpp) == ("A", "val", 0.25)
    assert r.read("test/p2_5").split == "train"
    # split by source hash: deterministic, sources never straddle splits, exact counts
    r1, r2 = _reader(tmp_path, source_pattern=r"(p\d)_", test_fraction=0.34), \
        _reader(tmp_path, source_pattern=r"(p\d)_", test_fraction=0.34)
    assert r1.split == r2.split and sorted(r1.split.values()).count("test") == 2
    by_source = {}
    for k, v in r1.split.items():
        by_source.setdefault(r1.source[k], set()).add(v)
    assert all(len(v) == 1 for v in by_source.values())
    splits = [hash_split([f"s{i}" for i in range(10)], 0.2, 0.1, seed) for seed in range(3)]
    assert all(sorted(s.values()).count("test") == 2 and sorted(s.values()).count("val") == 1 for s in splits)
    assert splits[0] != splits[1]
    assert hash_split(["a", "b"], 0.0, 0.0) == {"a": "all", "b": "all"}


# ---------------------------------------------------------------------------------- mismatches
def test_unpaired_files_are_skipped_with_a_summary_or_raise(tmp_path, capsys):
    _tree(tmp_path, 2)
    _png(tmp_path / "images" / "lonely.png", _rgb())
    _png(tmp_path / "labels" / "stray_mask.png", _blobs().astype(np.uint8))
    (tmp_path / "src.csv").write_text("image,source\nimg0,A\nghost,B\n")
    r = get_reader("folder")(str(tmp_path), sources="src.csv")
    assert r.items() == ["img0", "img1"] and r.source == {"img0": "A", "img1": "img1"}
    err = capsys.readouterr().err
    assert "left out 3 item(s)" in err and "image without label" in err and "lonely.png" in err
    assert "label without image" in err and "stray_mask.png" in err
    assert "sources row for an image that is not there ('ghost')" in err and "src.csv:3" in err
    with pytest.raises(DataError, match="label without image"):
        _reader(tmp_path, on_error="raise")
    summary = build("folder", str(tmp_path), str(tmp_path / "out"), progress=False, sources="src.csv")
    with open(tmp_path / "out" / "summary.json") as fh:
        assert json.load(fh)["skipped"] == summary["skipped"]
    assert sorted(os.path.basename(d["path"]) for d in summary["skipped"]) == ["lonely.png", "src.csv:3",
                                                                                "stray_mask.png"]


@pytest.mark.parametrize("case, message", [
    ("size", "label size 10x12 does not match image size 16x12"),
    ("corrupt", "unreadable image"),
    ("float", "label values are not integers"),
    ("geojson", "not valid JSON"),
    ("point", "geometry type 'Point' is not supported"),
])
def test_broken_pairs_raise_and_nothing_is_written(tmp_path, case, message):
    _tree(tmp_path, 2)
    opts = {}
    if case == "size":
        _png(tmp_path / "labels" / "img1_label.png", np.zeros((12, 10), np.uint16))
    elif case == "corrupt":
        (tmp_path / "labels" / "img1_label.png").write_bytes(b"\x89PNG\r\n\x1a\n-- truncated")
    elif case == "float":
        os.remove(tmp_path / "labels" / "img1_label.png")
        np.save(tmp_path / "labels" / "img1_label.npy", _blobs().astype(np.float32) * 0.5)
    else:
        from zoo.data.geojson import write_geojson

        write_geojson(_blobs(), tmp_path / "qp" / "img0.geojson")
        bad = "{oops" if case == "geojson" else json.dumps([{"type": "Feature", "properties": {},
                                                            "geometry": {"type": "Point", "coordinates": [1, 1]}}])
        (tmp_path / "qp" / "img1.geojson").write_text(bad)
        opts = {"geojson": "qp"}
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous build")
    with pytest.raises(DataError, match=message) as e:
        build("folder", str(tmp_path), str(out), progress=False, **opts)
    assert "img1" in str(e.value)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_option_errors(tmp_path):
    _tree(tmp_path, 1)
    with pytest.raises(ConfigError, match="either labels .* or geojson"):
        _reader(tmp_path, labels="labels", geojson="labels")
    with pytest.raises(ConfigError, match="on_error must be"):
        _reader(tmp_path, on_error="ignore")
    with pytest.raises(DataError, match="does not match the image key 'img0'"):
        _reader(tmp_path, source_pattern=r"^patient(\d+)")
    with pytest.raises(DataError, match="images folder not found"):
        _reader(tmp_path, images="nope")
    os.rename(tmp_path / "labels", tmp_path / "masks")
    with pytest.raises(ConfigError, match="pass --labels DIR"):
        _reader(tmp_path)


def test_cli_root_defaults_to_cwd_and_folder_flags_are_folder_only(tmp_path, monkeypatch, capsys):
    _tree(tmp_path, 3)
    monkeypatch.chdir(tmp_path)
    assert _cli("folder", "--images", "images", "--labels", "labels", "--test-fraction", "0.34",
                "--out", "built") == 0
    sp = load_summary(str(tmp_path / "built"))["splits"]
    assert sp["test"]["images"] == 1 and sp["train"]["images"] == 2 and sp["train"]["nuclei"] == 4
    assert _cli("tnbc", "--images", "images", "--out", "x") == 2
    assert "--images is an option of the 'folder' reader" in capsys.readouterr().err
    assert _cli("tnbc", "--out", "x") == 2
    assert "--root is required for dataset 'tnbc'" in capsys.readouterr().err
