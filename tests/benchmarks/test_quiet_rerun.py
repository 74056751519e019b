"""benchmarks/quiet_rerun.sh: the loaded rows of docs/results/benchmarks.md re-run in order, each into its own log,
with --max-load passed through (a flagged check) and the exit status of a failing benchmark kept. The benchmarks
themselves are replaced by a stand-in interpreter ($PYTHON) that records its arguments."""

import os
import pathlib
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "quiet_rerun.sh"


def _run(tmp_path, *args, fail=""):
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "fakepy"
    fake.write_text("#!/bin/sh\necho \"$@\" >> " + str(calls) + "\necho 'load average at start: 0.10 0.10 0.10'\n"
                    f"case \"$1\" in *{fail or 'NOTHING'}*) exit 3;; esac\nexit 0\n")
    fake.chmod(0o755)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=str(fake), HOVERNET_REF="/ref", WAIT_MAX="0")
    p = subprocess.run(["bash", str(SCRIPT), str(out), *args], capture_output=True, text=True, env=env, timeout=60)
    return p, calls.read_text().splitlines(), out


def test_the_quiet_window_runs_the_loaded_rows_in_order(tmp_path):
    p, calls, out = _run(tmp_path)
    assert p.returncode == 0, p.stderr
    assert [c.split()[0] for c in calls] == ["benchmarks/instance_metrics.py", "benchmarks/unet_speed.py",
                                             "benchmarks/gan.py", "benchmarks/gan.py", "benchmarks/serving_load.py"]
    assert calls[0].startswith("benchmarks/instance_metrics.py --reference /ref --repeat 3 --json")
    assert "--skip-training" in calls[1] and "--base-filters 16" in calls[1]
    assert "--iterations 3 --warmup 1" in calls[2] and "--filters 32 --batch 80" in calls[3]
    assert "--bad-share 0.2" in calls[4]
    assert not any("--max-load" in c for c in calls)  # the guard stays on
    assert sorted(f.name for f in out.glob("*.log")) == sorted(
        ["instance_metrics.log", "inference.log", "gan_config_size.log", "gan_reduced.log",
         "serving_bad_requests.log"])
    summary = (out / "summary.txt").read_text()
    assert summary.count("exit 0") == 5 and "load average at start: 0.10" in summary


def test_smoke_mode_passes_max_load_and_keeps_a_failure(tmp_path):
    p, calls, out = _run(tmp_path, "--smoke", "--max-load", "50", fail="unet_speed")
    assert p.returncode == 1  # one benchmark failed: the script says so, after running the others
    assert len(calls) == 4 and all(c.endswith("--max-load 50") for c in calls)
    assert "--images 1" in calls[0] and "--images 2" in calls[1]
    assert "exit 3" in (out / "summary.txt").read_text()


def test_the_stain_rows_run_only_when_asked(tmp_path):
    p, calls, out = _run(tmp_path, "--stain")
    assert p.returncode == 0, p.stderr
    assert len(calls) == 6 and calls[-1].startswith("benchmarks/stain.py --images 14 --repeats 3 --out-dir")
