"""serving.export: the SavedModel as TF Serving sees it (saved_model_cli, the TF1 session loader), versioning and
atomic writes, metadata asset, in-graph stain transform, argument checks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from serving.export import SIGNATURES, export, read_metadata
from zoo.errors import ConfigError


def _parse_cli(text: str) -> dict:
    """saved_model_cli show --all -> {signature: {"inputs": {key: (dtype, shape)}, "outputs": {...}, "method": m}}"""
    sigs, cur, part, key = {}, None, None, None
    for line in text.splitlines():
        line = line.strip()
        if m := re.match(r"signature_def\['(\w+)'\]:", line):
            cur = sigs.setdefault(m.group(1), {"inputs": {}, "outputs": {}})
        elif cur is None:
            continue
        elif m := re.match(r"(inputs|outputs)\['(\w+)'\] tensor_info:", line):
            part, key = m.groups()
        elif line.startswith("dtype:") and key:
            cur[part][key] = [line.split()[1]]
        elif line.startswith("shape:") and key:
            cur[part][key].append(line.split(":", 1)[1].strip())
            key = None
        elif line.startswith("Method name is:"):
            cur["method"] = line.split(":", 1)[1].strip()
    return sigs


def test_saved_model_cli_shows_the_four_signatures(exported):
    exe = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    res = subprocess.run([exe, "show", "--dir", str(exported["three"] / "1"), "--all"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    sigs = _parse_cli(res.stdout)
    assert set(SIGNATURES) <= set(sigs)
    want_in = {"serving_default": ("images", "DT_FLOAT", "(-1, -1, -1, 3)"),
               "predict_images": ("images", "DT_UINT8", "(-1, -1, -1, 3)"),
               "predict_bytes": ("image_bytes", "DT_STRING", "(-1)"),
               "predict_examples": ("examples", "DT_STRING", "(-1)")}
    for name, (key, dtype, shape) in want_in.items():
        s = sigs[name]
        assert s["inputs"] == {key: [dtype, shape]}, name
        assert s["outputs"] == {"probabilities": ["DT_FLOAT", "(-1, -1, -1, 3)"],
                                "class_map": ["DT_INT32", "(-1, -1, -1)"],
                                "instances": ["DT_INT32", "(-1, -1, -1)"],
                                "num_instances": ["DT_INT32", "(-1)"]}, name
        assert s["method"] == "tensorflow/serving/predict"


def test_tf1_session_loader_matches_in_process(exported, models, sv):
    import tensorflow as tf

    imgs = np.stack([sv.he_like(37, 41, 7), sv.he_like(37, 41, 8)])
    x = imgs.astype(np.float32) / 255.0
    want = sv.reference(models["three"], x)
    with tf.compat.v1.Graph().as_default() as g, tf.compat.v1.Session(graph=g) as sess:
        mg = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(exported["three"] / "1"))
        for name, value in [("serving_default", x), ("predict_images", imgs)]:
            sig = mg.signature_def[name]
            out = sess.run({k: v.name for k, v in sig.outputs.items()}, {sig.inputs["images"].name: value})
            assert np.abs(out["probabilities"] - want).max() < 1e-5
            np.testing.assert_array_equal(out["instances"], sv.reference_instances(want))


def test_version_layout_and_metadata(exported, models):
    from serving.export import _next_version

    assert sorted(os.listdir(exported["binary"])) == ["1", "2"]  # no temporary folders left behind
    assert _next_version(str(exported["binary"])) == 3
    meta = read_metadata(str(exported["binary"] / "1"))
    assert meta["version"] == 1 and meta["mpp"] == 0.25 and meta["num_classes"] == 2
    assert meta["class_names"] == ["background", "nucleus"] and meta["divisor"] == 4
    assert meta["model_name"] == models["binary_v1"].name and meta["config"]["name"] == models["binary_v1"].name
    assert read_metadata(str(exported["three"] / "1"))["class_names"] == ["background", "interior", "boundary"]
    with pytest.raises(ConfigError, match="already exists"):
        export(models["binary_v1"], str(exported["binary"]), version=2)


class _Invert:
    """A stand-in for a zoo.stain normalizer: a pure-TF uint8 -> uint8 transform."""

    def tf_transform(self, images):
        import tensorflow as tf

        return tf.cast(255 - tf.cast(images, tf.int32), tf.uint8)


def test_stain_transform_runs_in_the_graph_and_crash_leaves_nothing(models, sv, tmp_path, monkeypatch):
    import keras
    import tensorflow as tf

    path = export(models["binary_v1"], str(tmp_path / "m"), stain=_Invert())
    assert path.endswith(os.sep + "1")
    assert read_metadata(path)["stain"] == {"method": "_Invert"}
    fn = tf.saved_model.load(path).signatures
    imgs = np.stack([sv.he_like(32, 36, 9)])
    want = sv.reference(models["binary_v1"], (255 - imgs).astype(np.float32) / 255.0)
    out = fn["predict_images"](images=tf.constant(imgs))
    assert np.abs(out["probabilities"].numpy() - want).max() < 1e-5
    out = fn["serving_default"](images=tf.constant(imgs.astype(np.float32) / 255.0))
    assert np.abs(out["probabilities"].numpy() - want).max() < 1e-5

    def crash(self, filepath, **kw):
        os.makedirs(os.path.join(filepath, "variables"))
        raise OSError("disk full")

    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", crash)  # the backend subclass
    with pytest.raises(OSError, match="disk full"):
        export(models["binary_v1"], str(tmp_path / "m"))
    assert os.listdir(tmp_path / "m") == ["1"]


def test_bad_arguments_are_config_errors(models, tmp_path):
    import keras

    with pytest.raises(ConfigError, match="instance_mode"):
        export(models["binary_v1"], str(tmp_path), instance_mode="watershed")
    with pytest.raises(ConfigError, match="threshold"):
        export(models["binary_v1"], str(tmp_path), threshold=1.5)
    with pytest.raises(ConfigError, match="tf_transform"):
        export(models["binary_v1"], str(tmp_path), stain=object())
    x = keras.Input((None, None, 3))
    flat = keras.Model(x, keras.layers.GlobalAveragePooling2D()(x), name="classifier")
    with pytest.raises(ConfigError, match=r"classifier.*\[B, H, W, C>=2\]"):
        export(flat, str(tmp_path))
    assert os.listdir(tmp_path) == []
