"""Bad input: one clear line naming the file and the problem (exit 2, no traceback) through `histozoo data build`;
documented conversions (16-bit, grayscale) and empty masks build fine."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from histozoo.cli import main
from zoo.data import records
from zoo.data.imageio import read_rgb


def _cli_error(capsys, dataset, root, out) -> str:
    rc = main(["data", "build", dataset, "--root", str(root), "--out", str(out), "--quiet"])
    cap = capsys.readouterr()
    assert rc == 2, cap
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("histozoo: error: "), cap.err
    assert "Traceback" not in cap.err + cap.out
    return lines[0]


def _break_missing_mask(root):
    (root / "GT_02" / "02_1.png").unlink()
    return "Slide_02/02_1.png: no mask for this image", "GT_02/02_1.png"


def _break_truncated_image(root):
    p = root / "Slide_01" / "01_2.png"
    p.write_bytes(p.read_bytes()[:200])
    return "Slide_01/01_2.png: unreadable image", ""


def _break_not_an_image(root):
    (root / "Slide_01" / "01_1.png").write_text("this is not a PNG")
    return "Slide_01/01_1.png: unreadable image", ""


def _break_size_mismatch(root):
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(root / "GT_01" / "01_2.png")
    return "GT_01/01_2.png: label size 32x16 does not match image size 32x32", ""


def _break_rgb_mask(root):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
        root / "GT_02" / "02_2.png")
    return "GT_02/02_2.png: label must be a single-channel image", ""


@pytest.mark.parametrize("breaker", [_break_missing_mask, _break_truncated_image, _break_not_an_image,
                                     _break_size_mismatch, _break_rgb_mask], ids=lambda f: f.__name__[7:])
def test_broken_tnbc_file(tiny_tnbc, tmp_path, capsys, breaker):
    must, also = breaker(tiny_tnbc)
    line = _cli_error(capsys, "tnbc", tiny_tnbc, tmp_path / "out")
    assert must in line and also in line
    assert not (tmp_path / "out" / "summary.json").exists()


@pytest.mark.parametrize("dataset, expect", [
    ("monuseg2018", "not a MoNuSeg 2018 dataset folder"),
    ("crchistophenotypes", "not a CRCHistoPhenotypes folder"),
    ("bone_marrow", "not a bone-marrow (Kainz et al.) folder"),
    ("consep", "not a CoNSeP / HoVer-Net folder"),
    ("pannuke", "not a PanNuke folder")])
def test_root_is_not_the_named_dataset(tiny_tnbc, tmp_path, capsys, dataset, expect):
    line = _cli_error(capsys, dataset, tiny_tnbc, tmp_path / "out")
    assert f"{tiny_tnbc}: {expect}" in line


def test_tnbc_root_that_is_something_else(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert "not a TNBC dataset folder" in _cli_error(capsys, "tnbc", tmp_path / "empty", tmp_path / "out")
    assert "dataset root is not a directory" in _cli_error(capsys, "tnbc", tmp_path / "nope", tmp_path / "out")
    assert "unknown dataset 'tnbcc'" in _cli_error(capsys, "tnbcc", tmp_path / "empty", tmp_path / "out")


def test_non_integer_labels(tmp_path, capsys):
    root = tmp_path / "consep"
    (root / "Train" / "Images").mkdir(parents=True)
    (root / "Train" / "Labels").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "Train" / "Images" / "train_1.png")
    inst = np.zeros((8, 8))
    inst[2:4, 2:4] = 1.25
    savemat(root / "Train" / "Labels" / "train_1.mat", {"inst_map": inst})
    line = _cli_error(capsys, "consep", root, tmp_path / "out")
    assert "train_1.mat:inst_map: label values are not integers" in line


def test_missing_annotation_file(tmp_path, capsys):
    img_dir = tmp_path / "mo" / "MoNuSegTestData"
    img_dir.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img_dir / "TCGA-AA-0000-01Z-00-DX1.png")
    line = _cli_error(capsys, "monuseg2018", tmp_path / "mo", tmp_path / "out")
    assert "TCGA-AA-0000-01Z-00-DX1.png: no ImageScope XML for this image" in line


def test_16bit_grayscale_rgba_images_are_converted_and_empty_masks_allowed(tiny_tnbc, tmp_path, capsys):
    ramp16 = (np.arange(32 * 32).reshape(32, 32) * 64).astype(np.uint16)  # 0 .. 65472
    Image.fromarray(ramp16).save(tiny_tnbc / "Slide_01" / "01_1.png")  # mode I;16
    gray = np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1))
    Image.fromarray(gray, "L").save(tiny_tnbc / "Slide_01" / "01_2.png")
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0  # fully transparent red -> white (no tissue)
    rgba[:16, :, 3] = 255                # opaque top half keeps its colour
    Image.fromarray(rgba, "RGBA").save(tiny_tnbc / "Slide_02" / "02_1.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tiny_tnbc / "GT_02" / "02_2.png")  # empty mask
    out = tmp_path / "out"
    assert main(["data", "build", "tnbc", "--root", str(tiny_tnbc), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    s = {x.image_id: x for x in records.read_samples(records.list_shards(str(out)))}
    expect16 = np.round(ramp16 / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(s["01_1"].image, np.repeat(expect16[:, :, None], 3, 2))
    np.testing.assert_array_equal(s["01_2"].image, np.repeat(gray[:, :, None], 3, 2))
    assert s["02_1"].image[:16].tolist() == [[[200, 0, 0]] * 32] * 16
    assert (s["02_1"].image[16:] == 255).all()
    assert s["02_2"].num_instances == 0 and s["01_1"].num_instances == 3
    np.testing.assert_array_equal(read_rgb(str(tiny_tnbc / "Slide_01" / "01_1.png")), s["01_1"].image)
