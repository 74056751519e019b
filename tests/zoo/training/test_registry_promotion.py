"""Champion/challenger promotion in the MLflow registry, against the embedded sqlite store and a real server."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.errors import ConfigError


def _tiny_model():
    import keras

    inp = keras.Input((4,))
    return keras.Model(inp, keras.layers.Dense(2)(inp))


def _log_version(name: str, aji: float) -> str:
    from zoo.training.tracking import Tracker

    t = Tracker(experiment="promotion-test", run_name=f"aji-{aji}")
    assert t.enabled, "tracking should be reachable in this test"
    t.log_metrics({"test_aji": aji})
    version = t.log_model(_tiny_model(), registered_name=name)
    t.end()
    assert version is not None
    return version


@pytest.fixture(params=["sqlite", "server"])
def store(request, tmp_path, monkeypatch):
    if request.param == "sqlite":
        monkeypatch.chdir(tmp_path)  # embedded default: mlruns/mlflow.db under the working directory
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        uri = request.getfixturevalue("mlflow_server")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return request.param


def test_promote_only_when_challenger_beats_champion_by_margin(store):
    from zoo.training.tracking import _mlflow, load_model, promote

    name = f"histozoo-promo-{store}"
    v1 = _log_version(name, 0.50)
    d = promote(name, "test_aji", margin=0.01)
    assert d["promoted"] and d["champion_after"] == v1 and d["champion_before"] is None

    v2 = _log_version(name, 0.505)           # gain 0.005 <= margin 0.01: rejected
    d = promote(name, "test_aji", margin=0.01)
    assert not d["promoted"] and d["champion_after"] == v1
    assert d["challenger_value"] == pytest.approx(0.505)
    v3 = _log_version(name, 0.53)            # gain 0.03 > 0.01: promoted
    d = promote(name, "test_aji", margin=0.01)
    assert d["promoted"] and d["champion_after"] == v3 and d["champion_before"] == v1

    client = _mlflow().MlflowClient()
    assert str(client.get_model_version_by_alias(name, "champion").version) == v3
    assert client.get_model_version(name, v2).tags["promotion.decision"] == "rejected"
    assert "0.505" in client.get_model_version(name, v2).tags["promotion.reason"]
    assert client.get_model_version(name, v3).tags["promotion.decision"] == "promoted"

    # the champion loads back as a Keras model and predicts
    m = load_model(f"models:/{name}@champion")
    assert np.asarray(m(np.zeros((1, 4), np.float32))).shape == (1, 2)


def test_promote_errors_are_clear(store):
    from zoo.training.tracking import promote

    with pytest.raises(ConfigError, match="no versions"):
        promote("histozoo-does-not-exist", "test_aji")
    name = f"histozoo-promo-err-{store}"
    _log_version(name, 0.4)
    with pytest.raises(ConfigError, match="no metric 'test_pq'"):
        promote(name, "test_pq")


def test_tracking_unreachable_server_does_not_fail(monkeypatch, tmp_path, capsys):
    from zoo.training.tracking import Tracker

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: nothing listens
    t = Tracker(experiment="x")
    t.log_metrics({"a": 1.0})
    t.end()
    assert not t.enabled
    assert "unreachable" in capsys.readouterr().err
