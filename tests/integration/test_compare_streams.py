"""Several models at once on the real CPU server: panes interleave, an error ends only its own pane."""

from __future__ import annotations

import asyncio

import pytest

from engines.evaluation.compare import draw_pair, stream_many
from engines.inference import ChatParams, Delta, Finished, InferenceError
from engines.serving import Endpoint

pytestmark = pytest.mark.server


def collect(endpoints, prompts, params):
    async def go():
        return [(i, ev) async for i, ev in stream_many(endpoints, prompts, params)]

    return asyncio.run(go())


def test_both_panes_receive_tokens_before_either_finishes(live_endpoint):
    a = live_endpoint
    b = Endpoint(base_url=live_endpoint.base_url, model=live_endpoint.model)  # a second stream to the same server
    prompts = [[{"role": "user", "content": "Count from one to twenty in words."}],
               [{"role": "user", "content": "List twenty animals, one per line."}]]
    events = collect([a, b], prompts, ChatParams(temperature=0.0, max_tokens=64))
    first_finish = min(n for n, (_, ev) in enumerate(events) if isinstance(ev, Finished))
    seen_before = {i for i, ev in events[:first_finish] if isinstance(ev, Delta)}
    assert seen_before == {0, 1}, "one model's stream waited for the other's"
    assert [i for i, ev in events if isinstance(ev, Finished)].count(0) == 1
    assert [i for i, ev in events if isinstance(ev, Finished)].count(1) == 1


def test_an_error_ends_only_its_own_pane(live_endpoint):
    broken = Endpoint(base_url=live_endpoint.base_url, model="no-such-model")
    events = collect([broken, live_endpoint], [[{"role": "user", "content": "hi"}]] * 2, ChatParams(max_tokens=8))
    assert any(i == 0 and isinstance(ev, InferenceError) for i, ev in events)
    assert any(i == 1 and isinstance(ev, Finished) for i, ev in events)


def test_the_arena_draws_two_different_models():
    for _ in range(20):
        a, b = draw_pair(["x", "y", "z"])
        assert a != b and {a, b} <= {"x", "y", "z"}
    with pytest.raises(ValueError):
        draw_pair(["only-one", "only-one"])
