"""zoo.data.build and `histozoo data build|info|list`: atomic output, summary counts, TNBC folds, the CLI."""

from __future__ import annotations

import json
import os
import re

import pytest

from histozoo.cli import main
from zoo.data import records
from zoo.data.build import build, load_summary, select
from zoo.errors import DataError


def _snapshot(d):
    return {p: open(os.path.join(d, p), "rb").read() for p in sorted(os.listdir(d))}


def test_summary_counts_of_a_tiny_build(tiny_tnbc, tmp_path):
    import resource
    import time

    out = tmp_path / "out"
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.time()
    s = build("tnbc", str(tiny_tnbc), str(out), per_shard=3, progress=False)
    elapsed = time.time() - t0
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    split = s["splits"]["all"]
    assert (split["images"], split["nuclei"], split["sources"]) == (4, 12, 2)
    assert split["nuclei_by_class"] == {"unknown": 12} and split["shards"] == ["all-00000.tfrecord.gz",
                                                                               "all-00001.tfrecord.gz"]
    assert load_summary(str(out))["splits"]["all"]["image_ids"] == ["01_1", "01_2", "02_1", "02_2"]
    # the build's own clock and memory figures: its wall time lies within the call's, its peak resident set (MiB)
    # between this process' peak before and after the call
    assert 0 < s["wall_s"] <= round(elapsed, 2) + 0.01
    assert round(rss_before, 1) - 0.1 <= s["peak_rss_mib"] <= round(rss_after, 1) + 0.1
    assert sum(x.num_instances for x in records.read_samples(records.list_shards(str(out)))) == 12


def test_a_failing_build_leaves_out_as_it_was_and_names_the_file(tiny_tnbc, tmp_path):
    out = tmp_path / "out"
    build("tnbc", str(tiny_tnbc), str(out), per_shard=1, progress=False)
    before = _snapshot(out)
    bad = tiny_tnbc / "Slide_02" / "02_1.png"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated: fails after 01_1, 01_2 were written
    with pytest.raises(DataError, match=r"02_1\.png: unreadable image"):
        build("tnbc", str(tiny_tnbc), str(out), per_shard=1, progress=False)
    assert _snapshot(out) == before  # same files, same bytes, no .building-* folder left


def test_rebuild_replaces_old_shards(tiny_tnbc, tmp_path):
    out = tmp_path / "out"
    build("tnbc", str(tiny_tnbc), str(out), per_shard=1, progress=False)
    assert len(list(out.glob("all-*.tfrecord.gz"))) == 4
    build("tnbc", str(tiny_tnbc), str(out), per_shard=4, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["all-00000.tfrecord.gz", "folds.json", "summary.json"]


def test_tnbc_folds_json_has_11_leave_one_patient_out_folds(tnbc_records):
    folds = json.loads((tnbc_records / "folds.json").read_text())["folds"]
    assert [f["fold"] for f in folds] == list(range(1, 12))
    for f in folds:
        assert len(f["test"]) + len(f["train"]) == 50 and not set(f["test"]) & set(f["train"])
        assert {i.split("_")[0] for i in f["test"]} == {f["test_source"]}
    all_ids = load_summary(str(tnbc_records))["splits"]["all"]["image_ids"]
    assert sorted(i for f in folds for i in f["test"]) == sorted(all_ids)
    _, test = select(str(tnbc_records), "test", 4)
    assert len(test) == 8  # patient 04 has 8 images
    with pytest.raises(DataError, match="fold 12 does not exist"):
        select(str(tnbc_records), "test", 12)


def test_cli_data_build_info_list(tiny_tnbc, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["data", "build", "tnbc", "--root", str(tiny_tnbc), "--out", str(out), "--quiet", "--fold", "2",
               "--option", "connectivity=4"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "all " in text and "fold 2: train 2 images, test 2 images (02_1, 02_2)" in text
    assert "peak RSS" in text and "wall" in text
    assert load_summary(str(out))["options"] == {"connectivity": 4}
    assert main(["data", "info", str(out)]) == 0
    info = capsys.readouterr().out
    assert info.startswith("tnbc:") and re.search(r"^all\s+4\s+2\s+12\s+0\s+12$", info, re.M)
    assert main(["data", "list"]) == 0
    listed = capsys.readouterr().out.split("\n")
    assert {ln.split()[0] for ln in listed if ln.strip()} >= {"tnbc", "monuseg2018", "crchistophenotypes",
                                                               "bone_marrow", "consep", "pannuke"}
