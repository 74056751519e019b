"""The neural stain normalizers (zoo.stain.neural) wherever a stain method is used: transform / fallbacks / JSON,
`histozoo normalize` over a folder of real tiles, the input layer's stain option and tissue_class target, the one
training core (the spec records the stain), and the exported serving graph (same pixels as in-process)."""

import importlib.util
import json
import pathlib
import sys

import numpy as np
import pytest

import keras

from zoo import models, stain
from zoo.errors import ConfigError, DataError

SHIFT = np.array([0.06, 0.0, -0.05], np.float32)  # the tiny ColorNormNet's fixed output shift (R, G, B)


def _tiny(name):
    path = pathlib.Path(__file__).resolve().parents[1] / "models" / "harness.py"
    if "histozoo_tests_model_harness" not in sys.modules:
        spec = importlib.util.spec_from_file_location("histozoo_tests_model_harness", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["histozoo_tests_model_harness"] = module
        spec.loader.exec_module(module)
    keras.utils.set_random_seed(0)
    model = models.build(name, sys.modules["histozoo_tests_model_harness"].tiny_config(name))
    model.build((None, None, None, 3))
    return model


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """Tiny trained-shape networks saved as .keras: colorization (random init) and a ColorNormNet whose output is
    exactly clip(x + SHIFT) (zero kernel, bias SHIFT), so its normalised pixels can be worked out by hand."""
    d = tmp_path_factory.mktemp("neural_nets")
    col = _tiny("colorization")
    col.save(d / "colorization.keras")
    cnn = _tiny("colornormnet")
    cnn.shift.bias.assign(SHIFT)
    cnn.save(d / "colornormnet.keras")
    return {"colorization": str(d / "colorization.keras"), "colornormnet": str(d / "colornormnet.keras"), "dir": d}


def _by_hand(image):
    return np.clip(np.round((image.astype(np.float32) / 255.0 + SHIFT) * 255.0), 0, 255).astype(np.uint8)


def test_colornormnet_pixels_by_hand_and_json_round_trip(nets, tiles, tmp_path):
    norm = stain.get_normalizer("colornormnet", model=nets["colornormnet"]).fit()
    out, info = norm.transform(tiles["monuseg"], return_info=True)
    assert info["fallback"] is None and out.dtype == np.uint8
    assert np.abs(out.astype(int) - _by_hand(tiles["monuseg"]).astype(int)).max() <= 1  # float32 rounding ties
    norm.save(tmp_path / "p.json")
    again = stain.load(tmp_path / "p.json")
    assert again.name == "colornormnet" and json.loads((tmp_path / "p.json").read_text())["config"]["model"]
    np.testing.assert_array_equal(again.transform(tiles["monuseg"]), out)


def test_colorization_fits_the_targets_global_vector_and_round_trips(nets, tiles, tmp_path):
    norm = stain.get_normalizer("colorization", model=nets["colorization"]).fit(tiles["target"])
    g = norm.params["target_features"]
    assert g.shape == (8,) and np.isfinite(g).all()
    np.testing.assert_allclose(g, norm.net.global_features(tiles["target"][None] / 255.0).numpy()[0], atol=1e-6)
    out = norm.transform(np.stack([tiles["monuseg"], tiles["tnbc"]]))
    assert out.shape == (2, 256, 256, 3) and out.dtype == np.uint8
    norm.save(tmp_path / "c.json")
    np.testing.assert_array_equal(stain.load(tmp_path / "c.json").transform(tiles["tnbc"]), out[1])


@pytest.mark.parametrize("method", ["colorization", "colornormnet"])
def test_blank_tiles_come_back_unchanged_never_nan(nets, tiles, blank_tiles, method):
    norm = stain.get_normalizer(method, model=nets[method]).fit(tiles["target"])
    for name, tile in blank_tiles.items():
        out, info = norm.transform(tile, return_info=True)
        assert info["fallback"] == "no_tissue", name
        np.testing.assert_array_equal(out, tile)


def test_non_finite_network_output_falls_back(nets, tiles):
    """Fault injected: a NaN in the shift layer -> the tile is returned unchanged, flagged degenerate."""
    norm = stain.get_normalizer("colornormnet", model=nets["colornormnet"]).fit()
    norm.net.shift.bias.assign(np.array([np.nan, 0, 0], np.float32))
    out, info = norm.transform(tiles["crc"], return_info=True)
    assert info["fallback"] == "degenerate"
    np.testing.assert_array_equal(out, tiles["crc"])


def test_bad_inputs_are_one_line_errors(nets, blank_tiles, tmp_path):
    with pytest.raises(DataError, match="no such model file"):
        stain.get_normalizer("colornormnet", model=str(tmp_path / "missing.keras"))
    with pytest.raises(DataError, match="holds a colornormnet model, not colorization"):
        stain.get_normalizer("colorization", model=nets["colornormnet"])
    with pytest.raises(ConfigError, match="needs model="):
        stain.get_normalizer("colornormnet")
    with pytest.raises(ConfigError, match="target has no tissue"):
        stain.get_normalizer("colorization", model=nets["colorization"]).fit(blank_tiles["white"])


def test_histozoo_normalize_over_a_folder_of_real_tiles(nets, tiles, tmp_path, capsys):
    from histozoo.cli import main
    from zoo.atomic import save_image
    from zoo.data.imageio import read_rgb

    src = tmp_path / "in"
    for name, tile in tiles.items():
        save_image(str(src / f"{name}.png"), tile)
    save_image(str(src / "sub" / "white.png"), np.full((64, 64, 3), 255, np.uint8))
    assert main(["normalize", str(src), str(tmp_path / "cnn"), "--method", "colornormnet", "--model",
                 nets["colornormnet"], "--quiet"]) == 0
    for name, tile in tiles.items():
        assert np.abs(read_rgb(str(tmp_path / "cnn" / f"{name}.png")).astype(int)
                      - _by_hand(tile).astype(int)).max() <= 1
    assert "fallback no_tissue: 1 image(s) copied unchanged: sub/white.png" in capsys.readouterr().out
    assert main(["normalize", str(src), str(tmp_path / "col"), "--method", "colorization", "--model",
                 str(nets["dir"] / "colorization.keras"), "--target", str(src / "target.png"), "--save-params",
                 str(tmp_path / "col.json"), "--quiet"]) == 0
    want = stain.load(tmp_path / "col.json").transform(tiles["tnbc"])
    np.testing.assert_array_equal(read_rgb(str(tmp_path / "col" / "tnbc.png")), want)
    assert main(["normalize", str(src), str(tmp_path / "x"), "--method", "colorization", "--quiet"]) == 2
    assert "needs --model" in capsys.readouterr().err


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory):
    """Two synthetic records of one flat stain colour: a MoNuSeg Colon image (organ index 3) and a TNBC image."""
    from zoo.data import records
    from zoo.data.sample import Sample

    d = tmp_path_factory.mktemp("neural_records")
    img = np.empty((48, 48, 3), np.uint8)
    img[:] = (150, 100, 170)
    inst = np.zeros((48, 48), np.int32)
    inst[10:20, 10:20] = 1
    samples = [Sample(image=img, image_id="m", dataset="monuseg2018", source_id="m", split="train", instances=inst,
                      organ="Colon", tissue_class=3),
               Sample(image=img, image_id="t", dataset="tnbc", source_id="t", split="train", instances=inst)]
    return records.write_shards(samples, str(d), "train")


def test_input_layer_stain_option_and_tissue_class_target(nets, records_dir, tmp_path):
    from zoo.data.input import InputConfig, dataset, tissue_classes

    stain.get_normalizer("colornormnet", model=nets["colornormnet"]).fit().save(tmp_path / "cnn.json")
    cfg = InputConfig(patch_size=32, batch_size=4, target="tissue_class", patches_per_image=2,
                      stain=str(tmp_path / "cnn.json"), shuffle_buffer=1)
    x, y, w = next(iter(dataset(records_dir, cfg)))
    assert sorted(y.numpy().tolist()) == [3, 3, 9, 9] and np.all(w.numpy() == 1.0)
    assert tissue_classes()[3] == "monuseg_colon" and tissue_classes()[9] == "tnbc_breast"
    want = _by_hand(np.array([[[150, 100, 170]]], np.uint8))[0, 0] / 255.0
    np.testing.assert_allclose(x.numpy(), np.broadcast_to(want, x.shape), atol=1e-5)


@pytest.mark.slow  # ~15 s of CPU (two traced train steps of the core); CI deselects slow tests
def test_training_core_trains_colorization_and_records_the_stain_in_the_spec(nets, records_dir, tmp_path):
    """The one core (zoo.training.train): Adadelta, the tissue_class target, the colornormnet stain option; the
    checkpoint's spec carries the stain normalizer, and the resumed model keeps its optimizer."""
    from zoo.inference import InferenceSpec
    from zoo.training import ExperimentConfig, train

    stain.get_normalizer("colornormnet", model=nets["colornormnet"]).fit().save(tmp_path / "cnn.json")
    cfg = ExperimentConfig.from_dict({
        "name": "tiny-colorization", "model": "colorization",
        "model_config": {**sys.modules["histozoo_tests_model_harness"].tiny_config("colorization"),
                         "num_classes": 12},
        "input": {"patch_size": 32, "batch_size": 4, "target": "tissue_class", "patches_per_image": 2,
                  "stain": str(tmp_path / "cnn.json")},
        "optimizer": "adadelta", "learning_rate": 1.0, "epochs": 1, "steps_per_epoch": 2, "val_split": "",
        "tracking": {"enabled": False, "log_model": False}})
    result = train(cfg, train_records=records_dir, output_dir=str(tmp_path / "run"), tracking=False, verbose=0)
    assert np.isfinite(result.history["loss"]).all() and result.history["class_ce"][0] > 0
    assert int(result.model.optimizer.iterations) == 2
    spec = InferenceSpec.load(str(tmp_path / "run" / "checkpoints" / "spec.json"))
    assert spec.stain["method"] == "colornormnet" and spec.channels == ("red", "green", "blue")
    resumed = keras.saving.load_model(str(tmp_path / "run" / "checkpoints" / "last.keras"))
    assert isinstance(resumed.optimizer, keras.optimizers.Adadelta) and int(resumed.optimizer.iterations) == 2


@pytest.mark.parametrize("method", [pytest.param("colorization", marks=pytest.mark.slow), "colornormnet"])
def test_exported_serving_graph_gives_the_in_process_pixels(nets, tiles, tmp_path, method):
    """A segmentation model whose spec names the neural normalizer: the SavedModel (which must not need the .keras
    file any more) gives the same probabilities as zoo.inference's in-process forward pass, and the stain step
    matters (they differ from the model without it)."""
    import dataclasses
    import shutil

    import tensorflow as tf

    from serving.export import export
    from zoo.inference import KerasForward, default_spec

    copy = tmp_path / f"{method}.keras"
    shutil.copy(nets[method], copy)
    norm = stain.get_normalizer(method, model=str(copy)).fit(tiles["target"])
    seg = _tiny("unet")
    spec = dataclasses.replace(default_spec(seg), stain=norm.to_json())
    x = np.stack([tiles["monuseg"][:64, :64], tiles["crc"][:64, :64]])
    in_process = KerasForward(seg, spec)(x)
    plain = KerasForward(seg, default_spec(seg))(x)
    folder = export(seg, str(tmp_path / "export"), spec=spec)
    copy.unlink()
    served = tf.saved_model.load(folder).signatures["predict_images"](images=tf.constant(x))["probabilities"]
    np.testing.assert_allclose(served.numpy(), in_process, atol=1e-6)
    assert np.abs(in_process - plain).max() > 1e-4
