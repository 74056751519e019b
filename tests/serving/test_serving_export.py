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
        # the metadata asset (serving.export.output_keys) lists exactly what the signatures return
        assert sorted(read_metadata(str(exported["three"] / "1"))["outputs"]) == sorted(s["outputs"]), name
    assert sigs["histozoo_spec"]["inputs"] == {"unused": ["DT_INT32", "(-1)"]}
    assert sigs["histozoo_spec"]["outputs"] == {"spec": ["DT_STRING", "()"]}


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


def test_version_layout_and_metadata(exported, models, sv):
    from serving.export import _next_version, read_spec

    assert sorted(os.listdir(exported["binary"])) == ["1", "2"]  # no temporary folders left behind
    assert _next_version(str(exported["binary"])) == 3
    meta = read_metadata(str(exported["binary"] / "1"))
    assert meta["version"] == 1 and meta["num_classes"] == 2 and meta["instances_in_graph"] is True
    assert meta["model_name"] == models["binary_v1"].name and meta["config"]["name"] == models["binary_v1"].name
    spec = read_spec(str(exported["binary"] / "1"))
    assert spec == sv.spec_of(models["binary_v1"], mpp=0.25)
    assert spec.mpp == 0.25 and spec.divisor == 4 and spec.channels == ("background", "nucleus")
    assert read_spec(str(exported["three"] / "1")).channels == ("background", "interior", "boundary")
    with pytest.raises(ConfigError, match="already exists"):
        export(models["binary_v1"], str(exported["binary"]), version=2)


def test_stain_from_the_spec_runs_in_the_graph_and_crash_leaves_nothing(models, sv, tmp_path, monkeypatch):
    import keras
    import tensorflow as tf

    from serving.export import read_spec
    from zoo.inference import KerasForward
    from zoo.stain.reinhard import ReinhardNormalizer

    target = (sv.he_like(64, 64, 3) * np.array([0.75, 0.95, 0.6])).astype(np.uint8)  # another stain colour
    norm = ReinhardNormalizer().fit(target)
    spec = sv.spec_of(models["binary_v1"], stain=norm.to_json())
    path = export(models["binary_v1"], str(tmp_path / "m"), spec=spec)
    assert path.endswith(os.sep + "1")
    assert read_spec(path).stain["method"] == "reinhard"
    fn = tf.saved_model.load(path).signatures
    imgs = np.stack([sv.he_like(32, 36, 9)])
    normalized = np.asarray(norm.transform(imgs))
    assert np.abs(normalized.astype(int) - imgs).max() > 5  # the stain transform changes the image
    want = sv.reference(models["binary_v1"], normalized.astype(np.float32) / 255.0)
    out = fn["predict_images"](images=tf.constant(imgs))
    assert np.abs(out["probabilities"].numpy() - want).max() < 1e-4
    np.testing.assert_array_equal(out["probabilities"].numpy(), KerasForward(models["binary_v1"], spec)(imgs))
    out = fn["serving_default"](images=tf.constant(imgs.astype(np.float32) / 255.0))
    assert np.abs(out["probabilities"].numpy() - want).max() < 1e-4

    def crash(self, filepath, **kw):
        os.makedirs(os.path.join(filepath, "variables"))
        raise OSError("disk full")

    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", crash)  # the backend subclass
    with pytest.raises(OSError, match="disk full"):
        export(models["binary_v1"], str(tmp_path / "m"), spec=spec)
    assert os.listdir(tmp_path / "m") == ["1"]


def test_bad_arguments_are_config_errors(models, sv, tmp_path):
    import keras

    with pytest.raises(ConfigError, match="max_iters"):
        export(models["binary_v1"], str(tmp_path), spec=sv.spec_of(models["binary_v1"]), max_iters=0)
    with pytest.raises(ConfigError, match=r"3 output channels; its spec names 2"):
        export(models["three"], str(tmp_path), spec=sv.spec_of(models["binary_v1"]))
    x = keras.Input((None, None, 3))
    flat = keras.Model(x, keras.layers.GlobalAveragePooling2D()(x), name="classifier")
    with pytest.raises(ConfigError, match=r"classifier.*\[B, H, W, C>=2\]"):
        export(flat, str(tmp_path))
    assert os.listdir(tmp_path) == []
