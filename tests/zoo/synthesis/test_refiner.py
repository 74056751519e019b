"""The SimGAN refiner (zoo.models.simgan, zoo.losses.simgan, zoo.training.gan's refiner step): R and D build with
the papers' shapes, two steps of the one training core on ``histozoo synth --include-real`` records, .keras reload
and SavedModel export (the shared harness's save_and_export), the loss terms by hand, and the L1 term keeping a
tiny case's nuclear mask."""

import pathlib

import numpy as np
import pytest

import keras

from zoo import models



def _tiny(harness, **changes):
    keras.utils.set_random_seed(0)
    model = models.build("simgan_refiner", {**harness.tiny_config("simgan_refiner"), **changes})
    model.build((None, None, None, 3))
    return model


def test_builds_r_and_d_fully_convolutional(harness):
    model = _tiny(harness)
    x = np.random.default_rng(0).random((2, 21, 19, 3), dtype=np.float32)
    out = np.asarray(model(x))
    assert out.shape == x.shape and out.min() >= 0.0 and out.max() <= 1.0  # any size: stride 1, [0, 1] out
    logits = np.asarray(model.discriminate(x * 2 - 1))
    assert logits.shape == (2, 6, 5, 1)  # two stride-2 convs: one logit per local patch
    r_ids = {id(v) for v in model.refiner_variables()}
    d_ids = {id(v) for v in model.discriminator_variables()}
    assert r_ids and d_ids and not r_ids & d_ids
    assert {id(v) for v in model.trainable_variables} == r_ids | d_ids
    assert tuple(model.history_buffer.shape) == (6, 16, 16, 3) and not model.history_buffer.trainable
    harness.check_config_round_trip(model)
    d = models.get("simgan_refiner").config_class()
    assert (d.filters, d.blocks, d.d_filters) == (64, 4, (96, 64, 32, 32))  # Shrivastava et al.'s appendix


def test_losses_by_hand():
    from zoo.losses import get_loss

    loss = get_loss("simgan", lambda_reg=2.0)
    zero = np.zeros((2, 1, 1, 1), np.float32)  # D = sigmoid(0) = 0.5 on every patch
    # L_D: mean -log(1 - 0.5) over the 1 real sample + mean -log(0.5) over the 1 refined one = 2 log 2
    assert float(loss.discriminator_loss(zero, [1.0, 0.0], zero, [0.0, 1.0])) == pytest.approx(2 * np.log(2),
                                                                                               rel=1e-6)
    a = np.zeros((2, 2, 2, 3), np.float32)
    b = a + np.array([0.1, 0.5], np.float32)[:, None, None, None]
    total, adv, l1 = loss.refiner_loss(zero, b, a, [1.0, 0.0])  # only sample 0 is synthetic: |0.1|
    assert float(adv) == pytest.approx(np.log(2), rel=1e-6) and float(l1) == pytest.approx(0.1, rel=1e-6)
    assert float(total) == pytest.approx(np.log(2) + 2.0 * 0.1, rel=1e-6)


def test_two_core_steps_on_synth_records_then_reload_and_export(harness, real_folder, tmp_path):
    from zoo.synthesis import SynthesisConfig
    from zoo.synthesis.dataset import write_synthetic
    from zoo.training import ExperimentConfig, train

    data = tmp_path / "s_plus_u"
    write_synthetic(str(real_folder), 4, str(data), SynthesisConfig(tile_size=32, nuclei_min=3, nuclei_max=5),
                    include_real=True, progress=False)
    repo = pathlib.Path(__file__).parents[3]
    cfg = ExperimentConfig.load(str(repo / "configs/synthesis/refiner.yaml"))
    d = cfg.to_dict()
    d.update(data_dir=str(data), model_config=harness.tiny_config("simgan_refiner"), epochs=1, steps_per_epoch=2,
             input={**d["input"], "patch_size": 16, "batch_size": 4, "patches_per_image": 1},
             tracking={**d["tracking"], "enabled": False, "log_model": False})
    res = train(ExperimentConfig.from_dict(d), output_dir=str(tmp_path / "run"), verbose=0)
    model = res.model
    assert int(model.r_optimizer.iterations) == 2 and int(model.d_optimizer.iterations) == 2
    h = res.history
    assert all(np.isfinite(h[k]).all() for k in ("loss", "d_loss", "adv_loss", "l1"))
    assert 0 < h["real_fraction"][0] < 1  # both kinds in the stream (3 real images + 4 synthetic ones)
    assert 0 < int(model.history_filled) <= 6
    x = np.random.default_rng(3).random((2, 24, 24, 3), dtype=np.float32)
    preds = model.predict(x, verbose=0)
    paths = harness.save_and_export(model, str(tmp_path), "refiner")
    # reloaded in this process (the shared harness's fresh-process reload costs ~10 s more on 2 loaded cores; the
    # registration it guards is the same decorator every model uses, checked there for the others)
    import tensorflow as tf

    loaded = tf.saved_model.load(paths["export"])  # kept referenced: its functions need its variables alive
    served = loaded.serve(tf.constant(x)).numpy()
    np.testing.assert_allclose(served, preds, atol=1e-5)
    back = keras.saving.load_model(paths["keras"])
    assert type(back).__name__ == "SimGANRefiner"
    np.testing.assert_allclose(back.predict(x, verbose=0), preds, atol=1e-6)
    assert int(back.r_optimizer.iterations) == 2 and back.gan_loss.lambda_reg == model.gan_loss.lambda_reg
    np.testing.assert_array_equal(np.asarray(back.history_buffer), np.asarray(model.history_buffer))


def test_l1_term_keeps_the_mask_on_a_tiny_case(harness):
    """Dark discs on a light background (synthetic, weights 1) and flat mid-grey 'real' images (weights 0): after
    training with a strong L1 term, thresholding the refined images half-way between disc and background recovers
    the disc mask exactly."""
    from zoo.losses import get_loss

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16]
    masks = np.stack([(yy - rng.uniform(4, 12)) ** 2 + (xx - rng.uniform(4, 12)) ** 2 <= 9 for _ in range(12)])
    syn = np.where(masks[..., None], 0.3, 0.85).astype(np.float32) * np.ones(3, np.float32)
    real = np.full((4, 16, 16, 3), 0.6, np.float32)
    x = np.concatenate([syn, real])
    w = np.concatenate([np.ones((12, 16, 16)), np.zeros((4, 16, 16))]).astype(np.float32)
    y = np.zeros((16, 16, 16), np.int32)
    model = _tiny(harness)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=get_loss("simgan", lambda_reg=10.0))
    import tensorflow as tf

    first = model.fit(x, y, sample_weight=w, batch_size=16, epochs=1, shuffle=False, verbose=0).history
    stream = tf.data.Dataset.from_tensors((x, y, w)).repeat()
    hist = model.fit(stream, epochs=1, steps_per_epoch=120, verbose=0).history
    assert hist["l1"][-1] < first["l1"][0] / 4
    refined = np.asarray(model(syn)).mean(-1)
    np.testing.assert_array_equal(refined < (0.3 + 0.85) / 2, masks)
