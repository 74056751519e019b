"""``histozoo synth`` as a TFX step, in the TFX environment: HistoSynthGen makes 4 synthetic images from 2 real
MoNuSeg tissue images, the Trainer trains two steps on them (and only on them), the Evaluator scores the real
TNBC eval split. Run inside the environment:
``scripts/tfx_env.sh run python -m pytest -q -m tfx tests/pipelines/test_synth_pipeline.py``.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

pytestmark = pytest.mark.tfx

MONUSEG_IMAGES = ("TCGA-2Z-A9J9-01A-01-TS1.png", "TCGA-44-2665-01B-06-BS6.png")  # MoNuSegTestData, pixels only
N = 4  # write_synthetic: round(4 * 0.8) = 3 train, 1 val
SYNTH_OPTIONS = {"tile_size": 128, "nuclei_min": 5, "nuclei_max": 10}


@pytest.fixture(scope="module")
def monuseg_images(shared_data, tmp_path_factory):
    src = shared_data / "monuseg2018" / "MoNuSegTestData"
    d = tmp_path_factory.mktemp("monuseg_images")
    for name in MONUSEG_IMAGES:
        shutil.copy2(src / name, d / name)
    return d


@pytest.fixture(scope="module")
def synth_run(monuseg_images, tnbc_small, tiny_experiment, tmp_path_factory):
    from pipelines import configs
    from pipelines.local_runner import run_local

    home = tmp_path_factory.mktemp("tfx_synth_home")
    uri = f"sqlite:///{home}/mlflow.db"
    cwd = os.getcwd()
    os.chdir(home)
    try:
        synth = {"images": str(monuseg_images), "n": N, "seed": 3, "options": SYNTH_OPTIONS}
        out = run_local(tiny_experiment("tfx-synth"), "tnbc", str(tnbc_small), name="tnbc-synth", home=str(home),
                        beam_args=configs.direct_beam_args(1, "in_memory"), mlflow_tracking_uri=uri,
                        registered_model_name="tnbc-synth", synth=synth, quiet=True,
                        # the installed run_fn (as on Kubeflow): no user-module wheel to build; one eval image
                        run_fn=configs.RUN_FN, eval_max_images=1)
    finally:
        os.chdir(cwd)
    return out, home


def _one(root, component, key):
    base = os.path.join(root, component, key)
    (d,) = os.listdir(base)
    return os.path.join(base, d)


def test_synth_step_feeds_the_trainer_synthetic_records_only(synth_run, monuseg_images):
    import numpy as np

    from zoo.data import records
    from zoo.synthesis import SynthesisConfig
    from zoo.synthesis.compose import synthesize
    from zoo.data.imageio import read_rgb

    out, _ = synth_run
    states = {s["node"]: s["state"] for s in out["steps"]}
    assert states["HistoSynthGen"] == "COMPLETE" and states["Trainer"] == "COMPLETE", out["steps"]
    root = out["paths"].pipeline_root
    examples = _one(root, "HistoSynthGen", "examples")
    got = {}
    for split in ("train", "eval"):
        files = sorted(os.path.join(examples, f"Split-{split}", f)
                       for f in os.listdir(os.path.join(examples, f"Split-{split}")))
        got[split] = {s.image_id: s for s in records.read_samples(files)}
    # write_synthetic's 80-20 split: round(4 * 0.8) = 3 train, 1 val -> eval
    assert sorted(got["train"]) == [f"synthetic-3-{i:05d}" for i in range(3)]
    assert sorted(got["eval"]) == ["synthetic-3-00003"]
    # the step ran the same synthesis as histozoo synth: image 0 again, by zoo.synthesis directly
    paths = sorted(str(monuseg_images / n) for n in MONUSEG_IMAGES)
    tile = synthesize([read_rgb(p) for p in paths], SynthesisConfig.from_dict(SYNTH_OPTIONS), seed=3, index=0,
                      names=paths)
    s0 = got["train"]["synthetic-3-00000"]
    assert s0.image.shape == (128, 128, 3) and (s0.image == tile.image).all()
    assert (s0.instances == tile.instances).all() and s0.num_instances == len(np.unique(tile.instances)) - 1
    with open(os.path.join(examples, "summary.json")) as fh:
        assert json.load(fh)["options"]["n"] == N

    # the Trainer read the synthetic records, not the TNBC ones, and wrote a model of two steps
    model_uri = _one(root, "Trainer", "model")
    with open(os.path.join(model_uri, "Format-Keras", "run.json")) as fh:
        run = json.load(fh)
    assert run["train_records"] and all(p.startswith(os.path.join(examples, "Split-train"))
                                        for p in run["train_records"])
    assert all(p.startswith(os.path.join(examples, "Split-eval")) for p in run["eval_records"])
    assert os.path.isfile(os.path.join(model_uri, "Format-Serving", "saved_model.pb"))
    import keras

    import zoo.models  # noqa: F401

    model = keras.saving.load_model(os.path.join(model_uri, "Format-Keras", "model.keras"))
    assert int(model.optimizer.iterations) == 2  # epochs 1 x steps_per_epoch 2


def test_evaluator_scores_the_real_eval_split(synth_run, small_tnbc_ids):
    out, _ = synth_run
    with open(os.path.join(_one(out["paths"].pipeline_root, "HistoEvaluator", "evaluation"), "metrics.json")) as fh:
        ev = json.load(fh)
    # one image (eval_max_images=1) of TNBC fold 1's eval patient, not a synthetic image
    assert ev["current"]["images"] == 1
    assert ev["current"]["per_image"][0]["image_id"] in small_tnbc_ids["01"]
    assert ev["records"] and all("/HistoExampleGen/examples/" in r for r in ev["records"])


def test_cli_flags_build_the_synth_argument(tmp_path):
    from histozoo.cli import build_parser
    from histozoo.commands.pipeline import _pipeline_kwargs

    args = build_parser().parse_args(["pipeline", "run", "x", "--config", "c.yaml", "--dataset", "tnbc",
                                      "--data-root", "d", "--synth-images", str(tmp_path), "--synth-n", "4",
                                      "--synth-option", "tile_size=128", "--synth-seed", "3"])
    assert _pipeline_kwargs(args)["synth"] == {"images": str(tmp_path), "n": 4, "seed": 3,
                                               "options": {"tile_size": 128}, "refiner": ""}
