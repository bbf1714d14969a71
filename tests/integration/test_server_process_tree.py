"""`kill -9` of a real CPU vLLM server's API process: its EngineCore and workers outlive it (re-parented to init, ~3 GB).
Before the manager starts the replacement, the whole old tree is gone, and the new server answers /health."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from engines.models import ModelRecord
from engines.processes import pid_alive, start_time, tree
from engines.serving import ServerManager

pytestmark = pytest.mark.server
NAME = "smollm2-tree"  # its own served name: the session server is never touched


def old_tree_left(members: dict[int, int | None]) -> list[int]:
    """Processes of the recorded tree still running (the same process: pid and start time)."""
    return sorted(pid for pid, began in members.items() if pid_alive(pid, began))


def wait_ready(manager: ServerManager, old_pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = manager.status()[NAME]
        if st.pid != old_pid and st.status == "ready":
            return
        if st.status == "failed":
            break
        time.sleep(0.5)
    raise AssertionError(f"no replacement became ready: {manager.status()[NAME]}\n{manager.logs(NAME, 40)}")


def test_a_killed_server_leaves_no_process_behind_its_restart(settings, bundled_model):
    manager = ServerManager(settings)
    record = ModelRecord(name=NAME, kind="base", source=bundled_model.source)
    try:
        manager.ensure(record, max_model_len=1024)
        st = manager.status()[NAME]
        leader = st.pid
        members = {pid: start_time(pid) for pid in tree(leader, start_time(leader))}
        assert leader in members and len(members) >= 2, members  # the API process and at least its EngineCore

        # A crash seen by the watcher: it restarts the server (same port) only once the old tree is gone.
        os.kill(leader, signal.SIGKILL)
        wait_ready(manager, leader, settings.vllm_start_timeout)
        assert old_tree_left(members) == [], "the crashed server's EngineCore/workers survived its restart"
        st = manager.status()[NAME]
        assert httpx.get(f"{st.root_url}/health", timeout=5).status_code == 200

        # The same through an explicit restart of the manager (ensure after a crash, before the watcher acts).
        leader = st.pid
        members = {pid: start_time(pid) for pid in tree(leader, start_time(leader))}
        manager._stop_event.set()  # the watcher sleeps: ensure() itself must clear the dead server's tree
        manager._watcher.join(5)
        os.kill(leader, signal.SIGKILL)
        time.sleep(1.0)
        endpoint = manager.ensure(record, max_model_len=1024)
        assert old_tree_left(members) == []
        assert manager.status()[NAME].pid != leader
        assert httpx.get(endpoint.base_url.removesuffix("/v1") + "/health", timeout=5).status_code == 200
    finally:
        manager.stop_all()
    assert all(not pid_alive(p) for p in tree(manager.status()[NAME].pid))
