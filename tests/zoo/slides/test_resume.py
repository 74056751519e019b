"""Resume (issue 24): a run killed after the k-th model call continues from the tiles it wrote, and the final files
are identical to an uninterrupted run's. The fault is injected: the model raises on its (k + 1)-th call."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest


class _FailAfter:
    """A probability function (``zoo.inference.as_forward`` uses it as is) that runs the real model k times, then
    raises, as a killed worker would stop."""

    is_forward = True

    def __init__(self, forward, k: int):
        self.forward, self.k, self.calls = forward, k, 0

    def __call__(self, images):
        self.calls += 1
        if self.calls > self.k:
            raise RuntimeError("injected fault")
        return self.forward(images)


def _outputs(d) -> dict:
    out = {}
    for name in ("nuclei.geojson", "nuclei.csv", "overlay.png", "tissue.png"):
        with open(os.path.join(d, name), "rb") as fh:
            out[name] = fh.read()
    with open(os.path.join(d, "summary.json")) as fh:
        s = json.load(fh)
    s.pop("run")
    out["summary"] = s
    import pyarrow.parquet as pq

    out["parquet"] = pq.read_table(os.path.join(d, "nuclei.parquet")).to_pydict()
    return out


def test_killed_run_resumes_to_identical_outputs(slides, loaded, tmp_path):
    from zoo.errors import ConfigError
    from zoo.inference import as_forward
    from zoo.slides import predict_slide
    from zoo.slides.run import TILES_DIR

    model, spec = loaded.model, loaded.spec
    kw = dict(tile_size=256, overlap=64, batch=2, progress=False)
    straight = predict_slide(slides["ome"], model, spec, str(tmp_path / "a"), **kw)

    b = tmp_path / "b"
    with pytest.raises(RuntimeError, match="injected fault"):
        predict_slide(slides["ome"], _FailAfter(as_forward(model, spec), 3), spec, str(b), **kw)
    written = sorted(os.listdir(b / TILES_DIR))
    assert len(written) == 3 * 2  # three batches of two tiles, then the fault
    assert not (b / "summary.json").exists() and not (b / "nuclei.geojson").exists()
    before = {f: os.path.getmtime(b / TILES_DIR / f) for f in written}

    resumed = predict_slide(slides["ome"], model, spec, str(b), **kw)
    assert resumed["run"]["tiles_reused"] == 6
    assert {f: os.path.getmtime(b / TILES_DIR / f) for f in written} == before  # not recomputed
    assert resumed["nuclei"] == straight["nuclei"] > 100
    assert _outputs(tmp_path / "a") == _outputs(b)

    # a finished run rerun: nothing recomputed, same files
    again = predict_slide(slides["ome"], model, spec, str(b), **kw)
    assert again["run"]["tiles_reused"] == again["tiles_run"] and _outputs(b) == _outputs(tmp_path / "a")

    # the same folder with other settings is refused, naming the folder and what differs
    with pytest.raises(ConfigError, match=r"b: holds a slide run with other settings \(.*overlap"):
        predict_slide(slides["ome"], model, spec, str(b), **{**kw, "overlap": 32})


def test_resume_mid_batch_recomputes_the_batch_identically(slides, loaded, tmp_path):
    """A kill between the two tile writes of a batch: the batch is recomputed whole, its written tile kept."""
    from zoo.slides import predict_slide
    from zoo.slides.run import tile_path

    model, spec = loaded.model, loaded.spec
    kw = dict(tile_size=256, overlap=64, batch=2, progress=False)
    predict_slide(slides["ome"], model, spec, str(tmp_path / "a"), **kw)
    # the same run as if killed after the first tile of the second batch: remove that batch's second tile and the
    # final files (a killed run never wrote them)
    b = tmp_path / "b"
    predict_slide(slides["ome"], model, spec, str(b), **kw)
    run = json.loads((b / "run.json").read_text())
    second = run["tissue_tiles"][3]
    for name in ("summary.json", "nuclei.geojson", "nuclei.csv", "nuclei.parquet", "overlay.png"):
        os.remove(b / name)
    with np.load(tile_path(str(b), second)) as z:
        kept = {k: z[k] for k in z.files}
    os.remove(tile_path(str(b), second))
    s = predict_slide(slides["ome"], model, spec, str(b), **kw)
    assert s["run"]["tiles_reused"] == s["tiles_run"] - 1
    with np.load(tile_path(str(b), second)) as z:
        assert all(np.array_equal(z[k], kept[k]) for k in kept)
    assert _outputs(tmp_path / "a") == _outputs(b)
