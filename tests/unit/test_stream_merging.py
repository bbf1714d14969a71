"""The Chat tab's update stream: a fast token stream reaches the page at a bounded rate, merged, with nothing lost."""

from __future__ import annotations

import asyncio

import pytest

from engines.conversations import Prefetched, TurnUpdate
from engines.inference import Finished


async def burst(n: int, *, end: str = "finished", gap: float = 0.001):
    """A model streaming one character every `gap` seconds (`end`: finished, error update, or raised)."""
    text = ""
    for i in range(n):
        text += chr(ord("a") + i % 26)
        yield TurnUpdate(1, text)
        await asyncio.sleep(gap)
    if end == "finished":
        yield TurnUpdate(1, text, finished=Finished("stop", 3, n, 5.0, 100.0, 50.0))
    elif end == "raise":
        raise RuntimeError("server went away")


async def consume(stream: Prefetched) -> list[TurnUpdate]:
    return [u async for u in stream]


def test_fast_tokens_are_merged_and_the_end_is_never_dropped() -> None:
    got = asyncio.run(asyncio.wait_for(consume_new(400, min_interval=0.05), 30))
    assert got[-1].finished is not None and len(got[-1].text) == 400
    assert len(got) < 100  # ~0.8 s of tokens at ≤ 20 updates/s (not 401 redraws)
    lengths = [len(u.text) for u in got]
    assert lengths == sorted(lengths) and lengths[0] >= 1
    assert got[-2].finished is None and len(got[-2].text) == 400  # the last partial carried the whole text


def test_without_an_interval_every_update_arrives_in_order() -> None:
    got = asyncio.run(asyncio.wait_for(consume_new(50, min_interval=0.0, gap=0.002), 30))
    assert [len(u.text) for u in got[:-1]] == list(range(1, 51)) and got[-1].finished is not None


def test_an_error_after_merged_updates_is_still_raised() -> None:
    with pytest.raises(RuntimeError, match="server went away"):
        asyncio.run(asyncio.wait_for(consume_new(200, min_interval=0.05, end="raise"), 30))


async def consume_new(n: int, *, min_interval: float, gap: float = 0.001, end: str = "finished") -> list[TurnUpdate]:
    return await consume(Prefetched(burst(n, end=end, gap=gap), min_interval=min_interval))


def test_streams_sharing_a_total_rate_each_slow_down_and_the_count_returns_to_zero() -> None:
    async def run() -> list[list[TurnUpdate]]:
        streams = [Prefetched(burst(300, gap=0.002), min_interval=0.01, total_rate=40) for _ in range(8)]
        assert Prefetched._sharing == 8
        return await asyncio.gather(*(consume(s) for s in streams))

    got = asyncio.run(asyncio.wait_for(run(), 30))
    assert Prefetched._sharing == 0
    for updates in got:
        assert updates[-1].finished is not None and len(updates[-1].text) == 300
        assert len(updates) <= 8  # ~0.6 s of tokens, each stream waiting 8/40 = 0.2 s between updates (not 0.01 s)


def test_a_long_shared_interval_never_holds_back_the_end() -> None:
    async def run() -> tuple[list[TurnUpdate], float]:
        others = [Prefetched(burst(2000, gap=0.01), min_interval=0.01, total_rate=4) for _ in range(7)]
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        got = await consume(Prefetched(burst(5, gap=0.01), min_interval=0.01, total_rate=4))  # 8 streams: 2 s interval
        took = loop.time() - t0
        for s in others:
            await s.aclose()
        return got, took

    got, took = asyncio.run(asyncio.wait_for(run(), 30))
    assert got[-1].finished is not None and len(got[-1].text) == 5
    assert took < 1.0  # the end arrived when the stream ended, not after the 2 s interval
    assert Prefetched._sharing == 0
