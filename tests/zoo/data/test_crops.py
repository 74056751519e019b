"""Nucleus crops (Hu et al. IV.B): centred, sized, white-padded, typed; written as records."""

import numpy as np
import pytest

from zoo.data import records
from zoo.data.build import load_summary
from zoo.data.crops import CropConfig, crops_from_sample, write_crops
from zoo.data.sample import Sample
from zoo.errors import ConfigError, DataError


def _sample():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 200, (60, 70, 3)).astype(np.uint8)
    inst = np.zeros((60, 70), np.int32)
    inst[10:15, 20:23] = 3            # 5 x 3 nucleus
    inst[12, 23] = 4                  # a neighbour touching it (kept inside nucleus 3's box? no: outside its bbox)
    inst[30:70, 40:60] = 5            # 30 x 20 box (rows 30..59): longer edge 30 <= 32, not rescaled
    inst[0:3, 0:48] = 7               # 3 x 48 box: rescaled to 2 x 32
    return Sample(image=img, image_id="im", dataset="synthetic", source_id="src", split="train", instances=inst,
                  instance_ids=np.array([3, 5, 7]), instance_classes=np.array([2, 0, 1]), class_names=("a", "b"),
                  mpp=0.25)


def test_instance_crop_centred_white_padded_and_typed():
    s = _sample()
    crops = {c.image_id: c for c in crops_from_sample(s, CropConfig(size=32))}
    assert sorted(crops) == ["im/n3", "im/n4", "im/n5", "im/n7"]
    c = crops["im/n3"]
    assert c.image.shape == (32, 32, 3) and c.instances.shape == (32, 32)
    oy, ox = (32 - 5) // 2, (32 - 3) // 2  # 13, 14
    np.testing.assert_array_equal(c.image[oy:oy + 5, ox:ox + 3], s.image[10:15, 20:23])
    white = np.ones((32, 32), bool)
    white[oy:oy + 5, ox:ox + 3] = False
    assert (c.image[white] == 255).all()
    assert c.instances.sum() == 15 and (c.instances[oy:oy + 5, ox:ox + 3] == 1).all()
    assert list(c.instance_classes) == [2] and list(c.instance_ids) == [1] and c.source_id == "src"
    assert c.mpp == 0.25 and c.split == "train"
    # a box holding other pixels keeps them as they are (nucleus 4's box is one pixel, inside nobody's box here)
    assert list(crops["im/n5"].instance_classes) == [0]  # unknown type stays 0
    c5 = crops["im/n5"]
    np.testing.assert_array_equal(c5.image[1:31, 6:26], s.image[30:60, 40:60])  # 30 x 20 at (1, 6): no rescale


def test_long_nucleus_rescaled_to_output_size():
    c = {c.image_id: c for c in crops_from_sample(_sample(), CropConfig(size=32))}["im/n7"]
    rows = np.where(c.instances.any(1))[0]
    cols = np.where(c.instances.any(0))[0]
    assert (rows.min(), rows.max()) == (15, 16) and (cols.min(), cols.max()) == (0, 31)  # 2 x 32, centred
    assert (c.image[:15] == 255).all() and (c.image[17:] == 255).all()
    assert c.mpp == pytest.approx(0.25 * 48 / 32)
    c40 = {c.image_id: c for c in crops_from_sample(_sample(), CropConfig(size=40))}["im/n7"]
    assert c40.image.shape == (40, 40, 3) and c40.instances.any(0).sum() == 40


def test_point_crops_native_resolution_white_border():
    img = np.arange(50 * 40 * 3, dtype=np.int64).reshape(50, 40, 3) % 200
    img = img.astype(np.uint8)
    s = Sample(image=img, image_id="p", dataset="synthetic", source_id="p", split="test",
               points_yx=np.array([[2.2, 3.0], [25.0, 20.0]], np.float32), point_classes=np.array([4, 1]))
    a, b = crops_from_sample(s, CropConfig(size=32))
    assert a.image.shape == (32, 32, 3) and a.instances is None
    np.testing.assert_array_equal(a.image[16, 16], img[2, 3])  # the point's pixel at (size//2, size//2)
    assert (a.image[:14] == 255).all() and (a.image[:, :13] == 255).all()  # rows/cols outside the image
    np.testing.assert_array_equal(a.image[14:, 13:], img[0:18, 0:19])
    np.testing.assert_allclose(a.points_yx, [[16.2, 16.0]], atol=1e-5)
    assert list(a.point_classes) == [4] and a.split == "test"
    np.testing.assert_array_equal(b.image, img[9:41, 4:36])


def test_config_and_missing_labels():
    with pytest.raises(ConfigError):
        CropConfig(size=1)
    with pytest.raises(ConfigError):
        CropConfig(source="boxes")
    s = _sample()
    s.points_yx = None
    with pytest.raises(DataError, match="no centre points"):
        crops_from_sample(s, CropConfig(source="points"))


def test_write_crops_round_trip(tmp_path):
    src = tmp_path / "src"
    records.write_shards([_sample()], str(src), "train")
    out = tmp_path / "crops"
    summary = write_crops(str(src), str(out), CropConfig(size=32), progress=False)
    assert summary["splits"]["train"]["images"] == 4 and summary["splits"]["train"]["nuclei"] == 4
    assert load_summary(str(out))["splits"]["train"]["nuclei_by_class"] == {"a": 1, "b": 1, "unknown": 2}
    back = list(records.read_samples(records.list_shards(str(out), "train")))
    assert [b.image_id for b in back] == ["im/n3", "im/n4", "im/n5", "im/n7"]
    assert all(b.image.shape == (32, 32, 3) for b in back)
    assert not [p for p in out.iterdir() if p.name.startswith(".building")]


def test_tnbc_crops_one_per_nucleus(shared_data, tmp_path):
    from zoo.data.readers import get_reader

    reader = get_reader("tnbc")(str(shared_data / "tnbc"))
    s = reader.read(reader.items()[0])
    crops = crops_from_sample(s, CropConfig(size=32))
    assert len(crops) == s.num_instances > 0
    assert all(c.image.shape == (32, 32, 3) and c.instances.max() == 1 for c in crops)
    # every crop's own pixels are the image's pixels of that nucleus (unscaled ones)
    c = next(c for c in crops if c.instances.sum() == (s.instances == int(c.image_id.split("/n")[1])).sum())
    lab = int(c.image_id.split("/n")[1])
    np.testing.assert_array_equal(np.sort(c.image[c.instances == 1], axis=0),
                                  np.sort(s.image[s.instances == lab], axis=0))
