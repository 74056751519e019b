"""`histozoo data crops`: one crop per nucleus of real TNBC records (PROVENANCE.md: 4,028 nuclei, 8-connectivity,
50 images, 11 patients)."""

from __future__ import annotations

import collections
import json

import pytest

from histozoo.cli import main
from zoo.data import records


def test_data_crops_tnbc_one_crop_per_nucleus(tnbc_records, tmp_path, capsys):
    out = tmp_path / "crops"
    rc = main(["data", "crops", str(tnbc_records), "--out", str(out), "--size", "40", "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "wrote 4028 crops of 50 images" in printed and "tnbc-crops" in printed

    summary = json.loads((out / "summary.json").read_text())
    s = summary["splits"]["all"]
    assert (s["images"], s["nuclei"], s["sources"]) == (4028, 4028, 11)
    assert summary["options"]["crops"]["size"] == 40 and summary["options"]["parent_images"] == 50

    # per parent image, as many crops as the parent has nuclei; every crop 40x40 with a one-nucleus mask
    parents = {p.image_id: p.num_instances for p in records.read_samples(records.list_shards(str(tnbc_records)))}
    per_parent = collections.Counter(i.rsplit("/", 1)[0] for i in s["image_ids"])
    assert per_parent == parents
    first = next(iter(records.read_samples(records.list_shards(str(out), "all"))))
    assert first.image.shape == (40, 40, 3) and first.instances.max() == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_data_crops_errors_are_one_line(tnbc_records, tmp_path, capsys):
    assert main(["data", "crops", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("histozoo: error:") and "missing" in err and len(err.strip().splitlines()) == 1
    # TNBC has instance maps but no centre points
    assert main(["data", "crops", str(tnbc_records), "--out", str(tmp_path / "p"), "--source", "points",
                 "--quiet"]) == 2
    assert "no centre points" in capsys.readouterr().err
    assert not (tmp_path / "p").exists() or not list((tmp_path / "p").iterdir())  # nothing half-written
    with pytest.raises(SystemExit):
        main(["data", "crops", str(tnbc_records), "--out", str(tmp_path / "q"), "--source", "boxes"])


def _typed_points(root, names, n_images=2):
    """A tiny built dataset of centre-typed images (3 points each, types 1, 2, 1) named ``names``."""
    import numpy as np

    from zoo.data.build import DatasetWriter
    from zoo.data.sample import Sample

    with DatasetWriter(str(root), tuple(names)) as w:
        for i in range(n_images):
            w.add(Sample(image=np.full((40, 40, 3), 200, np.uint8), image_id=f"p{i}", dataset="pts",
                         source_id=f"s{i}", split="train" if i == 0 else "test",
                         points_yx=np.array([[10, 10], [20, 20], [30, 30]], np.float32),
                         point_classes=np.array([1, 2, 1]), class_names=tuple(names)))
        w.commit("pts", "synthetic", {})
    return root


def test_data_crops_of_several_datasets_into_one_folder(tnbc_records, tmp_path, capsys):
    """Hu et al. train on the nuclei of every H&E set: TNBC's 4,028 untyped instance crops (PROVENANCE.md) and a
    typed centre dataset's crops in one folder, each crop keeping its image's split and type."""
    typed = _typed_points(tmp_path / "typed", ("epi", "lym"))
    out = tmp_path / "crops"
    assert main(["data", "crops", str(tnbc_records), str(typed), "--out", str(out), "--quiet"]) == 0
    assert "wrote 4034 crops of 52 images" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "tnbc+pts-crops" and summary["class_names"] == ["epi", "lym"]
    assert summary["splits"]["all"]["images"] == 4028  # TNBC's own split name
    assert (summary["splits"]["train"]["images"], summary["splits"]["test"]["images"]) == (3, 3)
    # TNBC has no split of its own: --rename-split puts its crops into the training split
    out2 = tmp_path / "crops2"
    assert main(["data", "crops", str(tnbc_records), str(typed), "--out", str(out2), "--rename-split", "all=train",
                 "--quiet"]) == 0
    splits = json.loads((out2 / "summary.json").read_text())["splits"]
    assert {k: v["images"] for k, v in splits.items()} == {"train": 4031, "test": 3}
    from zoo.evaluation.cluster import read_crops

    crops = read_crops(str(out))  # what the GAN training and evaluation read
    assert collections.Counter(zip(crops["dataset"], crops["type"].tolist())) == {
        ("tnbc", 0): 4028, ("pts", 1): 4, ("pts", 2): 2}


def test_data_crops_refuses_typed_datasets_with_other_type_names(tmp_path, capsys):
    a = _typed_points(tmp_path / "a", ("epi", "lym"))
    b = _typed_points(tmp_path / "b", ("tumour", "stroma"))
    assert main(["data", "crops", str(a), str(b), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "'tumour', 'stroma'" in err and "one list of type names" in err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())  # nothing half-written
