"""The CLI as a package (histozoo/cli.py + histozoo/commands/<group>.py), the library function behind
``histozoo normalize``, the atomic-write helpers it and every other writer use (zoo.atomic), output locations checked
before any work (issue 16), and TensorFlow's start-up noise kept off stderr."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from histozoo import cli
from histozoo.cli import main
from zoo import atomic
from zoo.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOISE = ("cuInit", "oneDNN", "absl::InitializeLog", "cudart_stub", "cpu_feature_guard")


def he_like(h: int = 48, w: int = 48, seed: int = 0, tissue: bool = True) -> np.ndarray:
    """A uint8 H&E-like tile by Beer-Lambert: haematoxylin blobs (nuclei) on eosin, or white background only."""
    rng = np.random.default_rng(seed)
    hem = np.array([0.65, 0.70, 0.29]) / np.linalg.norm([0.65, 0.70, 0.29])
    eos = np.array([0.07, 0.99, 0.11]) / np.linalg.norm([0.07, 0.99, 0.11])
    yy, xx = np.mgrid[:h, :w]
    c_h = np.zeros((h, w))
    c_e = np.full((h, w), 0.35 if tissue else 0.0)
    if tissue:
        for cy, cx in rng.uniform(4, min(h, w) - 4, (6, 2)):
            c_h += 1.2 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.5 ** 2))
        c_e += rng.normal(0, 0.03, (h, w))
    od = c_h[..., None] * hem + np.clip(c_e, 0, None)[..., None] * eos
    return np.clip(250 * np.exp(-od), 0, 255).astype(np.uint8)


# -------------------------------------------------------------------------------------------- package layout
def _subcommands(parser: argparse.ArgumentParser) -> dict:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_group_is_a_module_with_add_and_registered():
    # every module under histozoo/commands is a registered group, and every group is a module
    import pathlib

    import histozoo.commands as pkg

    # (modules named _*.py are parts of a group, e.g. _slide_batch.py is `histozoo slide batch`)
    modules = {p.stem for p in pathlib.Path(pkg.__file__).parent.glob("*.py") if not p.stem.startswith("_")}
    groups = tuple(cli.GROUPS)
    assert set(groups) == modules
    assert {"quickstart", "models", "data", "train", "evaluate", "predict", "serve", "pipeline"} <= set(groups)
    for g in groups:
        mod = importlib.import_module(f"histozoo.commands.{g}")
        assert callable(getattr(mod, "add", None)), g
    parser = cli.build_parser()
    assert list(_subcommands(parser)) == list(groups)
    assert set(_subcommands(_subcommands(parser)["data"])) == {"build", "info", "list", "crops"}
    assert set(_subcommands(_subcommands(parser)["registry"])) == {"list", "promote"}
    assert set(_subcommands(_subcommands(parser)["pipeline"])) == {"run", "compile", "cycle"}
    # the public names tests, scripts and setup.py's console script use
    from histozoo.cli import main as m, parse_key_values

    assert m is main and parse_key_values(["a=1", "b=x", 'c=[1, 2]']) == {"a": 1, "b": "x", "c": [1, 2]}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_key_values(["novalue"])
    # cli.py is the thin part: main + parser + error handling
    assert sum(1 for _ in open(cli.__file__)) < 200


def test_help_lists_every_group_without_importing_heavy_packages():
    code = ("import sys; from histozoo.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('tensorflow', 'keras', 'serving', 'pipelines', 'tfx', 'mlflow') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    res = subprocess.run([sys.executable, "-m", "histozoo", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    for g in cli.GROUPS:
        assert f"\n    {g} " in res.stdout or f"\n    {g}\n" in res.stdout, g
    assert "--verbose" in res.stdout


def test_verbose_is_accepted_before_and_after_the_subcommand():
    p = cli.build_parser()
    assert p.parse_args(["data", "list"]).verbose is False
    assert p.parse_args(["--verbose", "data", "list"]).verbose is True
    assert p.parse_args(["data", "list", "--verbose"]).verbose is True
    assert p.parse_args(["normalize", "a", "b", "--verbose"]).verbose is True


# ------------------------------------------------------------------------------------------ TF start-up noise
def test_quiet_env_decision():
    assert cli.quiet_env(False, {}) == {"TF_CPP_MIN_LOG_LEVEL": "3"}
    assert cli.quiet_env(True, {}) == {}  # --verbose: nothing forced
    assert cli.quiet_env(True, {"TF_CPP_MIN_LOG_LEVEL": "3"}) == {}
    assert cli.quiet_env(False, {"TF_CPP_MIN_LOG_LEVEL": "0"}) == {}  # the user's own setting wins


def test_main_sets_the_env_unless_verbose(monkeypatch, capsys):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    assert main(["--verbose", "data", "list"]) == 0
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    assert main(["data", "list"]) == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    capsys.readouterr()


def test_noise_filter_keeps_real_lines():
    lines = ["WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
             "I0000 00:00:1796453797.279530    7845 port.cc:153] oneDNN custom operations are on.\n",
             "E0000 00:00:1796453800.994795    7845 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n",
             "W1205 06:53:01.123456   12 file.cc:9] something\n"]
    assert all(cli._NOISE.match(s) for s in lines)
    for keep in ("histozoo: error: x.png: unreadable image\n", "Traceback (most recent call last):\n",
                 "ImportError: cannot import name 'x'\n", " 50%|#####     | 1/2\n"):
        assert not cli._NOISE.match(keep)


def test_command_importing_tensorflow_prints_no_startup_noise(tmp_path):
    from PIL import Image

    (tmp_path / "in").mkdir()
    Image.fromarray(he_like(seed=1)).save(tmp_path / "in" / "a.png")
    Image.fromarray(he_like(seed=2)).save(tmp_path / "ref.png")
    # python -m histozoo, plus a report (on stdout) of whether TensorFlow was really imported by the command
    code = ("import runpy, sys\n"
            "sys.argv = ['histozoo'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('histozoo', run_name='__main__', alter_sys=True)\n"
            "finally:\n    print('TF_IMPORTED', 'tensorflow' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    res = subprocess.run([sys.executable, "-c", code, "normalize", str(tmp_path / "in"), str(tmp_path / "out"),
                          "--method", "reinhard", "--target", str(tmp_path / "ref.png"), "--no-jit", "--quiet"],
                         cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    assert "TF_IMPORTED True" in res.stdout and (tmp_path / "out" / "a.png").exists()
    assert not [line for line in res.stderr.splitlines() if any(n in line for n in NOISE)], res.stderr


# ---------------------------------------------------------------------------------- normalize as a library
def test_normalize_folder_writes_outputs_and_returns_a_summary(tmp_path):
    from PIL import Image
    import tifffile

    from zoo import stain
    from zoo.data.imageio import read_rgb
    from zoo.stain.folder import normalize_folder

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(he_like(seed=3)).save(src / "a.png")
    tifffile.imwrite(src / "sub" / "b.tif", he_like(seed=4))
    Image.fromarray(he_like(seed=5, tissue=False)).save(src / "blank.png")
    (src / "broken.png").write_bytes(b"not an image")
    (src / "notes.txt").write_text("not listed")
    Image.fromarray(he_like(seed=6)).save(tmp_path / "ref.png")
    errors = []
    summary = normalize_folder(src, tmp_path / "out", method="reinhard", target=tmp_path / "ref.png",
                               save_params=tmp_path / "p.json", jit=False, progress=False, on_error=errors.append)
    assert summary["method"] == "reinhard" and summary["images"] == 4 and summary["normalized"] == 3
    assert summary["output"] == str(tmp_path / "out")
    assert [f["path"] for f in summary["failed"]] == [str(src / "broken.png")]
    assert len(errors) == 1 and "broken.png" in errors[0] and "\n" not in errors[0]
    assert summary["fallbacks"] == {"no_tissue": ["blank.png"]}
    assert summary["params_saved"] == str(tmp_path / "p.json")
    out = tmp_path / "out"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["a.png", "blank.png", "sub", "sub/b.tif"]
    norm = stain.load(tmp_path / "p.json", jit=False)
    np.testing.assert_array_equal(read_rgb(str(out / "a.png")), norm.transform(he_like(seed=3)))
    assert tifffile.imread(out / "sub" / "b.tif").shape == (48, 48, 3)
    np.testing.assert_array_equal(read_rgb(str(out / "blank.png")), he_like(seed=5, tissue=False))
    # a single file in, with the saved parameters (no refit)
    s2 = normalize_folder(src / "a.png", tmp_path / "out2", params=tmp_path / "p.json", jit=False, progress=False)
    assert s2["images"] == s2["normalized"] == 1 and s2["params_saved"] is None
    np.testing.assert_array_equal(read_rgb(str(tmp_path / "out2" / "a.png")), read_rgb(str(out / "a.png")))


def test_normalize_folder_checks_arguments_and_output_before_any_work(tmp_path):
    from zoo.stain.folder import normalize_folder

    (tmp_path / "file").write_text("x")
    # the output is checked first: a missing target would raise DataError if it were read before
    with pytest.raises(ConfigError, match=r"file: exists and is a file"):
        normalize_folder(tmp_path, tmp_path / "file", target=tmp_path / "missing.png", progress=False)
    with pytest.raises(ConfigError, match="exactly one of"):
        normalize_folder(tmp_path, tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------- zoo.atomic
def _litter(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_atomic_write_that_raises_leaves_nothing(tmp_path):
    final = tmp_path / "x.bin"
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(final) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"half of it")
            raise RuntimeError("crash mid-way")
    assert _litter(tmp_path) == []
    # an existing file keeps its old content
    atomic.write_bytes(final, b"old")
    with pytest.raises(TypeError):
        atomic.write_json(final, {"a": object()}, default=None)
    assert final.read_bytes() == b"old" and _litter(tmp_path) == ["x.bin"]
    with pytest.raises(Exception):
        atomic.save_image(tmp_path / "img.png", np.zeros((4, 4, 7), np.float64))  # Pillow cannot write this
    assert _litter(tmp_path) == ["x.bin"]


def test_atomic_writers_round_trip(tmp_path):
    assert atomic.write_text(tmp_path / "a" / "t.txt", "héllo") == str(tmp_path / "a" / "t.txt")
    assert (tmp_path / "a" / "t.txt").read_text(encoding="utf-8") == "héllo"
    atomic.write_json(tmp_path / "j.json", {"v": np.float32(0.5)})
    assert json.loads((tmp_path / "j.json").read_text()) == {"v": 0.5}
    atomic.write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    img = (np.arange(48).reshape(4, 4, 3) * 5).astype(np.uint8)
    atomic.save_image(tmp_path / "i.png", img)
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "i.png")), img)
    # the temporary keeps the extension (writers that pick the format from the name) and is hidden
    t = atomic.temp_sibling(tmp_path / "m.keras")
    assert os.path.basename(t).startswith(".m.keras.tmp-") and t.endswith(".keras")
    assert _litter(tmp_path) == ["a", "b.bin", "i.png", "j.json"]


def test_atomic_dir(tmp_path):
    final = tmp_path / "built"
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(final) as tmp:
            open(os.path.join(tmp, "part"), "w").write("x")
            assert not final.exists()
            raise RuntimeError("crash mid-way")
    assert _litter(tmp_path) == []
    with atomic.atomic_dir(final) as tmp:
        open(os.path.join(tmp, "a"), "w").write("1")
    assert _litter(final) == ["a"] and _litter(tmp_path) == ["built"]
    with pytest.raises(ConfigError, match="already exists"):
        with atomic.atomic_dir(final):
            pytest.fail("the block must not run when the folder exists")
    with atomic.atomic_dir(final, overwrite=True) as tmp:
        open(os.path.join(tmp, "b"), "w").write("2")
    assert _litter(final) == ["b"] and _litter(tmp_path) == ["built"]
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(final, overwrite=True):
            raise RuntimeError
    assert _litter(final) == ["b"] and _litter(tmp_path) == ["built"]


def _read_only(monkeypatch, folder):
    """chmod 0o500; where that does not stop this user (root), make os.access say so (the fault, injected)."""
    os.chmod(folder, 0o500)
    if os.access(folder, os.W_OK):
        real = os.access
        target = os.path.realpath(folder)
        monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if (
            os.path.realpath(p) == target and mode & os.W_OK) else real(p, mode, *a, **k))


def test_check_output_dir(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("x")
    assert atomic.check_output_dir(tmp_path / "new" / "deeper") == str(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()  # checks, creates nothing
    for bad, why in ((tmp_path / "f", "is a file"), (tmp_path / "f" / "sub", "is a file")):
        with pytest.raises(ConfigError, match=why) as e:
            atomic.check_output_dir(bad)
        assert str(bad) in str(e.value) and "\n" not in str(e.value)
    ro = tmp_path / "ro"
    ro.mkdir()
    try:
        _read_only(monkeypatch, ro)
        for p in (ro, ro / "sub"):
            with pytest.raises(ConfigError, match="not writable") as e:
                atomic.check_output_dir(p)
            assert str(p) in str(e.value)
    finally:
        os.chmod(ro, 0o700)


# -------------------------------------------------------------------------------- issue 16: --out checked first
def _refuse(monkeypatch, module: str, name: str):
    mod = importlib.import_module(module)

    def called(*a, **k):
        raise AssertionError(f"{module}.{name} ran before --out was checked")

    monkeypatch.setattr(mod, name, called)


def _bad_outs(tmp_path, monkeypatch):
    f = tmp_path / "out_file"
    f.write_text("a file, not a folder")
    yield f
    ro = tmp_path / "ro_out"
    ro.mkdir()
    _read_only(monkeypatch, ro)
    try:
        yield ro
    finally:
        os.chmod(ro, 0o700)


def _one_line_error(capsys, path) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("histozoo: error: ") and str(path) in err, err


def test_predict_out_checked_before_anything(tmp_path, monkeypatch, capsys):
    _refuse(monkeypatch, "serving.client", "predict_files")
    _refuse(monkeypatch, "serving.client", "PredictClient")
    img = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(he_like()).save(img)
    for out in _bad_outs(tmp_path, monkeypatch):
        rc = main(["predict", str(img), "--server", "127.0.0.1:1", "--model", "m", "--out", str(out), "--quiet"])
        assert rc == 2
        _one_line_error(capsys, out)


def test_data_build_out_checked_before_anything(tmp_path, monkeypatch, capsys):
    _refuse(monkeypatch, "zoo.data.build", "build")
    for out in _bad_outs(tmp_path, monkeypatch):
        rc = main(["data", "build", "folder", "--root", str(tmp_path), "--out", str(out), "--quiet"])
        assert rc == 2
        _one_line_error(capsys, out)
