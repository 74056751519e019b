"""The annotation cycle (zoo.interactive.cycle, ``histozoo cycle``; Bhatia ch. 4, Table 4.1): the simulated annotator
by hand, the config's one-line errors, and three cycles on small real MoNuSeg crops with zoo.interactive.tiny() and a
tiny U-Net (1 training step per cycle): table rows, clicks within budget, resuming after an injected failure, and
the rule that the records written hold the models' masks, never MoNuSeg's ground truth."""

import json
import os
import re

import numpy as np
import pytest

import zoo.evaluation
import zoo.training
from histozoo.cli import main
from zoo import interactive
from zoo.data import records
from zoo.data.sample import Sample
from zoo.errors import ConfigError
from zoo.interactive import cycle
from zoo.interactive.cycle import CycleConfig, annotate_image


# --------------------------------------------------------------------------------------------- by hand
def _disk(shape, y, x, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - y) ** 2 + (xx - x) ** 2 <= r * r


class FakeSegmenter:
    """The interactive model's stand-in: a disk of radius 3 at the last positive click; it records its calls."""

    def __init__(self, shape):
        self.shape, self.calls = shape, []

    def __call__(self, clicks, prev):
        self.calls.append((list(clicks), None if prev is None else prev.copy()))
        y, x, _ = [c for c in clicks if c[2]][-1]
        return _disk(self.shape, y, x, 3)


def _hand_case():
    gt = np.zeros((40, 40), np.int32)
    gt[10:20, 10:20] = 1  # nucleus 1: the proposal has its left half only (IoU 0.5)
    gt[25:33, 25:33] = 2  # nucleus 2: the proposal is exact (IoU 1)
    prop = np.zeros_like(gt)
    prop[10:20, 10:15] = 5
    prop[25:33, 25:33] = 9
    prop[2:6, 30:36] = 4  # a false positive: touches no nucleus
    return gt, prop


def test_the_simulated_annotator_by_hand():
    gt, prop = _hand_case()
    seg = FakeSegmenter(gt.shape)
    labels, stats = annotate_image(np.zeros((40, 40, 3), np.uint8), gt, prop, seg, budget=5, per_nucleus=1)
    # nucleus 1: one click against the proposal, at the deepest false-negative pixel: in cols 15..19 the distance
    # to the proposal (col 14) and to col 20 is 3 at col 17, rows 12..17 -> first in row-major order (12, 17);
    # the proposal is the network's previous mask
    assert len(seg.calls) == 1 and seg.calls[0][0] == [(12, 17, True)]
    np.testing.assert_array_equal(seg.calls[0][1], prop == 5)
    disk = _disk(gt.shape, 12, 17, 3)
    np.testing.assert_array_equal(labels == 1, disk)  # the interactive mask, not nucleus 1 of the ground truth
    np.testing.assert_array_equal(labels == 2, gt == 2)  # nucleus 2: the proposal accepted as it is (no click)
    assert not (labels[2:6, 30:36]).any()  # the false positive deleted with one click
    assert set(np.unique(labels)) == {0, 1, 2}  # the half proposal under label 1 is replaced by it
    assert stats == dict(clicks=2, nuclei=2, accepted=1, corrected=1, unreached=0, empty=0, deleted=1, kept=0)
    assert not np.array_equal(labels > 0, gt > 0)


def test_the_budget_caps_the_clicks():
    gt, prop = _hand_case()
    seg = FakeSegmenter(gt.shape)
    labels, stats = annotate_image(np.zeros((40, 40, 3), np.uint8), gt, prop, seg, budget=1, per_nucleus=4)
    # the one click goes to nucleus 1 (the disk reaches IoU 29 / 100 < 0.85, but the budget is spent); nothing is
    # left to delete the false positive with, so it is kept as the automatic model made it
    assert stats["clicks"] == 1 and len(seg.calls) == 1 and stats["deleted"] == 0 and stats["kept"] == 1
    np.testing.assert_array_equal(labels == 3, prop == 4)
    labels, stats = annotate_image(np.zeros((40, 40, 3), np.uint8), gt, np.zeros_like(gt), FakeSegmenter(gt.shape),
                                   budget=0)
    assert stats["clicks"] == 0 and stats["unreached"] == 2 and not labels.any()  # no budget, no proposals: no labels
    # an interactive model that returns nothing: nucleus 1 takes its 2 clicks and stays unlabelled (empty), the
    # false positive is deleted (click 3), and the untouched half proposal of nucleus 1 is kept as it is
    labels, stats = annotate_image(np.zeros((40, 40, 3), np.uint8), gt, prop, lambda c, p: np.zeros(gt.shape, bool),
                                   budget=10, per_nucleus=2)
    assert stats == dict(clicks=3, nuclei=2, accepted=1, corrected=1, unreached=0, empty=1, deleted=1, kept=1)
    np.testing.assert_array_equal(labels, np.where(gt == 2, 1, np.where(prop == 5, 2, 0)))


# --------------------------------------------------------------------------------------------- config
def test_config_errors_name_the_file_and_key(tmp_path, capsys):
    base = {"initial_model": "a", "interactive_model": "b", "train_config": "c.yaml", "synthetic_data": "s",
            "pool_data": "p", "eval_data": "e", "batches": [["x"], ["y"]]}
    assert CycleConfig.from_dict(base).cycles == 3
    for change, key in (({"clicks_per_image": -1}, "clicks_per_image"), ({"accept_iou": 1.5}, "accept_iou"),
                        ({"batches": [["x"], ["x"]]}, "batches"), ({"bogus": 1}, "bogus")):
        path = tmp_path / "bad.yaml"
        path.write_text(json.dumps({**base, **change}))
        with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: .*{key}"):
            CycleConfig.load(str(path))
    path.write_text(json.dumps({k: v for k, v in base.items() if k != "pool_data"}))
    assert main(["cycle", "--config", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "'pool_data'" in err


def test_the_shipped_config_loads():
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    cfg = CycleConfig.load(os.path.join(repo, "configs", "cycle", "monuseg.yaml"))
    assert cfg.cycles == 5 and cfg.crop == 400 and all(len(b) == 1 for b in cfg.batches)  # Bhatia 4.1


# --------------------------------------------------------------------------------------------- real crops
SIDE = 96
CROP = 64  # the cycle annotates the centre 64 px of each 96 px pool crop (about 2 nuclei of MoNuSeg's ~480 per Mpx)


def _crop(s, split):
    y0 = x0 = 300  # an inner 96 px window of the 1000 px tile
    inst = s.instances[y0:y0 + SIDE, x0:x0 + SIDE]
    return Sample(image=np.ascontiguousarray(s.image[y0:y0 + SIDE, x0:x0 + SIDE]), image_id=s.image_id,
                  dataset=s.dataset, source_id=s.source_id, split=split, instances=inst.astype(np.uint16),
                  mpp=s.mpp)


def _write(out, samples):
    from zoo.data.build import write_samples

    write_samples(out, samples)
    return str(out)


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory, disk_tiles):
    """Real 64 px MoNuSeg crops (2 training images as the unlabelled pool, 1 test image to score), 2 hand-made
    "synthetic" tiles, a tiny U-Net trained 1 step on them (cycle 1), and zoo.interactive.tiny() saved as .keras."""
    from zoo.data.readers import get_reader
    from zoo.training import ExperimentConfig, train

    root = tmp_path_factory.mktemp("cycle")
    reader = get_reader("monuseg2018")(str(shared_data / "monuseg2018"))
    items = reader.items()
    train_items = [i for i in items if i[0] == "train"][1:3]
    test_item = [i for i in items if i[0] == "test"][0]
    pool = [_crop(reader.read(i), "train") for i in train_items]
    _write(root / "pool", pool)
    _write(root / "eval", [_crop(reader.read(test_item), "test")])
    _write(root / "synth", disk_tiles(2, SIDE))
    train_config = {"name": "tiny-unet", "model": "unet", "model_config": {"num_classes": 3, "base_filters": 4,
                                                                           "depth": 2},
                    "val_split": "", "epochs": 1, "steps_per_epoch": 1, "learning_rate": 1e-3,
                    "input": {"patch_size": 32, "batch_size": 2, "target": "three_class", "patches_per_image": 1,
                              "shuffle_buffer": 1},
                    "postprocess": {"method": "three_class"}, "tracking": {"enabled": False}}
    train(ExperimentConfig.from_dict({**train_config, "data_dir": str(root / "synth")}),
          output_dir=str(root / "initial"), verbose=0)
    interactive.tiny().model.save(str(root / "tiny_interactive.keras"))
    config = CycleConfig(initial_model=str(root / "initial"), interactive_model=str(root / "tiny_interactive.keras"),
                         train_config=train_config, synthetic_data=str(root / "synth"), pool_data=str(root / "pool"),
                         eval_data=str(root / "eval"), batches=[[pool[0].image_id], [pool[1].image_id]], crop=CROP,
                         clicks_per_image=6, clicks_per_nucleus=2)
    return config, {s.image_id: s for s in pool}


def test_three_cycles_resume_after_a_failure_and_never_train_on_ground_truth(setup, tmp_path, monkeypatch, capsys):
    config, pool = setup
    out = str(tmp_path / "cycle")
    real_train, real_evaluate, real_annotate = zoo.training.train, zoo.evaluation.evaluate, cycle.annotate_image
    made = {}  # image id -> the label map the simulated annotator returned

    def spy_annotate(image, gt, proposal, segment, **kw):
        labels, stats = real_annotate(image, gt, proposal, segment, **kw)
        made[len(made)] = (gt.copy(), labels.copy(), stats)
        return labels, stats

    def failing_train(cfg, **kw):
        raise RuntimeError("injected: killed after cycle 2's records were written")

    monkeypatch.setattr(cycle, "annotate_image", spy_annotate)
    monkeypatch.setattr(zoo.training, "train", failing_train)
    with pytest.raises(RuntimeError, match="injected"):
        cycle.run_cycles(config, out, progress=False)
    rows = json.load(open(os.path.join(out, "cycles.json")))
    assert [r["cycle"] for r in rows] == [1] and rows[0]["clicks"] == 0 and rows[0]["images_annotated"] == 0
    assert os.path.isfile(os.path.join(out, "cycle_02", "records", "summary.json")) and len(made) == 1

    calls = {"train": [], "evaluate": 0, "annotate": 0}

    def counting_train(cfg, **kw):
        calls["train"].append((cfg, kw))
        return real_train(cfg, **kw)

    def counting_evaluate(*a, **kw):
        calls["evaluate"] += 1
        return real_evaluate(*a, **kw)

    real_batch = cycle.annotate_batch

    def counting_batch(*a, **kw):
        calls["annotate"] += 1
        return real_batch(*a, **kw)

    monkeypatch.setattr(zoo.training, "train", counting_train)
    monkeypatch.setattr(zoo.evaluation, "evaluate", counting_evaluate)
    monkeypatch.setattr(cycle, "annotate_batch", counting_batch)
    path = tmp_path / "cycle.json"
    path.write_text(json.dumps(config.to_dict()))
    cli = ["cycle", "--config", str(path), "--out", out, "--quiet"]
    assert main(cli) == 0  # the rerun, through the command line
    printed = capsys.readouterr().out
    assert "table:" in printed and config.initial_model in printed
    rows = json.load(open(os.path.join(out, "cycles.json")))
    # the rerun skips cycle 1 (no evaluation) and cycle 2's annotation (its records are complete)
    assert [r["cycle"] for r in rows] == [1, 2, 3] and calls["evaluate"] == 2 and calls["annotate"] == 1
    assert len(made) == 2
    # each retraining starts from the previous cycle's weights, on synthetic + every crop annotated so far
    (cfg2, kw2), (cfg3, kw3) = calls["train"]
    assert cfg2.init_weights == config.initial_model
    assert cfg3.init_weights == os.path.join(out, "cycle_02", "run")
    synth = records.list_shards(config.synthetic_data, "train")
    assert kw2["train_records"] == synth + records.list_shards(os.path.join(out, "cycle_02", "records"), "train")
    assert kw3["train_records"] == kw2["train_records"] + records.list_shards(
        os.path.join(out, "cycle_03", "records"), "train")
    # the table: cumulative images, clicks within each image's budget, the metrics of a real evaluation
    log2 = json.load(open(os.path.join(out, "cycle_02", "annotation.json")))
    log3 = json.load(open(os.path.join(out, "cycle_03", "annotation.json")))
    assert [r["images_annotated"] for r in rows] == [0, 1, 2]
    assert [r["clicks"] for r in rows] == [0, log2["clicks"], log3["clicks"]]
    assert rows[2]["clicks_total"] == log2["clicks"] + log3["clicks"] > 0
    for r in log2["images"] + log3["images"]:
        assert 0 < r["clicks"] <= config.clicks_per_image
    for r in rows:
        assert r["eval_images"] == 1 and all(0 <= r[k] <= 1 for k in ("dice", "aji", "pq"))
    assert rows[2]["run_dir"] == os.path.join(out, "cycle_03", "run")
    assert open(os.path.join(out, "cycles.csv")).readline().strip() == ",".join(cycle.COLUMNS)
    # never trained on ground truth: the records hold exactly the annotator's label maps, which differ from the
    # crops' MoNuSeg instance maps
    for k, c in enumerate((2, 3)):
        (s,) = records.read_samples(records.list_shards(os.path.join(out, f"cycle_{c:02d}", "records"), "train"))
        gt, labels, _ = made[k]
        assert len(np.unique(gt)) > 1  # the crop holds nuclei
        np.testing.assert_array_equal(gt, cycle.centre_crop(pool[s.image_id].instances, CROP))
        np.testing.assert_array_equal(s.instances, labels)
        assert not np.array_equal(s.instances > 0, gt > 0)
        assert s.points_yx is None and s.class_map is None and s.image.shape == (CROP, CROP, 3)
    # done cycles are not run again; another config in the same folder is refused
    assert main(cli) == 0 and json.load(open(os.path.join(out, "cycles.json"))) == rows and calls["evaluate"] == 2
    with pytest.raises(ConfigError, match="another cycle config"):
        cycle.run_cycles(CycleConfig(**{**config.__dict__, "clicks_per_image": 7}), out, progress=False)


def test_annotation_runs_at_the_interactive_models_resolution(setup, tmp_path):
    """A pool image 25 % off the interactive model's µm/px (beyond the inference contract's 2 %): the simulated
    annotator works on the crop resampled to the model's resolution (80 px for 64), and the labels written are back
    on the image's own 64 x 64 pixels, numbered 1..N."""
    from zoo.training.tracking import load

    config, pool = setup
    s = pool[config.batches[0][0]]
    seen = []

    class Stand:  # a stand-in interactive model: a disk of radius 4 at the last positive click
        mpp = s.mpp / 1.25

        def segment(self, image, clicks, prev_mask=None, fbrs=False):
            seen.append(image.shape[:2])
            pos = [c[:2] for c in clicks if c[2]]
            return _disk(image.shape[:2], *pos[-1], 4) if pos else np.zeros(image.shape[:2], bool)

    out = cycle.annotate_batch(config, config.batches[0], load(config.initial_model), Stand(), str(tmp_path / "rec"))
    written = next(records.read_samples(records.list_shards(str(tmp_path / "rec"), "train")))
    assert seen and set(seen) == {(80, 80)}
    assert written.instances.shape == (CROP, CROP) and written.image.shape == (CROP, CROP, 3)
    ids = np.unique(written.instances[written.instances > 0])
    assert out["clicks"] > 0 and np.array_equal(ids, np.arange(1, ids.size + 1))
