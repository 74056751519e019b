"""Batch inference over many slides with Apache Beam (issue 24, zoo.slides.beam): DirectRunner in multi-process
mode over two small pyramidal slides built from real TNBC / MoNuSeg images; each slide's outputs are what
``predict_slide`` writes for it alone; a rerun does no work and leaves every file as it was; a corrupt slide is
reported in one line while the others finish; an exported SavedModel gives the run folder's nuclei.

Apache Beam comes with TFX (constraints/tfx.txt), so the Beam tests carry the tfx marker and run in the TFX environment:
``sudo scripts/tfx_env.sh run python -m pytest -m tfx tests/zoo/slides/test_slides_beam.py``."""

from __future__ import annotations

import filecmp
import json
import os

import numpy as np
import pytest

TILE = 256  # model pixels: several tiles per slide, so the seams and the tile files are exercised


@pytest.fixture(scope="module")
def two_slides(shared_data, tmp_path_factory):
    """A 2x2 mosaic of TNBC patient 01's images as an OME-TIFF and a MoNuSeg test image as an SVS-like TIFF."""
    from zoo.data.imageio import read_rgb
    from zoo.slides import write_pyramid

    root = tmp_path_factory.mktemp("slides")
    t = [read_rgb(str(shared_data / "tnbc" / "TNBC_NucleiSegmentation" / "Slide_01" / f"01_{i}.png"))
         for i in (1, 2, 3, 4)]
    mosaic = np.concatenate([np.concatenate(t[:2], 1), np.concatenate(t[2:], 1)], 0)
    mon = read_rgb(str(shared_data / "monuseg2018" / "MoNuSegTestData" / "TCGA-2Z-A9J9-01A-01-TS1.png"))
    a = write_pyramid(root / "tnbc01.ome.tif", mosaic, mpp=0.25, flavour="ome")
    b = write_pyramid(root / "monuseg-2Z.svs", mon, mpp=0.25, flavour="svs")
    return root, [a, b]


def _files(folder) -> dict:
    return {os.path.relpath(os.path.join(d, f), folder): os.stat(os.path.join(d, f)).st_mtime_ns
            for d, _, fs in os.walk(folder) for f in fs}


@pytest.mark.tfx
def test_beam_batch_two_slides_multiprocess_then_idempotent_rerun(two_slides, quickstart_model, tmp_path):
    from zoo.slides import predict_slide
    from zoo.slides.beam import REPORT, run_batch

    model, spec, run_dir = quickstart_model
    root, slides = two_slides
    out = tmp_path / "out"
    report = run_batch([str(root / "*.tif"), str(root / "*.svs")], str(run_dir), str(out), workers=2,
                       running_mode="multi_processing", tile_size=TILE)
    assert report["ran"] == 2 and report["counts"] == {"done": 2, "skipped": 0, "failed": 0}
    assert {r["out"] for r in report["slides"]} == {str(out / "tnbc01"), str(out / "monuseg-2Z")}
    for r in report["slides"]:
        summary = json.load(open(os.path.join(r["out"], "summary.json")))
        assert summary["slide"] == r["slide"] and summary["nuclei"] == r["nuclei"] > 10
        assert summary["tiles_run"] >= 4  # several tiles, stitched
        for f in summary["files"].values():
            assert os.path.getsize(os.path.join(r["out"], f)) > 0, f
        lines = open(os.path.join(r["out"], "nuclei.csv")).read().splitlines()
        assert len(lines) == summary["nuclei"] + 1
    assert json.load(open(out / REPORT))["counts"]["done"] == 2

    # the Beam worker wrote what predict_slide writes for that slide alone, in this process
    direct = tmp_path / "direct"
    s = predict_slide(slides[0], model, spec, str(direct), tile_size=TILE, progress=False)
    beam_dir = out / "tnbc01"
    assert s["nuclei"] == json.load(open(beam_dir / "summary.json"))["nuclei"]
    for f in ("nuclei.csv", "nuclei.geojson", "overlay.png"):
        assert filecmp.cmp(direct / f, beam_dir / f, shallow=False), f

    # rerun: nothing is sent to Beam, no file is rewritten
    before = _files(out)
    again = run_batch([str(root / "*.tif"), str(root / "*.svs")], str(run_dir), str(out), workers=2,
                      running_mode="multi_processing", tile_size=TILE)
    assert again["ran"] == 0 and again["counts"] == {"done": 0, "skipped": 2, "failed": 0}
    assert [r["nuclei"] for r in again["slides"]] == [r["nuclei"] for r in report["slides"]]
    assert _files(out) == before

    # an incomplete output (a listed file deleted) is redone, and only that slide
    os.remove(beam_dir / "overlay.png")
    third = run_batch([str(root / "*.tif"), str(root / "*.svs")], str(run_dir), str(out), workers=1,
                      running_mode="in_memory", tile_size=TILE)
    assert third["ran"] == 1 and third["counts"] == {"done": 1, "skipped": 1, "failed": 0}
    assert filecmp.cmp(direct / "overlay.png", beam_dir / "overlay.png", shallow=False)
    after = _files(out / "monuseg-2Z")
    assert after == {k[len("monuseg-2Z/"):]: v for k, v in before.items() if k.startswith("monuseg-2Z/")}


@pytest.mark.tfx
def test_beam_batch_reports_a_corrupt_slide_and_finishes_the_others(two_slides, quickstart_model, tmp_path):
    from zoo.slides.beam import run_batch

    _, _, run_dir = quickstart_model
    root, slides = two_slides
    bad = tmp_path / "broken.tif"
    bad.write_bytes(open(slides[0], "rb").read()[:300])  # a truncated download: the fault, injected
    out = tmp_path / "out"
    report = run_batch([str(bad), slides[1]], str(run_dir), str(out), workers=1, running_mode="in_memory",
                       tile_size=TILE)
    assert report["counts"] == {"done": 1, "skipped": 0, "failed": 1}
    (failed,) = [r for r in report["slides"] if r["status"] == "failed"]
    assert failed["slide"] == str(bad) and str(bad) in failed["error"] and "\n" not in failed["error"]
    assert (out / "broken" / "error.txt").is_file() and not (out / "broken" / "summary.json").exists()
    assert (out / "monuseg-2Z" / "summary.json").is_file()


@pytest.mark.tfx
def test_beam_batch_with_an_exported_savedmodel(two_slides, quickstart_model, tmp_path):
    """The SavedModel export (predict_images signature, spec from its assets) gives the run folder's nuclei."""
    from serving.export import export
    from zoo.slides.beam import run_batch

    model, spec, run_dir = quickstart_model
    root, slides = two_slides
    export(model, str(tmp_path / "export"), spec=spec)
    a = run_batch([slides[1]], str(tmp_path / "export"), str(tmp_path / "sm"), workers=1, running_mode="in_memory",
                  tile_size=TILE)
    b = run_batch([slides[1]], str(run_dir), str(tmp_path / "keras"), workers=1, running_mode="in_memory",
                  tile_size=TILE)
    assert a["counts"]["done"] == b["counts"]["done"] == 1
    assert a["slides"][0]["nuclei"] == b["slides"][0]["nuclei"]
    assert filecmp.cmp(tmp_path / "sm" / "monuseg-2Z" / "nuclei.csv",
                       tmp_path / "keras" / "monuseg-2Z" / "nuclei.csv", shallow=False)


def test_slide_names_and_errors(tmp_path):
    from zoo.errors import ConfigError, DataError
    from zoo.slides.beam import list_slides, output_dirs, slide_name

    assert slide_name("/a/S1.ome.tif") == "S1" and slide_name("b/S2.svs") == "S2" and slide_name("c/x.ndpi") == "x"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for p in ("a/S1.tif", "b/S1.svs", "a/S2.tif"):
        (tmp_path / p).write_bytes(b"x")
    (tmp_path / "list.txt").write_text("a/S2.tif\n# comment\n" + str(tmp_path / "a" / "S1.tif") + "\n")
    listed = list_slides([str(tmp_path / "list.txt")])
    assert listed == [str(tmp_path / "a" / "S1.tif"), str(tmp_path / "a" / "S2.tif")]
    with pytest.raises(DataError, match=r"nothing\*\.tif: no slide files match"):
        list_slides([str(tmp_path / "nothing*.tif")])
    with pytest.raises(ConfigError, match=r"has the output name 'S1' of .*a/S1.tif too"):
        output_dirs(list_slides([str(tmp_path / "*" / "S1.*")]), str(tmp_path / "out"))


def _batch_cli(argv):
    """``histozoo slide batch ARGV`` through the real CLI parser (histozoo.commands.slide registers
    ``_slide_batch.add`` on the ``slide`` subparsers)."""
    from histozoo.cli import build_parser

    args = build_parser().parse_args(["slide", "batch", *argv])
    return args.func(args)


def test_cli_rerun_over_finished_slides_needs_no_beam(two_slides, quickstart_model, tmp_path, capsys):
    """Host side (no apache-beam here): slides finished by predict_slide are skipped without starting Beam or loading
    the model, and no file changes; one unfinished slide needs Beam, which is refused in one line."""
    import importlib.util

    from zoo.errors import ConfigError
    from zoo.slides import predict_slide

    model, spec, run_dir = quickstart_model
    root, slides = two_slides
    out = tmp_path / "out"
    for s, name in zip(slides, ("tnbc01", "monuseg-2Z")):
        predict_slide(s, model, spec, str(out / name), tile_size=TILE, progress=False)
    before = _files(out)
    argv = ["--slides", str(root / "*.tif"), "--slides", str(root / "*.svs"), "--model", str(run_dir),
            "--out", str(out), "--quiet", "--tile-size", str(TILE)]
    assert _batch_cli(argv) == 0
    assert capsys.readouterr().out.startswith("2 slides: 0 predicted, 2 already complete (skipped), 0 failed")
    assert _files(out) == before
    if importlib.util.find_spec("apache_beam") is None:
        os.remove(out / "monuseg-2Z" / "summary.json")
        with pytest.raises(ConfigError, match=r"^apache-beam is not installed in this environment .*tfx_env.sh run "
                                              r"histozoo slide batch"):
            _batch_cli(argv)
