"""`data build` after a build killed with SIGKILL (issue 16): the killed build's hidden ``.building-<pid>-*`` folder
is removed by the next build; a live process's folder, and one whose owner cannot be told, are never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from zoo.data.build import DatasetWriter, build, remove_stale_builds


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()  # reaped: the PID names no process now
    return p.pid


def test_next_build_removes_stale_folders_of_dead_processes_only(tiny_tnbc, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = out / f".building-{_dead_pid()}-abc123"
    (dead / "sub").mkdir(parents=True)
    (dead / "all-00000.tfrecord.gz").write_bytes(b"half a shard")
    live = out / f".building-{os.getpid()}-def456"  # this very process: alive
    live.mkdir()
    (live / "x").write_bytes(b"in use")
    legacy = out / ".building-zz9x"  # no PID in the name: its owner cannot be told, so it is kept
    legacy.mkdir()
    s = build("tnbc", str(tiny_tnbc), str(out), per_shard=4, progress=False)
    assert s["splits"]["all"]["images"] == 4
    assert not dead.exists()
    assert (live / "x").read_bytes() == b"in use" and legacy.is_dir()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [live.name, legacy.name, "all-00000.tfrecord.gz", "folds.json", "summary.json"])


def test_the_building_folder_carries_the_pid(tmp_path):
    with DatasetWriter(str(tmp_path)) as w:
        assert os.path.basename(w.tmp).startswith(f".building-{os.getpid()}-")
        assert remove_stale_builds(str(tmp_path)) == []  # our own folder: alive, kept
        assert os.path.isdir(w.tmp)


def test_a_build_killed_with_sigkill_is_cleaned_by_the_next(tiny_tnbc, tmp_path):
    """The fault injected: a real process starts a build (its folder exists, a shard half written) and is killed
    with SIGKILL; the old build stays intact, and the next build removes the dead process's folder."""
    out = tmp_path / "out"
    build("tnbc", str(tiny_tnbc), str(out), per_shard=4, progress=False)
    before = sorted(p.name for p in out.iterdir())
    code = textwrap.dedent(f"""
        import sys, time
        from zoo.data.build import DatasetWriter
        w = DatasetWriter({str(out)!r})
        open(w.tmp + "/all-00000.tfrecord.gz", "wb").write(b"partial")
        print(w.tmp, flush=True)
        time.sleep(600)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    try:
        tmp = p.stdout.readline().strip()
        assert os.path.isdir(tmp), tmp
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert sorted(p.name for p in out.iterdir()) == sorted(before + [os.path.basename(tmp)])  # left behind
    build("tnbc", str(tiny_tnbc), str(out), per_shard=4, progress=False)
    assert sorted(p.name for p in out.iterdir()) == before
