"""The one process supervisor: spawn a detached process in its own session, tell a pid from a reused one by its start
time, find a process's whole tree (orphans included) and stop it, tail a log. Used by model servers, the MLflow UI and
model export jobs.

Why whole trees: a vLLM server is an API process plus EngineCore and worker processes. When the API process is killed
(`kill -9`, the OOM killer), its children are re-parented to init and keep their ~3 GB; they are still in the dead
leader's session, so they are found by session id (and process group), not by parent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

PROC = Path("/proc")


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name: [state, ppid, pgrp, session, ..., starttime at 19]."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    return raw.rsplit(")", 1)[-1].split()


def start_time(pid: int | None) -> int | None:
    """When a process started (clock ticks since boot): with its pid, it names one process even after pid reuse."""
    fields = _stat(pid) if pid else None
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int | None, started: int | None = None) -> bool:
    """True when `pid` runs and is not a zombie; with `started`, only if it is still that same process."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat(pid)
    if fields is None:  # no /proc (not Linux) or gone this instant: kill(0) said it exists
        return True
    if fields[0] in ("Z", "X"):  # a zombie still answers kill(0); it holds no memory and runs nothing
        return False
    return started is None or start_time(pid) == started


def _table() -> dict[int, tuple[str, int, int, int, int]]:
    """Every process: pid -> (state, ppid, pgrp, session, starttime)."""
    out: dict[int, tuple[str, int, int, int, int]] = {}
    try:
        entries = os.listdir(PROC)
    except OSError:
        return out
    for name in entries:
        if not name.isdigit():
            continue
        f = _stat(int(name))
        if f is None:
            continue
        try:
            out[int(name)] = (f[0], int(f[1]), int(f[2]), int(f[3]), int(f[19]))
        except (IndexError, ValueError):
            continue
    return out


def tree(leader: int | None, started: int | None = None) -> set[int]:
    """Live processes of the tree `leader` started in its own session: its session and process group (found even after
    the leader died and they were re-parented to init) and every descendant of those. Empty when `leader`'s pid now
    belongs to another process (Linux frees a pid only once no session or group uses it, so then none is left)."""
    if not leader or leader <= 1:
        return set()
    table = _table()
    me = os.getpid()
    if leader in table and started is not None and table[leader][4] != started:
        return set()  # the pid was reused: our leader and its whole session are gone
    found = {pid for pid, (_, _, pgrp, sid, _) in table.items() if pgrp == leader or sid == leader or pid == leader}
    grew = True
    while grew:  # descendants that moved to a session of their own are still children of a member
        more = {pid for pid, (_, ppid, *_rest) in table.items() if ppid in found and pid not in found}
        found |= more
        grew = bool(more)
    found.discard(me)
    found.discard(1)
    return {pid for pid in found if table[pid][0] not in ("Z", "X") and (started is None or table[pid][4] >= started)}


def _signal_all(leader: int, pids: set[int], sig: int) -> None:
    try:
        os.killpg(leader, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _remaining(leader: int | None, started: int | None, known: dict[int, int | None]) -> set[int]:
    """What is left of the tree: a fresh scan, plus every member seen before that still runs (a child that made a
    session of its own is found through its parent only while that parent lives; once seen, it is not lost)."""
    for pid in tree(leader, started):
        known.setdefault(pid, start_time(pid))
    return {pid for pid, began in known.items() if pid_alive(pid, began)}


def stop_tree(leader: int | None, *, started: int | None = None, grace: float = 15.0, proc: subprocess.Popen | None = None,
              kill_wait: float = 15.0) -> bool:
    """Stop a whole process tree and wait until none of it remains: SIGTERM to its group and every member, SIGKILL to
    what is left after `grace` seconds. True when nothing of the tree is left. `proc` (our Popen of the leader) is
    reaped so no zombie stays behind."""
    known: dict[int, int | None] = {}
    members = _remaining(leader, started, known)
    if members:
        assert leader is not None
        _signal_all(leader, members, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if proc is not None:
                proc.poll()
            members = _remaining(leader, started, known)
            if not members:
                break
            time.sleep(0.2)
        deadline = time.monotonic() + kill_wait
        while members and time.monotonic() < deadline:  # re-scanned: a child spawned during the grace is killed too
            _signal_all(leader, members, signal.SIGKILL)
            time.sleep(0.1)
            if proc is not None:
                proc.poll()
            members = _remaining(leader, started, known)
    if proc is not None:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    if members:
        log.error("process.tree_survived", leader=leader, pids=sorted(members))
    return not members


def working_in(folder: Path) -> set[int]:
    """Live processes whose working directory lies inside `folder` (e.g. a local Ray cluster's temp folder: a job's
    worker that Ray started in a session of its own and that outlived the cluster's processes)."""
    root = os.path.realpath(folder)
    found = set()
    for name in os.listdir(PROC):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cwd = os.readlink(PROC / name / "cwd").removesuffix(" (deleted)")
        except OSError:
            continue
        if (cwd == root or cwd.startswith(root + os.sep)) and pid_alive(int(name)):
            found.add(int(name))
    return found


def spawn_detached(argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | str | None = None,
                   header: str = "") -> subprocess.Popen:
    """Start `argv` (a list, never a shell string) in a new session of its own, output appended to `log_path`: it
    outlives a closed app, and `stop_tree` finds every process it starts."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as fh:
        if header:
            fh.write(header.encode())
            fh.flush()
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)


def tail(path: Path | None, n: int = 40) -> str:
    """The last `n` lines of a log file (read from its last 64 kB)."""
    if not path or not path.is_file():
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 64_000))
        lines = fh.read().decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-n:])
