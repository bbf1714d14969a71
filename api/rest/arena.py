"""REST routes: the arena — a battle (two models answer one prompt), your vote on it, your battles, the leaderboard.

A battle names its two models (side by side) or leaves them out: then two served models are drawn and kept hidden
(`model_a`/`model_b` null) until you vote. Battles are private: another person's answers 404 like a missing one. The
leaderboard counts every voted battle of the team (Bradley–Terry with 95% intervals, ties count half)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field, model_validator

from api.auth import acting_user
from api.rest import deps
from api.rest.errors import ERRORS
from api.rest.pages import MAX_ID, CursorParam, Limit, Page, Timestamp, decode_cursor, encode_cursor
from engines.accounts import Actor
from engines.evaluation import agreement, compare
from engines.evaluation.ratings import leaderboard as ratings_leaderboard
from engines.inference import ChatParams
from storage.models import utcnow

router = APIRouter(prefix="/arena", tags=["arena"], responses=ERRORS)

BattleId = Annotated[int, Path(ge=1, le=MAX_ID)]
Choice = Literal["a", "b", "tie", "both_bad"]


class BattleRequest(BaseModel):
    prompt: str = Field(min_length=1, max_length=20_000)
    model_a: str | None = Field(None, max_length=300, description="Both models, or neither for a blind draw.")
    model_b: str | None = Field(None, max_length=300)
    system: str | None = Field(None, max_length=20_000, description="A system prompt for both.")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(256, ge=1, le=32_768)
    category: str | None = Field(None, max_length=100, description="A label to filter the leaderboard by.")

    @model_validator(mode="after")
    def both_or_neither(self) -> BattleRequest:
        if bool(self.model_a) != bool(self.model_b):
            raise ValueError("Name both models (model_a and model_b), or neither for a blind draw.")
        return self


class SideStats(BaseModel):
    finish_reason: str | None = None
    ttft_ms: float | None = None
    tok_per_s: float | None = None
    completion_tokens: int | None = None
    error: str | None = Field(None, description="Why this side's answer ended early (its partial text is kept).")


class Battle(BaseModel):
    id: int
    prompt: str
    blind: bool
    model_a: str | None = Field(description="Hidden (null) in a blind battle until you vote.")
    model_b: str | None
    answer_a: str | None
    answer_b: str | None
    vote: Choice | None = None
    category: str | None = None
    created_at: Timestamp
    voted_at: Timestamp | None = None


class BattleResult(Battle):
    stats_a: SideStats
    stats_b: SideStats


class VoteRequest(BaseModel):
    choice: Choice = Field(description="a | b | tie | both_bad")


class Rating(BaseModel):
    rank: int
    model: str
    score: float = Field(description="Bradley–Terry strength on the Elo scale (mean 1000).")
    low: float = Field(description="95% bootstrap interval, low end.")
    high: float
    elo: float = Field(description="Online Elo in vote order (a live preview).")
    battles: int
    win_rate: float = Field(description="Ties count half.")


class Leaderboard(BaseModel):
    votes: int
    ratings: list[Rating]


def battle_out(b) -> Battle:
    hidden = bool(b.blind) and not b.vote
    return Battle(id=b.id, prompt=b.prompt, blind=bool(b.blind), model_a=None if hidden else b.model_a,
                  model_b=None if hidden else b.model_b, answer_a=b.answer_a, answer_b=b.answer_b, vote=b.vote,
                  category=b.category, created_at=b.created_at, voted_at=b.voted_at)


def _stats(side: compare.Side) -> SideStats:
    f = side.finished
    return SideStats(finish_reason=f.finish_reason if f else ("error" if side.error else None),
                     ttft_ms=f.ttft_ms if f else None, tok_per_s=f.tok_per_s if f else None,
                     completion_tokens=f.completion_tokens if f else None, error=str(side.error) if side.error else None)


@router.post("/battles", response_model=BattleResult, status_code=201, summary="Start a battle and get both answers")
async def start_battle(body: BattleRequest, actor: Actor = Depends(acting_user),
                       services=Depends(deps.services)) -> BattleResult:
    """Both models answer the prompt at once; the answers are stored with the battle, which waits for your vote.
    400 when a named model is not served, or fewer than two models are served for a blind draw."""
    models = (body.model_a, body.model_b) if body.model_a and body.model_b else None
    battle_id, sides = await compare.fight(
        services.servers, actor, body.prompt, models, system=body.system, category=body.category,
        params=ChatParams(temperature=body.temperature, max_tokens=body.max_tokens),
        timeout=float(services.settings.request_timeout),
    )
    stored = await anyio.to_thread.run_sync(compare.own_battle, actor, battle_id)
    return BattleResult(**battle_out(stored).model_dump(), stats_a=_stats(sides[0]), stats_b=_stats(sides[1]))


@router.get("/battles", response_model=Page[Battle], summary="Your battles, newest first")
def list_battles(limit: Limit = 50, cursor: CursorParam = None, actor: Actor = Depends(acting_user)) -> Page[Battle]:
    before = decode_cursor(cursor, int)
    rows = compare.battles_page(actor, before_id=before[0] if before else None, limit=limit + 1)
    shown = rows[:limit]
    return Page[Battle](items=[battle_out(b) for b in shown],
                        next_cursor=encode_cursor(shown[-1].id) if len(rows) > limit else None)


@router.get("/battles/{battle_id}", response_model=Battle, summary="One of your battles")
def get_battle(battle_id: BattleId, actor: Actor = Depends(acting_user)) -> Battle:
    return battle_out(compare.own_battle(actor, battle_id))


@router.post("/battles/{battle_id}/vote", response_model=Battle, summary="Vote on your battle (reveals its models)")
def vote(battle_id: BattleId, body: VoteRequest, actor: Actor = Depends(acting_user)) -> Battle:
    """a, b, tie or both_bad; voting again replaces your vote."""
    return battle_out(compare.record_vote(actor, battle_id, body.choice))


@router.get("/leaderboard", response_model=Leaderboard, summary="Ratings from the team's votes")
def leaderboard(
    since_days: Annotated[float | None, Query(gt=0, le=3650, description="Only votes of the last N days.")] = None,
    category: Annotated[str | None, Query(max_length=100)] = None,
    blind_only: Annotated[bool, Query(description="Only blind battles.")] = False,
    actor: Actor = Depends(acting_user),
) -> Leaderboard:
    votes = compare.votes(since_days=since_days, category=(category or "").strip() or None, blind_only=blind_only)
    board = ratings_leaderboard(votes, rounds=100)
    return Leaderboard(votes=len(votes), ratings=[
        Rating(rank=i + 1, model=r.model, score=r.score, low=r.low, high=r.high, elo=r.elo, battles=r.battles,
               win_rate=r.win_rate) for i, r in enumerate(board)])




# ---- judge–human agreement ------------------------------------------------------------------------------------------
class AgreementDisagreement(BaseModel):
    battle_id: int
    prompt: str
    model_a: str
    model_b: str
    human: Choice = Field(description="your vote")
    judge: Literal["a", "b", "tie"] = Field(description="the judge's verdict (both orders; a flip is a tie)")


class JudgeAgreementOut(BaseModel):
    judge: str = Field(description="the judge model")
    n: int = Field(description="battles you voted on that this judge rated (errors left out)")
    agreement: float | None = Field(description="share of those where the judge agreed with you (both bad = tie)")
    kappa: float | None = Field(description="Cohen's kappa: agreement beyond chance; null when every label is the same")
    errors: int = Field(description="battles the judge failed to rate (malformed or failed verdicts)")
    unjudged: int = Field(description="your voted battles this judge has not rated yet (POST /arena/judgements)")
    confusion: dict[str, int] = Field(description="'human|judge' → battles")
    disagreements: list[AgreementDisagreement]


class AgreementOut(BaseModel):
    voted: int = Field(description="your voted battles with both answers (in the filters)")
    judges: list[JudgeAgreementOut]


class JudgeRequest(BaseModel):
    judge: str = Field(min_length=1, max_length=300, description="a served model that rates the battles")
    limit: int = Field(10, ge=1, le=50, description="at most this many battles in this call (call again for more)")
    max_tokens: int = Field(512, ge=8, le=4096, description="each verdict's length (the judge reasons, then [[A]]/[[B]]/[[C]])")


class JudgeResult(BaseModel):
    judge: str
    judged: int = Field(description="battles rated in this call")
    verdicts: dict[str, int] = Field(description="a | b | tie | error → battles")
    remaining: int = Field(description="your voted battles this judge still has not rated (or rated with an error)")


@router.get("/agreement", response_model=AgreementOut, summary="How often each judge model agrees with your votes")
def agreement_report(
    judge: Annotated[str | None, Query(max_length=300, description="only this judge")] = None,
    since_days: Annotated[float | None, Query(gt=0, le=3650, description="only votes of the last N days")] = None,
    category: Annotated[str | None, Query(max_length=100)] = None,
    actor: Actor = Depends(acting_user),
) -> AgreementOut:
    """Per judge, on your own voted battles it rated: agreement rate, Cohen's kappa, the confusion counts and the
    battles where it disagreed with you."""
    since = utcnow() - dt.timedelta(days=since_days) if since_days else None
    cat = (category or "").strip() or None
    found = agreement.judge_agreement(actor, judge=(judge or "").strip() or None, since=since, category=cat)
    voted = agreement.voted_count(actor, since=since, category=cat)
    return AgreementOut(voted=voted, judges=[
        JudgeAgreementOut(**{k: v for k, v in a.as_dict().items() if k != "disagreements"},
                          unjudged=agreement.unjudged_count(actor, a.judge),
                          disagreements=[AgreementDisagreement(**d.__dict__) for d in a.disagreements])
        for a in found])


@router.post("/judgements", response_model=JudgeResult, summary="Have a judge model rate your voted battles it has not rated")
async def judge_battles(body: JudgeRequest, actor: Actor = Depends(acting_user), services=Depends(deps.services)) -> JudgeResult:
    """Bounded: at most `limit` battles per call, one after another, each in both answer orders; every verdict is
    stored as it arrives. 400 when the judge is not served."""
    name = body.judge.strip()
    verdicts = await agreement.judge_with_served(services.servers, name, actor, limit=body.limit,
                                                 timeout=float(services.settings.request_timeout), max_tokens=body.max_tokens)
    remaining = await anyio.to_thread.run_sync(agreement.unjudged_count, actor, name)
    return JudgeResult(judge=name, judged=sum(verdicts.values()), verdicts=verdicts, remaining=remaining)
