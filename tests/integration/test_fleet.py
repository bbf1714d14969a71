"""Two real CPU vLLM servers of the bundled model as endpoints of one base: the session's server (the managed, local
one) and a second one started here (registered as a fleet endpoint by an admin). Concurrent chats spread over both;
an adapter is loaded on both; one server killed mid-run → later requests go to the other and nothing is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engines import conversations as turns
from engines.accounts import Actor
from engines.inference import ChatParams, generate_many
from engines.serving import ServerManager
from engines.serving.fleet import Fleet
from engines.serving.manager import free_port
from engines.settings import load_settings
from storage import chats
from tests.conftest import MODELS_DIR

pytestmark = pytest.mark.server
ADMIN = Actor(1, "boss", "admin")
ADAPTER = "fleet-zero-lora"
SHORT = ChatParams(temperature=0.0, max_tokens=24, seed=0)
LONG = ChatParams(temperature=0.8, max_tokens=160, seed=1)


def served_requests(root: str) -> float:
    """Requests a vLLM server finished so far (its own counter, every finish reason)."""
    text = httpx.get(f"{root}/metrics", timeout=5).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "vllm:request_success_total")


def running(root: str) -> float:
    text = httpx.get(f"{root}/metrics", timeout=5).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "vllm:num_requests_running")


def model_ids(root: str) -> list[str]:
    return [m["id"] for m in httpx.get(f"{root}/v1/models", timeout=5).json()["data"]]


@pytest.fixture(scope="module")
def zero_adapter(tmp_path_factory, bundled_model):
    """A rank-8 LoRA of the bundled model with B = 0 (answers equal the base's): made in seconds, no training."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("fleet-adapter")
    model = AutoModelForCausalLM.from_pretrained(bundled_model.source)
    get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
                   ).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def pair(tmp_path_factory, settings, bundled_model, endpoint):
    """(studio's manager, second server's manager, base name, [local root, second root]). The studio's manager adopts
    the session's server without owning it; the second server runs from its own data folder, small KV cache."""
    studio = ServerManager(settings)
    local = studio.ensure(bundled_model, timeout=60).base_url.removesuffix("/v1")
    other_settings = load_settings(data_dir=tmp_path_factory.mktemp("fleet-b"), model_cache_dir=MODELS_DIR,
                                   vllm_start_timeout=400, vllm_cpu_kvcache_space=1)
    other = ServerManager(other_settings)
    second = None
    try:
        second = other.ensure(bundled_model, max_model_len=1024).base_url.removesuffix("/v1")
        assert studio.add_fleet_endpoint(bundled_model.name, f"{second}/v1", actor=ADMIN) == {second: None}
        yield studio, other, bundled_model.name, [local, second]
    finally:
        # Taken out again: the endpoint is kept in the session's DATA_DIR/fleet.json, and a studio the later tests
        # start on that folder would otherwise route to a server that is gone.
        if second:
            studio.remove_fleet_endpoint(bundled_model.name, second, actor=ADMIN)
            saved = settings.data_dir / "fleet.json"
            assert not saved.exists() or second not in saved.read_text()
        studio.fleet.close()
        if ADAPTER in model_ids(local):
            httpx.post(f"{local}/v1/unload_lora_adapter", json={"lora_name": ADAPTER}, timeout=30)
        other.stop_all()
        studio.stop_all()  # owns nothing: the session's server keeps running


async def chat_all(servers: ServerManager, cids: list[int], model: str, params: ChatParams) -> list:
    async def one(cid: int):
        last = None
        async for update in turns.answer(servers, cid, model, params):
            last = update
        return last

    return await asyncio.gather(*(one(c) for c in cids))


def new_chats(n: int, text: str) -> list[int]:
    """n conversations of the local owner, each with its user message stored (as the UI and /v1 do first)."""
    from engines import accounts

    actor = accounts.bootstrap(None)
    return [turns.store_user_turn(actor, None, f"{text} ({i})") for i in range(n)]


def assert_nothing_lost(cids: list[int]) -> list:
    """Every stored conversation holds its one user message and exactly one answer (a failover wrote no second)."""
    answers = []
    for cid in cids:
        rows = chats.active_messages(cid)
        assert [m.role for m in rows] == ["user", "assistant"], [(m.role, m.finish_reason) for m in rows]
        answers.append(rows[1])
    return answers


def test_concurrent_chats_spread_and_an_adapter_loads_on_both(db, pair, zero_adapter):
    studio, _, base, roots = pair
    studio.load_adapter(base, ADAPTER, zero_adapter)  # the managed server, fanned out to the registered one
    assert all(ADAPTER in model_ids(r) for r in roots)

    before = [served_requests(r) for r in roots]
    cids = new_chats(8, "Name a colour")
    results = asyncio.run(chat_all(studio, cids[:4], base, SHORT)) + asyncio.run(chat_all(studio, cids[4:], ADAPTER, SHORT))
    assert all(r.finished is not None and r.error is None for r in results), [r.error for r in results]
    done = [served_requests(r) - b for r, b in zip(roots, before, strict=True)]
    assert sum(done) == 8 and min(done) >= 2, done  # both servers answered a share of each burst
    answers = assert_nothing_lost(cids)
    assert all(a.finish_reason in ("stop", "length") and a.content for a in answers)
    views = {v.url: v for v in studio.fleet.view()}
    assert set(views) == set(roots) and views[roots[0]].managed and all(v.health == "up" for v in views.values())


def test_batch_generation_through_the_fleet_uses_both_servers(pair):
    studio, _, base, roots = pair
    before = [served_requests(r) for r in roots]
    prompts = [[{"role": "user", "content": f"Count from 1 to {i + 3}."}] for i in range(8)]
    results = asyncio.run(generate_many(studio.endpoint_for(base), prompts, SHORT, concurrency=8, retries=0))
    assert all(r.error is None and r.text for r in results), [r.error for r in results]
    done = [served_requests(r) - b for r, b in zip(roots, before, strict=True)]
    assert sum(done) == 8 and min(done) >= 2, done


def test_a_request_routed_to_a_dead_endpoint_fails_over_before_streaming(db, pair):
    studio, _, base, roots = pair
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: a crashed server
    fleet = studio.fleet
    studio.fleet = Fleet({base: [dead]}, managed=studio._ready_root, poll=False)  # not polled: routing cannot know
    try:
        (cid,) = new_chats(1, "Say hello")
        with studio.fleet.track(roots[0]):  # the local server looks busier: the dead one is tried first
            assert studio.fleet.targets(base, base)[0].base_url == f"{dead}/v1"
            (last,) = asyncio.run(chat_all(studio, [cid], base, SHORT))
        assert last.error is None and last.finished is not None and last.text
        (answer,) = assert_nothing_lost([cid])
        assert answer.content == last.text and answer.finish_reason in ("stop", "length")
        assert {v.url: v.health for v in studio.fleet.view()}[dead] == "down"  # skipped until a poll finds it again
    finally:
        studio.fleet = fleet


def test_one_server_killed_mid_run_later_requests_go_to_the_other_nothing_lost(db, pair):
    studio, other, base, roots = pair
    first = new_chats(8, "Write a long story about a lighthouse")
    later = new_chats(6, "Name a fruit")
    st = other.status()[base]
    st.wanted = False  # no automatic restart: it stays dead

    async def run() -> tuple[list, list]:
        burst = asyncio.create_task(chat_all(studio, first, base, LONG))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and await asyncio.to_thread(running, roots[1]) < 1:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # some answers are streaming there now
        assert await asyncio.to_thread(running, roots[1]) >= 1, "the burst never reached the second server"
        os.kill(st.pid, signal.SIGKILL)
        await asyncio.sleep(0.3)
        after = await chat_all(studio, later, base, SHORT)  # sent before or after a poll notices: either way
        return await burst, after

    burst, after = asyncio.run(run())
    assert all(r.error is None and r.finished is not None for r in after), [str(r.error) for r in after]
    answered = assert_nothing_lost(first + later)  # stored = sent: every message, one answer each
    for row, result in zip(answered, burst + after, strict=True):
        if result.error is None:
            assert row.finish_reason in ("stop", "length") and row.content == result.text
        else:  # it was streaming on the killed server: the partial text is kept and marked
            assert result.error.kind == "interrupted" and row.finish_reason == "error" and row.content == result.text
    assert any(r.error is None for r in burst)  # the local server's share finished
    assert {v.url: v.health for v in studio.fleet.view()}[roots[1]] == "down"
