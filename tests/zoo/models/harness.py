"""The shared model test harness (in the spirit of keras-hub's run_backbone_test / run_model_saving_test): every
registered model, at a tiny width, builds, trains two steps with keras fit on (x, y, w), round-trips
get_config / from_config, saves to .keras and reloads in a FRESH process with identical predictions, and exports a
SavedModel whose serving signature gives the same probabilities.

A new model registered in zoo.models is picked up by test_models_all.py automatically; it only needs an entry in
TINY_CONFIGS (a missing entry fails ``test_has_tiny_config``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

IMAGE_SIZE = 32  # a multiple of every tiny model's min_divisor (VGG16: 32)
_VGG_TINY = {"width_multiplier": 1 / 16, "fc_filters": 256}  # blocks of 4, 8, 16, 32, 32 maps; fc 16 maps

TINY_CONFIGS = {
    "pangnet": {},
    "fcn8s": dict(_VGG_TINY),
    "deconvnet": dict(_VGG_TINY),
    # members with different strides (1 and 32): the ensemble pads to their least common multiple
    "ensemble": {"members": [{"name": "pangnet"}, {"name": "fcn8s", "config": dict(_VGG_TINY)}]},
    "unet": {"base_filters": 4, "depth": 2},
    # keras-hub keeps the ResNet stem and first stage at 64 maps: one block per stage, stages 2-4 at 1/16 width
    "qu": {"num_types": 2, "encoder_blocks": [1, 1, 1, 1], "encoder_width": 1 / 16, "decoder_filters": [8, 8, 4, 4, 4]},
    # one unit per residual block and per dense stage, 1/16 encoder and 1/8 decoder widths, the TP branch on
    "hovernet": {"num_types": 2, "mode": "fast", "encoder_blocks": [1, 1, 1, 1], "encoder_width": 1 / 16,
                 "decoder_width": 1 / 8, "dense_units": [1, 1]},
    # the GAN models (zoo.models.gan; their checks: test_gan_models.py): 8 x 8 crops, 4 maps per resblock
    "infowgan_gp": {"image_size": 8, "categories": 3, "noise_dim": 4, "g_filters": 4, "d_filters": 4, "q_filters": 4},
    "yuan_suh_infogan": {"image_size": 8, "noise_dim": 4, "g_filters": 4, "d_filters": 4},
    # the neural stain networks (zoo.models.colorization; their checks: tests/zoo/stain/test_neural_models.py)
    "colorization": {"low_filters": [4] * 8, "global_filters": [4] * 4, "global_fc": [8, 8, 8], "class_hidden": 8,
                     "decoder_filters": [4] * 4, "global_size": 32, "num_classes": 3},
    "colornormnet": {"filters": [4, 4], "strides": [2, 2], "hidden": 4},
    # the SimGAN refiner (zoo.models.simgan; its checks: tests/zoo/synthesis/test_refiner.py)
    "simgan_refiner": {"filters": 4, "blocks": 1, "d_filters": [4, 4, 4, 4], "patch_size": 16, "history_size": 6},
    # two branches of 4 / 8 maps, stem stride 2 (stride 4 in all); plain RGB input = no clicks (zoo.models.interactive)
    "interactive_hrnet": {"width": 4, "branches": 2, "stem_downsample": 1},
}


def tiny_config(name: str) -> dict:
    if name not in TINY_CONFIGS:
        raise KeyError(f"model {name!r} has no tiny test config: add one to tests/zoo/models/harness.py TINY_CONFIGS")
    return TINY_CONFIGS[name]


def random_batch(num_classes: int, batch: int = 4, size: int = IMAGE_SIZE, seed: int = 0):
    """x float32 [B, H, W, 3] in [0, 1], y int32 labels [B, H, W], w float32 per-pixel weights [B, H, W]."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, size, size, 3), dtype=np.float32)
    y = rng.integers(0, num_classes, (batch, size, size), dtype=np.int32)
    w = rng.uniform(0.5, 2.0, (batch, size, size)).astype(np.float32)
    return x, y, w


def softmax_groups(model) -> tuple:
    """(start, stop) channel ranges of the output that are softmax distributions: all channels, except for models
    that say otherwise (HoVer-Net: NP and TP softmax, HV linear)."""
    return tuple(getattr(model, "softmax_groups", ((0, model.num_classes),)))


def training_batch(name: str, model, batch: int = 4, size: int = IMAGE_SIZE, seed: int = 0):
    """(x, y, w) a model trains on with ``training_loss``: ``random_batch`` (x with click maps and a previous mask for
    the interactive model), except HoVer-Net's stacked
    float target [B, H, W, 3 (+1)] = NP label, HV x, HV y (, type) (zoo.losses.hovernet)."""
    x, y, w = random_batch(model.num_classes, batch, size, seed)
    if name == "interactive_hrnet":  # + positive / negative click maps and a previous mask (zoo.models.interactive)
        extra = np.random.default_rng(seed + 2).random((batch, size, size, model.input_channels - 3)) > 0.9
        x = np.concatenate([x, extra.astype(np.float32)], -1)
    if name == "hovernet":
        rng = np.random.default_rng(seed + 1)
        nucleus = (y % 2).astype(np.float32)
        hv = rng.uniform(-1, 1, (batch, size, size, 2)).astype(np.float32) * nucleus[..., None]
        parts = [nucleus[..., None], hv]
        if model.config.num_types:
            parts.append((rng.integers(1, model.config.num_types + 1, y.shape) * nucleus)[..., None])
        y = np.concatenate(parts, -1).astype(np.float32)
    return x, y, w


def training_loss(name: str, model):
    """The loss ``fit_two_steps`` compiles: the project's default (weighted_ce), or the model's own composite."""
    from zoo.losses import get_loss

    if name == "hovernet":
        return get_loss("hovernet", num_types=model.config.num_types)
    return get_loss("weighted_ce")


def fit_two_steps(model, x, y, w, loss=None):
    """Compile with the project's default loss and run exactly two optimizer steps of keras fit on (x, y, w).

    Eagerly: tracing the train step of the VGG16 networks costs ~20 s of CPU each (the serving export below still
    traces every model's inference graph, and test_models_naylor.py checks unpooling gradients in a tf.function)."""
    import keras

    from zoo.losses import get_loss

    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss or get_loss("weighted_ce"), weighted_metrics=[],
                  run_eagerly=True)
    return model.fit(x, y, sample_weight=w, batch_size=len(x) // 2, epochs=1, shuffle=False, verbose=0)


def check_config_round_trip(model):
    """get_config -> from_config -> the same config; the config is JSON-serialisable; the config dataclass
    round-trips through to_dict / from_dict."""
    import keras

    config = model.get_config()
    assert json.loads(json.dumps(config)) == config
    clone = type(model).from_config(config)
    assert clone.get_config() == config
    assert type(model.config).from_dict(model.config.to_dict()) == model.config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert type(restored) is type(model) and restored.config == model.config


def save_and_export(model, folder: str, name: str) -> dict:
    """model.save(<name>.keras) and model.export(<name>_serving); returns the two paths."""
    keras_path = os.path.join(folder, f"{name}.keras")
    export_dir = os.path.join(folder, f"{name}_serving")
    model.save(keras_path)
    model.export(export_dir, verbose=False)
    return {"keras": keras_path, "export": export_dir}


_FRESH = r"""
import json, sys
import numpy as np
import keras, tensorflow as tf
import zoo.models  # registers the histozoo models, layers and losses with Keras
jobs = json.loads(sys.argv[1])
out = {}
for name, job in jobs.items():
    x = np.load(job["x"])
    model = keras.saving.load_model(job["keras"])
    out[name + "/keras"] = model.predict(x, verbose=0)
    out[name + "/class"] = np.array(type(model).__name__)
    serving = tf.saved_model.load(job["export"])
    out[name + "/serving"] = serving.serve(tf.constant(x)).numpy()
np.savez(sys.argv[2], **out)
"""


def load_in_fresh_process(jobs: dict, out_path: str, timeout: int = 300) -> dict:
    """One new Python process loads every ``jobs[name] = {"keras", "export", "x"}`` and predicts x with the
    reloaded .keras model and with the SavedModel's ``serve`` endpoint; returns {name/keras, name/serving, ...}."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", _FRESH, json.dumps(jobs), out_path], capture_output=True,
                          text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"fresh-process load failed:\n{proc.stderr[-4000:]}")
    with np.load(out_path) as data:
        return {k: data[k] for k in data.files}
