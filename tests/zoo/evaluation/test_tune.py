"""zoo.evaluation.tune / ``histozoo tune``: post-processing chosen on held-out training images, recorded in the spec."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zoo.errors import ConfigError


def test_tune_ranks_candidates_and_never_loses_to_the_spec(quickstart_model, tnbc_records):
    from zoo.evaluation import evaluate
    from zoo.evaluation.tune import candidates, tune_postprocess

    model, spec, _ = quickstart_model
    grids = {"three_class": {"min_size": [0, 30], "keep_orphan_boundaries": [True, False]}}
    assert len(candidates(spec, grids=grids)) == 5  # the spec's own + 4 grid points
    res = tune_postprocess(model, spec, str(tnbc_records), "train", fold=9, grids=grids, max_images=3)
    scores = [r["aji"] for r in res["table"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 5
    assert res["table"][0]["aji"] >= res["before"]["aji"]
    assert res["best"].postprocess.to_dict() == res["table"][0]["postprocess"]
    assert not any(i.startswith("09_") for i in res["images"])  # fold 9's training patients only
    # the tuned scores are the ones evaluate() gives with that spec (one inference path)
    ev = evaluate(model, str(tnbc_records), "train", fold=9, spec=res["best"], max_images=3, hausdorff=False)
    assert ev["mean"]["aji"] == pytest.approx(res["table"][0]["aji"], abs=1e-9)


def test_tune_refuses_the_test_images(quickstart_model, tnbc_records):
    from zoo.evaluation.tune import tune_postprocess

    model, spec, _ = quickstart_model
    with pytest.raises(ConfigError, match="test images must never choose"):
        tune_postprocess(model, spec, str(tnbc_records), "test", fold=9)


def test_tune_cli_writes_the_spec(quickstart_model, tnbc_records, tmp_path, capsys):
    import shutil

    from histozoo.cli import main
    from zoo.inference import InferenceSpec

    _, _, run = quickstart_model
    copy = tmp_path / "run"
    shutil.copytree(run / "checkpoints", copy / "checkpoints")
    assert main(["tune", str(copy), "--data", str(tnbc_records), "--fold", "9", "--split", "train",
                 "--max-images", "2", "--grid", "min_size=[0,25]", "--grid", "keep_orphan_boundaries=false",
                 "--write"]) == 0
    out = capsys.readouterr().out
    assert "best on 2 train images" in out and "wrote" in out
    spec = InferenceSpec.load(str(copy / "checkpoints" / "spec.json"))
    tuning = json.loads((copy / "checkpoints" / "tuning.json").read_text())
    assert spec.postprocess.to_dict() == tuning["table"][0]["postprocess"] == tuning["best"]["postprocess"]
    assert len(tuning["table"]) == 3 and len(tuning["images"]) == 2
    assert main(["tune", str(copy), "--data", str(tnbc_records), "--fold", "9", "--split", "test"]) == 2
    assert "test images must never choose" in capsys.readouterr().err
    assert np.isfinite(tuning["before"]["aji"])
