"""``histozoo synth``: records of the one schema that read back with the right counts (images per split, nuclei
per image = the instance map's ids, the tile size), the unlabelled real images with --include-real, and one-line
errors."""

import json

import numpy as np
import pytest

from histozoo.cli import main


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory):
    """Two H&E-like PNGs (pink background, dark discs) and a text file the command must ignore."""
    from zoo.atomic import save_image, write_text

    folder = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(0)
    for i in range(2):
        img = np.empty((120, 120, 3), np.uint8)
        img[:] = (236, 170, 205)
        yy, xx = np.mgrid[:120, :120]
        for _ in range(8):
            cy, cx = rng.uniform(10, 110, 2)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 40] = (95, 60, 140)
        save_image(folder / f"r{i}.png", img)
    write_text(folder / "readme.txt", "not an image")
    return folder


def test_synth_writes_records_that_read_back(real_folder, tmp_path, capsys):
    from zoo.data import records
    from zoo.data.build import load_summary

    out = tmp_path / "synth"
    assert main(["synth", "--images", str(real_folder), "--n", "5", "--out", str(out), "--seed", "3", "--quiet",
                 "--option", "tile_size=64", "--option", "nuclei_min=4", "--option", "nuclei_max=9"]) == 0
    assert "5 synthetic images at" in capsys.readouterr().out
    summary = load_summary(str(out))
    assert {k: v["images"] for k, v in summary["splits"].items()} == {"train": 4, "val": 1}  # 80-20
    assert summary["options"]["synthesis"]["tile_size"] == 64 and summary["options"]["real_images"] == ["r0.png",
                                                                                                      "r1.png"]
    samples = list(records.read_samples(records.list_shards(str(out))))
    assert len(samples) == 5 and sorted(s.split for s in samples) == ["train"] * 4 + ["val"]
    nuclei = 0
    for s in samples:
        assert s.image.shape == (64, 64, 3) and s.instances.shape == (64, 64) and s.dataset == "synthetic"
        ids = np.unique(s.instances)
        ids = ids[ids > 0]
        assert 4 <= len(ids) <= 9 and ids.tolist() == list(range(1, len(ids) + 1))
        nuclei += len(ids)
    assert sum(v["nuclei"] for v in summary["splits"].values()) == nuclei
    # the same seed gives the same records
    again = tmp_path / "again"
    main(["synth", "--images", str(real_folder), "--n", "5", "--out", str(again), "--seed", "3", "--quiet",
          "--option", "tile_size=64", "--option", "nuclei_min=4", "--option", "nuclei_max=9"])
    for a, b in zip(samples, records.read_samples(records.list_shards(str(again)))):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.instances, b.instances)


def test_include_real_puts_everything_in_split_all(real_folder, tmp_path):
    from zoo.data import records

    out = tmp_path / "refiner_data"
    assert main(["synth", "--images", str(real_folder), "--n", "3", "--out", str(out), "--quiet", "--include-real",
                 "--option", "tile_size=48"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["splits"]) == ["all"] and summary["splits"]["all"]["images"] == 5
    samples = list(records.read_samples(records.list_shards(str(out), "all")))
    real = [s for s in samples if s.dataset == "real"]
    assert sorted(s.image_id for s in real) == ["r0.png", "r1.png"] and all(s.instances is None for s in real)
    assert all(s.image.shape == (120, 120, 3) for s in real)


@pytest.mark.parametrize("args, message", [
    (["--images", "{missing}"], "--images is not a folder"),
    (["--images", "{empty}"], "no image files"),
    (["--images", "{real}", "--option", "tile_size=500"], "smaller than the synthetic tile (500 px)"),
    (["--images", "{real}", "--option", "max_overlap=2"], "synthesis: option 'max_overlap'"),
])
def test_bad_input_is_one_line_naming_the_problem(real_folder, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    args = [a.format(missing=tmp_path / "nope", empty=tmp_path / "empty", real=real_folder) for a in args]
    assert main(["synth", *args, "--n", "2", "--out", str(tmp_path / "out"), "--quiet"]) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "summary.json").exists()
