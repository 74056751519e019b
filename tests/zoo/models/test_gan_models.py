"""The GAN models (zoo.models.gan) through the shared harness's GAN checks: G / D / Q built on tiny shapes with the
right outputs and variable sets, config validation and round trip, the embedding's adaptive max-pool against a
brute-force reference, a .keras round trip (outputs and the three optimizers' state), and the SavedModel of the Q
classifier (serving.cluster) serving the same probabilities, clusters and embedding, in process and over gRPC."""


import numpy as np
import pytest

import keras

from zoo import models
from zoo.errors import ConfigError
from zoo.models.gan import InfoGAN, adaptive_max_pool

GAN_NAMES = ["infowgan_gp", "yuan_suh_infogan"]


def _tiny(harness, name, **options):
    keras.utils.set_random_seed(0)
    model = models.build(name, {**harness.tiny_config(name), **options})
    model.build()
    return model


def _crops(n=4, size=8, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 3), dtype=np.float32)


@pytest.mark.parametrize("name, own_q", [("infowgan_gp", False), ("infowgan_gp", True), ("yuan_suh_infogan", False)])
def test_builds_g_d_q_with_the_papers_io(harness, name, own_q):
    model = _tiny(harness, name, **({"q_shares_trunk": False} if own_q else {}))
    cfg = model.config
    assert isinstance(model, InfoGAN) and model.registry_name == name
    x = _crops()
    out = model(x)
    probs, emb = np.asarray(out["probabilities"]), np.asarray(out["embedding"])
    assert probs.shape == (4, cfg.categories) and np.allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert emb.shape == (4, 4 * 16 * cfg.d_filters) == (4, model.embedding_dim)  # 4 resblocks x 4 x 4 x maps
    z = np.random.default_rng(1).standard_normal((6, cfg.noise_dim)).astype(np.float32)
    fake = np.asarray(model.generate(z, np.arange(6) % cfg.categories))
    assert fake.shape == (6, 8, 8, 3) and fake.min() >= 0.0 and fake.max() <= 1.0
    assert np.asarray(model.critic(x * 2 - 1)).shape == (4,)
    assert np.asarray(model.q_logits(x * 2 - 1)).shape == (4, cfg.categories)
    # D_D and D_Q heads on one trunk (both papers' default), or Q its own residual network (q_shares_trunk=False)
    d_ids = {id(v) for v in model.critic_variables()}
    q_ids = {id(v) for v in model.q_variables()}
    g_ids = {id(v) for v in model.generator_variables()}
    assert not (g_ids & d_ids) and not (g_ids & q_ids)
    shared = d_ids & q_ids
    if cfg.q_shares_trunk:
        assert shared == {id(v) for v in model.d_trunk.trainable_variables}
    else:
        assert not shared
    # batch norm in G only (Fig. 3c)
    def bns(layer):
        return {id(l) for l in layer._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)}

    assert bns(model.generator) and bns(model) == bns(model.generator)


def test_paper_defaults():
    hu, ys = models.get("infowgan_gp").config_class(), models.get("yuan_suh_infogan").config_class()
    assert (hu.image_size, hu.categories, hu.noise_dim, hu.n_critic, hu.q_shares_trunk) == (32, 5, 32, 5, True)
    assert (hu.d_learning_rate, hu.q_learning_rate, hu.beta_1, hu.beta_2) == (2e-4, 2e-4, 0.5, 0.9)
    assert 4 * 16 * hu.d_filters == 8192  # Hu et al. IV-C: the 8192-dimensional feature
    assert (ys.image_size, ys.categories, ys.noise_dim, ys.q_shares_trunk) == (40, 3, 16, True)
    assert (ys.d_learning_rate, ys.q_learning_rate) == (1e-4, 2e-4)


@pytest.mark.parametrize("option, value, message", [
    ("image_size", 12, "must be a multiple of 8"),
    ("categories", 1, "must be an integer >= 2"),
    ("n_critic", 0, "must be an integer >= 1"),
    ("beta_1", 1.0, r"must be a number in \[0.0, 1.0\)"),
    ("q_shares_trunk", "yes", "must be true or false"),
])
def test_invalid_options_raise_config_error(option, value, message):
    with pytest.raises(ConfigError, match=rf"model 'infowgan_gp': option '{option}' {message}"):
        models.build("infowgan_gp", {option: value})


@pytest.mark.parametrize("name", GAN_NAMES)
def test_config_round_trip(harness, name):
    model = _tiny(harness, name)
    harness.check_config_round_trip(model)


@pytest.mark.parametrize("side", [2, 4, 5, 10, 20])
def test_adaptive_max_pool_matches_brute_force(side):
    x = np.random.default_rng(side).standard_normal((2, side, side, 3)).astype(np.float32)
    got = np.asarray(adaptive_max_pool(x, 4))
    want = np.empty((2, 4, 4, 3), np.float32)
    for i in range(4):
        for j in range(4):  # PyTorch AdaptiveMaxPool2d bins: floor(i n / 4) .. ceil((i + 1) n / 4)
            r = slice(i * side // 4, -(-(i + 1) * side // 4))
            c = slice(j * side // 4, -(-(j + 1) * side // 4))
            want[:, i, j] = x[:, r, c].max(axis=(1, 2))
    np.testing.assert_array_equal(got, want)


def test_embedding_is_d_features_pooled_and_concatenated(harness):
    model = _tiny(harness, "infowgan_gp")
    x = _crops()
    feats = [np.asarray(f) for f in model.d_trunk(x * 2 - 1)]
    assert [f.shape[1] for f in feats] == [4, 2, 2, 2]  # S/2, S/4, S/4, S/4
    want = np.concatenate([np.asarray(adaptive_max_pool(f)).reshape(4, -1) for f in feats], axis=-1)
    np.testing.assert_allclose(np.asarray(model(x)["embedding"]), want, atol=1e-6)


@pytest.mark.parametrize("name", GAN_NAMES)
def test_keras_file_round_trip_keeps_outputs_and_optimizer_state(harness, name, tmp_path):
    from zoo.training import gan

    model = _tiny(harness, name)
    model.compile(run_eagerly=True)
    gan.train_step(model, (_crops(10, seed=3),))  # one iteration: the three optimizers have state
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    back = keras.saving.load_model(path)
    assert type(back) is type(model) and back.config == model.config
    x = _crops(seed=5)
    for k in ("probabilities", "embedding"):
        np.testing.assert_allclose(np.asarray(back(x)[k]), np.asarray(model(x)[k]), atol=1e-6)
    z = np.ones((2, model.config.noise_dim), np.float32)
    np.testing.assert_allclose(np.asarray(back.generate(z, [0, 1])), np.asarray(model.generate(z, [0, 1])), atol=1e-6)
    assert [int(o.iterations) for o in (back.d_optimizer, back.g_optimizer, back.q_optimizer)] == [5, 1, 1]
    assert back.optimizer is back.g_optimizer and back.g_optimizer.beta_1 == model.config.beta_1
    for a, b in zip(model.d_optimizer.variables, back.d_optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert back.gan_loss.get_config() == model.gan_loss.get_config()


def test_q_classifier_savedmodel_serves_model_outputs(harness, tmp_path):
    import tensorflow as tf

    from serving.cluster import export_cluster_model
    from serving.export import read_metadata

    from histozoo.cli import main

    model = _tiny(harness, "infowgan_gp")
    model.save(str(tmp_path / "gan.keras"))
    assert main(["export", str(tmp_path / "gan.keras"), "--out", str(tmp_path / "q")]) == 0  # histozoo export
    path = str(tmp_path / "q" / "1")
    meta = read_metadata(path)
    assert meta["kind"] == "cluster_classifier" and meta["clusters"] == ["cluster_0", "cluster_1", "cluster_2"]
    served = tf.saved_model.load(path)
    x = (_crops(seed=7) * 255).round().astype(np.uint8)
    want = model(x.astype(np.float32) / 255.0)
    out = served.signatures["serving_default"](crops=tf.constant(x.astype(np.float32) / 255.0))
    np.testing.assert_allclose(out["probabilities"].numpy(), np.asarray(want["probabilities"]), atol=1e-5)
    np.testing.assert_allclose(out["embedding"].numpy(), np.asarray(want["embedding"]), atol=1e-5)
    np.testing.assert_array_equal(out["cluster"].numpy(), np.asarray(want["probabilities"]).argmax(-1))
    pngs = tf.stack([tf.io.encode_png(tf.constant(c)) for c in x])
    by_bytes = served.signatures["predict_bytes"](crop_bytes=pngs)
    np.testing.assert_allclose(by_bytes["probabilities"].numpy(), out["probabilities"].numpy(), atol=1e-6)
    with pytest.raises(ConfigError, match="already exists"):
        export_cluster_model(model, str(tmp_path / "q"), version=1)
    # served like the other models: the local PredictionService over gRPC answers what the model computes
    from serving.client import PredictClient, ServingError
    from serving.config import ModelEntry
    from serving.local_server import LocalModelServer

    with LocalModelServer([ModelEntry("q", str(tmp_path / "q"))]) as srv:
        assert srv.target.startswith("127.0.0.1:")
        with PredictClient(srv.target, retries=0) as c:
            grpc_out = c.predict("q", {"crops": x.astype(np.float32) / 255.0})
            np.testing.assert_allclose(grpc_out["probabilities"], np.asarray(want["probabilities"]), atol=1e-5)
            np.testing.assert_array_equal(grpc_out["cluster"], out["cluster"].numpy())
            with pytest.raises(ServingError) as err:  # a bad request gets a status and the server keeps serving
                c.predict("q", {"images": x.astype(np.float32)})
            assert err.value.code == "INVALID_ARGUMENT"
            by_png = c.predict("q", {"crop_bytes": np.array([p.numpy() for p in pngs], dtype=object)},
                               signature="predict_bytes")
            np.testing.assert_allclose(by_png["probabilities"], out["probabilities"].numpy(), atol=1e-6)
