"""zoo.inference: the InferenceSpec contract and the one inference function (resampling, typed classes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zoo.errors import ConfigError, DataError
from zoo.inference import InferenceSpec, Prediction, predict, resample_factor
from zoo.postprocess.config import PostprocessConfig


def test_spec_round_trips_and_resolves_auto(tmp_path):
    two = InferenceSpec(channels=("background", "nucleus"), mpp=0.5, divisor=16)
    assert two.postprocess.method == "dynamics_watershed"  # auto, resolved for 2 channels
    three = InferenceSpec(channels=("background", "interior", "boundary"), postprocess={"method": "auto"})
    assert three.postprocess.method == "three_class"
    assert InferenceSpec.from_dict(json.loads(two.to_json())) == two
    two.save(str(tmp_path / "spec.json"))
    assert InferenceSpec.load(str(tmp_path / "spec.json")) == two
    assert not [p for p in tmp_path.iterdir() if p.name != "spec.json"]  # atomic: no temp file left


@pytest.mark.parametrize("fields,match", [
    ({"channels": ("background",)}, "at least 2 output channels"),
    ({"mpp": -1}, "spec.mpp"),
    ({"mpp": "fast"}, "spec.mpp"),
    ({"divisor": 0}, "spec.divisor"),
    ({"tile_size": 2.5}, "spec.tile_size"),
    ({"postprocess": {"method": "three_class"}}, "needs at least 3 output channels"),
    ({"postprocess": {"method": "threshold", "treshold": 0.4}}, "postprocess.treshold: not an option of threshold"),
    ({"channels": ("background", "inner:epithelial", "contour"), "class_names": ("stroma",)}, "not in class_names"),
])
def test_bad_spec_fields_are_one_line_errors(fields, match):
    with pytest.raises(ConfigError, match=match) as e:
        InferenceSpec(**fields)
    assert "\n" not in str(e.value)


def test_spec_file_errors_name_the_file(tmp_path):
    p = tmp_path / "spec.json"
    p.write_text(json.dumps({"format": "histozoo.inference_spec", "version": 1, "channels": ["a", "b"], "dpi": 3}))
    with pytest.raises(DataError, match=r"spec.json: unknown inference spec keys \['dpi'\]"):
        InferenceSpec.load(str(p))
    p.write_text("{}")
    with pytest.raises(DataError, match="spec.json: not a histozoo inference spec"):
        InferenceSpec.load(str(p))
    with pytest.raises(DataError, match="missing.json: no such file"):
        InferenceSpec.load(str(tmp_path / "missing.json"))


def test_override_says_each_change_in_one_line():
    said = []
    spec = InferenceSpec(mpp=0.5).override({"mpp": 0.25, "class_names": None}, say=said.append)
    assert spec.mpp == 0.25 and said == ["histozoo: overriding the model's inference spec: mpp 0.5 -> 0.25"]
    with pytest.raises(ConfigError, match="unknown inference spec fields"):
        spec.override({"resolution": 1})


def test_resample_factor_tolerance():
    spec = InferenceSpec(mpp=0.5)
    assert resample_factor(spec, 0.25) == 0.5 and resample_factor(spec, 1.0) == 2.0
    assert resample_factor(spec, 0.505) == 1.0  # within 2 %: used as it is
    assert resample_factor(spec, None) == 1.0 and resample_factor(InferenceSpec(), 0.25) == 1.0


def test_typed_channels_give_each_instance_its_majority_type():
    # Qu et al.'s layout: background, the inner part of each type, the contour of all nuclei
    spec = InferenceSpec(channels=("background", "inner:epithelial", "inner:inflammatory", "contour"),
                         class_names=("epithelial", "inflammatory"), postprocess={"method": "inner_contour",
                                                                                  "radius": 0})
    assert spec.type_channels() == [(1, 1), (2, 2)]
    p = np.zeros((6, 9, 4), np.float32)
    p[..., 0] = 1
    # nucleus 1 (columns 1-3): 4 pixels epithelial, 2 inflammatory -> epithelial; nucleus 2 (columns 6-7): inflammatory
    p[1:4, 1:3] = (0, 0.8, 0.2, 0)
    p[1:3, 3] = (0, 0.3, 0.7, 0)
    p[2:4, 6:8] = (0, 0.1, 0.9, 0)
    pred = predict(None, spec, np.zeros((6, 9, 3), np.uint8), probabilities=p)
    assert isinstance(pred, Prediction) and pred.num_instances == 2
    assert pred.classes.tolist() == [0, 1, 2]
    assert [pred.class_names[t - 1] for t in pred.classes[1:]] == ["epithelial", "inflammatory"]


def test_predict_rejects_a_non_rgb_image():
    with pytest.raises(ConfigError, match="uint8 RGB image"):
        predict(None, InferenceSpec(), np.zeros((8, 8), np.uint8))


def _darkness_model(smooth: int = 7, level: float = 2.2, slope: float = 40.0):
    """A fixed (untrained, deterministic) nucleus detector: P(nucleus) > 0.5 where the ``smooth``-pixel mean of
    R + G + B (in [0, 1]) is below ``level`` (TNBC's pale nuclei: median 2.1-2.3 inside, 2.3-2.5 outside), so what it
    finds depends on the pixel size: a 2x image is not the same input."""
    import keras

    x = keras.Input((None, None, 3))
    m = keras.layers.AveragePooling2D(smooth, strides=1, padding="same")(x)
    head = keras.layers.Conv2D(2, 1, name="darkness")
    y = keras.layers.Softmax()(head(m))
    model = keras.Model(x, y, name="darkness")
    w = np.zeros((1, 1, 3, 2), np.float32)
    w[..., 0], w[..., 1] = slope / 2, -slope / 2
    head.set_weights([w, np.array([-slope * level / 2, slope * level / 2], np.float32)])
    return model


def test_resampling_gives_the_model_its_own_resolution(tnbc_patient09):
    """A model at 0.5 µm/px gives the same instances on an image given at 0.25 µm/px (2x the pixels) as on the image
    at 0.5, within AJI >= 0.85 on each of TNBC patient 09's images (measured 0.91-0.98); fed the 2x image as it is,
    it does not (measured AJI 0.27-0.64 against its native instances)."""
    from skimage.transform import resize

    from zoo.metrics.instance import aji

    model = _darkness_model()
    spec = InferenceSpec(mpp=0.5, divisor=1, postprocess={"method": "dynamics_watershed", "min_size": 30})
    for s in tnbc_patient09:
        h, w = s.image.shape[:2]
        native = predict(model, spec, s.image, mpp=0.5)
        big = np.clip(np.round(resize(s.image, (2 * h, 2 * w), order=1, preserve_range=True)), 0, 255)
        big = big.astype(np.uint8)
        fine = predict(model, spec, big, mpp=0.25)
        assert fine.instances.shape == (2 * h, 2 * w) and fine.probabilities.shape == (2 * h, 2 * w, 2)
        assert fine.mpp == 0.25
        back = resize(fine.instances, (h, w), order=0, preserve_range=True, anti_aliasing=False).astype(np.int32)
        assert native.num_instances > 20
        assert aji(native.instances, back) >= 0.85, s.image_id
        unaware = predict(model, spec.replace(mpp=0.0), big)  # the mistake the spec prevents
        back_u = resize(unaware.instances, (h, w), order=0, preserve_range=True, anti_aliasing=False)
        assert aji(native.instances, back_u.astype(np.int32)) < 0.75, s.image_id


def test_postprocess_config_round_trip_and_apply():
    cfg = PostprocessConfig.from_dict({"method": "threshold", "threshold": 0.3, "min_size": 2})
    assert cfg.to_dict() == {"method": "threshold", "threshold": 0.3, "min_size": 2} and cfg.in_graph
    assert not PostprocessConfig.from_dict({"method": "threshold", "connectivity": 4}).in_graph
    assert PostprocessConfig.from_dict({"method": "dynamics_watershed", "lam": 7.5}).params["lam"] == 7.5
    with pytest.raises(ConfigError, match=r"postprocess.min_size \(threshold\) must be an integer"):
        PostprocessConfig.from_dict({"method": "threshold", "min_size": "big"})
    from zoo.postprocess.config import apply

    p1 = np.array([[0.9, 0.8, 0.1, 0.7], [0.1, 0.1, 0.1, 0.6]], np.float32)
    got = apply(np.stack([1 - p1, p1], -1), cfg)
    np.testing.assert_array_equal(got, [[1, 1, 0, 2], [0, 0, 0, 2]])  # two 2-pixel blobs, both >= min_size 2
    p1[0, 0] = 0.2  # the left blob shrinks to 1 pixel: dropped, the right one renumbered 1
    np.testing.assert_array_equal(apply(np.stack([1 - p1, p1], -1), cfg),
                                  [[0, 0, 0, 1], [0, 0, 0, 1]])


@pytest.mark.parametrize("shape,size,overlap", [((70, 90, 3), 32, 8), ((20, 50), 32, 0), ((64, 64, 2), 32, 16)])
def test_tile_untile_round_trip(shape, size, overlap):
    from zoo.inference import tile, untile

    img = np.random.default_rng(0).random(shape).astype(np.float32)
    tiles, info = tile(img, size, overlap)
    assert tiles.shape[1:3] == (size, size)
    starts = info["starts"].numpy()
    assert starts[:, 0].max() + size >= shape[0] or shape[0] < size
    np.testing.assert_allclose(untile(tiles, info).numpy(), img, atol=1e-6)
    np.testing.assert_allclose(untile(tiles, info, overlap // 2).numpy(), img, atol=1e-6)  # cores cover it
    with pytest.raises(ConfigError):
        tile(img, 8, 8)


def test_tiled_inference_equals_one_pass_for_a_pointwise_model(tnbc_patient09):
    """spec.tile_size: a 512 x 512 TNBC image in 128-pixel tiles overlapping by 16 gives the one-pass probabilities
    (to float rounding) and the same instances, for a model whose receptive field (7 px) fits in the overlap."""
    model = _darkness_model()
    whole = InferenceSpec(divisor=1, postprocess={"method": "threshold", "min_size": 30})
    tiled = whole.replace(tile_size=128, tile_overlap=16)
    img = tnbc_patient09[2].image
    a, b = predict(model, whole, img), predict(model, tiled, img)
    np.testing.assert_allclose(b.probabilities, a.probabilities, atol=1e-5)
    np.testing.assert_array_equal(b.instances, a.instances)
    assert a.num_instances > 20
    with pytest.raises(ConfigError, match="tile_overlap must be smaller"):
        InferenceSpec(tile_size=16, tile_overlap=16)
