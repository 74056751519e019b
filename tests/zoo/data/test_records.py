"""zoo.data.records: encode / decode round trips (numpy and tf.data), shard writing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zoo.data import records
from zoo.data.sample import Sample
from zoo.errors import DataError


def _sample(**kw) -> Sample:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    inst = np.zeros((12, 10), np.int32)
    inst[1:4, 1:4] = 3
    inst[6:9, 2:5] = 70000 - 4465  # 65535: the largest id the uint16 PNG holds
    inst[8:11, 6:9] = 1000
    base = dict(image=img, image_id="img-7", dataset="synthetic", source_id="pat-1", split="test",
                instances=inst, class_map=(inst > 0).astype(np.uint8) * 2,
                instance_ids=np.array([3, 1000, 65535]), instance_classes=np.array([1, 0, 2]),
                points_yx=np.array([[1.5, 2.25], [10.0, 0.0]], np.float32), point_classes=np.array([2, 0]),
                point_attrs=np.array([1, 3]), tissue_class=4, site="AB", organ="Colon", mpp=0.2454,
                class_names=("a", "b"))
    base.update(kw)
    return Sample(**base)


def _assert_same(a: Sample, b: Sample):
    for f in ("image", "instances", "class_map", "instance_ids", "instance_classes", "points_yx", "point_classes",
              "point_attrs"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None) == (y is None), f
        if x is not None:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=f)
    for f in ("image_id", "dataset", "source_id", "split", "tissue_class", "site", "organ", "class_names"):
        assert getattr(a, f) == getattr(b, f), f
    assert a.mpp == pytest.approx(b.mpp)


def test_round_trip_keeps_non_consecutive_ids_points_and_meta():
    s = _sample()
    back = records.to_sample(records.encode(s))
    _assert_same(s, back)
    assert back.num_instances == 3 and sorted(np.unique(back.instances)) == [0, 3, 1000, 65535]


def test_round_trip_of_an_empty_mask_and_an_unlabelled_image():
    empty = _sample(instances=np.zeros((12, 10), np.int32), class_map=None, instance_ids=None,
                    instance_classes=None, points_yx=np.zeros((0, 2), np.float32), point_classes=np.zeros(0, int),
                    point_attrs=None)
    back = records.to_sample(records.encode(empty))
    _assert_same(empty, back)
    assert back.num_instances == 0 and back.num_points == 0
    bare = _sample(instances=None, class_map=None, instance_ids=None, instance_classes=None, points_yx=None,
                   point_classes=None, point_attrs=None, class_names=())
    _assert_same(bare, records.to_sample(records.encode(bare)))


def test_instance_id_above_uint16_is_an_error():
    inst = np.zeros((12, 10), np.int32)
    inst[0, 0] = 70000
    with pytest.raises(DataError, match="img-7: instance ids must lie in 0..65535"):
        records.encode(_sample(instances=inst))


@pytest.mark.parametrize("empty", [False, True])
def test_tf_data_decode_equals_to_sample(empty):
    import tensorflow as tf

    s = _sample() if not empty else _sample(instances=None, class_map=None, instance_ids=None,
                                            instance_classes=None, points_yx=None, point_classes=None,
                                            point_attrs=None)
    rec = records.encode(s)
    ref = records.to_sample(rec)
    d = next(iter(tf.data.Dataset.from_tensors(rec).map(records.decode)))
    np.testing.assert_array_equal(d["image"].numpy(), ref.image)
    assert bool(d["has_instances"]) == (not empty) and bool(d["has_class_map"]) == (not empty)
    np.testing.assert_array_equal(d["instances"].numpy(), ref.instances if not empty else np.zeros((12, 10)))
    np.testing.assert_array_equal(d["class_map"].numpy(), ref.class_map if not empty else np.zeros((12, 10)))
    for k in ("instance_ids", "instance_classes", "points_yx", "point_classes", "point_attrs"):
        want = getattr(ref, k)
        want = np.zeros((0, 2) if k == "points_yx" else 0) if want is None else want
        np.testing.assert_array_equal(d[k].numpy(), want, err_msg=k)
    assert int(d["tissue_class"]) == ref.tissue_class and float(d["mpp"]) == pytest.approx(ref.mpp)
    for k in ("dataset", "image_id", "source_id", "site", "organ", "split"):
        assert d[k].numpy().decode() == getattr(ref, k)
    assert tuple(json.loads(d["class_names"].numpy())) == ref.class_names


def test_write_and_read_shards(tmp_path):
    samples = [_sample(image_id=f"i{k}") for k in range(5)]
    paths = records.write_shards(samples, str(tmp_path), "train", per_shard=2)
    assert [p.rsplit("/", 1)[1] for p in paths] == [f"train-0000{k}.tfrecord.gz" for k in range(3)]
    assert records.list_shards(str(tmp_path), "train") == paths
    assert [s.image_id for s in records.read_samples(paths)] == [f"i{k}" for k in range(5)]
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(DataError, match="no record shards for split 'test'"):
        records.list_shards(str(tmp_path), "test")
