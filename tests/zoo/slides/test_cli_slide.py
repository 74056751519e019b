"""``histozoo slide info`` / ``histozoo slide predict`` (in process, through ``histozoo.cli.main``): the model is
loaded by the one loader from a .keras file with its spec.json; a non-slide file is a one-line error naming it."""

from __future__ import annotations

import json
import re


def test_slide_info_and_predict(slides, model_dir, tmp_path, capsys):
    from histozoo.cli import main

    assert main(["slide", "info", slides["svs"]]) == 0
    out = capsys.readouterr().out
    assert "svs" in out and "mpp 0.25 (SVS ImageDescription MPP)" in out and "1152" in out and "4.000" in out

    o = tmp_path / "out"
    assert main(["slide", "predict", slides["ome"], "--model", str(model_dir / "model.keras"), "--out", str(o),
                 "--tile-size", "256", "--overlap", "64"]) == 0
    cap = capsys.readouterr()
    s = json.loads((o / "summary.json").read_text())
    assert f"{s['nuclei']} nuclei" in cap.out and s["nuclei"] > 100
    # the tqdm bar over the tissue tiles on stderr: done/total [elapsed<ETA, rate]
    assert re.search(rf"{s['tiles_run']}/{s['tiles_run']} \[\d\d:\d\d<\d\d:\d\d, .*tile", cap.err)
    assert {"nuclei.geojson", "nuclei.csv", "overlay.png", "summary.json"} <= {p.name for p in o.iterdir()}


def test_cli_bad_slide_one_line(tmp_path, model_dir, capsys):
    from histozoo.cli import main

    bad = tmp_path / "report.tif"
    bad.write_text("not a slide")
    assert main(["slide", "info", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]
    assert main(["slide", "predict", str(bad), "--model", str(model_dir / "model.keras"), "--out",
                 str(tmp_path / "o")]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line]
    assert len(err) == 1 and str(bad) in err[0]
