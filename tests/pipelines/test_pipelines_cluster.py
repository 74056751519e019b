"""TFX on a cluster (issue 24), host side (no tfx needed): ``histozoo pipeline compile`` refuses specs that could not
run on Kubeflow / Vertex (a local data root or pipeline root, the gs://YOUR_BUCKET placeholder, a local MLflow store)
in one line unless --allow-local, and the image recipe (docker/tfx/Dockerfile) installs what scripts/tfx_env.sh
installs, from the one pinned list constraints/tfx.txt."""

from __future__ import annotations

import pathlib
import re
import shlex
import subprocess

import pytest

from zoo.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "tfx" / "Dockerfile"
TFX_ENV = REPO / "scripts" / "tfx_env.sh"
CONSTRAINTS = REPO / "constraints" / "tfx.txt"


# ---------------------------------------------------------------------------------------------- compile paths
@pytest.mark.parametrize("data_root, pipeline_root, mlflow, message", [
    ("data/tnbc", "gs://b/root", "", "--data-root: 'data/tnbc' is a path on this machine"),
    ("/work/shared/data/tnbc", "gs://b/root", "", "--data-root: '/work/shared/data/tnbc' is a path on this machine"),
    ("file:///data/tnbc", "gs://b/root", "", "--data-root: 'file:///data/tnbc' is a path on this machine"),
    ("gs://YOUR_BUCKET/tnbc", "gs://b/root", "", "--data-root: 'gs://YOUR_BUCKET/tnbc' is the YOUR_BUCKET "
                                                 "placeholder"),
    ("gs://b/tnbc", None, "", "--pipeline-root: not given, so the spec would write its artifacts to the placeholder "
                              "gs://YOUR_BUCKET/histozoo/"),
    ("gs://b/tnbc", "tfx_root", "", "--pipeline-root: 'tfx_root' is a path on this machine"),
    ("gs://b/tnbc", "gs://b/root", "sqlite:///mlflow.db", "--mlflow-tracking-uri: 'sqlite:///mlflow.db' is a store "
                                                          "on this machine"),
    ("gs://b/tnbc", "gs://b/root", "mlruns", "--mlflow-tracking-uri: 'mlruns' is a store on this machine"),
])
def test_local_paths_and_placeholders_are_refused(data_root, pipeline_root, mlflow, message):
    from pipelines.configs import check_cluster_paths

    with pytest.raises(ConfigError) as e:
        check_cluster_paths(data_root, pipeline_root, mlflow)
    text = str(e.value)
    assert text.startswith(message) and text.endswith("or pass --allow-local to compile it anyway"), text
    assert "\n" not in text
    check_cluster_paths(data_root, pipeline_root, mlflow, allow_local=True)  # told otherwise: accepted


@pytest.mark.parametrize("data_root, pipeline_root, mlflow", [
    ("gs://bucket/tnbc", "gs://bucket/root", ""),
    ("s3://bucket/tnbc", "s3://bucket/root", "http://mlflow.internal:5000"),
    ("gs://bucket/tnbc", "gs://bucket/root", "https://mlflow.example.org"),
    ("gs://bucket/tnbc", "gs://bucket/root", "databricks"),
])
def test_object_store_roots_and_tracking_servers_pass(data_root, pipeline_root, mlflow):
    from pipelines.configs import check_cluster_paths

    check_cluster_paths(data_root, pipeline_root, mlflow)


def test_cli_compile_refuses_a_local_data_root_in_one_line(tmp_path, capsys):
    from histozoo.cli import main

    out = tmp_path / "spec.json"
    rc = main(["pipeline", "compile", "tnbc-unet", "--config", "configs/quickstart.yaml", "--dataset", "tnbc",
               "--data-root", "../shared/data/tnbc", "--pipeline-root", "gs://bucket/root", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists()
    assert err == ("histozoo: error: --data-root: '../shared/data/tnbc' is a path on this machine, which the "
                   "cluster's pods cannot read: give an object-store URI (gs://..., s3://...); or pass --allow-local "
                   "to compile it anyway")
    rc = main(["pipeline", "compile", "tnbc-unet", "--config", "configs/quickstart.yaml", "--dataset", "tnbc",
               "--data-root", "gs://bucket/tnbc", "--out", str(out)])
    assert rc == 2 and "--pipeline-root: not given" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- image recipe
def _shell_commands(text: str) -> list[str]:
    """The file's text with line continuations joined, split into '&&' / ';' separated commands."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [c.strip() for line in joined.splitlines() for c in re.split(r"&&|;", line)]


def _apt_packages(text: str) -> set[str]:
    cmds = [c for c in _shell_commands(text) if re.search(r"apt-get install .*python3", c)]
    assert len(cmds) == 1, cmds
    words = shlex.split(cmds[0].split("apt-get install", 1)[1].strip("'\""), posix=True)
    return {w.strip("'\"") for w in words if not w.startswith("-")}


def _pip_install(text: str) -> tuple[str, set[str]]:
    """(the constraints file, the requirements) of the one `pip install -c ...`."""
    cmds = [c for c in _shell_commands(text) if re.search(r"pip install .*-c ", c)]
    assert len(cmds) == 1, cmds
    words = [w.strip("'\"") for w in shlex.split(cmds[0].split("pip install", 1)[1].rstrip("'\""), posix=True)]
    constraints, reqs, i = None, set(), 0
    while i < len(words):
        w = words[i]
        if w == "-c":
            constraints, i = words[i + 1], i + 2
        elif w == "-e":
            reqs.add(words[i + 1])
            i += 2
        elif w == "--progress-bar":
            i += 2
        elif w.startswith("-"):
            i += 1
        else:
            reqs.add(w)
            i += 1
    return constraints, reqs


def test_dockerfile_and_tfx_env_install_the_same_pinned_list():
    docker, script = DOCKERFILE.read_text(), TFX_ENV.read_text()
    # the same Debian suite (Python 3.13, glibc >= 2.39 for TFX 1.21's wheels)
    suite = re.search(r"^SUITE=(\w+)$", script, re.M).group(1)
    assert re.search(rf"^FROM debian:{suite}(-slim)?$", docker, re.M), suite
    # the same apt packages
    assert _apt_packages(docker) == _apt_packages(script) == {"python3", "python3-venv", "python3-dev", "g++",
                                                              "ca-certificates"}
    # the same venv and the same pip install: one constraints file, the same requirements
    venv = re.search(r"^VENV=(\S+)$", script, re.M).group(1)
    assert f"python3 -m venv {venv}" in docker and f"VIRTUAL_ENV={venv}" in docker
    c_docker, r_docker = _pip_install(docker)
    c_script, r_script = _pip_install(script)
    assert c_docker == c_script == "/repo/constraints/tfx.txt"
    assert r_docker == r_script == {"/repo[dev]", "tfx", "kfp-pipeline-spec"}
    assert "COPY . /repo" in docker  # the clone lands where tfx_env.sh mounts it
    # every requirement named beside the editable install is pinned in that one list
    pins = {m.group(1).lower(): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)$", CONSTRAINTS.read_text(),
                                                                re.M)}
    for req in r_docker - {"/repo[dev]"}:
        assert req in pins, f"{req} is installed but not pinned in constraints/tfx.txt"
    # both read the constraints from no other place: no version pins of their own
    assert not re.search(r"[a-z0-9]==\d", docker) and not re.search(r"pip install[^\n]*==\d", script)


def test_tfx_env_script_still_parses():
    assert subprocess.run(["bash", "-n", str(TFX_ENV)], capture_output=True).returncode == 0


def test_build_context_leaves_venvs_and_runs_out():
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().split()
    for path in (".venv", ".git", "runs", "mlruns", "build", "tfx_root"):
        assert path in ignore


@pytest.mark.tfx
def test_compile_pipeline_refuses_then_allows_local(tmp_path, tiny_experiment):
    """In the TFX environment: the API refuses a local data root before compiling; --allow-local compiles it with
    the placeholder root (a DAG to inspect), and the spec then names them as given."""
    from pipelines.kubeflow_runner import compile_pipeline, dag_tasks

    out = tmp_path / "spec.json"
    with pytest.raises(ConfigError, match=r"^--data-root: 'data/tnbc' is a path on this machine"):
        compile_pipeline(tiny_experiment("tnbc-unet"), "tnbc", "data/tnbc", str(out), pipeline_root="gs://b/root")
    assert not out.exists()
    spec = compile_pipeline(tiny_experiment("tnbc-unet"), "tnbc", "data/tnbc", str(out), allow_local=True)
    assert "HistoExampleGen" in dag_tasks(spec)
    text = out.read_text()
    assert "gs://YOUR_BUCKET/histozoo/tnbc-unet" in text and "data/tnbc" in text
