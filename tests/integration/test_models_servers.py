"""The Models tab against real CPU vLLM servers: /metrics seen to move with a chat, and a second server started, restarted
and stopped through the tab's own handlers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import gradio as gr
import pytest

from engines.inference import ChatParams, Finished, stream_chat
from engines.models import ModelRecord
from engines.serving import ServerManager
from engines.serving.manager import pid_alive
from engines.serving.metrics import MetricsHistory, poll
from studio.i18n import Translatable
from studio.models_tab import build_models_tab
from studio.services import Services

pytestmark = pytest.mark.server
SECOND = "smollm2-second"  # another served name: the session server's state file is never touched


async def answer(endpoint, text: str) -> Finished:
    events = [e async for e in stream_chat(endpoint, [{"role": "user", "content": text}], ChatParams(temperature=0.0, max_tokens=24, seed=0))]
    assert isinstance(events[-1], Finished)
    return events[-1]


def test_real_metrics_move_with_a_chat(server_manager, live_endpoint):
    name = live_endpoint.model
    h = MetricsHistory()
    poll(server_manager, h, min_interval=0)
    before = h.latest(name)
    assert before is not None and before.ok, before
    assert before.generation_tokens is not None and before.kv_cache_usage is not None and 0 <= before.kv_cache_usage <= 1
    assert before.running is not None and before.waiting is not None and before.ttft_count is not None

    done = asyncio.run(answer(live_endpoint, "Name three colours."))
    assert done.completion_tokens > 0
    deadline = time.monotonic() + 20
    after = before
    while time.monotonic() < deadline:
        time.sleep(0.5)
        poll(server_manager, h, min_interval=0)
        after = h.latest(name)
        if after.ok and after.generation_tokens - before.generation_tokens >= done.completion_tokens:
            break
    assert after.generation_tokens - before.generation_tokens >= done.completion_tokens
    assert after.prompt_tokens > before.prompt_tokens and after.ttft_count > before.ttft_count
    rates = h.rates(name)
    assert any(r.generation_tps and r.generation_tps > 0 for r in rates)
    assert any(r.mean_ttft_ms and r.mean_ttft_ms > 0 for r in rates)


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def wait_for(manager: ServerManager, name: str, status: str, timeout: float, seen: list[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = manager.status().get(name)
        if st is not None and (not seen or seen[-1] != st.status):
            seen.append(st.status)
        if st is not None and st.status == status:
            return
        if st is not None and st.status == "failed":
            break
        time.sleep(0.2)
    raise AssertionError(f"{name} not {status}: saw {seen}, error {manager.pending_error()}\n{manager.logs(name, 40)}")


def test_metrics_are_collected_in_the_background_with_no_tab_open(server_manager, live_endpoint):
    """The manager's watcher reads /metrics by itself, so the Models tab opened later plots the traffic before it."""
    name, history = live_endpoint.model, server_manager.metrics_history
    assert server_manager.metrics_every_s > 0
    n0 = len(history.snapshots(name))
    first = history.latest(name)
    deadline = time.monotonic() + 6 * server_manager.metrics_every_s
    while time.monotonic() < deadline and len(history.snapshots(name)) < n0 + 2:
        time.sleep(0.5)  # nobody polls here: only the watcher can add snapshots
    assert len(history.snapshots(name)) >= n0 + 2, "no background metrics poll"
    latest = history.latest(name)
    assert latest.ok and (first is None or latest.t > first.t)


def test_a_second_server_starts_restarts_and_stops_through_the_tab(settings, bundled_model, endpoint, db):  # db: who acts
    second = ServerManager(settings)
    second.registry.add(ModelRecord(name=SECOND, kind="base", source=bundled_model.source))
    services = Services(settings=settings, servers=second)
    history = MetricsHistory()
    with gr.Blocks() as demo:
        build_models_tab(services, Translatable(), gr.State("en"), history=history)
    handlers = {f.api_name: f.fn for f in demo.fns.values() if f.api_name}
    try:
        # Start: the form's fields (GPU empty, free port, max model len 1024) go into the real command line.
        errors, msg, table, pick = handlers["start_server"]("en", SECOND, "", None, 1024, None)
        assert errors == "" and msg and pick["value"] == SECOND
        seen: list[str] = []
        wait_for(second, SECOND, "ready", settings.vllm_start_timeout, seen)
        assert seen[0] == "starting" and seen[-1] == "ready"
        st = second.status()[SECOND]
        port, pid = st.port, st.pid
        argv = cmdline(pid)
        assert argv[argv.index("--max-model-len") + 1] == "1024" and argv[argv.index("--served-model-name") + 1] == SECOND
        assert [r.name for r in second.served_models(max_age=0)] == [SECOND]

        # One timer tick of the tab: /metrics polled, the health pill shows the server ready with its numbers.
        health, servers_table, _pick, requests, kv, tps, ttft, log_text, models_table, last = handlers["poll_models"]("en", SECOND, {})
        assert f"data-server='{SECOND}' data-status='ready' data-metrics='ok'" in health
        assert history.latest(SECOND).ok and len(requests["value"]) == 2 and len(kv) == 1
        assert requests["y_lim"] == [0.0, 2.0]  # idle: a readable 0–2 axis, not a single "0.000000" tick
        assert ttft["value"] is None and "no requests" in ttft["label"]  # nothing was asked yet, and it says so
        assert servers_table.iloc[0, 0] == SECOND and "startup complete" in log_text.lower()
        assert SECOND in set(models_table.iloc[:, 0])
        unchanged = handlers["poll_models"]("en", SECOND, last)
        assert unchanged[1] == gr.skip() and unchanged[2] == gr.skip() and unchanged[7] == gr.skip()  # no redraw, no flicker

        # Restart: the old process is gone, a new one comes up on the same port with the same override.
        msg = handlers["restart_server"]("en", SECOND)  # the API endpoint: what happened, as a sentence
        assert isinstance(msg, str) and msg
        assert not pid_alive(pid)
        seen = []
        wait_for(second, SECOND, "ready", settings.vllm_start_timeout, seen)
        assert "ready" in seen and seen[0] in ("stopped", "starting")
        st = second.status()[SECOND]
        assert st.pid != pid and st.port == port and st.max_model_len == 1024
        assert cmdline(st.pid)[cmdline(st.pid).index("--max-model-len") + 1] == "1024"
        new_pid = st.pid

        # Stop: stopped, process gone, the pill says so, and the watcher does not bring it back.
        msg = handlers["stop_server"]("en", SECOND)
        assert isinstance(msg, str) and msg
        assert second.status()[SECOND].status == "stopped" and not pid_alive(new_pid)
        time.sleep(2.5)
        assert second.status()[SECOND].status == "stopped"
        health = handlers["poll_models"]("en", SECOND, {})[0]
        assert f"data-server='{SECOND}' data-status='stopped'" in health

        # Stop while it is still starting: it ends "stopped", not "failed", and no start error is shown.
        handlers["start_server"]("en", SECOND, "", None, 1024, None)
        wait_for(second, SECOND, "starting", 30, [])
        handlers["stop_server"]("en", SECOND)
        time.sleep(2.0)  # the start thread notices the process is gone
        assert second.status()[SECOND].status == "stopped" and second.pending_error() is None
        assert f"data-server='{SECOND}' data-status='stopped'" in handlers["poll_models"]("en", SECOND, {})[0]
    finally:
        second.stop_all()
    assert endpoint.model in server_manager_names(endpoint)  # the session server was never touched


def server_manager_names(endpoint) -> set[str]:
    import httpx

    data = httpx.get(f"{endpoint.base_url}/models", timeout=5).json()["data"]
    return {m["id"] for m in data}
