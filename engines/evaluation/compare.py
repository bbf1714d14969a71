"""Several models answering at once: merged streams (a slow model never holds the others back), arena draws."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from engines.accounts import Actor
from engines.endpoints import Endpoint
from engines.evaluation.ratings import Vote
from engines.inference import ChatParams, Delta, Finished, InferenceError, stream_chat
from engines.serving.manager import ServerManager
from storage import battles
from storage.models import Battle

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


def own_battle(actor: Actor, battle_id: Any) -> Battle:
    """The actor's battle with this id (another person's is 'not found', like a missing one)."""
    return _own_battle(actor, battle_id)


def battles_page(actor: Actor, *, before_id: int | None = None, limit: int = 50) -> list[Battle]:
    """The actor's battles, newest first, older than `before_id` (a previous page's last id)."""
    return battles.list_battles(actor.id, before_id=before_id, limit=limit)


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


@dataclass
class Side:
    """One model's answer in a battle: the text (partial when it failed), its numbers, or the error that ended it."""

    text: str = ""
    finished: Finished | None = None
    error: InferenceError | None = None


async def fight(servers: ServerManager, actor: Actor, prompt: str, models: tuple[str, str] | None = None, *,
                params: ChatParams, system: str | None = None, category: str | None = None,
                timeout: float = 120.0) -> tuple[int, list[Side]]:
    """One battle, start to end, owned by the actor: two named models (side by side), or a blind draw of two served
    ones when `models` is None. Both answer the prompt at once; the answers are stored; returns (battle id, sides).
    ValueError when the prompt is empty, fewer than two models are served for a blind draw, or a model is not served.
    Database work runs in a thread: this coroutine is meant for an event loop that serves other requests."""
    text = (prompt or "").strip()
    if not text:
        raise ValueError("The prompt is empty.")
    blind = models is None
    if blind:
        served = await asyncio.to_thread(servers.served_models)
        models = draw_pair([m.name for m in served])
    endpoints = []
    for name in models:
        ep = servers.endpoint_for(name)
        if ep is None:
            raise ValueError(f"No running server serves {name!r}: pick a served model or start its server.")
        endpoints.append(ep)
    messages = ([{"role": "system", "content": system.strip()}] if (system or "").strip() else []) + [
        {"role": "user", "content": text}]
    record = {"temperature": params.temperature, "max_tokens": params.max_tokens, "system": system or ""}
    battle_id = await asyncio.to_thread(start_battle, actor, text, models[0], models[1], blind=blind, params=record,
                                        category=(category or "").strip() or None)
    sides = [Side(), Side()]
    async for i, ev in stream_many(endpoints, [messages, messages], params, timeout=timeout):
        if isinstance(ev, Delta):
            sides[i].text += ev.text
        elif isinstance(ev, Finished):
            sides[i].finished = ev
        elif isinstance(ev, InferenceError):
            sides[i].error = ev
    await asyncio.to_thread(save_battle_answers, actor, battle_id, sides[0].text, sides[1].text)
    return battle_id, sides
