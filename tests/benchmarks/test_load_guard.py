"""benchmarks/_common.py: every benchmark refuses a busy machine (1-min load average above 1.0 at start), runs
flagged with --max-load, and records the load at start and end. The load is injected (os.getloadavg patched),
never produced by loading the machine."""

import argparse
import importlib.util
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(HERE, "..", "..", "benchmarks")
SCRIPTS = sorted(f[:-3] for f in os.listdir(BENCH) if f.endswith(".py") and not f.startswith("_"))  # every script


@pytest.fixture
def common():
    spec = importlib.util.spec_from_file_location("bench_common", os.path.join(BENCH, "_common.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_common"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    yield mod
    del sys.modules["bench_common"]


def _loads(monkeypatch, *values):
    seq = iter(values)
    monkeypatch.setattr(os, "getloadavg", lambda: next(seq))


def test_a_busy_machine_is_refused_in_one_line(common, monkeypatch, capsys):
    _loads(monkeypatch, (1.37, 0.9, 0.5))
    with pytest.raises(SystemExit) as exit_:
        common.LoadGuard.start(None)
    assert exit_.value.code == common.REFUSED_EXIT == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("refused: 1-min load average 1.37 > 1.00 at start (load 1.37 0.90 0.50)")


def test_a_quiet_machine_runs_unflagged_and_records_start_and_end(common, monkeypatch, capsys):
    _loads(monkeypatch, (1.0, 2.0, 3.0), (0.42, 0.8, 1.1))  # 1.0 is not above the threshold
    guard = common.LoadGuard.start(None)
    record = guard.finish()
    assert record["load_start"] == [1.0, 2.0, 3.0] and record["load_end"] == [0.42, 0.8, 1.1]
    assert record["flagged"] is False and record["max_load"] == 1.0 and record["flag_reasons"] == []
    assert capsys.readouterr().out.splitlines() == ["load average at start: 1.00 2.00 3.00 (1, 5, 15 min)",
                                                   "load average at end: 0.42 0.80 1.10 (1, 5, 15 min)"]


def test_max_load_overrides_and_flags_the_run(common, monkeypatch, capsys):
    _loads(monkeypatch, (3.5, 3.0, 2.0), (0.7, 2.0, 2.0))
    guard = common.LoadGuard.start(4.0)
    assert guard.finish()["flagged"] is True
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "load average at start: 3.50 3.00 2.00 (1, 5, 15 min)  FLAGGED: --max-load 4 overrides 1"
    assert out[1] == "load average at end: 0.70 2.00 2.00 (1, 5, 15 min)  FLAGGED: --max-load 4 (start load 3.50)"
    _loads(monkeypatch, (4.01, 3.0, 2.0))
    with pytest.raises(SystemExit):  # the override is a threshold, not a pass
        common.LoadGuard.start(4.0)


def test_a_load_that_rises_during_the_run_flags_it(common, monkeypatch, capsys):
    monkeypatch.setattr(common.os, "cpu_count", lambda: 2)
    _loads(monkeypatch, (0.3, 0.3, 0.3), (1.8, 0.9, 0.4))  # the benchmark's own two cores: not flagged
    assert common.LoadGuard.start(None).finish()["flagged"] is False
    _loads(monkeypatch, (0.3, 0.3, 0.3), (3.2, 1.5, 0.6))  # more than its own cores: another job joined
    record = common.LoadGuard.start(None).finish()
    assert record["flagged"] is True
    assert record["flag_reasons"] == ["1-min load at end 3.20 > 3 (the start limit + 2 CPUs)"]


def test_the_end_line_is_printed_once_when_the_script_finishes_itself(common, monkeypatch, capsys):
    registered = []
    monkeypatch.setattr(common.atexit, "register", registered.append)
    monkeypatch.setattr(common.atexit, "unregister", registered.remove)
    _loads(monkeypatch, (0.2, 0.2, 0.2), (0.3, 0.3, 0.3))
    guard = common.start_guard(argparse.Namespace(max_load=None))
    assert registered == [guard.finish]
    guard.finish()
    assert registered == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_script_refuses_a_busy_machine(script, tmp_path):
    """Each script, run as a user runs it, with the load injected through a sitecustomize that patches
    os.getloadavg: exit 2 and the one refusal line, before any benchmark work."""
    (tmp_path / "sitecustomize.py").write_text("import os\nos.getloadavg = lambda: (9.5, 9.0, 8.0)\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="3")
    p = subprocess.run([sys.executable, os.path.join(BENCH, f"{script}.py")], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1].startswith("refused: 1-min load average 9.50 > 1.00 at start")
    assert "load average at start" not in p.stdout
