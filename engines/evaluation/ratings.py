"""Ratings from pairwise votes: Bradley–Terry (maximum likelihood, ties as half a win) with bootstrap 95%
intervals, an online Elo as a live preview, and the win-rate matrix."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SCALE = 400 / math.log(10)  # Elo points per unit of log-strength
BASE = 1000.0
PRIOR = 0.1  # pseudo-ties between every pair: keeps unbeaten/winless models finite


@dataclass(frozen=True)
class Vote:
    model_a: str
    model_b: str
    outcome: str  # "a" | "b" | "tie" | "both_bad"


@dataclass(frozen=True)
class Rating:
    model: str
    score: float  # Bradley–Terry on the Elo scale
    low: float
    high: float
    elo: float
    battles: int
    win_rate: float  # ties count half


def _score_a(outcome: str) -> float:
    return {"a": 1.0, "b": 0.0}.get(outcome, 0.5)


def _index(votes: Sequence[Vote]) -> list[str]:
    return sorted({v.model_a for v in votes} | {v.model_b for v in votes})


def _wins(votes: Sequence[Vote], idx: dict[str, int]) -> np.ndarray:
    n = len(idx)
    w = np.full((n, n), PRIOR / 2)
    np.fill_diagonal(w, 0.0)
    for v in votes:
        a, b = idx[v.model_a], idx[v.model_b]
        s = _score_a(v.outcome)
        w[a, b] += s
        w[b, a] += 1 - s
    return w


def bradley_terry(votes: Sequence[Vote], models: list[str] | None = None, iters: int = 500, tol: float = 1e-10) -> dict[str, float]:
    """Maximum-likelihood strengths by Hunter's MM iterations; returned on the Elo scale (mean 1000)."""
    models = models or _index(votes)
    idx = {m: i for i, m in enumerate(models)}
    w = _wins(votes, idx)
    games = w + w.T
    p = np.ones(len(models))
    wins = w.sum(axis=1)
    for _ in range(iters):
        denom = (games / (p[:, None] + p[None, :])).sum(axis=1)
        new = wins / denom
        new /= np.exp(np.log(new).mean())
        if np.max(np.abs(new - p)) < tol:
            p = new
            break
        p = new
    return {m: BASE + SCALE * math.log(p[i]) for m, i in idx.items()}


def bootstrap(votes: Sequence[Vote], rounds: int = 200, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of the Bradley–Terry scores over battles resampled with replacement."""
    models = _index(votes)
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {m: [] for m in models}
    n = len(votes)
    for _ in range(rounds):
        pick = [votes[i] for i in rng.integers(0, n, n)]
        scores = bradley_terry(pick, models)
        for m in models:
            samples[m].append(scores[m])
    return {m: (float(np.percentile(s, 2.5)), float(np.percentile(s, 97.5))) for m, s in samples.items()}


def elo(votes: Sequence[Vote], k: float = 32.0) -> dict[str, float]:
    """Online Elo in vote order (depends on the order; a live preview, not the ranking)."""
    r: dict[str, float] = {}
    for v in votes:
        ra, rb = r.setdefault(v.model_a, BASE), r.setdefault(v.model_b, BASE)
        expected = 1 / (1 + 10 ** ((rb - ra) / 400))
        s = _score_a(v.outcome)
        r[v.model_a] = ra + k * (s - expected)
        r[v.model_b] = rb - k * (s - expected)
    return r


def win_matrix(votes: Sequence[Vote]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(models, win rate of row over column with ties as half, battle counts)."""
    models = _index(votes)
    idx = {m: i for i, m in enumerate(models)}
    score = np.zeros((len(models), len(models)))
    count = np.zeros((len(models), len(models)), dtype=int)
    for v in votes:
        a, b = idx[v.model_a], idx[v.model_b]
        s = _score_a(v.outcome)
        score[a, b] += s
        score[b, a] += 1 - s
        count[a, b] += 1
        count[b, a] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(count > 0, score / np.maximum(count, 1), np.nan)
    return models, rate, count


def leaderboard(votes: Sequence[Vote], rounds: int = 200) -> list[Rating]:
    if not votes:
        return []
    bt = bradley_terry(votes)
    ci = bootstrap(votes, rounds=rounds)
    live = elo(votes)
    models, rate, count = win_matrix(votes)
    out = []
    for i, m in enumerate(models):
        played = int(count[i].sum())
        won = float(np.nansum(rate[i] * count[i]))
        out.append(Rating(m, bt[m], ci[m][0], ci[m][1], live[m], played, won / played if played else 0.0))
    return sorted(out, key=lambda r: r.score, reverse=True)
