"""The annotation cycle as a TFX pipeline (pipelines/cycle_pipeline.py; Bhatia ch. 4, issue 23), two cycles on tiny
shapes in the TFX environment: 3 hand-made "synthetic" tiles -> Trainer_c1 (2 steps) -> HistoAnnotate_c2 (the centre
96 px of a 128 px crop of one real MoNuSeg training image, zoo.interactive.tiny() under simulated clicks) ->
Trainer_c2 (warm start from Trainer_c1, 2 steps) -> HistoEvaluator_c1/_c2 on a crop of a real MoNuSeg test image.
Run inside the environment:
``scripts/tfx_env.sh run python -m pytest -q -m tfx tests/pipelines/test_cycle_pipeline.py``.
The host-side tests (no tfx) run in the default selection.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

SIDE, CROP = 128, 96
LR = 1e-4  # the tiny experiment's learning rate (Adam): two steps move a weight by at most about 2 x LR


def _write(out, samples):
    from zoo.data.build import write_samples

    write_samples(out, samples)
    return str(out)


def _real_crop(s, split):
    from zoo.data.sample import Sample

    y0 = x0 = 300  # an inner 128 px window of the 1000 px tile (nuclei in it)
    return Sample(image=np.ascontiguousarray(s.image[y0:y0 + SIDE, x0:x0 + SIDE]), image_id=s.image_id,
                  dataset=s.dataset, source_id=s.source_id, split=split,
                  instances=s.instances[y0:y0 + SIDE, x0:x0 + SIDE].astype(np.uint16), mpp=s.mpp)


@pytest.fixture(scope="module")
def cycle_setup(shared_data, tiny_experiment, tmp_path_factory, disk_tiles):
    from zoo import interactive
    from zoo.data.readers import get_reader
    from zoo.interactive.cycle import CycleConfig

    root = tmp_path_factory.mktemp("tfx_cycle")
    reader = get_reader("monuseg2018")(str(shared_data / "monuseg2018"))
    items = reader.items()
    pool = _real_crop(reader.read([i for i in items if i[0] == "train"][1]), "train")
    _write(root / "pool", [pool])
    _write(root / "eval", [_real_crop(reader.read([i for i in items if i[0] == "test"][0]), "test")])
    _write(root / "synth", disk_tiles(3, SIDE, val=(2,)))  # 2 train tiles, 1 val tile
    interactive.tiny().model.save(str(root / "tiny_interactive.keras"))
    exp = tiny_experiment("tfx-cycle")
    exp.update(fold=None, val_split="val", learning_rate=LR)
    config = CycleConfig(initial_model="(the pipeline trains cycle 1)",
                         interactive_model=str(root / "tiny_interactive.keras"),
                         train_config=exp, synthetic_data=str(root / "synth"), pool_data=str(root / "pool"),
                         eval_data=str(root / "eval"), batches=[[pool.image_id]], crop=CROP, clicks_per_image=6,
                         clicks_per_nucleus=2, train_overrides={"seed": 1})
    return config, pool, root


@pytest.fixture(scope="module")
def cycle_run(cycle_setup):
    from pipelines.cycle_pipeline import run_cycle_local

    config, _, root = cycle_setup
    home = root / "home"
    cwd = os.getcwd()
    os.chdir(root)
    try:
        # the Trainer's user module as the CLI gives it (module_file), so the CLI's rerun below is served from the cache
        out = run_cycle_local(config, "cycle-test", home=str(home), quiet=True,
                              mlflow_tracking_uri=f"sqlite:///{home}/mlflow.db", eval_max_images=1)
    finally:
        os.chdir(cwd)
    return out, home


def _files(examples_uri, split):
    d = os.path.join(examples_uri, f"Split-{split}")
    return sorted(os.listdir(d))


@pytest.mark.tfx
def test_two_cycles_annotate_then_retrain_from_the_previous_model(cycle_setup, cycle_run):
    from pipelines.components.annotate import LOG_FILE
    from pipelines.cycle_pipeline import run_outputs
    from zoo.data import records
    from zoo.interactive.cycle import centre_crop

    config, pool, _ = cycle_setup
    out, _ = cycle_run
    states = {s["node"]: s["state"] for s in out["steps"]}
    assert states == {n: "COMPLETE" for n in ("SyntheticRecords", "EvalRecords", "Trainer_c1", "HistoEvaluator_c1",
                                              "HistoAnnotate_c2", "Trainer_c2", "HistoEvaluator_c2")}, out["steps"]
    outputs = run_outputs(out["paths"].metadata_path, "cycle-test")
    synth, ann = outputs[("SyntheticRecords", "examples")].uri, outputs[("HistoAnnotate_c2", "examples")]

    # cycle 2's Examples: train = the synthetic train records + exactly the one annotated crop; eval = the synthetic
    # val records (copies)
    assert _files(ann.uri, "train") == sorted(_files(synth, "train") + ["cycle02-train-00000.tfrecord.gz"])
    assert _files(ann.uri, "eval") == _files(synth, "eval") == ["val-00000.tfrecord.gz"]
    train = list(records.read_samples([os.path.join(ann.uri, "Split-train", f) for f in _files(ann.uri, "train")]))
    assert sorted(s.image_id for s in train) == sorted(["synth0", "synth1", pool.image_id])
    (evals,) = records.read_samples([os.path.join(ann.uri, "Split-eval", "val-00000.tfrecord.gz")])
    assert evals.image_id == "synth2"
    log = json.load(open(os.path.join(ann.uri, LOG_FILE)))
    props = {k: v.int_value for k, v in ann.custom_properties.items() if v.WhichOneof("value") == "int_value"}
    assert props["images_annotated"] == 1 and props["cycle"] == 2
    assert props["clicks"] == log["clicks"] and 0 < log["clicks"] <= config.clicks_per_image

    # the labels are what zoo.interactive.cycle.annotate_image gives for the same inputs (Trainer_c1's proposals,
    # the tiny interactive model) and not MoNuSeg's ground truth
    from zoo import interactive
    from zoo.inference import predict
    from zoo.interactive.cycle import annotate_image
    from zoo.training.tracking import load

    (annotated,) = [s for s in train if s.image_id == pool.image_id]
    image, gt = np.ascontiguousarray(centre_crop(pool.image, CROP)), centre_crop(pool.instances, CROP)
    auto = load(os.path.join(outputs[("Trainer_c1", "model")].uri, "Format-Keras", "model.keras"))
    seg = interactive.load(config.interactive_model)
    assert seg.mpp == 0  # no resampling: the crop is annotated at its own pixels
    labels, stats = annotate_image(image, gt, predict(auto.model, auto.spec, image, mpp=pool.mpp).instances,
                                   lambda clicks, prev: seg.segment(image, clicks, prev_mask=prev, fbrs=False),
                                   budget=config.clicks_per_image, per_nucleus=config.clicks_per_nucleus,
                                   accept_iou=config.accept_iou)
    assert annotated.image.shape == (CROP, CROP, 3) and (annotated.image == image).all()
    np.testing.assert_array_equal(annotated.instances, labels)
    assert labels.max() > 0  # the interactive model's masks, not an empty map
    assert stats["clicks"] == log["clicks"] and len(np.unique(gt)) > 1
    assert not np.array_equal(annotated.instances > 0, gt > 0)

    # Trainer_c2 trained on HistoAnnotate_c2's records, starting from Trainer_c1's weights (the base_model input ->
    # init_weights): two Adam steps from them move no weight by more than ~2 x LR, where a fresh start (seed 1, the
    # override, not cycle 1's seed 0) differs by its random initialisation
    import keras

    import zoo.models  # noqa: F401

    m1, m2 = (outputs[(f"Trainer_c{c}", "model")].uri for c in (1, 2))
    run2 = json.load(open(os.path.join(m2, "Format-Keras", "run.json")))
    assert run2["experiment"]["init_weights"] == os.path.join(m1, "Format-Keras", "model.keras")
    assert run2["train_records"] == [os.path.join(ann.uri, "Split-train", f) for f in _files(ann.uri, "train")]
    k1, k2 = (keras.saving.load_model(os.path.join(m, "Format-Keras", "model.keras")) for m in (m1, m2))
    assert int(k2.optimizer.iterations) == 2
    d = max(float(np.abs(a - b).max()) for a, b in zip(k1.get_weights(), k2.get_weights())
            if a.ndim == 4)  # the conv kernels
    assert 0 < d <= 3 * LR, d


@pytest.mark.tfx
def test_the_table_and_the_evaluators(cycle_run, cycle_setup):
    from pipelines.cycle_pipeline import run_outputs

    config, _, root = cycle_setup
    out, _ = cycle_run
    rows = out["rows"]
    assert [r["cycle"] for r in rows] == [1, 2] and [r["images_annotated"] for r in rows] == [0, 1]
    outputs = run_outputs(out["paths"].metadata_path, "cycle-test")
    ann = outputs[("HistoAnnotate_c2", "examples")]
    assert rows[1]["clicks"] == rows[1]["clicks_total"] == ann.custom_properties["clicks"].int_value > 0
    assert rows[0]["clicks"] == 0 and rows[1]["run_dir"] == outputs[("Trainer_c2", "model")].uri
    assert rows[1]["clicks_per_image"] == config.clicks_per_image
    eval_files = os.path.join(outputs[("EvalRecords", "examples")].uri, "Split-eval")
    for c in (1, 2):
        ev = json.load(open(os.path.join(outputs[(f"HistoEvaluator_c{c}", "evaluation")].uri, "metrics.json")))
        assert ev["records"] == [os.path.join(eval_files, "test-00000.tfrecord.gz")]
        assert ev["current"]["images"] == 1 == rows[c - 1]["eval_images"]
        assert rows[c - 1]["aji"] == ev["current"]["mean"]["aji"]


# --------------------------------------------------------------------------------------------- host side (no tfx)
def test_base_model_weights_beside_the_serving_folder(tmp_path):
    from pipelines.trainer.module import base_model_weights
    from zoo.errors import DataError

    keras_dir = tmp_path / "model" / "7" / "Format-Keras"
    keras_dir.mkdir(parents=True)
    serving = str(tmp_path / "model" / "7" / "Format-Serving")  # what TFX hands the Trainer as fn_args.base_model
    with pytest.raises(DataError, match=r"Format-Keras/model\.keras: .*base_model"):
        base_model_weights(serving)
    (keras_dir / "model.keras").write_bytes(b"")
    assert base_model_weights(serving) == str(keras_dir / "model.keras")
    assert base_model_weights(serving + "/") == str(keras_dir / "model.keras")


def test_the_cli_command_parses():
    from histozoo.cli import build_parser
    from histozoo.commands.pipeline import _cmd_cycle

    args = build_parser().parse_args(["pipeline", "cycle", "mon", "--config", "configs/cycle/monuseg.yaml",
                                      "--cycles", "3", "--eval-max-images", "2"])
    assert args.func is _cmd_cycle and (args.name, args.cycles, args.eval_max_images) == ("mon", 3, 2)


@pytest.mark.tfx
def test_the_cli_reruns_it_from_the_cache(cycle_run, cycle_setup, capsys):
    """``histozoo pipeline cycle`` with the same config and home: every step CACHED, the same table printed."""
    from histozoo.cli import main

    config, _, root = cycle_setup
    out, home = cycle_run
    path = root / "cycle.json"
    path.write_text(json.dumps(config.to_dict()))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["pipeline", "cycle", "cycle-test", "--config", str(path), "--home", str(home),
                     "--eval-max-images", "1", "--mlflow-tracking-uri", f"sqlite:///{home}/mlflow.db"]) == 0
    finally:
        os.chdir(cwd)
    printed = capsys.readouterr().out.splitlines()
    head = [i for i, line in enumerate(printed) if line.startswith("pipeline cycle-test:")]
    assert head and printed[head[-1]].startswith("pipeline cycle-test: 7 steps (0 ran, 7 cached)"), printed
    table = printed[head[-1] + 2:head[-1] + 4]
    for line, r in zip(table, out["rows"]):
        assert line.split()[:6] == [str(r["cycle"]), str(r["images_annotated"]), str(r["clicks"]),
                                    f"{r['dice']:.4f}", f"{r['aji']:.4f}", f"{r['pq']:.4f}"]
