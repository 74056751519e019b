"""The GAN game (zoo.losses.gan, zoo.training.gan): the gradient penalty of Hu et al. eq. 10 equal to its hand value
on a linear critic, the mutual-information term equal to a hand cross-entropy, one full iteration (5 D + 1 G + 1 Q)
moving exactly each step's variables, and `histozoo train` on tiny nucleus crops through the one core with a
checkpoint and --resume that continues the uninterrupted run.

Steps run eagerly (the traced GAN step costs tens of seconds of graph building on these machines; the benchmark
benchmarks/gan.py runs the traced one)."""

import json
import math
import os

import numpy as np
import pytest

import keras
import tensorflow as tf

from zoo import models
from zoo.errors import ConfigError
from zoo.losses import get_loss
from zoo.losses.gan import InfoWGANGPLoss, gradient_penalty, mutual_information_loss
from zoo.training import gan

TINY = {"image_size": 8, "categories": 3, "noise_dim": 4, "g_filters": 4, "d_filters": 4, "q_filters": 4}


@pytest.mark.parametrize("w", [[0.3, -0.4, 0.0, 1.2], [0.1, 0.1, 0.1, 0.1], [2.0, 0.0, 0.0, 0.0]])
def test_gradient_penalty_of_a_linear_critic_is_norm_minus_one_squared(w):
    """D(x) = w . x has gradient w at every xhat, so GP = (||w|| - 1)^2 exactly, whatever real, fake and alpha."""
    w = np.asarray(w, np.float32).reshape(1, 2, 2, 1)
    rng = np.random.default_rng(0)
    real, fake = rng.random((3, 2, 2, 1), np.float32), rng.random((3, 2, 2, 1), np.float32)
    critic = lambda x: tf.reduce_sum(x * w, axis=[1, 2, 3])  # noqa: E731
    want = (math.sqrt(float((w ** 2).sum())) - 1.0) ** 2
    got = float(gradient_penalty(critic, real, fake, alpha=[0.0, 0.5, 1.0]))
    assert got == pytest.approx(want, rel=1e-5, abs=1e-7)
    assert float(gradient_penalty(critic, real, fake, seed=keras.random.SeedGenerator(1))) == pytest.approx(
        want, rel=1e-5, abs=1e-7)


def test_gradient_penalty_is_taken_at_the_interpolates():
    """D(x) = sum(x^2)/2 has gradient x: GP = mean((||xhat|| - 1)^2) at xhat = alpha real + (1 - alpha) fake."""
    real = np.array([[3.0, 0.0], [0.0, 1.0]], np.float32)
    fake = np.array([[1.0, 0.0], [0.0, 3.0]], np.float32)
    alpha = np.array([0.5, 0.25], np.float32)
    xhat = alpha[:, None] * real + (1 - alpha[:, None]) * fake  # [2, 0], [0, 2.5]
    want = np.mean((np.linalg.norm(xhat, axis=1) - 1.0) ** 2)  # ((2 - 1)^2 + (2.5 - 1)^2) / 2 = 1.625
    got = float(gradient_penalty(lambda x: 0.5 * tf.reduce_sum(x * x, axis=1), real, fake, alpha=alpha))
    assert want == pytest.approx(1.625) and got == pytest.approx(want, rel=1e-6)


def test_mutual_information_term_is_the_hand_cross_entropy():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    c = np.array([0, 2])
    # -log Q(c|x): -log(e^2 / (e^2 + 2)) and -log(1 / (e + 2)); L_MI is their mean
    want = (-math.log(math.e ** 2 / (math.e ** 2 + 2)) - math.log(1 / (math.e + 2))) / 2
    assert float(mutual_information_loss(c, logits)) == pytest.approx(want, rel=1e-6)
    loss = InfoWGANGPLoss(lambda_gp=10.0, lambda_info=0.5)
    assert float(loss.info_loss(mutual_information_loss(c, logits))) == pytest.approx(0.5 * want, rel=1e-6)


def test_loss_terms_follow_eq_10_and_11():
    loss = get_loss("infowgan_gp", lambda_gp=10.0, lambda_info=2.0)
    d_real, d_fake = tf.constant([1.0, 3.0]), tf.constant([0.5, -0.5])
    assert float(loss.critic_loss(d_real, d_fake, tf.constant(0.25))) == pytest.approx(0.0 - 2.0 + 10 * 0.25)
    assert float(loss.generator_loss(d_fake, tf.constant(0.7))) == pytest.approx(-0.0 + 2 * 0.7)
    with pytest.raises(ConfigError, match="lambda_gp must be a number >= 0"):
        get_loss("infowgan_gp", lambda_gp=-1)


def _snapshot(variables):
    return {id(v): np.array(v) for v in variables}


def _moved(model, before):
    return {id(v) for v in model.trainable_variables if not np.array_equal(np.array(v), before[id(v)])}


@pytest.mark.parametrize("name", ["infowgan_gp", "yuan_suh_infogan"])
def test_one_iteration_moves_each_steps_variables_only(name):
    keras.utils.set_random_seed(0)
    cfg = dict(TINY) if name == "infowgan_gp" else {k: v for k, v in TINY.items() if k != "q_filters"}
    model = models.build(name, cfg)
    model.compile(run_eagerly=True)
    real = tf.constant(np.random.default_rng(0).random((10, 8, 8, 3), np.float32) * 2 - 1)
    ids = lambda vs: {id(v) for v in vs}  # noqa: E731
    d_vars, g_vars, q_vars = ids(model.critic_variables()), ids(model.generator_variables()), ids(model.q_variables())

    before = _snapshot(model.trainable_variables)
    loss, v, gp = gan.critic_step(model, real[:2])
    assert np.isfinite([float(loss), float(v), float(gp)]).all()
    assert _moved(model, before) == d_vars

    before = _snapshot(model.trainable_variables)
    assert np.isfinite(float(gan.generator_step(model, 2)))
    assert _moved(model, before) == g_vars

    before = _snapshot(model.trainable_variables)
    assert np.isfinite(float(gan.info_step(model, 2)))
    assert _moved(model, before) == q_vars  # Yuan & Suh: Q's head and the shared trunk; Hu: Q's own network

    # the whole iteration: 5 critic steps (each on its fifth of the batch), 1 G step, 1 Q step
    before = _snapshot(model.trainable_variables)
    logs = gan.train_step(model, (tf.constant(np.random.default_rng(1).random((10, 8, 8, 3), np.float32)),))
    assert set(logs) == {"loss", "v_dg", "gp", "g_loss", "q_loss"}
    assert all(np.isfinite(float(x)) for x in logs.values())
    assert [int(o.iterations) for o in (model.d_optimizer, model.g_optimizer, model.q_optimizer)] == [6, 2, 2]
    assert _moved(model, before) == d_vars | g_vars | q_vars
    assert model.d_optimizer.learning_rate.numpy() == pytest.approx(model.config.d_learning_rate)
    assert model.q_optimizer.learning_rate.numpy() == pytest.approx(model.config.q_learning_rate)
    assert (model.g_optimizer.beta_1, model.g_optimizer.beta_2) == (0.5, 0.9)


def test_compile_refuses_other_optimizers_and_losses():
    model = models.build("infowgan_gp", TINY)
    with pytest.raises(ConfigError, match="trains with Adam"):
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    with pytest.raises(ConfigError, match="loss: infowgan_gp"):
        model.compile(loss=get_loss("weighted_ce"))


def test_sample_grid_rows_are_fixed_z_columns_are_c():
    keras.utils.set_random_seed(0)
    model = models.build("infowgan_gp", TINY)
    model.build()
    grid = model.sample_grid(rows=2, seed=3)
    assert grid.shape == (16, 24, 3) and grid.dtype == np.uint8
    z = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    one = np.asarray(model.generate(z[1:2], [2]))[0]  # row 1, column c = 2
    np.testing.assert_array_equal(grid[8:16, 16:24], np.clip(np.rint(one * 255), 0, 255).astype(np.uint8))


# ------------------------------------------------------------------------------------ through the one core
def _crops_dir(root):
    """Tiny nucleus crops (zoo.data.crops) of two synthetic images with round nuclei of two types."""
    from zoo.data.build import DatasetWriter
    from zoo.data.crops import CropConfig, write_crops
    from zoo.data.sample import Sample

    rng = np.random.default_rng(0)
    src = os.path.join(root, "src")
    with DatasetWriter(src, ("a", "b")) as w:
        for i in range(3):
            img = np.full((40, 40, 3), 230, np.uint8)
            inst = np.zeros((40, 40), np.int32)
            for k in range(6):
                y, x = 6 + (k // 3) * 18 + rng.integers(0, 5), 6 + (k % 3) * 12 + rng.integers(0, 3)
                yy, xx = np.ogrid[:40, :40]
                m = (yy - y) ** 2 + (xx - x) ** 2 <= (2 + k % 2) ** 2
                inst[m], img[m] = k + 1, (80, 40, 140) if k % 2 else (150, 60, 120)
            w.add(Sample(image=img, image_id=f"img{i}", dataset=("toy", "toy2", "toy")[i], source_id=f"s{i}",
                         split="test" if i == 2 else "train",
                         instances=inst, instance_ids=np.arange(1, 7), instance_classes=1 + np.arange(6) % 2,
                         class_names=("a", "b")))
        w.commit("toy", "synthetic", {})
    out = os.path.join(root, "crops")
    write_crops(src, out, CropConfig(size=8), progress=False)
    return out


def test_released_code_schedule_takes_an_mi_step_on_q_and_g_after_every_critic_and_g_step(tmp_path):
    # mi_schedule: released (Hu et al.'s released code): per iteration 5 critic steps each followed by an MI step
    # (Q's variables and G, G through its own Adam), a G step without the MI term, and one more MI step
    keras.utils.set_random_seed(0)
    model = models.build("infowgan_gp", {**TINY, "mi_schedule": "released"})
    model.compile(run_eagerly=True)
    ids = lambda vs: {id(v) for v in vs}  # noqa: E731
    g_vars, q_vars = ids(model.generator_variables()), ids(model.q_variables())
    before = _snapshot(model.trainable_variables)
    assert np.isfinite(float(gan.info_step(model, 2, generator=True)))
    assert _moved(model, before) == q_vars | g_vars
    logs = gan.train_step(model, (tf.constant(np.random.default_rng(1).random((10, 8, 8, 3), np.float32)),))
    assert all(np.isfinite(float(x)) for x in logs.values())
    opts = (model.d_optimizer, model.g_optimizer, model.q_optimizer, model.qg_optimizer)
    assert [int(o.iterations) for o in opts] == [5, 1, 7, 7]
    assert model.qg_optimizer.learning_rate.numpy() == pytest.approx(model.config.q_learning_rate)
    # G's MI Adam is saved and restored with the other three
    model.save(str(tmp_path / "released.keras"))
    back = keras.saving.load_model(str(tmp_path / "released.keras"))
    assert [int(o.iterations) for o in (back.d_optimizer, back.g_optimizer, back.q_optimizer, back.qg_optimizer)] == \
        [5, 1, 7, 7]
    for a, b in zip(model.qg_optimizer.variables, back.qg_optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the default (the paper's schedule) has no fourth optimizer
    assert getattr(models.build("infowgan_gp", TINY), "qg_optimizer", None) is None
    with pytest.raises(ConfigError, match="mi_schedule"):
        models.build("infowgan_gp", {**TINY, "mi_schedule": "both"})


@pytest.fixture
def eager():
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


def test_histozoo_train_gan_checkpoints_and_resumes(tmp_path, monkeypatch, eager):
    from histozoo.cli import main
    from zoo.training.train import LAST

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    crops = _crops_dir(str(tmp_path))
    cfg = {"name": "tiny-gan", "model": "infowgan_gp", "model_config": TINY, "data_dir": crops, "val_split": "test",
           "eval_every": 1,
           "input": {"patch_size": 8, "batch_size": 10, "patches_per_image": 1, "flip": False, "rot90": True,
                     "shuffle_buffer": 1},
           "loss": "infowgan_gp", "optimizer": "adam", "learning_rate": 2e-4, "epochs": 2, "steps_per_epoch": 1,
           "tracking": {"enabled": False, "log_model": False}}
    (tmp_path / "gan.json").write_text(json.dumps(cfg))
    base = ["train", "--config", "gan.json", "--no-tracking"]
    assert main(base + ["--out", "straight"]) == 0
    assert main(base + ["--out", "split", "--epochs", "1"]) == 0
    state = json.loads((tmp_path / "split/checkpoints/state.json").read_text())
    assert state["epochs_done"] == 1 and np.isfinite(state["history"]["loss"]).all()
    assert main(base + ["--out", "split", "--resume"]) == 0

    straight = keras.saving.load_model(str(tmp_path / "straight/checkpoints" / LAST))
    resumed = keras.saving.load_model(str(tmp_path / "split/checkpoints" / LAST))
    assert [int(o.iterations) for o in (resumed.d_optimizer, resumed.g_optimizer, resumed.q_optimizer)] == [10, 2, 2]
    for a, b in zip(straight.trainable_variables, resumed.trainable_variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    hist = json.loads((tmp_path / "split/history.json").read_text())
    assert len(hist["loss"]) == 2 and set(hist) >= {"loss", "v_dg", "gp", "g_loss", "q_loss"}
    # the core's evaluation of a GAN: Q's clusters of the held-out crops scored by zoo.metrics.clustering
    straight_hist = json.loads((tmp_path / "straight/history.json").read_text())  # epoch 1 of 2: evaluated
    assert np.isfinite(straight_hist["val_purity"]).all() and {"val_entropy", "val_f_score"} <= set(straight_hist)
    ev = json.loads((tmp_path / "split/evaluation.json").read_text())
    from zoo.evaluation.cluster import read_crops
    from zoo.metrics.clustering import clustering_report

    test = read_crops(crops, "test")
    ref = clustering_report(np.asarray(resumed(test["images"] / 255.0)["probabilities"]).argmax(1), test["type"])
    assert ev["mean"]["purity"] == pytest.approx(ref["purity"]) and ev["mean"]["n"] == 6
    assert ev["mean"]["f_score"] == pytest.approx(ref["f1_weighted"])
    assert {"generated.png", "contact_sheet.png"} <= set(os.listdir(tmp_path / "split/overlays"))
    spec = json.loads((tmp_path / "split/checkpoints/spec.json").read_text())
    assert spec["channels"] == ["cluster_0", "cluster_1", "cluster_2"] and spec["divisor"] == 8


def test_histozoo_cluster_writes_csv_sheet_and_the_clustering_metrics(tmp_path):
    import csv

    from histozoo.cli import main
    from zoo.data import records
    from zoo.metrics.clustering import clustering_report

    crops = _crops_dir(str(tmp_path))
    keras.utils.set_random_seed(0)
    model = models.build("infowgan_gp", TINY)
    model.build()
    model.save(str(tmp_path / "gan.keras"))
    assert main(["cluster", str(tmp_path / "gan.keras"), crops, "--out", str(tmp_path / "cl"), "--per-cluster", "3",
                 "--samples", "2", "--quiet"]) == 0
    samples = list(records.read_samples(records.list_shards(crops)))
    x = np.stack([s.image for s in samples]).astype(np.float32) / 255.0
    want = np.asarray(model(x)["probabilities"]).argmax(1)
    with open(tmp_path / "cl/clusters.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image_id"] for r in rows] == [s.image_id for s in samples]
    np.testing.assert_array_equal([int(r["cluster"]) for r in rows], want)
    types = np.array([int(s.instance_classes[0]) for s in samples])
    assert [int(r["type"]) for r in rows] == types.tolist() and {r["type_name"] for r in rows} == {"a", "b"}
    m = json.loads((tmp_path / "cl/metrics.json").read_text())
    ref = clustering_report(want, types)
    assert (m["purity"], m["entropy"], m["f1_weighted"]) == (ref["purity"], ref["entropy"], ref["f1_weighted"])
    from PIL import Image

    assert Image.open(tmp_path / "cl/contact_sheet.png").size == (3 * 10 + 2, 3 * 10 + 2)  # k rows of 3, gaps 2
    counts = json.loads((tmp_path / "cl/counts.json").read_text())
    sets = np.array([s.dataset for s in samples])
    assert counts["n"] == len(want) and counts["counts"] == np.bincount(want, minlength=3).tolist()
    assert counts["by_dataset"] == {d: np.bincount(want[sets == d], minlength=3).tolist() for d in sorted(set(sets))}
    assert Image.open(tmp_path / "cl/generated.png").size == (3 * 8, 2 * 8)
    no_split = ["cluster", str(tmp_path / "gan.keras"), crops, "--out", str(tmp_path / "c2"), "--split", "val"]
    assert main(no_split) == 2  # no such split: one line, exit 2


@pytest.mark.parametrize("path, model, k, z, size, lrs", [
    ("configs/gan/hu_infowgan_gp.yaml", "infowgan_gp", 5, 32, 32, (2e-4, 2e-4, 2e-4)),
    ("configs/gan/yuan_suh_infogan.yaml", "yuan_suh_infogan", 3, 16, 40, (1e-4, 1e-4, 2e-4)),
])
def test_shipped_configs_are_the_papers(path, model, k, z, size, lrs):
    from zoo.training import ExperimentConfig

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    cfg = ExperimentConfig.load(os.path.join(root, path))
    mc = models.get(cfg.model).config_class.from_dict(cfg.model_config)
    inp = cfg.input_config()
    assert (cfg.model, mc.categories, mc.noise_dim, mc.image_size, inp.patch_size) == (model, k, z, size, size)
    assert (cfg.learning_rate, mc.d_learning_rate, mc.q_learning_rate) == lrs  # G, D (D_D), Q (D_Q)
    assert mc.mi_schedule == "released" and mc.q_shares_trunk  # the schedule that learns c here (clustering.md)
    assert inp.batch_size == mc.n_critic * 64 and (inp.rot90, inp.flip) == (True, False)
    assert cfg.loss == "infowgan_gp" and cfg.loss_config == {"lambda_gp": 10.0, "lambda_info": 1.0}


def test_tfx_trainer_run_fn_trains_a_gan_and_exports_its_q_classifier(tmp_path, monkeypatch, eager):
    """Issue 20, through the whole system: the TFX Trainer's user module (pipelines/trainer/module.py, the run_fn the
    pipeline's Trainer calls) trains the GAN with the CLI's core on the ExampleGen's records and writes the Q
    classifier's SavedModel (serving.cluster), whose served clusters equal the saved Keras model's."""
    from types import SimpleNamespace

    from pipelines.trainer.module import run_fn
    from zoo.data import records
    from zoo.evaluation.cluster import read_crops

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    crops = _crops_dir(str(tmp_path))
    cfg = {"name": "tiny-gan", "model": "infowgan_gp", "model_config": TINY, "data_dir": crops,
           "input": {"patch_size": 8, "batch_size": 10, "patches_per_image": 1, "flip": False, "rot90": True,
                     "shuffle_buffer": 1},
           "loss": "infowgan_gp", "optimizer": "adam", "learning_rate": 2e-4, "epochs": 1, "steps_per_epoch": 2,
           "tracking": {"enabled": False, "log_model": False}}
    serving_dir = tmp_path / "model" / "Format-Serving"
    fn_args = SimpleNamespace(custom_config={"experiment": cfg, "verbose": 0},
                              train_files=records.list_shards(crops, "train"),
                              eval_files=records.list_shards(crops, "test"),
                              model_run_dir=str(tmp_path / "run"), serving_model_dir=str(serving_dir))
    run_fn(fn_args)

    model = keras.saving.load_model(str(tmp_path / "model/Format-Keras/model.keras"))
    assert int(model.g_optimizer.iterations) == 2 and int(model.d_optimizer.iterations) == 10  # 2 x (5 D + 1 G)
    meta = json.loads((serving_dir / "assets/histozoo.json").read_text())
    assert meta["kind"] == "cluster_classifier" and meta["clusters"] == ["cluster_0", "cluster_1", "cluster_2"]
    test = read_crops(crops, "test")
    x = test["images"].astype(np.float32) / 255.0
    served = tf.saved_model.load(str(serving_dir)).signatures["serving_default"](crops=tf.constant(x))
    want = model(x)
    np.testing.assert_allclose(served["probabilities"].numpy(), np.asarray(want["probabilities"]), atol=1e-5)
    np.testing.assert_array_equal(served["cluster"].numpy(), np.asarray(want["probabilities"]).argmax(-1))
    run = json.loads((tmp_path / "model/Format-Keras/run.json").read_text())
    ev = read_crops(crops, "test")
    from zoo.metrics.clustering import clustering_report

    ref = clustering_report(np.asarray(model(ev["images"] / 255.0)["probabilities"]).argmax(1), ev["type"])
    assert run["metrics"]["eval_purity"] == pytest.approx(ref["purity"])  # Q's clusters of the eval records scored
