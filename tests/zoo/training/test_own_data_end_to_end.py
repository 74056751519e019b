"""The documented own-data layout end to end (docs/own_data.md, issue 16): images/train/..., images/test/... with
--split-pattern, built with `histozoo data build folder` and trained with `histozoo train`. It crashed at the end of
training (``FileNotFoundError: .../overlays/test/p09_t0.png.tmp``: ids with ``/`` were joined into file paths).
The test asserts evaluation.json and the overlays exist and that training wrote nothing outside the run folder."""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image


def _tile(rng, size=48):
    """An H&E-like tile and its binary nucleus mask (a few dark discs on a pink background)."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = (230, 190, 210)
    mask = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(5):
        cy, cx = rng.integers(6, size - 6, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 16
        mask[disc] = 255
        img[disc] = (90, 50, 140)
    img = np.clip(img.astype(int) + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)
    return img, mask


def _files(root):
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


def test_documented_layout_with_split_pattern_trains_and_evaluates(tmp_path, monkeypatch):
    from histozoo.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rng = np.random.default_rng(0)
    # docs/own_data.md section 1 and 3: images/<split>/<key>.png, masks/<split>/<key>_mask.png (same key + suffix)
    for split, patients in (("train", ("p01", "p02", "p03")), ("test", ("p09",))):
        for p in patients:
            for t in range(2):
                img, mask = _tile(rng)
                for sub, arr, name in (("images", img, f"{p}_t{t}.png"), ("masks", mask, f"{p}_t{t}_mask.png")):
                    d = tmp_path / "mydata" / sub / split
                    d.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(arr).save(d / name)
    assert main(["data", "build", "folder", "--root", "mydata", "--labels", "masks", "--binary",
                 "--split-pattern", "^(train|val|test)/", "--source-pattern", "(p\\d+)_",
                 "--out", "build/mydata"]) == 0
    summary = json.loads((tmp_path / "build" / "mydata" / "summary.json").read_text())
    assert summary["splits"]["test"]["images"] == 2 and summary["splits"]["train"]["images"] == 6

    (tmp_path / "tiny.yaml").write_text(
        "name: own-tiny\nmodel: unet\nmodel_config: {num_classes: 3, base_filters: 4, depth: 1}\n"
        "data_dir: build/mydata\ntrain_split: train\nval_split: test\n"
        "input: {patch_size: 32, batch_size: 2, target: three_class, patches_per_image: 1}\n"
        "epochs: 1\nsteps_per_epoch: 2\nlearning_rate: 1.0e-3\n")
    before = _files(tmp_path)
    assert main(["train", "--config", "tiny.yaml", "--out", "runs/own", "--no-tracking"]) == 0
    run = tmp_path / "runs" / "own"
    ev = json.loads((run / "evaluation.json").read_text())
    assert ev["images"] == 2 and sorted(r["image_id"] for r in ev["per_image"]) == ["test/p09_t0", "test/p09_t1"]
    overlays = sorted(os.listdir(run / "overlays"))
    assert len(overlays) == 2 and all(f.endswith(".png") and "/" not in f for f in overlays)
    assert all((run / "overlays" / f).is_file() for f in overlays)
    new = _files(tmp_path) - before
    assert new and all(f.startswith(os.path.join("runs", "own") + os.sep) for f in new), sorted(new)
    assert not [f for f in new if f.endswith(".tmp") or os.path.basename(f).startswith("tmp")]
