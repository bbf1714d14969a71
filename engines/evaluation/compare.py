"""Several models answering at once: merged streams (a slow model never holds the others back), arena draws."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

from engines.accounts import Actor
from engines.evaluation.ratings import Vote
from engines.inference import ChatParams, InferenceError, stream_chat
from engines.serving.manager import Endpoint
from storage import battles

DONE = object()


async def stream_many(
    endpoints: list[Endpoint], conversations: list[list[dict]], params: ChatParams, *, timeout: float = 120.0
) -> AsyncIterator[tuple[int, Any]]:
    """(pane, event) as they arrive from every model; an error ends only its own pane. Cancelling stops them all."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, ep: Endpoint, messages: list[dict]) -> None:
        try:
            async for ev in stream_chat(ep, messages, params, timeout=timeout):
                await queue.put((i, ev))
        except InferenceError as exc:
            await queue.put((i, exc))
        finally:
            await queue.put((i, DONE))

    tasks = [asyncio.create_task(pump(i, ep, msgs)) for i, (ep, msgs) in enumerate(zip(endpoints, conversations, strict=True))]
    open_panes = len(tasks)
    try:
        while open_panes:
            i, ev = await queue.get()
            if ev is DONE:
                open_panes -= 1
                continue
            yield i, ev
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def draw_pair(models: list[str], rng: random.Random | None = None) -> tuple[str, str]:
    """Two different models, in random sides (the arena's blind draw)."""
    pool = sorted(set(models))
    if len(pool) < 2:
        raise ValueError("The arena needs at least two served models (a base and an adapter, say).")
    a, b = (rng or random.SystemRandom()).sample(pool, 2)
    return a, b


class BattleNotFound(LookupError):
    """No such battle of the acting user (votes are private: another person's battle is 'not found' too)."""


def start_battle(actor: Actor, prompt: str, model_a: str, model_b: str, *, blind: bool, params: dict[str, Any] | None = None,
                 category: str | None = None) -> int:
    """Record a two-model round owned by the actor; returns its id."""
    return battles.create_battle(prompt, model_a, model_b, blind=blind, params=params, category=category,
                                 user_name=actor.name, owner_id=actor.id).id


def _own_battle(actor: Actor, battle_id: Any):
    try:
        bid = int(battle_id)
    except (TypeError, ValueError):
        raise BattleNotFound(f"A battle id is a whole number, not {str(battle_id)[:40]!r}.") from None
    battle = battles.get_battle(bid)
    if battle is None or battle.owner_id != actor.id:
        raise BattleNotFound(f"There is no battle {bid} of yours.")
    return battle


def save_battle_answers(actor: Actor, battle_id: int, answer_a: str, answer_b: str) -> None:
    battles.set_answers(_own_battle(actor, battle_id).id, answer_a, answer_b)


def record_vote(actor: Actor, battle_id: int, choice: str):
    """The actor's vote on their own battle (a | b | tie | both_bad); returns the battle with its models revealed."""
    return battles.record_vote(_own_battle(actor, battle_id).id, choice)


def votes(**filters: Any) -> list[Vote]:
    return [Vote(b.model_a, b.model_b, b.vote) for b in battles.voted(**filters)]
