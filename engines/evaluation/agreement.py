"""Judge–human agreement: on battles a person voted on and an LLM judge also rated, how often they agree, and
Cohen's kappa (agreement beyond what two raters with those vote shares would reach by chance), per judge model.

Labels: a, b, tie. A person's "both bad" counts as tie: the judge's [[C]] means "equally good or equally bad".
A judge's verdict comes from `judge_pair` in both orders, so a judge that flips with the order gives a tie;
a failed or malformed verdict (error) is left out and counted apart. Battles are private: a person sees the
agreement on their own battles (the disagreements list shows prompts and answers).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from engines.accounts import Actor
from engines.evaluation.judge import JUDGE_PARAMS, judge_pair
from engines.serving.manager import Endpoint, ServerManager
from storage import battles, evals
from storage.models import Battle

LABELS = ("a", "b", "tie")
HUMAN = {"a": "a", "b": "b", "tie": "tie", "both_bad": "tie"}
JUDGED = {"win": "a", "loss": "b", "tie": "tie", "error": "error"}  # judge_pair's outcome for answer A against B


@dataclass
class Disagreement:
    battle_id: int
    prompt: str
    model_a: str
    model_b: str
    human: str
    judge: str


@dataclass
class JudgeAgreement:
    """One judge against the people: `n` battles both rated, the share they agreed on, Cohen's kappa (None when
    chance agreement is total: every label the same), the confusion counts {(human, judge): n}, the disagreements."""

    judge: str
    n: int
    agreement: float | None
    kappa: float | None
    errors: int = 0
    confusion: dict[tuple[str, str], int] = field(default_factory=dict)
    disagreements: list[Disagreement] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"judge": self.judge, "n": self.n, "agreement": self.agreement, "kappa": self.kappa, "errors": self.errors,
                "confusion": {f"{h}|{j}": c for (h, j), c in sorted(self.confusion.items())},
                "disagreements": [d.__dict__ for d in self.disagreements]}


def agreement_rate(pairs: list[tuple[str, str]]) -> float | None:
    """Share of (human, judge) pairs with the same label; None for no pairs."""
    return sum(h == j for h, j in pairs) / len(pairs) if pairs else None


def cohen_kappa(pairs: list[tuple[str, str]]) -> float | None:
    """(p_o − p_e) / (1 − p_e), with p_e from each rater's own label shares; None without pairs or when p_e = 1."""
    if not pairs:
        return None
    n = len(pairs)
    p_o = sum(h == j for h, j in pairs) / n
    humans, judges = Counter(h for h, _ in pairs), Counter(j for _, j in pairs)
    p_e = sum(humans[k] * judges[k] for k in set(humans) | set(judges)) / n**2
    if p_e >= 1.0:
        return None
    return (p_o - p_e) / (1 - p_e)


def judge_agreement(actor: Actor, *, judge: str | None = None, since: dt.datetime | None = None,
                    category: str | None = None) -> list[JudgeAgreement]:
    """Agreement per judge model on the actor's voted battles that judge rated, judges by name."""
    voted = {b.id: b for b in battles.voted_by(actor.id, since=since, category=category)}
    by_judge: dict[str, list[tuple[Battle, str]]] = {}
    for j in battles.judgements(list(voted), judge=judge):
        by_judge.setdefault(j.judge, []).append((voted[j.battle_id], j.verdict))
    out = []
    for name in sorted(by_judge):
        rated = by_judge[name]
        pairs = [(HUMAN[b.vote], v) for b, v in rated if v != "error"]
        out.append(JudgeAgreement(
            judge=name, n=len(pairs), agreement=agreement_rate(pairs), kappa=cohen_kappa(pairs),
            errors=sum(1 for _, v in rated if v == "error"), confusion=dict(Counter(pairs)),
            disagreements=[Disagreement(b.id, b.prompt, b.model_a, b.model_b, b.vote, v)
                           for b, v in rated if v != "error" and HUMAN[b.vote] != v]))
    return out


def unjudged_battles(actor: Actor, judge: str, *, limit: int | None = 200) -> list[Battle]:
    """The actor's voted battles (answers stored) this judge has not rated yet, or rated with an error (all: None)."""
    voted = battles.voted_by(actor.id)
    done = {j.battle_id for j in battles.judgements([b.id for b in voted], judge=judge) if j.verdict != "error"}
    return [b for b in voted if b.id not in done][:limit]


def unjudged_count(actor: Actor, judge: str) -> int:
    """How many of the actor's voted battles this judge still has to rate."""
    return len(unjudged_battles(actor, judge, limit=None))


def voted_count(actor: Actor, *, since: dt.datetime | None = None, category: str | None = None) -> int:
    """The actor's voted battles with both answers stored (what a judge can be compared on)."""
    return len(battles.voted_by(actor.id, since=since, category=category))


async def judge_battles(endpoint: Endpoint, judge: str, actor: Actor, *, limit: int = 200, timeout: float = 120.0,
                        max_tokens: int | None = None,
                        progress: Callable[[int, int, str], None] | None = None) -> dict[str, int]:
    """Have `judge` (served at `endpoint`) rate the actor's voted battles it has not rated, both orders each
    (`judge_pair`), storing every verdict as it arrives; returns how many of each verdict.
    `max_tokens` bounds each verdict's length (default: the judge's own 512); `progress(done, total, verdict)` is
    called after each battle."""
    import asyncio

    params = JUDGE_PARAMS if max_tokens is None else replace(JUDGE_PARAMS, max_tokens=max_tokens)
    todo = await asyncio.to_thread(unjudged_battles, actor, judge, limit=limit)
    counts: Counter[str] = Counter()
    if progress:
        progress(0, len(todo), "")
    for i, b in enumerate(todo, 1):  # one at a time: a judge is usually a served model people are chatting with too
        system = (evals.loads(b.params, {}) or {}).get("system") or ""
        question = f"{system.strip()}\n\n{b.prompt}".strip() if system.strip() else b.prompt
        result = await judge_pair(endpoint, question, b.answer_a or "", b.answer_b or "", timeout=timeout, params=params)
        verdict = JUDGED[result.outcome]
        await asyncio.to_thread(battles.save_judgement, b.id, judge, verdict, result.detail())
        counts[verdict] += 1
        if progress:
            progress(i, len(todo), verdict)
    return dict(counts)


async def judge_with_served(servers: ServerManager, judge: str, actor: Actor, *, limit: int = 200,
                            timeout: float = 120.0, max_tokens: int | None = None,
                            progress: Callable[[int, int, str], None] | None = None) -> dict[str, int]:
    """`judge_battles` with the judge named as a served model (what the Compare tab and the REST API call);
    ValueError when no running server serves that name."""
    name = (judge or "").strip()
    if not name:
        raise ValueError("Pick a judge model.")
    endpoint = servers.endpoint_for(name)
    if endpoint is None:
        raise ValueError(f"No running server serves {name!r}: pick a served model or start its server.")
    return await judge_battles(endpoint, name, actor, limit=limit, timeout=timeout, max_tokens=max_tokens,
                               progress=progress)
