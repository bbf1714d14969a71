"""Against the real CPU vLLM server on 127.0.0.1 (bundled SmolLM2-135M-Instruct), with a real SQLite file."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from engines import conversations as turns
from engines.inference import (
    Accepted,
    ChatParams,
    ContextTooLong,
    Delta,
    Finished,
    ServerUnavailable,
    UnknownModel,
    complete_chat,
    stream_chat,
)
from engines.serving import Endpoint, ServerManager
from storage import chats

pytestmark = pytest.mark.server
GREEDY = ChatParams(temperature=0.0, max_tokens=48, seed=0)
LONG = ChatParams(temperature=0.8, max_tokens=1500, seed=1)


def _owner():
    """The local owner: conversations belong to someone."""
    from engines import accounts

    return accounts.bootstrap(None)


async def collect(gen):
    return [e async for e in gen]


def test_stream_chat_yields_deltas_then_timings(live_endpoint):
    events = asyncio.run(collect(stream_chat(live_endpoint, [{"role": "user", "content": "What is the capital of France?"}], GREEDY)))
    deltas, done = events[:-1], events[-1]
    assert len(deltas) >= 2 and all(isinstance(d, Delta) for d in deltas)
    # Greedy: the streamed text is exactly the non-streamed answer of the same server (the model's words depend on the
    # CPU's numerics: "Paris" on one machine, "L'Étoile, …" on another, so the text itself is not asserted).
    whole, _ = asyncio.run(complete_chat(live_endpoint, [{"role": "user", "content": "What is the capital of France?"}], GREEDY))
    assert whole.strip() and "".join(d.text for d in deltas) == whole
    assert isinstance(done, Finished) and done.finish_reason in ("stop", "length")
    assert done.ttft_ms is not None and 0 < done.ttft_ms < done.duration_ms
    assert done.prompt_tokens > 5 and done.completion_tokens >= len(deltas) - 1
    assert done.tok_per_s and done.tok_per_s > 1


def test_an_announced_stream_says_the_server_took_the_request_before_any_text(live_endpoint):
    ask = [{"role": "user", "content": "Name three rivers."}]
    events = asyncio.run(collect(stream_chat(live_endpoint, ask, GREEDY, announce=True)))
    assert isinstance(events[0], Accepted) and sum(isinstance(e, Accepted) for e in events) == 1
    assert isinstance(events[1], Delta) and isinstance(events[-1], Finished)
    plain = asyncio.run(collect(stream_chat(live_endpoint, ask, GREEDY)))
    assert not any(isinstance(e, Accepted) for e in plain)  # only callers that ask get it
    assert "".join(e.text for e in plain if isinstance(e, Delta)) == "".join(e.text for e in events if isinstance(e, Delta))
    # A request the server refuses is an error, never announced first.
    with pytest.raises(ContextTooLong):
        asyncio.run(collect(stream_chat(live_endpoint, [{"role": "user", "content": "word " * 40_000}], GREEDY, announce=True)))


def test_turn_is_persisted_with_timings(db, server_manager, live_endpoint):
    cid = turns.start_conversation(_owner(), None, model=live_endpoint.model)
    turns.add_user_message(cid, "What is the capital of France?")
    seen_streaming_row = []

    async def run():
        last = None
        async for upd in turns.answer(server_manager, cid, live_endpoint.model, GREEDY, system_prompt="Answer briefly."):
            if not seen_streaming_row:  # while streaming, the user message and the growing answer are already rows
                rows = chats.active_messages(cid)
                seen_streaming_row.append([(r.role, r.finish_reason) for r in rows])
            last = upd
        return last

    last = asyncio.run(run())
    assert seen_streaming_row[0] == [("user", None), ("assistant", "streaming")]
    assert last.finished is not None and last.error is None
    user, answer = chats.active_messages(cid)
    assert user.content == "What is the capital of France?"
    assert answer.content == last.text and len(answer.content) > 0
    assert answer.finish_reason in ("stop", "length") and answer.ttft_ms > 0 and answer.tok_per_s > 0
    assert answer.completion_tokens > 0 and answer.prompt_tokens > 0 and answer.model == live_endpoint.model
    assert '"temperature": 0.0' in answer.params
    assert chats.get_conversation(cid).system_prompt == "Answer briefly."


def test_regenerate_keeps_the_old_answer(db, server_manager, live_endpoint):
    cid = turns.start_conversation(_owner(), None)
    turns.add_user_message(cid, "Say hello.")
    turns.run_turn_sync(turns.answer(server_manager, cid, live_endpoint.model, GREEDY))
    first = chats.active_messages(cid)[-1]
    assert turns.retire_last_answer(cid)
    turns.run_turn_sync(turns.answer(server_manager, cid, live_endpoint.model, ChatParams(temperature=1.0, max_tokens=16, seed=7)))
    active = chats.active_messages(cid)
    assert [m.role for m in active] == ["user", "assistant"] and active[-1].id != first.id
    assert chats.get_message(first.id).content == first.content and not chats.get_message(first.id).active


def test_stop_keeps_the_partial_answer(db, server_manager, live_endpoint):
    cid = turns.start_conversation(_owner(), None)
    turns.add_user_message(cid, "Write a very long story about a dragon and a knight.")

    async def run():
        # as the Chat tab does: the turn runs in its own task; a stop closes the consumer
        updates = turns.Prefetched(turns.answer(server_manager, cid, live_endpoint.model, LONG))
        text = ""
        async for upd in updates:
            text = upd.text
            if len(text) > 40:
                break
        await updates.aclose()
        return text

    partial = asyncio.run(run())
    answer = chats.active_messages(cid)[-1]
    # everything received is kept (the task may have read a little past what the consumer saw)
    assert answer.finish_reason == "stopped" and answer.content.startswith(partial) and len(partial) > 40


def test_clear_errors_for_unknown_model_long_context_and_down_server(live_endpoint):
    bad_model = Endpoint(base_url=live_endpoint.base_url, model="no-such-model")
    with pytest.raises(UnknownModel, match="no-such-model"):
        asyncio.run(collect(stream_chat(bad_model, [{"role": "user", "content": "hi"}], GREEDY)))
    with pytest.raises(ContextTooLong):
        asyncio.run(collect(stream_chat(live_endpoint, [{"role": "user", "content": "hello " * 5000}], GREEDY)))
    down = Endpoint(base_url="http://127.0.0.1:9/v1", model="x")
    with pytest.raises(ServerUnavailable):
        asyncio.run(collect(stream_chat(down, [{"role": "user", "content": "hi"}], GREEDY, timeout=5)))


def test_unknown_model_in_a_turn_is_saved_as_an_error(db, server_manager, live_endpoint):
    cid = turns.start_conversation(_owner(), None)
    turns.add_user_message(cid, "hi")
    last = turns.run_turn_sync(turns.answer(server_manager, cid, "ghost-model", GREEDY))
    assert last.error is not None and last.error.kind == "unknown_model"
    user, answer = chats.active_messages(cid)
    assert user.content == "hi" and answer.finish_reason == "error" and answer.error.startswith("unknown_model")


def test_second_manager_reuses_the_healthy_server(settings, server_manager, bundled_model, live_endpoint):
    other = ServerManager(settings)
    ep = other.ensure(bundled_model, timeout=30)
    st = other.status()[bundled_model.name]
    assert ep.base_url == live_endpoint.base_url and st.proc is None and st.status == "ready"
    assert st.owned is False  # its owner (this test session) is alive: the other app will not stop it
    other.stop_all()
    assert server_manager.status()[bundled_model.name].status == "ready"
    names = [r.name for r in other.served_models()]
    assert bundled_model.name in names


def test_server_killed_mid_stream_keeps_everything_and_recovers(db, server_manager, bundled_model, live_endpoint):
    """kill -9 the server while it streams: clear error, user message + partial answer kept; after the
    manager's automatic restart the next request works."""
    cid = turns.start_conversation(_owner(), None)
    turns.add_user_message(cid, "Write a very long story about a dragon and a knight.")
    pid = server_manager.status()[bundled_model.name].pid

    async def run():
        last = None
        killed = False
        async for upd in turns.answer(server_manager, cid, live_endpoint.model, LONG):
            last = upd
            if not killed and len(upd.text) > 60:
                os.killpg(pid, signal.SIGKILL)
                killed = True
        return last

    last = asyncio.run(run())
    assert last.error is not None and last.error.kind in ("interrupted", "server_down")
    user, answer = chats.active_messages(cid)
    assert user.content.startswith("Write a very long story")
    assert answer.finish_reason == "error" and len(answer.content) > 60 and answer.content == last.text

    deadline = time.monotonic() + 400  # the watcher restarts it on its own
    while time.monotonic() < deadline and not (
        server_manager.status()[bundled_model.name].pid != pid and server_manager.status()[bundled_model.name].status == "ready"
    ):
        time.sleep(1)
    st = server_manager.status()[bundled_model.name]
    assert st.pid != pid and st.status == "ready" and len(st.restarts) == 1
    turns.add_user_message(cid, "What is the capital of France?")
    after = turns.run_turn_sync(turns.answer(server_manager, cid, live_endpoint.model, GREEDY))
    assert after.error is None and after.finished is not None and after.text
