"""The stain-downstream protocol (issue 21): MoNuSeg's organ-disjoint split (zoo.data.readers.monuseg,
``holdout_organs``) by PROVENANCE.md's organ table, and scripts/stain_downstream.py end to end on tiny budgets."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib
from collections import Counter

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
_SCRIPT = REPO / "scripts" / "stain_downstream.py"

# PROVENANCE.md (monuseg2018): the held-out organs' images, official train (derived file names) and test (organ table)
HELD_OUT = {
    "TCGA-DK-A2I6-01A-01-TS1": "Bladder", "TCGA-G2-A2EK-01A-02-TSB": "Bladder", "TCGA-CU-A0YN-01A-02-BSB": "Bladder",
    "TCGA-ZF-A9R5-01A-01-TS1": "Bladder", "TCGA-AY-A8YK-01A-01-TS1": "Colon", "TCGA-NH-A8F7-01A-01-TS1": "Colon",
    "TCGA-A6-6782-01A-01-BS1": "Colon", "TCGA-KB-A93J-01A-01-TS1": "Stomach", "TCGA-RD-A8N9-01A-01-TS1": "Stomach",
    "TCGA-FG-A4MU-01B-01-TS1": "Brain", "TCGA-HT-8564-01Z-00-DX1": "Brain",
}


def _script():
    spec = importlib.util.spec_from_file_location("stain_downstream", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reader(shared_data):
    from zoo.data.readers.monuseg import HOLDOUT_ORGANS, MoNuSegReader

    return MoNuSegReader(str(shared_data / "monuseg2018"), holdout_organs=list(HOLDOUT_ORGANS))


def test_organ_split_counts_from_provenance(reader, shared_data):
    from zoo.data.readers.monuseg import ORGAN_OF

    (fold,) = reader.folds()
    assert fold["fold"] == 1 and reader.fold_scheme == "organ-holdout"
    assert sorted(fold["test"]) == sorted(HELD_OUT)  # 11 held-out images: Bladder 2+2, Colon 2+1, Stomach 2, Brain 2
    assert len(fold["train"]) == 33 and not set(fold["train"]) & set(fold["test"])
    # train organs as PROVENANCE counts them: official train (Breast 6, Kidney 6, Liver 6, Prostate 6) + official test
    # (Breast 2, Kidney 3, Lung 2, Prostate 2)
    assert Counter(ORGAN_OF[i[:12]] for i in fold["train"]) == {"Breast": 8, "Kidney": 9, "Liver": 6, "Lung": 2,
                                                                "Prostate": 8}
    # organ-disjoint implies site-disjoint here: no TCGA tissue-source site on both sides
    assert not {i[5:7] for i in fold["train"]} & {i[5:7] for i in fold["test"]}
    # the organ of every official training image agrees with its derived file name (the reader's organ source)
    derived = {p.name.split("_", 1)[1][:-len("_label.png")]: p.name.split("_", 1)[0]
               for p in (shared_data / "monuseg2018" / "derived").glob("*/*_label.png")}
    assert len(derived) == 30 and all(ORGAN_OF[i[:12]] == organ for i, organ in derived.items())
    # the official test set: site-disjoint from the official train set, but 5 of its 7 organs occur in training
    official = {s: [p for sp, p in reader.items() if sp == s] for s in ("train", "test")}
    ids = {s: [pathlib.Path(p).stem for p in v] for s, v in official.items()}
    assert not {i[5:7] for i in ids["train"]} & {i[5:7] for i in ids["test"]}
    assert {ORGAN_OF[i[:12]] for i in ids["test"]} - {ORGAN_OF[i[:12]] for i in ids["train"]} == {"Brain", "Lung"}


def test_unknown_holdout_organ_is_one_line_error(shared_data):
    from zoo.data.readers.monuseg import MoNuSegReader
    from zoo.errors import ConfigError

    with pytest.raises(ConfigError, match="holdout_organs: unknown organ 'Colonn'"):
        MoNuSegReader(str(shared_data / "monuseg2018"), holdout_organs=["Colonn"])
    assert MoNuSegReader(str(shared_data / "monuseg2018")).folds() is None


@pytest.fixture(scope="module")
def tiny_data(reader, tmp_path_factory):
    """Four real MoNuSeg images (the target and a kidney image on the train side, a bladder and a colon image held
    out), cropped to 128 x 128, written with the reader's fold restricted to them."""
    from zoo.data.build import DatasetWriter, select

    keep = ("TCGA-A7-A13E-01Z-00-DX1", "TCGA-B0-5698-01Z-00-DX1", "TCGA-DK-A2I6-01A-01-TS1", "TCGA-AY-A8YK-01A-01-TS1")
    out = tmp_path_factory.mktemp("monuseg_organ")
    items = [it for it in reader.items() if pathlib.Path(it[1]).stem in keep]
    (fold,) = reader.folds()
    fold = {**fold, "train": [i for i in fold["train"] if i in keep], "test": [i for i in fold["test"] if i in keep]}
    with DatasetWriter(str(out)) as w:
        for it in items:
            s = reader.read(it)
            w.add(dataclasses.replace(s, image=s.image[300:428, 300:428].copy(),
                                      instances=s.instances[300:428, 300:428].copy()))
        w.commit("monuseg2018", "x", {"holdout_organs": fold["held_out_organs"]}, [fold], scheme=reader.fold_scheme)
    assert json.loads((out / "folds.json").read_text())["scheme"] == "organ-holdout"
    assert select(str(out), "test", 1)[1] == {"TCGA-DK-A2I6-01A-01-TS1", "TCGA-AY-A8YK-01A-01-TS1"}
    return out


def test_script_end_to_end_and_resumes(tiny_data, tmp_path, monkeypatch, capsys):
    from zoo.training import ExperimentConfig

    base = ExperimentConfig.load(str(REPO / "configs" / "stain" / "downstream.yaml"))
    cfg = tmp_path / "tiny.yaml"
    base.replace(model_config={"num_classes": 3, "base_filters": 4, "depth": 2}, steps_per_epoch=40,
                 input={**base.input, "patch_size": 64, "batch_size": 2, "patches_per_image": 1}).save(str(cfg))
    mod = _script()
    out = tmp_path / "out"
    argv = ["--normalizations", "none,reinhard,colornormnet", "--seeds", "0", "--budget-steps", "2", "--out", str(out),
            "--config", str(cfg), "--data", str(tiny_data), "--max-test-images", "2", "--quiet"]
    tab = mod.main(argv)
    printed = capsys.readouterr().out
    assert "note: colornormnet skipped (no --colornormnet-model given" in printed
    assert "2 run(s) trained, 0 finished run(s) skipped" in printed
    rows = {r["normalization"]: r for r in tab["rows"]}
    for name in ("none", "reinhard"):
        r = rows[name]
        assert r["seeds"] == [0] and r["steps"] == 2 and r["images"] == 2
        assert all(0.0 <= r[k]["mean"] <= 1.0 and r[k]["std"] == 0.0 for k in ("pixel_dice", "aji", "pq"))
    assert rows["colornormnet"]["seeds"] == [] and rows["colornormnet"]["pixel_dice"] is None
    # the fitted normalizer is saved, and the trained model's spec carries it (so evaluation applied it)
    assert json.loads((out / "normalizers" / "reinhard.json").read_text())["method"] == "reinhard"
    res = json.loads((out / "runs" / "reinhard-s0" / "downstream.json").read_text())
    assert res["spec_stain"] == "reinhard" and res["epochs"] == 1 and res["steps_per_epoch"] == 2
    assert {p["image_id"] for p in res["per_image"]} == {"TCGA-DK-A2I6-01A-01-TS1", "TCGA-AY-A8YK-01A-01-TS1"}
    assert json.loads((out / "runs" / "none-s0" / "downstream.json").read_text())["spec_stain"] == "none"
    md = (out / "table.md").read_text()
    assert "| Reinhard | 0 |" in md and ".81 / .53 / .54" in md and "| ColorNormNet | not run |" in md
    assert json.loads((out / "table.json").read_text())["budget_steps"] == 2

    # a second call trains nothing and gives the same table
    import zoo.training

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(zoo.training, "train", no_training)
    assert mod.main(argv)["rows"] == tab["rows"]
    assert "0 run(s) trained, 2 finished run(s) skipped" in capsys.readouterr().out
    # ... and a different budget in the same --out is refused in one line
    from zoo.errors import ConfigError

    with pytest.raises(ConfigError, match="finished with 2 steps, not 3"):
        mod.main([*argv[:5], "3", *argv[6:]])
