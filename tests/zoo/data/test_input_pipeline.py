"""zoo.data.input: config validation, the training / evaluation datasets on synthetic and real (TNBC) records."""

import json

import numpy as np
import pytest
import tensorflow as tf

from zoo.data import records
from zoo.data.input import InputConfig, dataset
from zoo.data.sample import Sample
from zoo.errors import ConfigError, DataError


# ---------------------------------------------------------------- synthetic records

def _square_sample(k: int, size=(40, 48), typed=False, mpp=0.0, split="train") -> Sample:
    """Image whose red channel encodes the instance map: nucleus j (a 6x6 square) has red = 20 * j."""
    h, w = size
    inst = np.zeros((h, w), np.int32)
    img = np.full((h, w, 3), 230, np.uint8)
    j = 0
    for r in range(3, h - 8, 10):
        for c in range(3 + k % 3, w - 8, 11):
            j += 1
            inst[r:r + 6, c:c + 6] = j
    img[:, :, 0] = np.where(inst > 0, 20 * inst, 0)
    kw = {}
    if typed:
        ids = np.arange(1, j + 1)
        kw = dict(instance_ids=ids, instance_classes=(ids % 3), class_names=("a", "b"))
    return Sample(image=img, image_id=f"img{k}", dataset="synthetic", source_id=f"s{k % 2}", split=split,
                  instances=inst, mpp=mpp, **kw)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    records.write_shards([_square_sample(k) for k in range(4)], str(d), "train")
    records.write_shards([_square_sample(9, (37, 50), split="test")], str(d), "test")
    (d / "summary.json").write_text(json.dumps({"dataset": "synthetic", "splits": {}}))
    return d


@pytest.fixture(autouse=True)
def _fresh_global_seed():
    """``dataset()``'s shuffles combine their op seeds with TF's global seed, which an earlier test in the same
    process (any training run: keras.utils.set_random_seed) may have set; start each test as a fresh process does, so
    the outcome does not depend on test order (``epochs()``, the training stream, ignores the global seed)."""
    tf.random.set_seed(None)
    yield


def _batches(ds, n):
    return [tuple(t.numpy() for t in b) for b in ds.take(n)]


# ---------------------------------------------------------------- config

def test_config_round_trip_and_validation():
    cfg = InputConfig(target="inner_contour", types="merged", num_types=3, weight_map="unet", affine=True, w0=5)
    assert cfg.w0 == 5.0 and isinstance(cfg.w0, float) and cfg.num_classes == 5
    assert InputConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert InputConfig().num_classes == 2 and InputConfig(target="three_class").num_classes == 3
    assert InputConfig(target="points", num_types=4).num_classes == 5
    bad = [dict(target="four_class"), dict(patch_size=0), dict(batch_size=True), dict(weight_map="dist"),
           dict(target="points", weight_map="unet"), dict(types="merged", num_types=2), dict(types="extra"),
           dict(blur_prob=2.0), dict(flip="yes"), dict(num_parallel_calls=0), dict(sigma=0)]
    for kw in bad:
        with pytest.raises(ConfigError, match="InputConfig"):
            InputConfig(**kw)
    with pytest.raises(ConfigError, match="unknown option"):
        InputConfig.from_dict({"patch_size": 64, "patchsize": 3})


def test_bad_sources_raise_project_errors(tmp_path, synth):
    with pytest.raises(DataError, match="no record shards"):
        dataset(str(tmp_path), InputConfig())
    with pytest.raises(DataError, match="no such record shard"):
        dataset([str(tmp_path / "missing.tfrecord.gz")], InputConfig())
    with pytest.raises(DataError, match="needs centre points"):
        dataset(str(synth), InputConfig(target="points"))
    with pytest.raises(ConfigError, match="fold"):
        dataset(records.list_shards(str(synth), "train"), InputConfig(), fold=1)
    with pytest.raises(DataError, match="no such record shard"):
        dataset([str(tmp_path / "none-*.tfrecord.gz")], InputConfig())


def test_shard_list_and_glob_sources_equal_the_data_dir(synth):
    cfg = InputConfig(patch_size=16, batch_size=2, seed=4)
    a = _batches(dataset(str(synth), cfg), 1)[0][0]
    b = _batches(dataset(records.list_shards(str(synth), "train"), cfg), 1)[0][0]
    c = _batches(dataset([str(synth / "train-*.tfrecord.gz")], cfg), 1)[0][0]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


# ---------------------------------------------------------------- training

def test_training_batches_shapes_and_alignment(synth):
    """Red channel encodes the instance map; after flips/rot90 (exact) y must be 1 exactly where red > 0."""
    cfg = InputConfig(patch_size=32, batch_size=4, patches_per_image=3, target="binary", seed=3)
    (x, y, w), = _batches(dataset(str(synth), cfg), 1)
    assert x.shape == (4, 32, 32, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert y.shape == (4, 32, 32) and y.dtype == np.int32 and w.shape == (4, 32, 32) and w.dtype == np.float32
    np.testing.assert_array_equal(y, (x[..., 0] > 0).astype(np.int32))
    np.testing.assert_array_equal(w, 1.0)
    # 3-class: the boundary ring of each 6x6 square (width 1) -> 20 boundary + 16 interior pixels per whole square
    cfg3 = InputConfig(patch_size=32, batch_size=4, target="three_class", boundary_width=1, seed=3)
    (x3, y3, _), = _batches(dataset(str(synth), cfg3), 1)
    np.testing.assert_array_equal(y3 > 0, x3[..., 0] > 0)
    assert (y3 == 2).any() and (y3 == 1).any()


def test_full_augmentation_keeps_targets_on_the_pattern(synth):
    cfg = InputConfig(patch_size=32, batch_size=8, target="binary", affine=True, elastic=True, elastic_alpha=1.5,
                      elastic_sigma=6.0, seed=5)
    (x, y, _), = _batches(dataset(str(synth), cfg), 1)
    red, grey = x[..., 0], x[..., 1]
    from scipy import ndimage
    # pixels whose whole 3x3 neighbourhood is nucleus-coloured (or background-coloured) in the warped image
    inside = np.stack([ndimage.binary_erosion(r > 0, np.ones((3, 3)), border_value=1) for r in red])
    outside = np.stack([ndimage.binary_erosion(r == 0, np.ones((3, 3)), border_value=1) for r in red])
    assert inside.sum() > 100 and outside.sum() > 100
    assert (y[inside] == 1).mean() > 0.99 and (y[outside] == 0).mean() > 0.99
    assert (y == (red > 0)).mean() > 0.9
    assert (grey > 0).all()


def test_same_seed_same_batches_different_seed_different(synth):
    cfg = InputConfig(patch_size=24, batch_size=4, target="three_class", weight_map="unet", affine=True,
                      elastic=True, blur=True, color_jitter=True, hed_jitter=True, seed=11)
    a = _batches(dataset(str(synth), cfg), 2)
    b = _batches(dataset(str(synth), cfg), 2)
    for ta, tb in zip(a, b):
        for u, v in zip(ta, tb):
            np.testing.assert_array_equal(u, v)
    c = _batches(dataset(str(synth), InputConfig.from_dict({**cfg.to_dict(), "seed": 12})), 2)
    assert not np.array_equal(a[0][0], c[0][0])
    ds = dataset(str(synth), cfg)
    e1, e2 = _batches(ds, 1), _batches(ds, 1)  # a second pass (epoch) draws new patches
    assert not np.array_equal(e1[0][0], e2[0][0])


def test_weight_map_and_typed_outputs(tmp_path):
    records.write_shards([_square_sample(k, typed=True) for k in range(2)], str(tmp_path), "train")
    cfg = InputConfig(patch_size=32, batch_size=2, target="inner_contour", boundary_width=1, weight_map="unet",
                      types="extra", num_types=2, rot90=False, flip=False, seed=1)
    (x, y, w), = dataset(str(tmp_path), cfg).take(1)
    assert set(y) == {"target", "types"} and set(w) == {"target", "types"}
    inst_red = (x.numpy()[..., 0] * 255).round().astype(int)
    inst = np.where(inst_red > 0, inst_red // 20, 0)  # red = 20 * id
    types = y["types"].numpy()
    known = inst > 0
    np.testing.assert_array_equal(types[known], inst[known] % 3)
    assert (w["types"].numpy()[known & (types == 0)] == 0).all()
    wt = w["target"].numpy()
    assert wt.min() >= 1.0 and wt.max() <= 11.0 and wt.max() > 2.0  # squares 5 px apart: border weights
    merged = InputConfig.from_dict({**cfg.to_dict(), "types": "merged"})
    (x, y, w), = dataset(str(tmp_path), merged).take(1)
    y, w = y.numpy(), w.numpy()
    assert set(np.unique(y)) <= {0, 1, 2, 3} and (y == 3).any()  # K = 2: inner 1..2, contour 3
    unknown_inner = (x.numpy()[..., 0] > 0) & (y == 0)
    assert unknown_inner.any() and (w[unknown_inner] == 0).all()


def test_points_target_discs_follow_the_points(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.uniform(5, 55, (12, 2)).astype(np.float32)
    img = np.zeros((60, 60, 3), np.uint8)
    yy, xx = np.mgrid[:60, :60]
    for p in pts:
        img[(yy - p[0]) ** 2 + (xx - p[1]) ** 2 <= 9] = 255
    s = Sample(image=img, image_id="p", dataset="synthetic", source_id="p", split="train", points_yx=pts,
               point_classes=np.array([1, 2] * 6), class_names=("a", "b"))
    records.write_shards([s], str(tmp_path), "train")
    cfg = InputConfig(patch_size=48, batch_size=4, target="points", point_radius=2.0, num_types=2, affine=True,
                      affine_scale=0.0, affine_shear=0.0, seed=2)
    (x, y, w), = _batches(dataset(str(tmp_path), cfg), 1)
    assert set(np.unique(y)) == {0, 1, 2}
    np.testing.assert_array_equal(w > 0, y > 0)
    assert x[..., 0][y > 0].mean() > 0.9  # discs (r=2) sit inside the white r=3 dots


# ---------------------------------------------------------------- resampling

def test_mpp_resampling(tmp_path):
    from zoo.data.input import _prepare

    records.write_shards([_square_sample(0, (40, 48), mpp=0.5)], str(tmp_path), "train")
    raw = next(records.iter_records(records.list_shards(str(tmp_path), "train")))
    d = _prepare(records.decode(raw), InputConfig(mpp=0.25))
    assert tuple(d["image"].shape) == (80, 96, 3) and float(d["scale"]) == 2.0
    lab = d["label"].numpy()
    assert int(lab.max()) == int(_square_sample(0).instances.max())
    assert (lab > 0).sum() == 4 * (_square_sample(0).instances > 0).sum()


# ---------------------------------------------------------------- real data

def test_tnbc_fold_training_and_evaluation(tnbc_records):
    cfg = InputConfig(patch_size=128, batch_size=4, patches_per_image=1, target="three_class", weight_map="unet",
                      affine=True, elastic=True, hed_jitter=True, seed=0)
    x, y, w = next(iter(dataset(str(tnbc_records), cfg, split="train", fold=1)))
    assert x.shape == (4, 128, 128, 3) and set(np.unique(y.numpy())) == {0, 1, 2}
    assert 1.0 <= w.numpy().min() and w.numpy().max() <= 11.0
    from zoo.evaluation import iter_eval_samples

    ids = sorted(s.image_id for s in iter_eval_samples(str(tnbc_records), "test", fold=1))
    assert ids == [f"01_{i}" for i in range(1, 8)]  # patient 01's 7 images (PROVENANCE)


# ---------------------------------------------------------------- epochs: a function of (seed, epoch, step)

def test_epoch_stream_is_a_function_of_seed_epoch_and_step(synth):
    """A stream started at epoch 2 (or at step 1 of epoch 2) reads exactly what the stream from epoch 0 read there:
    a resumed run sees the uninterrupted run's batches (issue 16)."""
    from zoo.data.input import epochs

    cfg = InputConfig(patch_size=16, batch_size=2, patches_per_image=2, shuffle_buffer=4, affine=True,
                      color_jitter=True, seed=7)
    spe = 3  # 4 images x 2 patches = 4 batches a pass: epochs do not line up with passes
    full = _batches(epochs(str(synth), cfg, spe), 4 * spe)
    late = _batches(epochs(str(synth), cfg, spe, first_epoch=2), 2 * spe)
    mid = _batches(epochs(str(synth), cfg, spe, first_epoch=2, skip=1, count=1), 10)
    assert len(mid) == spe - 1
    for got, want in list(zip(late, full[2 * spe:])) + list(zip(mid, full[2 * spe + 1:3 * spe])):
        for u, v in zip(got, want):
            np.testing.assert_array_equal(u, v)
    assert not np.array_equal(full[0][0], full[spe][0])  # epochs differ from each other
    other = _batches(epochs(str(synth), InputConfig.from_dict({**cfg.to_dict(), "seed": 8}), spe), 1)
    assert not np.array_equal(full[0][0], other[0][0])
    with pytest.raises(ConfigError, match="skip"):
        epochs(str(synth), cfg, spe, skip=spe)


def test_epoch_stream_ignores_the_global_seed_even_zero(synth):
    """The run's Keras seed (TF's global seed) is not part of the stream; a global seed of 0 with tensor shuffle
    seeds used to be a TF error in graph mode."""
    from zoo.data.input import epochs

    cfg = InputConfig(patch_size=16, batch_size=2, shuffle_buffer=4, seed=0)
    tf.random.set_seed(0)
    a = _batches(epochs(str(synth), cfg, 2), 4)
    tf.random.set_seed(123)
    b = _batches(epochs(str(synth), cfg, 2), 4)
    for ta, tb in zip(a, b):
        for u, v in zip(ta, tb):
            np.testing.assert_array_equal(u, v)
