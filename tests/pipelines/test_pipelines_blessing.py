"""Host-side tests (no tfx) of the Evaluator's blessing rule and the pipeline constants."""

from __future__ import annotations

import pytest

from pipelines import blessing, configs
from zoo.errors import ConfigError


def test_thresholds_only_without_a_baseline():
    ok, why = blessing.decide({"dice": 0.71, "aji": 0.52}, {"dice": 0.7, "aji": 0.5})
    assert ok and why[-1] == "no blessed baseline: thresholds only"
    ok, why = blessing.decide({"dice": 0.69, "aji": 0.52}, {"dice": 0.7, "aji": 0.5})
    assert not ok and "dice=0.6900 < threshold 0.7" in why


def test_candidate_must_beat_the_baseline_by_the_margin():
    th = {"aji": 0.0}
    assert blessing.decide({"aji": 0.55}, th, {"aji": 0.50}, "aji", 0.04)[0]        # +0.05 > 0.04
    ok, why = blessing.decide({"aji": 0.53}, th, {"aji": 0.50}, "aji", 0.04)         # +0.03 <= 0.04
    assert not ok and why[-1] == "aji=0.5300 vs baseline 0.5000: +0.0300 <= 0.04"
    assert not blessing.decide({"aji": 0.5}, th, {"aji": 0.5}, "aji", 0.0)[0]        # a tie keeps the baseline


def test_missing_or_nan_metric_is_not_blessed():
    assert not blessing.decide({"dice": 0.9}, {"aji": 0.1})[0]
    assert not blessing.decide({"aji": float("nan")}, {"aji": 0.1})[0]
    assert not blessing.decide({"aji": 0.9}, {}, {"dice": 0.1}, "aji")[0]


def test_bad_thresholds_raise_config_error():
    with pytest.raises(ConfigError, match="threshold for 'aji' must be a number"):
        blessing.check_thresholds({"aji": "high"})
    with pytest.raises(ConfigError, match="mapping"):
        blessing.check_thresholds([0.5])


def test_local_paths_and_names(tmp_path, monkeypatch):
    monkeypatch.setenv(configs.HOME_ENV, str(tmp_path))
    p = configs.local_paths("tnbc-unet")
    assert p.pipeline_root == str(tmp_path / "pipelines" / "tnbc-unet")
    assert p.metadata_path == str(tmp_path / "metadata" / "tnbc-unet" / "metadata.db")
    assert p.serving_dir == str(tmp_path / "serving" / "tnbc-unet")
    assert configs.pipeline_name("TNBC U-Net fold 1") == "tnbc-u-net-fold-1"
    assert configs.direct_beam_args(2) == ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    with pytest.raises(ConfigError, match="direct running mode"):
        configs.direct_beam_args(1, "threads")


def test_cli_without_tfx_says_how_to_get_it(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("tfx") is not None:
        pytest.skip("tfx is installed here: the message is for hosts without it")
    from histozoo.cli import main

    rc = main(["pipeline", "run", "x", "--config", "c.yaml", "--dataset", "tnbc", "--data-root", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "scripts/tfx_env.sh run" in err[0]
