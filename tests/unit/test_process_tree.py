"""The process supervisor on real processes: after `kill -9` of a tree's leader its children live on, re-parented to
init; stop_tree still finds them (by session, group and parent) and leaves none."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

from engines.processes import pid_alive, spawn_detached, start_time, stop_tree, tree, working_in

# A leader with a child; the child has a grandchild (in the leader's session) and a stubborn grandchild that moved to a
# session of its own and ignores SIGTERM (found through its parent, stopped by SIGKILL).
TREE = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        subprocess.Popen([sys.executable, __file__, "stubborn"])
        time.sleep(600)
    elif len(sys.argv) > 1 and sys.argv[1] == "stubborn":
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)
    else:
        subprocess.Popen([sys.executable, __file__, "child"])
        time.sleep(600)
""")


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_a_killed_leaders_orphans_are_found_and_all_stopped(tmp_path: Path):
    script = tmp_path / "tree.py"
    script.write_text(TREE)
    log = tmp_path / "tree.log"
    proc = spawn_detached([sys.executable, str(script)], log_path=log)
    leader, started = proc.pid, start_time(proc.pid)
    wait_for(lambda: len(tree(leader, started)) == 4)  # leader, child, grandchild, stubborn
    members = tree(leader, started)
    assert leader in members and all(pid_alive(p) for p in members)

    proc.kill()  # kill -9 of the leader only, as a crash or the OOM killer does
    proc.wait()
    time.sleep(0.3)
    orphans = tree(leader, started)
    assert orphans == members - {leader}, "the children outlive their leader: this is what leaked ~3 GB per crash"

    t0 = time.monotonic()
    assert stop_tree(leader, started=started, grace=1.0) is True
    assert time.monotonic() - t0 < 10
    assert not any(pid_alive(p) for p in members) and tree(leader, started) == set()


def test_a_reused_pid_is_not_taken_for_the_old_leader(tmp_path: Path):
    proc = spawn_detached([sys.executable, "-c", "import time; time.sleep(30)"], log_path=tmp_path / "x.log")
    try:
        real = start_time(proc.pid)
        assert pid_alive(proc.pid, real) and not pid_alive(proc.pid, real - 1)
        assert tree(proc.pid, real - 1) == set()  # another process's start time: not our tree, nothing is stopped
        assert stop_tree(proc.pid, started=real - 1) is True and pid_alive(proc.pid)
    finally:
        assert stop_tree(proc.pid, started=start_time(proc.pid), proc=proc)
    assert not pid_alive(proc.pid)


def test_processes_working_in_a_folder_are_found_by_their_working_directory(tmp_path: Path):
    inside, outside = tmp_path / "cluster" / "job", tmp_path / "elsewhere"
    inside.mkdir(parents=True)
    outside.mkdir()
    a = spawn_detached([sys.executable, "-c", "import time; time.sleep(60)"], log_path=tmp_path / "a.log", cwd=inside)
    b = spawn_detached([sys.executable, "-c", "import time; time.sleep(60)"], log_path=tmp_path / "b.log", cwd=outside)
    try:
        found = working_in(tmp_path / "cluster")
        assert a.pid in found and b.pid not in found
    finally:
        for proc in (a, b):
            stop_tree(proc.pid, proc=proc, grace=2)
    assert working_in(tmp_path / "cluster") == set()
