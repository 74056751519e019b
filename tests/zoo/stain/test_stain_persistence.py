"""zoo.stain save/load, tf.function / SavedModel embedding, the registry and the ``histozoo normalize`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zoo import stain
from zoo.errors import ConfigError, DataError

METHODS = ["reinhard", "macenko", "vahadane"]


@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip_gives_identical_output(method, tiles, tmp_path):
    norm = stain.get_normalizer(method, jit=False).fit(tiles["target"])
    path = norm.save(tmp_path / "p.json")
    assert not [p for p in tmp_path.iterdir() if p.name != "p.json"]  # no temp files left behind
    back = stain.load(path, jit=False)
    assert type(back) is type(norm) and back.get_config() == norm.get_config()
    for k in norm.params:
        np.testing.assert_array_equal(back.params[k], norm.params[k])
    np.testing.assert_array_equal(back.transform(tiles["crc"]), norm.transform(tiles["crc"]))
    assert type(norm).load(path, jit=False).name == method


def test_load_errors_name_the_file(tmp_path, tiles):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        stain.load(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(DataError, match="not a histozoo stain"):
        stain.load(other)
    p = stain.get_normalizer("reinhard", jit=False).fit(tiles["target"]).save(tmp_path / "r.json")
    with pytest.raises(DataError, match="reinhard parameters, not macenko"):
        stain.MacenkoNormalizer.load(p)
    with pytest.raises(ConfigError, match="unknown stain method"):
        stain.get_normalizer("nope")


def test_normalize_numpy_helper(tiles):
    out = stain.normalize(tiles["tnbc"], "macenko", tiles["target"], jit=False)
    ref = stain.MacenkoNormalizer(jit=False).fit(tiles["target"]).transform(tiles["tnbc"])
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("method", METHODS)
def test_tf_function_and_saved_model_round_trip(method, tiles, tmp_path):
    """tf_transform traced into a SavedModel with unknown batch/height/width: the reloaded graph gives the same
    pixels and fallback codes as the eager call."""
    import tensorflow as tf

    norm = stain.get_normalizer(method, jit=False).fit(tiles["target"])
    batch = np.stack([tiles["tnbc"][:96, :96], np.full((96, 96, 3), 250, np.uint8)])
    eager, info = norm.tf_transform(tf.constant(batch), return_info=True)

    class Serve(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
        def __call__(self, x):
            out, inf = norm.tf_transform(x, return_info=True)
            return {"images": out, "fallback": inf["fallback"]}

    m = Serve()
    traced = m(tf.constant(batch))["images"].numpy()
    # graph optimisations may round a handful of pixels the other way: at most 1 apart, almost everywhere equal
    d = np.abs(traced.astype(int) - eager.numpy())
    assert d.max() <= 1 and (d > 0).mean() < 1e-3
    tf.saved_model.save(m, str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    got = loaded(tf.constant(batch))
    np.testing.assert_array_equal(got["images"].numpy(), traced)
    np.testing.assert_array_equal(got["fallback"].numpy(), [0, 1])
    assert np.array_equal(info["fallback"].numpy(), [0, 1])


def test_cli_normalize_folder(tiles, tmp_path, capsys):
    from PIL import Image

    from histozoo.cli import main

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(tiles["tnbc"]).save(src / "a.png")
    Image.fromarray(tiles["crc"]).save(src / "sub" / "b.tif")
    Image.fromarray(np.full((256, 256, 3), 250, np.uint8)).save(src / "blank.png")
    (src / "broken.png").write_bytes(b"not an image")
    Image.fromarray(tiles["target"]).save(tmp_path / "ref.png")
    rc = main(["normalize", str(src), str(tmp_path / "out"), "--method", "reinhard", "--target",
               str(tmp_path / "ref.png"), "--save-params", str(tmp_path / "p.json"), "--quiet", "--no-jit"])
    cap = capsys.readouterr()
    assert rc == 1  # one file failed
    assert "broken.png: unreadable image" in cap.err and len(cap.err.strip().splitlines()) == 1
    assert "normalized 3/4 images" in cap.out and "fallback no_tissue: 1 image(s)" in cap.out
    from zoo.data.imageio import read_rgb

    a = read_rgb(str(tmp_path / "out" / "a.png"))
    np.testing.assert_array_equal(a, stain.load(tmp_path / "p.json", jit=False).transform(tiles["tnbc"]))
    assert (tmp_path / "out" / "sub" / "b.tif").exists()
    np.testing.assert_array_equal(read_rgb(str(tmp_path / "out" / "blank.png")), np.full((256, 256, 3), 250))
    rc = main(["normalize", str(src / "a.png"), str(tmp_path / "out2"), "--params", str(tmp_path / "p.json"),
               "--quiet", "--no-jit"])
    assert rc == 0
    np.testing.assert_array_equal(read_rgb(str(tmp_path / "out2" / "a.png")), a)
    assert main(["normalize", str(src), str(tmp_path / "o3"), "--method", "macenko", "--target",
                 str(src / "blank.png"), "--quiet"]) == 2
    assert "blank.png" in capsys.readouterr().err
