"""The interactive input mode (simulated clicks on instance maps) and two steps of the ONE training core on it; the
trained checkpoint reloads through zoo.interactive.load and segments exactly as the model in memory."""

import numpy as np
import pytest
import tensorflow as tf

from zoo import interactive
from zoo.data import records
from zoo.data.input import InputConfig, dataset
from zoo.data.sample import Sample
from zoo.errors import ConfigError
from zoo.interactive.maps import simulated_clicks
from zoo.training.config import ExperimentConfig
from zoo.training.train import train


def _instances():
    inst = np.zeros((40, 40), np.int32)
    inst[4:14, 4:14] = 3  # 10 x 10
    inst[20:30, 22:36] = 7  # 10 x 14
    return inst


@pytest.mark.parametrize("k", range(8))
def test_simulated_clicks_on_a_hand_made_map(k):
    """Radius 0.5: each disk is its click's pixel. The target is exactly one nucleus; 1-3 positive clicks at least
    2 px inside it, 0-3 negative ones outside it within 15 px; the previous mask is empty, or the nucleus grown or
    shrunk by 1-3 px, or shifted by up to 6 px."""
    inst = _instances()
    extra, y = simulated_clicks(tf.constant(inst), tf.constant([5, k], tf.int64), 3, 3, 0.5)
    extra, y = extra.numpy(), y.numpy().astype(bool)
    ids = np.unique(inst[y])
    assert len(ids) == 1 and ids[0] > 0 and np.array_equal(y, inst == ids[0])
    pos, neg, prev = extra[..., 0] > 0, extra[..., 1] > 0, extra[..., 2] > 0
    ys, xs = np.nonzero(y)
    inner = np.zeros_like(y)
    inner[ys.min() + 2:ys.max() - 1, xs.min() + 2:xs.max() - 1] = True  # the rectangle shrunk by 2 px
    assert 1 <= pos.sum() <= 3 and not (pos & ~inner).any()
    near = np.zeros_like(y)
    near[max(ys.min() - 15, 0):ys.max() + 16, max(xs.min() - 15, 0):xs.max() + 16] = True
    assert neg.sum() <= 3 and not (neg & y).any() and not (neg & ~near).any()
    area = prev.sum()
    grown, shrunk = area > y.sum() and prev[y].all(), 0 < area < y.sum() and not prev[~y].any()
    shifted = any(np.array_equal(prev, np.roll(y, (dy, dx), (0, 1))) for dy in range(-6, 7) for dx in range(-6, 7))
    assert area == 0 or grown or shrunk or shifted


def test_a_patch_without_nuclei_gives_no_clicks():
    extra, y = simulated_clicks(tf.zeros((16, 16), tf.int32), tf.constant([0, 0], tf.int64), 3, 3, 2.0)
    assert float(tf.reduce_sum(extra)) == 0 and int(tf.reduce_sum(y)) == 0


def test_input_config_checks_the_interactive_mode():
    with pytest.raises(ConfigError, match="interactive"):
        InputConfig(target="three_class", interactive=True)
    with pytest.raises(ConfigError, match="interactive"):
        InputConfig(interactive=True, max_positive_clicks=0)


def _sample(k):
    rng = np.random.default_rng(k)
    inst = _instances()
    image = (rng.random((40, 40, 3)) * 60 + 180).astype(np.uint8)
    image[inst > 0] = (90, 40, 140)
    return Sample(image=image, image_id=f"img{k}", dataset="handmade", source_id=f"s{k}", split="train",
                  instances=inst.astype(np.uint16))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return records.write_shards([_sample(k) for k in range(2)], str(tmp_path_factory.mktemp("records")), "train")


def test_interactive_batches(shards):
    cfg = InputConfig(patch_size=32, batch_size=4, patches_per_image=2, interactive=True, shuffle_buffer=1)
    x, y, w = next(iter(dataset(shards, cfg)))
    assert x.shape == (4, 32, 32, 6) and y.shape == (4, 32, 32) and w.shape == (4, 32, 32)
    assert set(np.unique(y.numpy())) <= {0, 1} and float(tf.reduce_min(w)) == 1.0
    pos = x.numpy()[..., 3] > 0
    for b in range(4):  # every example with a target object has a positive click touching it
        if y.numpy()[b].any():
            assert (pos[b] & (y.numpy()[b] > 0)).any()


def test_two_steps_of_the_training_core_then_load(shards, tmp_path):
    cfg = ExperimentConfig.from_dict({
        "name": "interactive-test", "model": "interactive_hrnet",
        "model_config": {"width": 4, "branches": 2, "stem_downsample": 1, "click_radius": 2.0},
        "val_split": "", "epochs": 1, "steps_per_epoch": 2, "learning_rate": 1e-3,
        "input": {"patch_size": 32, "batch_size": 2, "patches_per_image": 2, "interactive": True,
                  "click_radius": 2.0, "shuffle_buffer": 1},
        "tracking": {"enabled": False}})
    res = train(cfg, train_records=shards, output_dir=str(tmp_path / "run"), verbose=0)
    assert int(res.model.optimizer.iterations) == 2 and np.isfinite(res.history["loss"]).all()
    seg = interactive.load(str(tmp_path / "run" / "checkpoints" / "last.keras"), crop_size=32)
    image = _sample(0).image
    np.testing.assert_array_equal(seg.segment(image, [(8, 8, True)]),
                                  interactive.load(res.model, crop_size=32).segment(image, [(8, 8, True)]))
    # the .keras file rebuilt with the full 6-channel input (the export signature; the shared harness in
    # tests/zoo/models checks the SavedModel export and the reload in a fresh process)
    assert seg.model.get_build_config()["input_shape"] == [None, None, None, 6]
