"""`histozoo export`, `histozoo predict` and `histozoo serve` end to end (real gRPC over loopback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from histozoo.cli import main


def test_export_cli_from_keras_file(sv, tmp_path, capsys):
    model = sv.tiny_model(2, 4)
    model.save(tmp_path / "tiny.keras")
    sv.spec_of(model).save(str(tmp_path / "spec.json"))  # the spec beside the .keras file travels with it
    assert main(["export", str(tmp_path / "tiny.keras"), "--out", str(tmp_path / "exp"), "--version", "5",
                 "--mpp", "0.5", "--class-names", "tumour,stroma"]) == 0
    cap = capsys.readouterr()
    assert "exp/5" in cap.out and "post-processing threshold, in the graph" in cap.out
    # each override of the model's spec is said in one line
    assert "overriding the model's inference spec: mpp 0.0 -> 0.5" in cap.err
    assert "class_names () -> ('tumour', 'stroma')" in cap.err
    meta = json.loads((tmp_path / "exp" / "5" / "assets" / "histozoo.json").read_text())
    assert meta["spec"]["mpp"] == 0.5 and meta["spec"]["divisor"] == sv.DIVISOR
    assert meta["spec"]["class_names"] == ["tumour", "stroma"] and meta["source"].endswith("tiny.keras")
    assert main(["export", str(tmp_path / "tiny.keras"), "--out", str(tmp_path / "exp"),
                 "--postprocess", "method=three_clas"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "postprocess.method must be one of" in err
    assert main(["export", str(tmp_path / "missing.keras"), "--out", str(tmp_path / "exp")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.keras: no such model file" in err


def test_predict_cli_writes_pngs_and_summary(server, shared_data, tmp_path, capsys):
    from PIL import Image

    from serving.client import PredictClient

    slide = shared_data / "tnbc" / "TNBC_NucleiSegmentation" / "Slide_02"
    images = sorted(str(p) for p in slide.glob("*.png"))[:2]
    out = tmp_path / "pred"
    assert main(["predict", "--server", server.target, "--model", "three", *images, "--out", str(out),
                 "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["images"]) == 2 and summary["served_version"] == 1
    with PredictClient(server.target) as c:
        for row, path in zip(summary["images"], images):
            direct = c.predict_encoded("three", [open(path, "rb").read()])
            inst = np.asarray(Image.open(out / row["instances_png"]))
            np.testing.assert_array_equal(inst, direct["instances"][0])
            assert row["instances"] == int(direct["num_instances"][0]) > 0
            prob = np.asarray(Image.open(out / row["probabilities_png"]))
            assert prob.shape == inst.shape + (3,)  # three classes -> RGB
            assert np.abs(prob.astype(int) - np.round(direct["probabilities"][0] * 255)).max() <= 1
    assert f"{summary['total_instances']} instances in 2 images" in capsys.readouterr().out
    assert not [p for p in os.listdir(out) if ".tmp" in p]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["predict", "--server", server.target, "--model", "three", str(bad), "--out", str(out),
                 "--quiet"]) == 2
    assert "bad.png: unreadable image" in capsys.readouterr().err  # decoded here, before any request


def test_serve_cli_subprocess(exported, tmp_path):
    from serving.client import PredictClient

    proc = subprocess.Popen([sys.executable, "-m", "histozoo", "serve", str(exported["binary"]), "--port", "0",
                             "--name", "nuclei", "--version", "1", "--version", "2", "--label", "stable=1",
                             "--max-image-pixels", "1000"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        target, lines, t0 = None, [], time.time()
        while target is None and time.time() - t0 < 240:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("gRPC PredictionService on "):
                target = line.split()[3]
        assert target, "".join(lines)[-3000:]
        assert any("serving nuclei versions [1, 2] labels {'stable': 1}" in ln for ln in lines)
        with PredictClient(target) as c:
            assert c.status("nuclei") == {1: "AVAILABLE", 2: "AVAILABLE"}
            out = c.predict("nuclei", {"images": np.zeros((1, 8, 8, 3), np.uint8)}, signature="predict_images",
                            label="stable")
            assert out["instances"].shape == (1, 8, 8) and c.last_version == 1
            from serving.client import ServingError

            with pytest.raises(ServingError) as e:  # --max-image-pixels reached the server: 32 x 32 > 1000
                c.predict("nuclei", {"images": np.zeros((1, 32, 32, 3), np.uint8)}, signature="predict_images")
            assert e.value.code == "RESOURCE_EXHAUSTED"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
