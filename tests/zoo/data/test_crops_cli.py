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
