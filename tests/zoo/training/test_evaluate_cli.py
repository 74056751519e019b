"""`histozoo evaluate` on a .keras file: every image of the held-out patient scored, JSON + table."""

from __future__ import annotations

import json


def test_evaluate_cli_scores_the_fold_test_images(tnbc_records, tmp_path, capsys):
    from histozoo.cli import main
    from zoo import models

    m = models.build("unet", {"num_classes": 3, "base_filters": 4, "depth": 2})
    m.save(tmp_path / "m.keras")
    rc = main(["evaluate", str(tmp_path / "m.keras"), "--data", str(tnbc_records), "--fold", "10", "--split", "test",
               "--keys", "pixel_dice,aji,pq", "--out", str(tmp_path / "ev.json"),
               "--postprocess", "method=threshold"])
    assert rc == 0
    res = json.loads((tmp_path / "ev.json").read_text())
    assert res["images"] == 4 and sorted(r["image_id"] for r in res["per_image"]) == ["10_1", "10_2", "10_3", "10_4"]
    out = capsys.readouterr().out
    assert "pixel_dice" in out and out.count("\n10_") == 4 and "mean" in out


def test_evaluate_cli_bad_model_path_is_one_line(tmp_path, capsys):
    from histozoo.cli import main

    (tmp_path / "notamodel.txt").write_text("x")
    rc = main(["evaluate", str(tmp_path / "notamodel.txt"), "--data", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "notamodel.txt" in err and len(err.splitlines()) == 1
