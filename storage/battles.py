"""Battles: every side-by-side answer pair, the vote on it, and LLM judges' verdicts on it."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from storage.models import Battle, BattleJudgement, utcnow

VOTES = ("a", "b", "tie", "both_bad")


def create_battle(prompt: str, model_a: str, model_b: str, *, blind: bool, params: dict[str, Any] | None = None,
                  category: str | None = None, user_name: str | None = None, owner_id: int | None = None) -> Battle:
    return Battle.create(prompt=prompt, model_a=model_a, model_b=model_b, blind=blind, params=json.dumps(params or {}),
                         category=category or None, user_name=user_name, owner_id=owner_id)


def set_answers(battle_id: int, answer_a: str, answer_b: str) -> None:
    Battle.update(answer_a=answer_a, answer_b=answer_b).where(Battle.id == battle_id).execute()


def record_vote(battle_id: int, vote: str) -> Battle:
    if vote not in VOTES:
        raise ValueError(f"vote must be one of {', '.join(VOTES)}")
    Battle.update(vote=vote, voted_at=utcnow()).where(Battle.id == battle_id).execute()
    return Battle.get_by_id(battle_id)


def get_battle(battle_id: int) -> Battle | None:
    return Battle.get_or_none(Battle.id == battle_id)


def list_battles(owner_id: int, *, before_id: int | None = None, limit: int = 50) -> list[Battle]:
    """One person's battles, newest first; `before_id` (the last id of a previous page) continues a listing."""
    q = Battle.select().where(Battle.owner_id == owner_id)
    if before_id is not None:
        q = q.where(Battle.id < before_id)
    return list(q.order_by(Battle.id.desc()).limit(limit))


def voted(*, since_days: float | None = None, category: str | None = None, blind_only: bool = False) -> list[Battle]:
    q = Battle.select().where(Battle.vote.is_null(False)).order_by(Battle.voted_at, Battle.id)
    if since_days:
        q = q.where(Battle.voted_at >= utcnow() - dt.timedelta(days=since_days))
    if category:
        q = q.where(Battle.category == category)
    if blind_only:
        q = q.where(Battle.blind == True)  # noqa: E712
    return list(q)


def voted_by(owner_id: int, *, votes: tuple[str, ...] = VOTES, since: dt.datetime | None = None,
             until: dt.datetime | None = None, category: str | None = None) -> list[Battle]:
    """One person's voted battles with answers, oldest vote first; `since`/`until` bound the vote time."""
    q = Battle.select().where((Battle.owner_id == owner_id) & Battle.vote.in_(list(votes))
                              & Battle.answer_a.is_null(False) & Battle.answer_b.is_null(False))
    if since is not None:
        q = q.where(Battle.voted_at >= since)
    if until is not None:
        q = q.where(Battle.voted_at < until)
    if category:
        q = q.where(Battle.category == category)
    return list(q.order_by(Battle.voted_at, Battle.id))


def save_judgement(battle_id: int, judge: str, verdict: str, detail: dict[str, Any] | None = None) -> None:
    """Insert or replace one judge's verdict (a | b | tie | error) on a battle."""
    if verdict not in ("a", "b", "tie", "error"):
        raise ValueError("a judge's verdict is a, b, tie or error")
    text = json.dumps(detail or {}, ensure_ascii=False)
    row = BattleJudgement.get_or_none(BattleJudgement.battle == battle_id, BattleJudgement.judge == judge)
    if row is None:
        BattleJudgement.create(battle=battle_id, judge=judge, verdict=verdict, detail=text)
    else:
        BattleJudgement.update(verdict=verdict, detail=text, created_at=utcnow()).where(BattleJudgement.id == row.id).execute()


def judgements(battle_ids: list[int], *, judge: str | None = None) -> list[BattleJudgement]:
    """The judges' verdicts on these battles (of one judge when named), by battle then judge."""
    if not battle_ids:
        return []
    q = BattleJudgement.select().where(BattleJudgement.battle.in_(battle_ids))
    if judge:
        q = q.where(BattleJudgement.judge == judge)
    return list(q.order_by(BattleJudgement.battle, BattleJudgement.judge))
