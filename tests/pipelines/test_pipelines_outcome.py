"""Host-side (no tfx): what ``histozoo pipeline run`` prints at the end (format_outcome), the registered-model name
rule, the host-path mapping of the TFX environment (configs.host_path, ``scripts/tfx_env.sh paths``), and the
quiet run's error-line filter. The same outcome on a real run is checked in test_pipelines_tfx_e2e.py."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from pipelines import configs
from pipelines.local_runner import format_outcome, is_error_line

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "tfx_env.sh"
NODES = ["HistoExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Trainer",
         "latest_blessed_model_resolver", "HistoEvaluator", "Pusher", "MlflowRegistrar"]
INSIDE = {configs.HOST_REPO_ENV: "/home/ann/histozoo", configs.HOST_SHARED_ENV: "/home/ann/shared"}


def _result(state="COMPLETE", cached=(), **outcome):
    paths = configs.local_paths("tnbc-unet", "/repo/tfx_root")
    steps = [{"node": n, "state": "COMPLETE" if "resolver" in n else "CACHED" if n in cached else state,
              "execution_id": i, "resolver": "resolver" in n} for i, n in enumerate(NODES, 1)]
    o = {"steps": steps, "blessed": True, "reasons": ["pixel_dice=0.7000 >= threshold 0",
                                                      "aji=0.5000 >= threshold 0", "no blessed baseline: thresholds only"],
         "metrics": {"aji": 0.5, "pixel_dice": 0.7, "pq": 0.4, "aji_pooled": 0.45},
         "metrics_file": "/repo/tfx_root/pipelines/tnbc-unet/HistoEvaluator/evaluation/7/metrics.json",
         "pushed": True, "pushed_path": "/repo/tfx_root/serving/tnbc-unet/1764920000", "pushed_version": "1764920000",
         "registered": True, "registered_name": "tnbc-unet", "registered_version": "3", "promoted": None,
         "run_id": "0123abcd", "tracking_uri": "sqlite:////repo/tfx_root/mlflow.db", "cached": list(cached)}
    o.update(outcome)
    return {"pipeline_name": "tnbc-unet", "paths": paths, "wall_s": 187.5, "steps": steps, "outcome": o,
            "log": "/repo/tfx_root/logs/tnbc-unet/20261205-071500-1.log"}


def test_outcome_blessed_pushed_registered_in_host_paths():
    text = format_outcome(_result(), environ=INSIDE)
    # the resolver (the baseline lookup runs every time) is no step of its own
    assert text.splitlines()[0] == "pipeline tnbc-unet: 8 steps (8 ran) in 187.5 s"
    assert "  blessed:     YES (aji=0.5000, pixel_dice=0.7000, pq=0.4000)" in text
    assert "aji=0.5000 >= threshold 0; no blessed baseline: thresholds only" in text
    assert "  pushed:      /home/ann/histozoo/tfx_root/serving/tnbc-unet/1764920000" in text
    assert "  registered:  tnbc-unet version 3" in text
    assert "  mlflow run:  0123abcd  (sqlite:////home/ann/histozoo/tfx_root/mlflow.db)" in text
    assert "metrics    /home/ann/histozoo/tfx_root/pipelines/tnbc-unet/HistoEvaluator/evaluation/7/metrics.json" in text
    assert "log        /home/ann/histozoo/tfx_root/logs/tnbc-unet/" in text
    assert "/repo/" not in text  # every path in host terms
    assert "COMPLETE" not in text  # the per-step table only with verbose
    verbose = format_outcome(_result(), verbose=True, environ=INSIDE)
    assert verbose.count("COMPLETE") == len(NODES) and "latest_blessed_model_resolver" in verbose


def test_outcome_not_blessed_says_why_and_that_nothing_was_pushed_or_registered():
    text = format_outcome(_result(blessed=False, reasons=["aji=0.3000 vs baseline 0.3500: -0.0500 <= 0"],
                                  pushed=False, pushed_path="", registered=False, registered_version=""),
                          environ={})
    assert "  blessed:     NO (aji=0.5000, pixel_dice=0.7000, pq=0.4000)" in text
    assert "aji=0.3000 vs baseline 0.3500: -0.0500 <= 0" in text
    assert "  pushed:      not pushed (the model was not blessed)" in text
    assert "  registered:  not registered as tnbc-unet (nothing was pushed)" in text
    assert "  mlflow run:  0123abcd" in text  # the training run exists either way
    assert "/repo/tfx_root/pipelines/tnbc-unet" in text  # outside the environment paths stay as they are


def test_outcome_of_a_cached_rerun_says_nothing_new_happened():
    text = format_outcome(_result(cached=NODES), environ=INSIDE)
    assert text.splitlines()[0] == "pipeline tnbc-unet: 8 steps (8 cached) in 187.5 s"
    assert "every step was served from the cache" in text and "nothing new trained, pushed or registered" in text
    # a partly cached run marks the reused steps one by one
    part = format_outcome(_result(cached=["Pusher", "MlflowRegistrar"]), environ=INSIDE)
    assert "(6 ran, 2 cached)" in part and "every step" not in part
    assert "1764920000 (cached: an earlier run's; nothing new)" in part
    assert "version 3 (cached: an earlier run's; nothing new)" in part


def test_outcome_of_steps_that_did_not_finish():
    text = format_outcome(_result(blessed=None, reasons=[], metrics={}, metrics_file="", pushed=None,
                                  registered=None, run_id="", tracking_uri=""), environ={})
    assert "blessed:     unknown (the evaluator did not finish)" in text
    assert "pushed:      not pushed (the Pusher did not finish)" in text
    assert "registered:  not registered (the registrar did not finish)" in text
    assert "mlflow run:  none recorded" in text


def test_promotion_is_reported():
    assert ", promoted to champion" in format_outcome(_result(promoted=True), environ={})
    assert ", not promoted" in format_outcome(_result(promoted=False), environ={})


@pytest.mark.parametrize("path,want", [
    ("/repo", "/home/ann/histozoo"),
    ("/repo/tfx_root/x.db", "/home/ann/histozoo/tfx_root/x.db"),
    ("/shared/data/tnbc", "/home/ann/shared/data/tnbc"),
    ("sqlite:////repo/mlflow.db", "sqlite:////home/ann/histozoo/mlflow.db"),
    ("file:///shared/mlruns", "file:///home/ann/shared/mlruns"),
    ("/repository/x", "/repository/x"),  # a prefix of a name is not the folder
    ("/tmp/out/spec.json", "/tmp/out/spec.json"),  # mounted at its own path by tfx_env.sh: no mapping
    ("relative/x", "relative/x"),
    ("", ""),
])
def test_host_path(path, want):
    assert configs.host_path(path, INSIDE) == want
    assert configs.host_path(path, {}) == path  # outside the environment: unchanged


def test_registered_model_name_rule():
    rule = configs.registered_model_name
    assert rule("tnbc-unet") == ("tnbc-unet", "pipeline name")
    assert rule("tnbc-unet", {"register_as": ""}) == ("tnbc-unet", "pipeline name")
    assert rule("tnbc-unet", {"register_as": "histozoo-unet"}) == ("histozoo-unet", "tracking.register_as")
    assert rule("tnbc-unet", {"register_as": "histozoo-unet"}, "prod-unet") == ("prod-unet", "--registered-model")


def test_cli_help_states_the_rule(capsys):
    from histozoo.cli import main

    with pytest.raises(SystemExit):
        main(["pipeline", "run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "also the MLflow registered-model name, unless --registered-model or the config's tracking.register_as " \
           "gives one" in out
    assert "(wins over the config's tracking.register_as and over NAME)" in out


@pytest.mark.parametrize("line,error", [
    ("E0000 00:00:1764920000.123456   123 cuda_executor.cc:1228] failed call to cuInit: UNKNOWN ERROR (303)", False),
    ("WARNING:absl:Fallback to non-ZetaSQL contexts execution query.", False),
    ("INFO:absl:Component Trainer is running.", False),
    ("running bdist_wheel", False),
    ("Traceback (most recent call last):", True),
    ("ValueError: bad thing", True),
    ("zoo.errors.DataError: /x: no records", True),
    ("ERROR:absl:Execution 12 failed.", True),
])
def test_quiet_run_shows_error_lines_only(line, error):
    assert is_error_line(line) is error


# -- scripts/tfx_env.sh: absolute paths outside the clone ------------------------------------------------------

def _paths(tmp_path, *args):
    """``tfx_env.sh paths ARGS``, with a fake environment root (its rootfs has /usr/bin/env, /opt/tfxvenv, /root)."""
    root = tmp_path / "envroot"
    for d in ("usr/bin", "opt/tfxvenv/bin", "root/.cache", "tmp"):
        (root / "rootfs" / d).mkdir(parents=True, exist_ok=True)
    (root / "rootfs" / "usr/bin/env").write_text("")
    (root / "rootfs" / "opt/tfxvenv/bin/python").write_text("")
    env = {**os.environ, "HISTOZOO_TFX_ROOT": str(root), "HISTOZOO_SHARED": str(REPO.parent / "shared")}
    return subprocess.run(["bash", str(SCRIPT), "paths", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)


def test_tfx_env_binds_outside_folders_at_their_own_path(tmp_path):
    host = tmp_path / "host"
    out_dir = host / "out"
    out_dir.mkdir(parents=True)
    r = _paths(tmp_path, "histozoo", "export", "--out", f"{out_dir}/spec.json", f"--data-root={host}/new/data",
               f"sqlite:///{out_dir}/mlflow.db", "/usr/bin/env", "/opt/tfxvenv/bin/python",
               f"{REPO}/configs/quickstart.yaml", "/repo/x", "/shared/data", "-k", "not slow")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"workdir {REPO}"
    binds = [ln.split(" ", 1)[1] for ln in lines if ln.startswith("bind ")]
    # the clone and ../shared at their host paths (and /repo, /shared); the outside folder that holds both new
    # paths once (the wider folder replaces the narrower one); nothing for the environment's own files
    assert binds == [f"{REPO} (also /repo)", f"{REPO.parent / 'shared'} (also /shared)", str(host)]


def test_tfx_env_refuses_paths_it_cannot_share_in_one_line(tmp_path):
    r = _paths(tmp_path, "histozoo", "pipeline", "compile", "--out", "/root/spec.json")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "/root/spec.json is in /root, which the TFX environment has too" in r.stderr
    r = _paths(tmp_path, "--out=/no-such-top-folder-histozoo/spec.json")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "nearest existing host folder is /" in r.stderr
    r = _paths(tmp_path, f"--out={tmp_path}/envroot/x.json")  # the environment's own cache folder
    assert r.returncode == 2 and "holds the TFX environment" in r.stderr


@pytest.mark.slow
def test_tfx_env_run_writes_outside_paths_on_the_host(tmp_path):
    """Real chroot (root, built environment, run from the host): a file written at an absolute path outside the
    clone lands on the host at that path, and the command sees the clone at its host path."""
    if os.geteuid() != 0 or os.environ.get(configs.HOST_REPO_ENV):
        pytest.skip("needs root on the host (not inside the TFX environment)")
    root = os.environ.get("HISTOZOO_TFX_ROOT", "/opt/histozoo-tfx")
    if not os.path.isfile(os.path.join(root, "stamp")):
        pytest.skip(f"no TFX environment built at {root}")
    target = tmp_path / "sub" / "spec.json"
    code = ("import os, sys; os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True); "
            "open(sys.argv[1], 'w').write('hi'); print(os.getcwd())")
    r = subprocess.run([str(SCRIPT), "run", "python", "-c", code, str(target)], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert target.read_text() == "hi"
    assert r.stdout.strip().splitlines()[-1] == str(REPO)


def test_quiet_run_sends_output_to_the_log_and_shows_steps_and_errors(tmp_path):
    """The quiet block on its own: raw fd output (C++ lines, children) and logging records go to the log; the
    terminal gets the step starts and the real errors, not the noise; a failure says where the log is."""
    import io
    import logging

    from pipelines.local_runner import _quiet_run

    log, shown = tmp_path / "run.log", io.StringIO()
    absl = logging.getLogger("absl")
    with _quiet_run(str(log), shown):
        absl.info("Component %s is running.", "Trainer")
        absl.warning("Fallback to non-ZetaSQL contexts execution query due to: filter_query is not supported")
        os.write(2, b"E0000 00:00:1.2   7 cuda_executor.cc:1228] failed call to cuInit: UNKNOWN ERROR (303)\n")
        os.write(1, b"running bdist_wheel\n")
        os.write(2, b"ValueError: a real problem in a worker\n")
        absl.error("Execution %d failed.", 7)
    lines = shown.getvalue().splitlines()
    assert lines[0].startswith("  (quiet: the run's full output goes to ") and str(log) in lines[0]
    # (sorted: the raw-output follower is a thread, its line may come before or after the logging record's)
    assert sorted(lines[1:]) == ["  ERROR:absl: Execution 7 failed.", "  ValueError: a real problem in a worker",
                                 "  [1] Trainer ..."]
    text = log.read_text()
    assert "cuInit" in text and "bdist_wheel" in text and "ValueError: a real problem" in text

    shown = io.StringIO()
    with pytest.raises(RuntimeError):
        with _quiet_run(str(log), shown):
            raise RuntimeError("boom")
    assert shown.getvalue().splitlines()[-1] == f"  the run failed; its full output: {log}"
