"""Ratings: Bradley–Terry recovers a known order, ties count half, bootstrap intervals contain the estimate."""

from __future__ import annotations

import math
import random

from engines.evaluation.ratings import SCALE, Vote, bootstrap, bradley_terry, elo, leaderboard, win_matrix

STRENGTH = {"strong": 2.0, "middle": 0.0, "weak": -2.0, "weakest": -3.0}


def simulate(n: int = 1500, seed: int = 1, tie_rate: float = 0.1) -> list[Vote]:
    rnd = random.Random(seed)
    names = list(STRENGTH)
    votes = []
    for _ in range(n):
        a, b = rnd.sample(names, 2)
        if rnd.random() < tie_rate:
            votes.append(Vote(a, b, "tie"))
            continue
        p_a = 1 / (1 + math.exp(STRENGTH[b] - STRENGTH[a]))
        votes.append(Vote(a, b, "a" if rnd.random() < p_a else "b"))
    return votes


def test_bradley_terry_recovers_the_known_order_and_gaps():
    scores = bradley_terry(simulate())
    assert sorted(scores, key=scores.get, reverse=True) == ["strong", "middle", "weak", "weakest"]
    scores = bradley_terry(simulate(tie_rate=0.0))  # random ties would pull the gaps in
    gap = (scores["strong"] - scores["middle"]) / SCALE  # back to log-strength units: truth is 2.0
    assert 1.5 < gap < 2.5


def test_ties_count_half():
    even = [Vote("x", "y", "tie")] * 10
    s = bradley_terry(even)
    assert abs(s["x"] - s["y"]) < 1e-6
    half = [Vote("x", "y", "a")] * 5 + [Vote("x", "y", "b")] * 5
    assert abs(bradley_terry(half)["x"] - s["x"]) < 1e-6  # 10 ties == 5 wins + 5 losses
    _, rate, count = win_matrix([Vote("x", "y", "a"), Vote("x", "y", "tie"), Vote("y", "x", "both_bad")])
    assert count[0, 1] == 3 and abs(rate[0, 1] - 2 / 3) < 1e-9  # 1 + 0.5 + 0.5 of 3


def test_bootstrap_interval_contains_the_point_estimate():
    votes = simulate(600, seed=3)
    point = bradley_terry(votes)
    ci = bootstrap(votes, rounds=100, seed=4)
    for m, (lo, hi) in ci.items():
        assert lo <= point[m] <= hi and hi - lo > 0


def test_elo_preview_and_leaderboard_agree_on_the_top():
    votes = simulate(800, seed=5)
    assert max(elo(votes), key=elo(votes).get) == "strong"
    board = leaderboard(votes, rounds=50)
    assert board[0].model == "strong" and board[-1].model == "weakest"
    assert all(r.low <= r.score <= r.high for r in board)
    assert sum(r.battles for r in board) == 2 * len(votes)
