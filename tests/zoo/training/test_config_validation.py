"""ExperimentConfig is validated when it is built: every top-level type, every nested section against the class that
consumes it, each a one-line ConfigError naming the key (and the file, for ``load``); ``train`` checks the data
folder before any output or MLflow run exists. No training runs here: every failure comes before the first step."""

from __future__ import annotations

import glob
import json
import os
import pathlib

import pytest

from zoo.errors import ConfigError, DataError, ZooError
from zoo.training import ExperimentConfig

REPO = pathlib.Path(__file__).resolve().parents[3]


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def _write(tmp_path, text: str) -> str:
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    return str(p)


# ------------------------------------------------------------------------------------------- nested-section typos
SECTION_TYPOS = [
    ("input", "input: {patch_sise: 128}\n", "input.patch_sise"),
    ("tracking", "tracking: {enabld: false}\n", "tracking.enabld"),
    ("model_config", "model: unet\nmodel_config: {num_clases: 3}\n", "model_config.num_clases"),
    ("loss_config", "loss: dice\nloss_config: {smoth: 1.0}\n", "loss_config.smoth"),
    ("postprocess method", "postprocess: {method: three_clas}\n", "three_clas"),
    ("postprocess key", "postprocess: {method: threshold, treshold: 0.5}\n", "postprocess.treshold"),
]


@pytest.mark.parametrize("section,text,names", SECTION_TYPOS, ids=[s[0] for s in SECTION_TYPOS])
def test_a_typo_in_each_nested_section_fails_when_the_config_is_loaded(tmp_path, section, text, names):
    path = _write(tmp_path, "name: typo\n" + text)
    with pytest.raises(ConfigError) as e:
        ExperimentConfig.load(path)
    msg = _one_line(e)
    assert msg.startswith(f"{path}: "), msg
    assert names in msg, msg


@pytest.mark.parametrize("section,text,names", SECTION_TYPOS, ids=[s[0] for s in SECTION_TYPOS])
def test_a_typo_in_each_nested_section_fails_at_construction(section, text, names):
    import yaml

    with pytest.raises(ConfigError) as e:
        ExperimentConfig.from_dict(yaml.safe_load(text))
    assert names in _one_line(e)


def test_wrong_types_inside_sections_name_the_key():
    cases = [({"input": {"patch_size": "big"}}, "input.patch_size"),
             ({"tracking": {"enabled": "no"}}, "tracking.enabled"),
             ({"tracking": {"register_as": ["a"]}}, "tracking.register_as"),
             ({"model_config": {"depth": "deep"}}, "'depth'"),
             ({"loss": "dice", "loss_config": {"include_background": "yes"}}, "loss_config.include_background"),
             ({"loss_config": {"class_weights": "1,2"}}, "loss_config.class_weights"),
             ({"postprocess": {"method": "threshold", "threshold": "high"}}, "postprocess.threshold"),
             ({"input": [1, 2]}, "input"), ({"tracking": "off"}, "tracking")]
    for kw, names in cases:
        with pytest.raises(ConfigError) as e:
            ExperimentConfig(**kw)
        assert names in _one_line(e), (kw, str(e.value))


def test_unknown_model_and_loss_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"unknown model 'unett' \(available: .*unet"):
        ExperimentConfig(model="unett")
    with pytest.raises(ConfigError, match=r"unknown loss 'dise' \(available: .*dice"):
        ExperimentConfig(loss="dise")


def test_model_classes_and_postprocess_must_fit_the_targets():
    with pytest.raises(ConfigError, match="model_config.num_classes.*input.target 'three_class'"):
        ExperimentConfig(model_config={"num_classes": 2}, input={"target": "three_class"})
    with pytest.raises(ConfigError, match="postprocess.method.*three_class needs at least 3"):
        ExperimentConfig(model_config={"num_classes": 2}, input={"target": "binary"},
                         postprocess={"method": "three_class"})


def test_tracking_config_is_typed_with_defaults():
    from zoo.training.config import TrackingConfig

    cfg = ExperimentConfig(tracking={"register_as": "x"})
    assert cfg.tracking_config() == TrackingConfig(enabled=True, experiment="histozoo", register_as="x", log_model=True)
    assert cfg.tracking == {"register_as": "x"}  # stored as given: to_dict / YAML round-trip exactly
    assert cfg.input_config().seed == cfg.seed


# ------------------------------------------------------------------------------------------- top-level types
@pytest.mark.parametrize("key,value,want", [
    ("epochs", "five", "expected an integer"), ("epochs", [1, 2], "expected an integer"),
    ("epochs", True, "expected an integer"), ("steps_per_epoch", 2.5, "expected an integer"),
    ("fold", "nine", "expected an integer or null"), ("seed", [1, 2], "expected an integer"),
    ("eval_every", "1", "expected an integer"),
    ("learning_rate", "fast", "expected a finite number"), ("learning_rate", True, "expected a finite number"),
    ("momentum", "high", "expected a finite number"), ("weight_decay", float("nan"), "expected a finite number"),
    ("name", ["a", "b"], "expected a string"), ("data_dir", ["a"], "expected a string"),
    ("model", 3, "expected a string"), ("train_split", None, "expected a string"),
])
def test_top_level_types_are_checked_naming_the_key(tmp_path, key, value, want):
    with pytest.raises(ConfigError) as e:
        ExperimentConfig(**{key: value})
    assert _one_line(e).startswith(f"{key}: {want}")
    path = _write(tmp_path, json.dumps({key: value}) if value == value else f"{key}: .nan\n")
    with pytest.raises(ConfigError) as e:
        ExperimentConfig.load(path)
    assert _one_line(e).startswith(f"{path}: {key}: {want}")


def test_ranges_and_accepted_forms():
    cfg = ExperimentConfig(learning_rate=1, momentum=0, fold=None)
    assert isinstance(cfg.learning_rate, float) and cfg.learning_rate == 1.0
    assert ExperimentConfig(fold=3).fold == 3
    for kw, msg in [({"epochs": 0}, "epochs must be >= 1"), ({"fold": 0}, "fold must be >= 1"),
                    ({"learning_rate": 0}, "learning_rate must be > 0"), ({"seed": -1}, "seed must be >= 0"),
                    ({"momentum": 1.5}, "momentum must lie in"), ({"beta_2": 1.0}, "beta_2 must lie in"),
                    ({"beta_1": -0.1}, "beta_1 must lie in"), ({"weight_decay": -1}, "weight_decay must be >= 0"),
                    ({"name": ""}, "name: must not be empty"), ({"optimizer": "rmsprop"}, "optimizer must be one of")]:
        with pytest.raises(ConfigError, match=msg):
            ExperimentConfig(**kw)


def test_yaml_exponent_floats_without_a_dot_load_as_numbers(tmp_path):
    cfg = ExperimentConfig.load(_write(tmp_path, "learning_rate: 1e-4\nweight_decay: 5E-5\n"))
    assert cfg.learning_rate == pytest.approx(1e-4) and cfg.weight_decay == pytest.approx(5e-5)


def test_load_prefixes_the_path_to_every_error(tmp_path):
    for text in ("1: 2\n", "epochz: 3\n", "input: {patch_size: [1]}\n", "- a\n- b\n"):
        path = _write(tmp_path, text)
        with pytest.raises(ConfigError) as e:
            ExperimentConfig.load(path)
        assert _one_line(e).startswith(f"{path}: "), text


def test_validation_steps_is_gone_but_old_saved_configs_still_load(tmp_path):
    assert "validation_steps" not in ExperimentConfig().to_dict()
    assert ExperimentConfig.from_dict({"validation_steps": 0}) == ExperimentConfig()
    with pytest.raises(ConfigError, match="validation_steps: no longer an option"):
        ExperimentConfig.load(_write(tmp_path, "validation_steps: 5\n"))


def test_every_shipped_config_loads_and_round_trips(tmp_path):
    """Every experiment config under configs/ loads and round-trips; configs/cycle holds annotation-cycle configs
    (zoo.interactive.cycle.CycleConfig), checked the same way with their own loader."""
    from zoo.interactive.cycle import CycleConfig

    paths = sorted(glob.glob(str(REPO / "configs" / "**" / "*.yaml"), recursive=True))
    cycles = [p for p in paths if os.path.basename(os.path.dirname(p)) == "cycle"]
    assert paths and cycles
    for p in cycles:
        cfg = CycleConfig.load(p)
        assert CycleConfig.from_dict(cfg.to_dict()) == cfg, p
    for p in sorted(set(paths) - set(cycles)):
        cfg = ExperimentConfig.load(p)
        assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg, p
        out = tmp_path / os.path.basename(p)
        cfg.save(str(out))
        assert ExperimentConfig.load(str(out)) == cfg, p
        assert ExperimentConfig.load(str(out)).to_dict() == cfg.to_dict(), p


# ------------------------------------------------------------------------------------------- data source, no run
@pytest.fixture
def no_tracker(monkeypatch, tmp_path):
    """MLflow pointed at an sqlite file in tmp_path, and Tracker made to fail the test if it is ever constructed."""
    import importlib

    train_mod = importlib.import_module("zoo.training.train")  # the module (zoo.training.train is the function)
    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.chdir(tmp_path)

    def boom(*a, **k):
        raise AssertionError("Tracker constructed: an MLflow run would have started")

    monkeypatch.setattr(train_mod, "Tracker", boom)
    yield db
    assert not db.exists() or _runs(db) == 0


def _runs(db) -> int:
    import sqlite3

    with sqlite3.connect(db) as con:
        try:
            return con.execute("select count(*) from runs").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def _fake_built(d: pathlib.Path, folds: bool) -> pathlib.Path:
    """A built-data folder's files without any records in them (nothing is read before the checks)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "summary.json").write_text(json.dumps({"dataset": "fake", "splits": {}}))
    (d / "train-00000.tfrecord.gz").write_bytes(b"")
    if folds:
        (d / "folds.json").write_text(json.dumps({"folds": [{"fold": 1, "train": [], "test": []}]}))
    return d


def _train_fails(config, tmp_path, exc=ZooError) -> str:
    from zoo.training import train

    out = tmp_path / "run"
    with pytest.raises(exc) as e:
        train(config, output_dir=str(out), verbose=0)
    assert not out.exists(), "train() wrote output before checking its data"
    return _one_line(e)


def test_missing_data_dir_with_a_fold_names_the_path(tmp_path, no_tracker):
    missing = tmp_path / "build" / "tnbc"
    msg = _train_fails(ExperimentConfig(data_dir=str(missing), fold=9), tmp_path, DataError)
    assert str(missing) in msg and "does not exist" in msg and "list of shards" not in msg


def test_data_dir_without_summary_or_folds_names_the_path(tmp_path, no_tracker):
    plain = tmp_path / "plain"
    plain.mkdir()
    msg = _train_fails(ExperimentConfig(data_dir=str(plain)), tmp_path, DataError)
    assert str(plain) in msg and "summary.json" in msg
    built = _fake_built(tmp_path / "nofolds", folds=False)
    msg = _train_fails(ExperimentConfig(data_dir=str(built), fold=2), tmp_path, DataError)
    assert str(built / "folds.json") in msg and "fold=2" in msg
    withfolds = _fake_built(tmp_path / "folds", folds=True)
    msg = _train_fails(ExperimentConfig(data_dir=str(withfolds), fold=4), tmp_path, DataError)
    assert "fold 4 does not exist" in msg and str(withfolds) in msg


def test_no_data_dir_fails_before_any_run(tmp_path, no_tracker):
    msg = _train_fails(ExperimentConfig(), tmp_path, ConfigError)
    assert "set data_dir" in msg


def test_a_bad_config_file_never_reaches_train_or_mlflow(tmp_path, no_tracker):
    """The CLI path: the config is loaded (and rejected) before train() is called, so no run is created."""
    from histozoo.cli import main

    path = _write(tmp_path, "name: bad\ninput: {patch_sise: 64}\ntracking: {enabled: true}\n")
    assert main(["train", "--config", path]) == 2
    assert not (tmp_path / "runs").exists()
