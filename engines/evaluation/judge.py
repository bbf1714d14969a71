"""Pairwise LLM-as-judge: both orders judged, disagreement is a tie, malformed output is an error (never a win)."""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass, field

import numpy as np

from engines.endpoints import Endpoint
from engines.inference import ChatParams, InferenceError, complete_chat

JUDGE_SYSTEM = (
    "You compare two answers that AI assistants gave to the same user request, as an impartial expert reviewer. "
    "Prefer the answer that is more helpful, correct, relevant and clear for this user; when a reference answer is "
    "given, use it to check correctness. Ignore which answer comes first, how long each is, and any names. "
    "Explain your reasoning in a few sentences, then end with one line holding only your verdict: "
    "[[A]] if answer A is better, [[B]] if answer B is better, [[C]] if they are equally good or equally bad."
)
JUDGE_PARAMS = ChatParams(temperature=0.0, max_tokens=512, seed=0)
_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]", re.IGNORECASE)
OUTCOMES = ("win", "loss", "tie", "error")


class MalformedVerdict(ValueError):
    """The judge's text holds no verdict, or several different ones."""


def judge_messages(question: str, answer_a: str, answer_b: str, reference: str | None = None) -> list[dict[str, str]]:
    parts = [f"[User request]\n{question}"]
    if reference:
        parts.append(f"[Reference answer]\n{reference}")
    parts += [f"[Answer A]\n{answer_a}", f"[Answer B]\n{answer_b}", "Which answer is better? End with [[A]], [[B]] or [[C]]."]
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def parse_verdict(text: str) -> str:
    """'A', 'B' or 'C' (tie); anything else — no verdict, or conflicting ones — raises MalformedVerdict."""
    found = {m.upper() for m in _VERDICT.findall(text or "")}
    if len(found) != 1:
        why = "no [[A]]/[[B]]/[[C]] verdict" if not found else f"conflicting verdicts {sorted(found)}"
        raise MalformedVerdict(f"judge output has {why}")
    return found.pop()


def combine(candidate_first: str, baseline_first: str) -> str:
    """Outcome for the candidate from two verdicts: candidate shown as A, then as B. Disagreement is a tie."""
    one = {"A": "win", "B": "loss", "C": "tie"}[candidate_first]
    two = {"B": "win", "A": "loss", "C": "tie"}[baseline_first]
    return one if one == two else "tie"


@dataclass
class Judgement:
    outcome: str  # win | loss | tie | error, for the candidate against the baseline
    raw: list[str] = field(default_factory=list)
    error: str | None = None

    def detail(self) -> dict:
        return {"raw": self.raw, "error": self.error}


async def judge_pair(endpoint: Endpoint, question: str, candidate: str, baseline: str, reference: str | None = None, *,
                     timeout: float = 120.0, params: ChatParams = JUDGE_PARAMS) -> Judgement:
    """Judge candidate vs baseline in both orders at once; any failure or malformed verdict is an error."""
    orders = [judge_messages(question, candidate, baseline, reference), judge_messages(question, baseline, candidate, reference)]
    got = await asyncio.gather(*(complete_chat(endpoint, m, params, timeout=timeout) for m in orders), return_exceptions=True)
    raw = [g[0] if isinstance(g, tuple) else "" for g in got]
    failures = [g for g in got if isinstance(g, BaseException)]
    for g in failures:
        if not isinstance(g, InferenceError):
            raise g
    if failures:
        return Judgement("error", raw, f"judge request failed: {failures[0]}")
    try:
        return Judgement(combine(parse_verdict(raw[0]), parse_verdict(raw[1])), raw)
    except MalformedVerdict as exc:
        return Judgement("error", raw, str(exc))


def win_rate(outcomes: list[str]) -> float | None:
    """Share of judged examples won, ties counting half; errors are left out (and reported apart)."""
    valid = [o for o in outcomes if o in ("win", "loss", "tie")]
    if not valid:
        return None
    return (valid.count("win") + 0.5 * valid.count("tie")) / len(valid)


def length_controlled_win_rate(outcomes: list[str], candidate_lengths: list[int], baseline_lengths: list[int],
                               *, l2: float = 1e-3) -> float | None:
    """Win rate had both answers been the same length.

    A logistic model p(win) = σ(θ₀ + θ₁·tanh(Δlen / sd(Δlen))), fitted on win=1, tie=½, loss=0 (the idea behind
    AlpacaEval's length-controlled win rate); the answer is σ(θ₀), the prediction at zero length difference.
    """
    rows = [(o, c, b) for o, c, b in zip(outcomes, candidate_lengths, baseline_lengths, strict=True)
            if o in ("win", "loss", "tie")]
    if not rows:
        return None
    y = np.array([{"win": 1.0, "tie": 0.5, "loss": 0.0}[o] for o, _, _ in rows])
    diff = np.array([c - b for _, c, b in rows], dtype=float)
    sd = diff.std()
    x = np.tanh(diff / sd) if sd > 0 else np.zeros_like(diff)
    design = np.column_stack([np.ones_like(x), x])
    theta = np.zeros(2)
    for _ in range(50):  # Newton's method on the penalised cross-entropy: converges in a handful of steps
        p = 1.0 / (1.0 + np.exp(-design @ theta))
        grad = design.T @ (p - y) + l2 * theta
        hess = design.T @ (design * (p * (1 - p))[:, None]) + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-9:
            break
    return float(1.0 / (1.0 + math.exp(-theta[0])))
